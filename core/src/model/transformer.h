#pragma once
// The shape every architecture file fills in: embed, one block at a time, logits. The model
// drives the blocks itself so it can read and change the residual stream between them
// (docs/method.md: hidden_states[l] is the output of block l-1).
#include "model/quantized_matrix.h"

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace persona::model {

struct TransformerConfig {
    std::string architecture;
    int layers = 0;
    int hidden = 0;
    int heads = 0;
    int kv_heads = 0;
    int head_dim = 0;
    int feed_forward = 0;
    int vocabulary = 0;
    int context = 0;
    double rms_eps = 1e-5;
    double attention_scale = 0.0;    // multiplies q.k
    int sliding_window = 0;          // 0: no sliding-window layers
    std::vector<bool> sliding_layer; // per block
    double rope_base = 10000.0;             // RoPE base of global-attention blocks
    double rope_linear_factor = 1.0;        // linear RoPE scaling of global blocks: frequencies divided by it
    double local_rope_base = 10000.0;       // RoPE base of sliding-window blocks
    std::vector<float> rope_freq_factors;   // per-frequency divisors (Llama 3.1, Phi-3 longrope); empty: none
    double rope_attention_factor = 1.0;     // multiplies RoPE's cos and sin (Phi-3 longrope)
};

// Keys and values of every block, preallocated for the whole generation.
struct KvCache {
    std::vector<torch::Tensor> keys;    // per block [B, kv_heads, capacity, head_dim]
    std::vector<torch::Tensor> values;
    std::int64_t length = 0;            // filled slots
};

// The four matrix products of a block, as architecture files compute them: queries, keys and
// values in one fused matrix (rows q | k | v), the attention output, gate and up in one fused
// matrix (rows gate | up), down. LoRA adapters (model/lora.h) attach here.
enum class ProjectionSite { Qkv, Out, GateUp, Down };

// Changes a projection's output, given its input: LoRA's x A^T B^T during training.
class ProjectionAdapter {
public:
    virtual ~ProjectionAdapter() = default;
    virtual torch::Tensor adjust(int layer, ProjectionSite site, const torch::Tensor& input, torch::Tensor output) const = 0;
};

// What one forward step shares across blocks.
struct StepContext {
    torch::Tensor global_mask;  // [B, 1, T, Tk] additive (0 or -inf)
    torch::Tensor local_mask;   // same, with the sliding window; undefined if unused
    torch::Tensor global_cos, global_sin;  // [B, T, 1, head_dim/2]
    torch::Tensor local_cos, local_sin;
    KvCache* cache = nullptr;   // null: attend within this step only
    const ProjectionAdapter* adapter = nullptr;
};

// A weight matrix [rows, cols]: a tensor in the compute dtype, or (dtype "quantized", CPU) a GGUF
// tensor's quantized blocks.
struct Weight {
    Weight() = default;
    Weight(torch::Tensor tensor) : dense(std::move(tensor)) {}  // NOLINT: a dense tensor is a weight
    Weight(QuantizedMatrix matrix, torch::ScalarType dense_dtype)
        : quantized(std::make_shared<const QuantizedMatrix>(std::move(matrix))), dense_dtype(dense_dtype) {}

    torch::Tensor dense;
    std::shared_ptr<const QuantizedMatrix> quantized;  // shared: a tied embedding is also the output
    torch::ScalarType dense_dtype = torch::kFloat32;   // what the quantized blocks widen to

    // The dtype the projection takes its input in, so a norm can hand it over without a pass.
    torch::ScalarType input_dtype() const { return quantized ? torch::kFloat32 : dense.scalar_type(); }
    torch::Device device() const { return quantized ? torch::Device(torch::kCPU) : dense.device(); }
    std::uint64_t bytes() const;
    // The dense tensor, widening quantized blocks for good first (an adapter merged into them).
    torch::Tensor& make_dense();
};

// The weight of `site` in an architecture's per-block struct, whose matrices are named qkv,
// out, gate_up and down.
template <class Layer>
Weight& site_of(Layer& layer, ProjectionSite site) {
    switch (site) {
        case ProjectionSite::Qkv: return layer.qkv;
        case ProjectionSite::Out: return layer.out;
        case ProjectionSite::GateUp: return layer.gate_up;
        case ProjectionSite::Down: break;
    }
    return layer.down;
}

// A projection's output through the step's adapter, when it has one.
inline torch::Tensor adapted(const StepContext& step, int layer, ProjectionSite site, const torch::Tensor& input,
                             torch::Tensor output) {
    return step.adapter ? step.adapter->adjust(layer, site, input, std::move(output)) : output;
}

class Transformer {
public:
    virtual ~Transformer() = default;
    const TransformerConfig& config() const { return config_; }

    // Rotary inverse frequencies, [head_dim/2] float32, for global and sliding-window blocks.
    const torch::Tensor& global_inv_freq() const { return global_inv_freq_; }
    const torch::Tensor& local_inv_freq() const { return local_inv_freq_; }

    virtual torch::Tensor embed(const torch::Tensor& tokens) const = 0;  // [B,T] -> [B,T,H] f32
    virtual torch::Tensor block(int index, const torch::Tensor& hidden, StepContext& step) const = 0;
    virtual torch::Tensor logits(const torch::Tensor& hidden) const = 0;  // [B,T,H] -> [B,T,V] f32
    // The weight matrix [rows, cols] of a block's projection: where an adapter is merged at load.
    virtual Weight& site_weight(int layer, ProjectionSite site) = 0;

    std::uint64_t weight_bytes() const { return weight_bytes_; }

protected:
    TransformerConfig config_;
    torch::Tensor global_inv_freq_;
    torch::Tensor local_inv_freq_;
    std::uint64_t weight_bytes_ = 0;
};

// Where weights come from: a GGUF file or a Hugging Face safetensors checkpoint. The format's
// reader fills the config; architecture files ask for tensors by their GGUF names
// (blk.N.attn_q.weight) and each source maps those to its own, so the model math is written once.
class WeightSource {
public:
    virtual ~WeightSource() = default;
    virtual const std::string& path() const = 0;  // for error messages
    virtual const TransformerConfig& config() const = 0;
    virtual bool has(const std::string& name) const = 0;
    // The tensor widened to float32 on the CPU; FileError when it is missing or its shape (torch
    // order, outermost first) is not `shape`.
    virtual torch::Tensor read(const std::string& name, const std::vector<std::int64_t>& shape) const = 0;
    // True when `name` is stored in a block format QuantizedMatrix keeps (GGUF's Q4_0, Q4_1, Q5_0,
    // Q5_1, Q8_0, Q4_K, Q5_K, Q6_K), and the matrix [rows, cols] in those blocks.
    virtual bool stores_quantized(const std::string& name) const { static_cast<void>(name); return false; }
    virtual QuantizedMatrix read_quantized(const std::string& name, std::int64_t rows, std::int64_t cols) const;
    virtual std::size_t tensor_count() const = 0;
    // llama.cpp's converter permutes the Q/K rows of llama-architecture models (docs/platform-notes.md);
    // Hugging Face checkpoints hold them in rotate-half order already.
    virtual bool llama_qk_rows_permuted() const = 0;
    // llama.cpp's converter stores Gemma's RMSNorm weights as 1 + w; Hugging Face stores w.
    virtual bool gemma_norms_include_one() const = 0;
};

// Reads weights into torch in the compute dtype and on the device, checking each shape so a
// checkpoint whose tensors do not match its config (a vocabulary that does not match the
// embedding, say) fails clearly.
class WeightLoader {
public:
    // keep_quantized: matrices stored in a block format stay in it (CPU only) and round their
    // activations so; nullopt: they widen to the compute dtype.
    WeightLoader(const WeightSource& source, torch::ScalarType matrix_dtype, torch::Device device,
                 std::function<void()> on_tensor_loaded, std::optional<ActivationRounding> keep_quantized = std::nullopt);

    const WeightSource& source() const { return source_; }
    const TransformerConfig& config() const { return source_.config(); }
    bool has(const std::string& name) const { return source_.has(name); }
    // A weight matrix [rows, cols] (ggml shape [cols, rows]) in the compute dtype.
    torch::Tensor matrix(const std::string& name, std::int64_t rows, std::int64_t cols);
    // A weight matrix [rows, cols], quantized when the loader keeps them and the file has it so.
    Weight weight(const std::string& name, std::int64_t rows, std::int64_t cols);
    // Matrices stacked by rows in one weight (q | k | v, gate | up), as fused projections use
    // them; a piece's `order` (when not empty) reorders its rows first: row i is row order[i].
    struct Piece {
        std::string name;
        std::int64_t rows = 0;
        std::vector<std::int64_t> order{};
    };
    Weight stacked(const std::vector<Piece>& pieces, std::int64_t cols);
    // A vector (norm weight, bias) kept in float32 for precision.
    torch::Tensor vector(const std::string& name, std::int64_t length);
    // A matrix as float32 on the CPU, before conversion (for permutations at load time).
    torch::Tensor matrix_f32(const std::string& name, std::int64_t rows, std::int64_t cols);
    torch::Tensor to_compute(const torch::Tensor& f32_matrix);

    torch::ScalarType dtype() const { return dtype_; }
    torch::Device device() const { return device_; }
    std::uint64_t bytes_loaded() const { return bytes_; }

private:
    torch::Tensor read(const std::string& name, const std::vector<std::int64_t>& torch_shape);
    const WeightSource& source_;
    torch::ScalarType dtype_;
    torch::Device device_;
    std::function<void()> on_tensor_loaded_;
    std::optional<ActivationRounding> keep_quantized_;
    std::uint64_t bytes_ = 0;
};

// Shared operations, so each architecture file reads as its math.
// The residual stream is float32; norms may hand their output on in the weights' dtype, which
// saves the projection a conversion pass.
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps,
                       torch::ScalarType out_dtype = torch::kFloat32);
