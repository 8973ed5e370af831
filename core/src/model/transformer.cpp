#include "model/transformer.h"

#include "model/cpu_kernels.h"
#include "persona/errors.h"

#include <torch/version.h>

#include <cmath>
#include <cstdlib>
#include <string>

// scaled_dot_product_attention came with libtorch 2.0; 1.13 (Debian 12) has only the matmul path.
#if TORCH_VERSION_MAJOR >= 2
#define PERSONA_HAVE_SDPA 1
#else
#define PERSONA_HAVE_SDPA 0
#endif

namespace persona::model {

namespace {

// The hand-written kernels have no backward: while autograd records (LoRA training), every
// operation takes libtorch's own path.
bool recording_gradients() { return torch::GradMode::is_enabled(); }

}  // namespace

std::uint64_t Weight::bytes() const {
    return quantized ? quantized->bytes() : static_cast<std::uint64_t>(dense.numel() * dense.element_size());
}

torch::Tensor& Weight::make_dense() {
    if (quantized) {
        dense = quantized->dequantized(dense_dtype);
        quantized.reset();
    }
    return dense;
}

QuantizedMatrix WeightSource::read_quantized(const std::string& name, std::int64_t, std::int64_t) const {
    throw FileError(path(), "tensor '" + name + "' is not stored in a quantized block format");
}

WeightLoader::WeightLoader(const WeightSource& source, torch::ScalarType matrix_dtype, torch::Device device,
                           std::function<void()> on_tensor_loaded, std::optional<ActivationRounding> keep_quantized)
    : source_(source), dtype_(matrix_dtype), device_(device), on_tensor_loaded_(std::move(on_tensor_loaded)),
      keep_quantized_(keep_quantized) {}

Weight WeightLoader::weight(const std::string& name, std::int64_t rows, std::int64_t cols) {
    if (!keep_quantized_ || !source_.stores_quantized(name)) return matrix(name, rows, cols);
    QuantizedMatrix m = source_.read_quantized(name, rows, cols);
    m.set_activation_rounding(*keep_quantized_);
    Weight w(std::move(m), dtype_);
    if (on_tensor_loaded_) on_tensor_loaded_();
    bytes_ += w.bytes();
    return w;
}

Weight WeightLoader::stacked(const std::vector<Piece>& pieces, std::int64_t cols) {
    bool quantized = keep_quantized_.has_value();
    for (const Piece& piece : pieces) quantized = quantized && source_.stores_quantized(piece.name);
    if (quantized) {
        std::vector<QuantizedMatrix> matrices;
        for (const Piece& piece : pieces) {
            QuantizedMatrix m = source_.read_quantized(piece.name, piece.rows, cols);
            if (on_tensor_loaded_) on_tensor_loaded_();
            matrices.push_back(piece.order.empty() ? std::move(m) : m.reordered(piece.order));
        }
        QuantizedMatrix m = QuantizedMatrix::stacked(std::move(matrices));
        m.set_activation_rounding(*keep_quantized_);
        Weight w(std::move(m), dtype_);
        bytes_ += w.bytes();
        return w;
    }
    std::vector<torch::Tensor> matrices;
    for (const Piece& piece : pieces) {
        torch::Tensor m = matrix_f32(piece.name, piece.rows, cols);
        matrices.push_back(piece.order.empty() ? m : m.index_select(0, torch::tensor(piece.order, torch::kInt64)));
    }
    return to_compute(matrices.size() == 1 ? matrices.front() : torch::cat(matrices, 0));
}

torch::Tensor WeightLoader::read(const std::string& name, const std::vector<std::int64_t>& torch_shape) {
    torch::Tensor out = source_.read(name, torch_shape);
    if (on_tensor_loaded_) on_tensor_loaded_();
    return out;
}

torch::Tensor WeightLoader::to_compute(const torch::Tensor& f32_matrix) {
    torch::Tensor t = f32_matrix.to(device_, dtype_).contiguous();
    bytes_ += static_cast<std::uint64_t>(t.numel() * t.element_size());
    return t;
}

torch::Tensor WeightLoader::matrix_f32(const std::string& name, std::int64_t rows, std::int64_t cols) {
    return read(name, {rows, cols});
}

torch::Tensor WeightLoader::matrix(const std::string& name, std::int64_t rows, std::int64_t cols) {
    return to_compute(read(name, {rows, cols}));
}

torch::Tensor WeightLoader::vector(const std::string& name, std::int64_t length) {
    torch::Tensor t = read(name, {length}).to(device_);
    bytes_ += static_cast<std::uint64_t>(t.numel() * t.element_size());
    return t;
}

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps, torch::ScalarType out_dtype) {
    if (!recording_gradients())
        if (torch::Tensor fused = cpu::rms_norm(x, weight, eps, out_dtype); fused.defined()) return fused;
    const torch::Tensor x32 = x.to(torch::kFloat32);
    return (x32 * torch::rsqrt(x32.pow(2).mean(-1, true) + eps) * weight).to(out_dtype);
}

