// The hand-written CPU kernels (core/src/model/cpu_kernels.cpp) against plain torch ops on
// random inputs, including shapes the models do not have: rows that do not fill a tile of
// four, matrix heights that are not a multiple of four, left padding and sliding windows in
// attention. Kept free of Qt: torch and Qt headers cannot share a translation unit
// (docs/platform-notes.md), so test_cpu_kernels.cpp only reports what this file finds.
#include "cpu_kernels_check.h"

#include "model/cpu_kernels.h"
#include "model/transformer.h"

#include <torch/torch.h>

#include <cmath>
#include <sstream>

namespace persona_test {

namespace {

namespace cpu = persona::model::cpu;

double relative_error(const torch::Tensor& actual, const torch::Tensor& expected) {
    const torch::Tensor a = actual.to(torch::kFloat64), e = expected.to(torch::kFloat64);
    return ((a - e).abs().max() / e.abs().max().clamp_min(1e-30)).item<double>();
}

struct Checker {
    std::vector<std::string> failures;
    int checks = 0;
    void expect(bool ok, const std::string& what) {
        ++checks;
        if (!ok) failures.push_back(what);
    }
    void close(const torch::Tensor& actual, const torch::Tensor& expected, double tolerance, const std::string& what) {
        if (!actual.defined()) return expect(false, what + ": the kernel declined");
        if (actual.sizes() != expected.sizes()) return expect(false, what + ": wrong shape");
        const double error = relative_error(actual, expected);
        std::ostringstream text;
        text << what << ": relative error " << error << " > " << tolerance;
        expect(error <= tolerance, text.str());
    }
};

// Grouped-query attention the way transformer.cpp's torch fallback computes it, in float64.
torch::Tensor reference_attention(const torch::Tensor& q, const torch::Tensor& keys, const torch::Tensor& values,
                                  const torch::Tensor& mask, double scale) {
    const std::int64_t batch = q.size(0), steps = q.size(1), heads = q.size(2), dim = q.size(3);
    const std::int64_t group = heads / keys.size(1);
    const torch::Tensor k = keys.to(torch::kFloat64).repeat_interleave(group, 1);  // [B, H, Tk, D]
    const torch::Tensor v = values.to(torch::kFloat64).repeat_interleave(group, 1);
    const torch::Tensor scores = torch::matmul(q.to(torch::kFloat64).transpose(1, 2), k.transpose(-1, -2)) * scale +
                                 mask.to(torch::kFloat64);
    return torch::matmul(torch::softmax(scores, -1), v).transpose(1, 2).reshape({batch, steps, heads * dim});
}

// Additive mask over slots [past, past + steps) of keys [0, past + steps), as model.cpp builds
// it: causal, rows left-padded by `padding`, an optional sliding window, and a padding query
// that sees only itself.
torch::Tensor make_mask(std::int64_t batch, std::int64_t past, std::int64_t steps, const std::vector<std::int64_t>& padding,
                        std::int64_t window) {
    const std::int64_t keys = past + steps;
    torch::Tensor mask = torch::full({batch, 1, steps, keys}, -INFINITY);
    auto m = mask.accessor<float, 4>();
    for (std::int64_t b = 0; b < batch; ++b)
        for (std::int64_t t = 0; t < steps; ++t)
            for (std::int64_t j = 0; j < keys; ++j) {
                const std::int64_t slot = past + t;
                const bool allowed = (j <= slot && j >= padding[static_cast<std::size_t>(b)] &&
                                      (window == 0 || slot - j < window)) ||
                                     j == slot;
                if (allowed) m[b][0][t][j] = 0.0f;
            }
    return mask;
}

struct AttentionCase {
    std::int64_t batch, past, steps, heads, kv_heads, dim, window;
};
const AttentionCase kAttentionCases[] = {{1, 0, 37, 9, 3, 64, 0}, {2, 0, 21, 4, 1, 256, 0}, {3, 19, 1, 6, 2, 64, 0},
                                         {2, 11, 5, 6, 3, 128, 0}, {2, 0, 40, 4, 2, 64, 7}, {2, 30, 3, 4, 2, 64, 9}};

}  // namespace

CheckResult check_portable_attention() {
    CheckResult result;
    result.available = persona::model::fused_sdpa_available();
    torch::NoGradGuard no_grad;
    torch::manual_seed(11);
    Checker c;
    for (const AttentionCase& k : kAttentionCases) {
        const std::int64_t keys = k.past + k.steps, capacity = keys + 9;
        std::vector<std::int64_t> padding(static_cast<std::size_t>(k.batch));
        for (std::int64_t b = 0; b < k.batch; ++b) padding[static_cast<std::size_t>(b)] = (b * 5) % std::max<std::int64_t>(1, keys - 1);
        const torch::Tensor q = torch::randn({k.batch, k.steps, k.heads, k.dim});
        const torch::Tensor kv = torch::randn({k.batch, k.kv_heads, capacity, k.dim}).narrow(2, 0, keys);
        const torch::Tensor vv = torch::randn({k.batch, k.kv_heads, capacity, k.dim}).narrow(2, 0, keys);
        const torch::Tensor mask = make_mask(k.batch, k.past, k.steps, padding, k.window);
        const double scale = 0.7 / std::sqrt(static_cast<double>(k.dim));  // not 1/sqrt(D): the scale must be honoured
        const torch::Tensor expected = reference_attention(q, kv, vv, mask, scale);
        std::ostringstream name;
        name << "B" << k.batch << " past " << k.past << " T" << k.steps << " H" << k.heads << "/" << k.kv_heads << " D"
             << k.dim << " window " << k.window;
        c.close(persona::model::portable_attention(q, kv, vv, mask, scale, true), expected, 1e-5,
                "portable attention (sdpa where available) " + name.str());
        c.close(persona::model::portable_attention(q, kv, vv, mask, scale, false), expected, 1e-5,
                "portable attention (matmul) " + name.str());
    }
    result.checks = c.checks;
    result.failures = c.failures;
    return result;
}

CheckResult check_cpu_kernels() {
    CheckResult result;
    result.available = cpu::available();
    if (!result.available) return result;
    torch::NoGradGuard no_grad;
    torch::manual_seed(7);
    Checker c;

    // Few-row bf16 products: exact products of bf16-rounded inputs, summed in float32.
    for (std::int64_t rows : {1, 3, 4, 5, 8, 13, 32})
        for (std::int64_t n : {1, 6, 64, 67})
            for (std::int64_t k : {32, 576}) {
                const torch::Tensor x = torch::randn({rows, k});
                const torch::Tensor w = (torch::randn({n, k}) * 0.05).to(torch::kBFloat16);
                const torch::Tensor expected =
                    torch::matmul(x.to(torch::kBFloat16).to(torch::kFloat64), w.to(torch::kFloat64).t());
                const std::string shape = std::to_string(rows) + "x" + std::to_string(k) + " . " + std::to_string(n) + "x" +
                                          std::to_string(k) + "^T";
                c.close(cpu::linear_few_rows(x, w), expected, 1e-5, "linear_few_rows " + shape);
                c.close(cpu::linear_few_rows(x.to(torch::kBFloat16), w), expected, 1e-5, "linear_few_rows bf16 x " + shape);
            }
    c.expect(!cpu::linear_few_rows(torch::randn({2, 48}), torch::randn({8, 48}).to(torch::kBFloat16)).defined(),
             "linear_few_rows accepted a width that is not a multiple of 32");
    c.expect(!cpu::linear_few_rows(torch::randn({2, 64}), torch::randn({8, 64})).defined(),
             "linear_few_rows accepted float32 weights");

    // RMSNorm, from float32 or bf16 rows, to float32 or bf16.
    for (std::int64_t width : {64, 576}) {
        const torch::Tensor x = torch::randn({2, 7, width}) * 3.0;
        const torch::Tensor weight = torch::rand({width}) + 0.5;
        const torch::Tensor x64 = x.to(torch::kFloat64);
        const torch::Tensor expected = x64 * torch::rsqrt(x64.pow(2).mean(-1, true) + 1e-5) * weight.to(torch::kFloat64);
        c.close(cpu::rms_norm(x, weight, 1e-5, torch::kFloat32), expected, 1e-6, "rms_norm f32");
        c.close(cpu::rms_norm(x, weight, 1e-5, torch::kBFloat16), expected, 8e-3, "rms_norm to bf16");
        c.close(cpu::rms_norm(x.transpose(0, 1), weight, 1e-5, torch::kFloat32), expected.transpose(0, 1), 1e-6,
                "rms_norm of a transposed view");
    }

    // RoPE on a strided view, as the block takes q out of the fused qkv projection.
    for (std::int64_t dim : {64, 256}) {
        const std::int64_t batch = 2, steps = 5, heads = 3;
        const torch::Tensor qkv = torch::randn({batch, steps, heads * dim + 32});
        const torch::Tensor x = qkv.narrow(-1, 0, heads * dim).view({batch, steps, heads, dim});
        const torch::Tensor angles = torch::rand({batch, steps, 1, dim / 2}) * 10.0;
        const torch::Tensor cos = angles.cos(), sin = angles.sin();
        const torch::Tensor x1 = x.narrow(-1, 0, dim / 2).to(torch::kFloat64), x2 = x.narrow(-1, dim / 2, dim / 2).to(torch::kFloat64);
        const torch::Tensor c64 = cos.to(torch::kFloat64), s64 = sin.to(torch::kFloat64);
        const torch::Tensor expected = torch::cat({x1 * c64 - x2 * s64, x2 * c64 + x1 * s64}, -1);
        c.close(cpu::rope(x, cos, sin), expected, 1e-6, "rope head_dim " + std::to_string(dim));
    }

    // SiLU gate, over the range where exp over- and underflows.
    {
        const torch::Tensor gate_up = torch::cat({torch::linspace(-100.0, 100.0, 2 * 48 * 16).view({2, 48 * 16}),
                                                  torch::randn({2, 48 * 16})}, -1);
        const torch::Tensor g = gate_up.narrow(-1, 0, 48 * 16).to(torch::kFloat64), u = gate_up.narrow(-1, 48 * 16, 48 * 16).to(torch::kFloat64);
        const torch::Tensor expected = g * torch::sigmoid(g) * u;
        c.close(cpu::silu_mul(gate_up, torch::kFloat32), expected, 1e-6, "silu_mul f32");
        c.close(cpu::silu_mul(gate_up, torch::kBFloat16), expected, 8e-3, "silu_mul to bf16");
    }

    // Attention: prefill and decode against a cache view, padding, sliding window, GQA groups.
    for (const AttentionCase& k : kAttentionCases) {
        const std::int64_t keys = k.past + k.steps, capacity = keys + 9;
        std::vector<std::int64_t> padding(static_cast<std::size_t>(k.batch));
        for (std::int64_t b = 0; b < k.batch; ++b) padding[static_cast<std::size_t>(b)] = (b * 5) % std::max<std::int64_t>(1, keys - 1);
        const torch::Tensor q = torch::randn({k.batch, k.steps, k.heads, k.dim});
        const torch::Tensor cache_k = torch::randn({k.batch, k.kv_heads, capacity, k.dim});
        const torch::Tensor cache_v = torch::randn({k.batch, k.kv_heads, capacity, k.dim});
        const torch::Tensor kv = cache_k.narrow(2, 0, keys), vv = cache_v.narrow(2, 0, keys);
        const torch::Tensor mask = make_mask(k.batch, k.past, k.steps, padding, k.window);
        const double scale = 1.0 / std::sqrt(static_cast<double>(k.dim));
        std::ostringstream name;
        name << "attention B" << k.batch << " past " << k.past << " T" << k.steps << " H" << k.heads << "/" << k.kv_heads
             << " D" << k.dim << " window " << k.window;
        c.close(cpu::attention(q, kv, vv, mask, scale), reference_attention(q, kv, vv, mask, scale), 1e-5, name.str());
    }

    result.checks = c.checks;
    result.failures = c.failures;
    return result;
}

}  // namespace persona_test