// x [..., K] (float32 or the weights' dtype) times weight [N, K]^T, as float32.
torch::Tensor project(const torch::Tensor& x, const Weight& weight, const torch::Tensor& bias = {});
// Rows `tokens` of an embedding table, as float32 [..., H].
torch::Tensor embedding_rows(const Weight& table, const torch::Tensor& tokens);
// silu(gate) * up for gate_up = [..., gate | up].
torch::Tensor silu_mul(const torch::Tensor& gate_up, torch::ScalarType out_dtype = torch::kFloat32);
// Rotate-half RoPE on [B, T, heads, head_dim] with cos/sin [B, T, 1, head_dim/2].
torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);
// Grouped-query attention with the KV cache; q [B,T,H,D], k/v [B,T,KVH,D] -> [B,T,H*D].
torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, int layer,
                        const torch::Tensor& mask, double scale, KvCache* cache);
// The attention every device can run: q [B,T,H,D], keys/values [B,KVH,Tk,D], additive mask
// [B,1,T,Tk] -> [B,T,H*D]. scaled_dot_product_attention where libtorch has it (>= 2.0, and
// unless PERSONA_TORCH_SDPA=off or !allow_sdpa), else matmul + softmax.
torch::Tensor portable_attention(const torch::Tensor& q, const torch::Tensor& keys, const torch::Tensor& values,
                                 const torch::Tensor& mask, double scale, bool allow_sdpa = true);
// True when portable_attention uses scaled_dot_product_attention.
bool fused_sdpa_available();
torch::Tensor rope_inverse_frequencies(int head_dim, double base);

// Architecture files register here; an unknown architecture is a clear error.
std::unique_ptr<Transformer> build_transformer(WeightLoader& loader);
std::unique_ptr<Transformer> build_llama(WeightLoader& loader);
std::unique_ptr<Transformer> build_qwen2(WeightLoader& loader);
std::unique_ptr<Transformer> build_qwen3(WeightLoader& loader);
std::unique_ptr<Transformer> build_phi3(WeightLoader& loader);
std::unique_ptr<Transformer> build_gemma3(WeightLoader& loader);

}  // namespace persona::model
