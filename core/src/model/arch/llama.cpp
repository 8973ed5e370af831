// Llama family: Llama 2/3, Mistral, TinyLlama, SmolLM2, and the relatives that differ in a detail
// (LlamaOptions): Qwen2's QKV biases, Qwen3's query/key norms, Phi-3's fused projections.
// Pre-norm blocks: x += Wo.attn(rope(q), rope(k), v) of rms_norm(x); x += W2(silu(W1 h) * W3 h).
#include "model/arch/llama.h"

#include "persona/errors.h"

#include <cmath>

namespace persona::model {

namespace {

// llama.cpp's converter permutes the rows of attn_q / attn_k of llama-architecture GGUFs so its
// interleaved RoPE matches Hugging Face's rotate-half one (docs/platform-notes.md). Undoing it here lets
// every architecture and checkpoint format share the rotate-half RoPE; Hugging Face checkpoints
// were never permuted, so their source says there is nothing to undo.
std::vector<std::int64_t> unpermuted_order(std::int64_t rows, int heads) {
    // Row (h, j, i) of the result, j < 2, is row (h, i, j) of the file: a [heads, rows/heads/2, 2]
    // view transposed in its last two axes.
    const std::int64_t per_head = rows / heads, half = per_head / 2;
    std::vector<std::int64_t> order(static_cast<std::size_t>(rows));
    for (std::int64_t h = 0; h < heads; ++h)
        for (std::int64_t j = 0; j < 2; ++j)
            for (std::int64_t i = 0; i < half; ++i) order[static_cast<std::size_t>(h * per_head + j * half + i)] = h * per_head + i * 2 + j;
    return order;
}

}  // namespace

Llama::Llama(WeightLoader& loader, const LlamaOptions& options) {
    config_ = loader.config();
    const auto& c = config_;
    global_inv_freq_ = rope_inverse_frequencies(c.head_dim, c.rope_base) / c.rope_linear_factor;
    if (!c.rope_freq_factors.empty())  // Llama 3.1 long-context frequency factors
        global_inv_freq_ = global_inv_freq_ / torch::tensor(c.rope_freq_factors, torch::kFloat32);
    global_inv_freq_ = global_inv_freq_.to(loader.device());
    local_inv_freq_ = global_inv_freq_;

    embedding_ = loader.weight("token_embd.weight", c.vocabulary, c.hidden);
    output_ = loader.has("output.weight") ? loader.weight("output.weight", c.vocabulary, c.hidden) : embedding_;
    output_norm_ = loader.vector("output_norm.weight", c.hidden);

    const std::int64_t q_rows = std::int64_t{c.heads} * c.head_dim;
    const std::int64_t kv_rows = std::int64_t{c.kv_heads} * c.head_dim;
    for (int i = 0; i < c.layers; ++i) {
        const std::string p = "blk." + std::to_string(i) + ".";
        Layer layer;
        layer.attn_norm = loader.vector(p + "attn_norm.weight", c.hidden);
        if (options.fused_projections) {
            layer.qkv = loader.weight(p + "attn_qkv.weight", q_rows + 2 * kv_rows, c.hidden);
        } else {
            const bool permuted = options.gguf_permuted_qk && loader.source().llama_qk_rows_permuted();
            const auto order = [&](std::int64_t rows, int heads) {
                return permuted ? unpermuted_order(rows, heads) : std::vector<std::int64_t>{};
            };
            // One fused projection: batch-1 decode pays ~2 us per op (docs/platform-notes.md).
            layer.qkv = loader.stacked({{p + "attn_q.weight", q_rows, order(q_rows, c.heads)},
                                        {p + "attn_k.weight", kv_rows, order(kv_rows, c.kv_heads)},
                                        {p + "attn_v.weight", kv_rows}},
                                       c.hidden);
        }
        if (options.qkv_bias)
            layer.qkv_bias = torch::cat({loader.vector(p + "attn_q.bias", q_rows), loader.vector(p + "attn_k.bias", kv_rows),
                                         loader.vector(p + "attn_v.bias", kv_rows)});
        if (options.qk_norm) {
            layer.q_norm = loader.vector(p + "attn_q_norm.weight", c.head_dim);
            layer.k_norm = loader.vector(p + "attn_k_norm.weight", c.head_dim);
        }
        layer.out = loader.weight(p + "attn_output.weight", c.hidden, q_rows);
        layer.ffn_norm = loader.vector(p + "ffn_norm.weight", c.hidden);
        layer.gate_up = options.fused_projections
                            ? loader.weight(p + "ffn_up.weight", 2 * std::int64_t{c.feed_forward}, c.hidden)
                            : loader.stacked({{p + "ffn_gate.weight", c.feed_forward}, {p + "ffn_up.weight", c.feed_forward}}, c.hidden);
        layer.down = loader.weight(p + "ffn_down.weight", c.hidden, c.feed_forward);
        layers_.push_back(std::move(layer));
    }
    weight_bytes_ = loader.bytes_loaded();
}

torch::Tensor Llama::embed(const torch::Tensor& tokens) const {
    return embedding_rows(embedding_, tokens);
}

torch::Tensor Llama::block(int index, const torch::Tensor& x, StepContext& step) const {
    const auto& c = config_;
    const Layer& layer = layers_[static_cast<std::size_t>(index)];
    const std::int64_t batch = x.size(0), steps = x.size(1);
    const std::int64_t q_width = std::int64_t{c.heads} * c.head_dim;
    const std::int64_t kv_width = std::int64_t{c.kv_heads} * c.head_dim;

    const torch::Tensor attn_in = rms_norm(x, layer.attn_norm, c.rms_eps, layer.qkv.input_dtype());
    const torch::Tensor qkv = adapted(step, index, ProjectionSite::Qkv, attn_in, project(attn_in, layer.qkv, layer.qkv_bias));
    torch::Tensor q = qkv.narrow(-1, 0, q_width).view({batch, steps, c.heads, c.head_dim});
    torch::Tensor k = qkv.narrow(-1, q_width, kv_width).view({batch, steps, c.kv_heads, c.head_dim});
    const torch::Tensor v = qkv.narrow(-1, q_width + kv_width, kv_width).view({batch, steps, c.kv_heads, c.head_dim});
    if (layer.q_norm.defined()) {
        q = rms_norm(q, layer.q_norm, c.rms_eps);
        k = rms_norm(k, layer.k_norm, c.rms_eps);
    }
    q = apply_rope(q, step.global_cos, step.global_sin);
    k = apply_rope(k, step.global_cos, step.global_sin);
    // Mistral's sliding window (every block or none); RoPE is the same either way.
    const bool sliding = c.sliding_layer[static_cast<std::size_t>(index)];
    const torch::Tensor attended =
        attention(q, k, v, index, sliding ? step.local_mask : step.global_mask, c.attention_scale, step.cache);
    const torch::Tensor h = x + adapted(step, index, ProjectionSite::Out, attended, project(attended, layer.out));

    const torch::Tensor ffn_in = rms_norm(h, layer.ffn_norm, c.rms_eps, layer.gate_up.input_dtype());
    const torch::Tensor gate_up = adapted(step, index, ProjectionSite::GateUp, ffn_in, project(ffn_in, layer.gate_up));
    const torch::Tensor activated = silu_mul(gate_up, layer.down.input_dtype());
    return h + adapted(step, index, ProjectionSite::Down, activated, project(activated, layer.down));
}

Weight& Llama::site_weight(int layer, ProjectionSite site) {
    return site_of(layers_.at(static_cast<std::size_t>(layer)), site);
}

torch::Tensor Llama::logits(const torch::Tensor& hidden) const {
    return project(rms_norm(hidden, output_norm_, config_.rms_eps, output_.input_dtype()), output_);
}

std::unique_ptr<Transformer> build_llama(WeightLoader& loader) {
    LlamaOptions options;
    options.gguf_permuted_qk = true;
    return std::make_unique<Llama>(loader, options);
}

}  // namespace persona::model
