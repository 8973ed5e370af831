#pragma once
#include "model/transformer.h"

namespace persona::model {

struct LlamaOptions {
    bool gguf_permuted_qk = true;  // llama-architecture GGUFs store Q/K rows permuted (where the source says so)
    bool qkv_bias = false;         // Qwen2
    bool qk_norm = false;          // Qwen3: RMSNorm on each query and key head before RoPE
    bool fused_projections = false;  // Phi-3: one attn_qkv matrix, and ffn_up holding gate and up
};

class Llama : public Transformer {
public:
    Llama(WeightLoader& loader, const LlamaOptions& options);
    torch::Tensor embed(const torch::Tensor& tokens) const override;
    torch::Tensor block(int index, const torch::Tensor& hidden, StepContext& step) const override;
    torch::Tensor logits(const torch::Tensor& hidden) const override;
    Weight& site_weight(int layer, ProjectionSite site) override;

private:
    struct Layer {
        torch::Tensor attn_norm, qkv_bias, q_norm, k_norm, ffn_norm;
        Weight qkv, out, gate_up, down;
    };
    Weight embedding_, output_;
    torch::Tensor output_norm_;
    std::vector<Layer> layers_;
};

}  // namespace persona::model
