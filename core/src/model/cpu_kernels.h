#pragma once
// Hand-written CPU kernels (AVX-512 with bf16 dot products) for the places where libtorch 1.13
// leaves most of this machine idle: bf16 matrix-vector products at decode time (oneDNN reaches
// ~25 GFLOP/s at one row, docs/platform-notes.md), and chains of small elementwise ops whose dispatch costs
// more than their arithmetic. Each returns an undefined tensor when it does not apply (another
// device or dtype, an odd shape, an older CPU) and the caller falls back to plain torch ops.
#include <torch/torch.h>

namespace persona::model::cpu {

// True when this CPU runs these kernels (AVX-512 F/BW/VL and BF16).
bool available();

// x[..., K] (float32 or bf16) . w[N, K]^T for bf16 `w`, as float32. Each weight is read once for
// all rows of x: it suits decode, where the weights' trip from memory is the whole cost.
torch::Tensor linear_few_rows(const torch::Tensor& x, const torch::Tensor& w);

// x * rsqrt(mean(x^2) + eps) * weight over the last dim, in one pass, written as out_dtype.
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps, torch::ScalarType out_dtype);

// Rotate-half RoPE of x [B, T, heads, D] with cos/sin [B, T, 1, D/2]: float32, returned as a
// [B, T, heads, D] view of memory laid out [B, heads, T, D], so attention needs no copy.
torch::Tensor rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);

// Grouped-query attention: q [B, T, H, D], keys/values [B, KVH, Tk, D], additive mask
// [B, 1, T, Tk], all float32 with the last dim contiguous; returns [B, T, H * D]. Works in
// blocks of positions, skipping keys the mask rules out (half the work of a causal prefill).
torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& keys, const torch::Tensor& values,
                        const torch::Tensor& mask, double scale);

// silu(gate) * up for gate_up = [..., gate | up], written as out_dtype.
torch::Tensor silu_mul(const torch::Tensor& gate_up, torch::ScalarType out_dtype);

}  // namespace persona::model::cpu
