// Qwen3 (dense): the Llama block with an RMSNorm over each query and key head before RoPE and no
// QKV biases. Its head size is set on its own (128 where hidden/heads is 80 in Qwen3-4B). Like
// Qwen2, llama.cpp neither permutes its Q/K rows nor needs them undone.
#include "model/arch/llama.h"

namespace persona::model {

std::unique_ptr<Transformer> build_qwen3(WeightLoader& loader) {
    LlamaOptions options;
    options.gguf_permuted_qk = false;
    options.qk_norm = true;
    return std::make_unique<Llama>(loader, options);
}

}  // namespace persona::model