torch::Tensor project(const torch::Tensor& x, const Weight& w, const torch::Tensor& bias) {
    if (w.quantized) {
        // Training needs autograd through the product, which the int8 kernel does not record.
        const torch::Tensor y = recording_gradients()
                                    ? torch::linear(x.to(w.dense_dtype), w.quantized->dequantized(w.dense_dtype)).to(torch::kFloat32)
                                    : w.quantized->multiply(x);
        return bias.defined() ? y + bias : y;
    }
    const torch::Tensor& weight = w.dense;
    // Up to a few dozen rows the hand-written kernel streams bf16 weights near memory speed: 2.5-3x
    // oneDNN at one row, 1.7x at 16, 1.1x at 32; at 64 oneDNN's blocked GEMM is as fast.
    constexpr std::int64_t kFewRows = 32;
    torch::Tensor y;
    if (x.numel() <= kFewRows * x.size(-1) && !recording_gradients()) y = cpu::linear_few_rows(x, weight);
    if (!y.defined()) y = torch::linear(x.to(weight.scalar_type()), weight).to(torch::kFloat32);
    return bias.defined() ? y + bias : y;
}

torch::Tensor embedding_rows(const Weight& table, const torch::Tensor& tokens) {
    if (table.quantized) return table.quantized->lookup(tokens.cpu()).to(tokens.device());
    return torch::embedding(table.dense, tokens).to(torch::kFloat32);
}

torch::Tensor silu_mul(const torch::Tensor& gate_up, torch::ScalarType out_dtype) {
    if (!recording_gradients())
        if (torch::Tensor fused = cpu::silu_mul(gate_up, out_dtype); fused.defined()) return fused;
    const std::int64_t width = gate_up.size(-1) / 2;
    return (torch::silu(gate_up.narrow(-1, 0, width)) * gate_up.narrow(-1, width, width)).to(out_dtype);
}

torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
    if (!recording_gradients())
        if (torch::Tensor fused = cpu::rope(x, cos, sin); fused.defined()) return fused;
    const std::int64_t half = x.size(-1) / 2;
    const torch::Tensor x1 = x.narrow(-1, 0, half);
    const torch::Tensor x2 = x.narrow(-1, half, half);
    return torch::cat({x1 * cos - x2 * sin, x2 * cos + x1 * sin}, -1);
}

torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, int layer,
                        const torch::Tensor& mask, double scale, KvCache* cache) {
    torch::Tensor keys = k.transpose(1, 2);  // [B, KVH, T, D]
    torch::Tensor values = v.transpose(1, 2);
    if (cache) {
        const std::int64_t steps = q.size(1);
        cache->keys[layer].narrow(2, cache->length, steps).copy_(keys);
        cache->values[layer].narrow(2, cache->length, steps).copy_(values);
        keys = cache->keys[layer].narrow(2, 0, cache->length + steps);
        values = cache->values[layer].narrow(2, 0, cache->length + steps);
    }
    if (!recording_gradients())
        if (torch::Tensor fused = cpu::attention(q, keys, values, mask, scale); fused.defined()) return fused;
    return portable_attention(q, keys, values, mask, scale);
}

bool fused_sdpa_available() {
#if PERSONA_HAVE_SDPA
    // PERSONA_TORCH_SDPA=off takes the matmul + softmax path instead, to compare the two.
    static const bool enabled = [] {
        const char* setting = std::getenv("PERSONA_TORCH_SDPA");
        return !(setting && std::string(setting) == "off");
    }();
    return enabled;
#else
    return false;
#endif
}

