// Gemma 3: embeddings scaled by sqrt(hidden); RMSNorm before and after both attention and the
// feed-forward; RMSNorm on each query and key head; GELU-tanh gated feed-forward; five
// sliding-window layers (RoPE base 10000) for every global one (the file's RoPE base).
// Gemma's RMSNorm multiplies by (1 + w). llama.cpp's converter stores 1 + w in GGUF files;
// Hugging Face checkpoints store w, so 1 is added at load time for them and the norms here are
// plain x * weight either way.
#include "model/transformer.h"

#include "persona/errors.h"

#include <cmath>

namespace persona::model {

namespace {

class Gemma3 : public Transformer {
public:
    explicit Gemma3(WeightLoader& loader) {
        config_ = loader.config();
        const auto& c = config_;
        embedding_scale_ = std::sqrt(static_cast<double>(c.hidden));

        // Global blocks may scale linearly (4B and up); sliding-window blocks have a base of their own.
        global_inv_freq_ = (rope_inverse_frequencies(c.head_dim, c.rope_base) / c.rope_linear_factor).to(loader.device());
        local_inv_freq_ = rope_inverse_frequencies(c.head_dim, c.local_rope_base).to(loader.device());

        const double norm_offset = loader.source().gemma_norms_include_one() ? 0.0 : 1.0;
        const auto norm = [&](const std::string& name, std::int64_t length) {
            torch::Tensor weight = loader.vector(name, length);
            return norm_offset != 0.0 ? weight + norm_offset : weight;
        };

        embedding_ = loader.weight("token_embd.weight", c.vocabulary, c.hidden);
        output_ = loader.has("output.weight") ? loader.weight("output.weight", c.vocabulary, c.hidden) : embedding_;
        output_norm_ = norm("output_norm.weight", c.hidden);

        const std::int64_t q_rows = std::int64_t{c.heads} * c.head_dim;
        const std::int64_t kv_rows = std::int64_t{c.kv_heads} * c.head_dim;
        for (int i = 0; i < c.layers; ++i) {
            const std::string p = "blk." + std::to_string(i) + ".";
            Layer layer;
            layer.attn_norm = norm(p + "attn_norm.weight", c.hidden);
            layer.qkv = loader.stacked({{p + "attn_q.weight", q_rows}, {p + "attn_k.weight", kv_rows}, {p + "attn_v.weight", kv_rows}},
                                       c.hidden);
            layer.q_norm = norm(p + "attn_q_norm.weight", c.head_dim);
            layer.k_norm = norm(p + "attn_k_norm.weight", c.head_dim);
            layer.out = loader.weight(p + "attn_output.weight", c.hidden, q_rows);
            layer.post_attn_norm = norm(p + "post_attention_norm.weight", c.hidden);
            layer.ffn_norm = norm(p + "ffn_norm.weight", c.hidden);
            layer.gate_up = loader.stacked({{p + "ffn_gate.weight", c.feed_forward}, {p + "ffn_up.weight", c.feed_forward}}, c.hidden);
            layer.down = loader.weight(p + "ffn_down.weight", c.hidden, c.feed_forward);
            layer.post_ffn_norm = norm(p + "post_ffw_norm.weight", c.hidden);
            layers_.push_back(std::move(layer));
        }
        weight_bytes_ = loader.bytes_loaded();
    }

    torch::Tensor embed(const torch::Tensor& tokens) const override {
        return embedding_rows(embedding_, tokens) * embedding_scale_;
    }

    torch::Tensor block(int index, const torch::Tensor& x, StepContext& step) const override {
        const auto& c = config_;
        const Layer& layer = layers_[static_cast<std::size_t>(index)];
        const bool sliding = c.sliding_layer[static_cast<std::size_t>(index)];
        const std::int64_t batch = x.size(0), steps = x.size(1);
        const std::int64_t q_width = std::int64_t{c.heads} * c.head_dim;
        const std::int64_t kv_width = std::int64_t{c.kv_heads} * c.head_dim;

        const torch::Tensor attn_in = rms_norm(x, layer.attn_norm, c.rms_eps);
        const torch::Tensor qkv = adapted(step, index, ProjectionSite::Qkv, attn_in, project(attn_in, layer.qkv));
        torch::Tensor q = qkv.narrow(-1, 0, q_width).view({batch, steps, c.heads, c.head_dim});
        torch::Tensor k = qkv.narrow(-1, q_width, kv_width).view({batch, steps, c.kv_heads, c.head_dim});
        const torch::Tensor v = qkv.narrow(-1, q_width + kv_width, kv_width).view({batch, steps, c.kv_heads, c.head_dim});
        q = rms_norm(q, layer.q_norm, c.rms_eps);
        k = rms_norm(k, layer.k_norm, c.rms_eps);
        const torch::Tensor& cos = sliding ? step.local_cos : step.global_cos;
        const torch::Tensor& sin = sliding ? step.local_sin : step.global_sin;
        q = apply_rope(q, cos, sin);
        k = apply_rope(k, cos, sin);
        const torch::Tensor attended = attention(q, k, v, index, sliding ? step.local_mask : step.global_mask,
                                                 c.attention_scale, step.cache);
        const torch::Tensor h =
            x + rms_norm(adapted(step, index, ProjectionSite::Out, attended, project(attended, layer.out)), layer.post_attn_norm, c.rms_eps);

        const torch::Tensor ffn_in = rms_norm(h, layer.ffn_norm, c.rms_eps);
        const torch::Tensor gate_up = adapted(step, index, ProjectionSite::GateUp, ffn_in, project(ffn_in, layer.gate_up));
        const torch::Tensor gate = gate_up.narrow(-1, 0, c.feed_forward);
        const torch::Tensor up = gate_up.narrow(-1, c.feed_forward, c.feed_forward);
        const torch::Tensor activated = torch::gelu(gate, "tanh") * up;
        const torch::Tensor ffn = adapted(step, index, ProjectionSite::Down, activated, project(activated, layer.down));
        return h + rms_norm(ffn, layer.post_ffn_norm, c.rms_eps);
    }

    Weight& site_weight(int layer, ProjectionSite site) override {
        return site_of(layers_.at(static_cast<std::size_t>(layer)), site);
    }

    torch::Tensor logits(const torch::Tensor& hidden) const override {
        return project(rms_norm(hidden, output_norm_, config_.rms_eps), output_).to(torch::kFloat32);
    }

private:
    struct Layer {
        torch::Tensor attn_norm, q_norm, k_norm, post_attn_norm, ffn_norm, post_ffn_norm;
        Weight qkv, out, gate_up, down;
    };
    double embedding_scale_ = 1.0;
    Weight embedding_, output_;
    torch::Tensor output_norm_;
    std::vector<Layer> layers_;
};

}  // namespace

std::unique_ptr<Transformer> build_gemma3(WeightLoader& loader) { return std::make_unique<Gemma3>(loader); }

}  // namespace persona::model