torch::Tensor portable_attention(const torch::Tensor& q, const torch::Tensor& keys, const torch::Tensor& values,
                                 const torch::Tensor& mask, double scale, bool allow_sdpa) {
    const std::int64_t batch = q.size(0), steps = q.size(1), heads = q.size(2), dim = q.size(3);
    const std::int64_t kv_heads = keys.size(1);
    const std::int64_t group = heads / kv_heads;
    // Heads sharing a KV head are stacked along the query axis so one product serves the whole
    // group without copying keys per head; the mask rows repeat for each head of the group.
    const torch::Tensor grouped = q.transpose(1, 2).reshape({batch, kv_heads, group * steps, dim});
    torch::Tensor attended;  // [B, KVH, G*T, D]
#if !PERSONA_HAVE_SDPA
    static_cast<void>(allow_sdpa);  // libtorch 1.x: matmul + softmax is the only way
#else
    if (allow_sdpa && fused_sdpa_available()) {
        // One fused kernel (flash / memory-efficient on CUDA, a blocked kernel on the CPU) instead
        // of materialising the scores; the additive mask carries causality, padding and the
        // sliding window, so is_causal stays off.
        const torch::Tensor group_mask =
            group == 1 ? mask : mask.unsqueeze(2).expand({batch, 1, group, steps, mask.size(-1)}).reshape({batch, 1, group * steps, -1});
#if TORCH_VERSION_MAJOR > 2 || TORCH_VERSION_MINOR >= 1
        attended = at::scaled_dot_product_attention(grouped, keys, values, group_mask.to(q.scalar_type()), 0.0, false, scale);
#else  // 2.0 has no scale argument: it divides by sqrt(D), so the queries carry the rest
        attended = at::scaled_dot_product_attention(grouped * (scale * std::sqrt(static_cast<double>(dim))), keys, values,
                                                    group_mask.to(q.scalar_type()), 0.0, false);
#endif
    }
#endif
    if (!attended.defined()) {
        torch::Tensor scores = torch::matmul(grouped, keys.transpose(-1, -2)) * scale;  // [B,KVH,G*T,Tk]
        scores = scores.view({batch, kv_heads, group, steps, -1}) + mask.unsqueeze(2);
        const torch::Tensor weights = torch::softmax(scores, -1).view({batch, kv_heads, group * steps, -1});
        attended = torch::matmul(weights, values);
    }
    return attended.view({batch, heads, steps, dim}).transpose(1, 2).reshape({batch, steps, heads * dim});
}

torch::Tensor rope_inverse_frequencies(int head_dim, double base) {
    torch::Tensor exponents = torch::arange(0, head_dim, 2, torch::kFloat64) / static_cast<double>(head_dim);
    return torch::pow(base, -exponents).to(torch::kFloat32);
}

namespace {

// Both loaders end here, so a NaN epsilon or a zero RoPE base from either file format is refused
// with the file's name instead of producing NaN logits or empty generations.
void check_config_numbers(const TransformerConfig& c, const std::string& path) {
    const auto positive = [&](double value, const char* what) {
        if (!(std::isfinite(value) && value > 0))
            throw FileError(path, std::string(what) + " is " + std::to_string(value) + "; it must be a finite number above 0");
    };
    positive(c.rms_eps, "the RMS norm epsilon");
    positive(c.rope_base, "the RoPE base");
    positive(c.local_rope_base, "the sliding-window RoPE base");
    positive(c.rope_linear_factor, "the RoPE scaling factor");
    positive(c.rope_attention_factor, "the RoPE attention factor");
    for (const float factor : c.rope_freq_factors) positive(factor, "a RoPE frequency factor");
}

}  // namespace

std::unique_ptr<Transformer> build_transformer(WeightLoader& loader) {
    check_config_numbers(loader.config(), loader.source().path());
    const std::string& architecture = loader.config().architecture;
    if (architecture == "llama" || architecture == "mistral") return build_llama(loader);
    if (architecture == "qwen2") return build_qwen2(loader);
    if (architecture == "qwen3") return build_qwen3(loader);
    if (architecture == "phi3") return build_phi3(loader);
    if (architecture == "gemma3") return build_gemma3(loader);
    throw FileError(loader.source().path(), "unsupported architecture '" + architecture +
                                                "' (supported: llama, mistral, qwen2, qwen3, phi3, gemma3)");
}

}  // namespace persona::model
