// Qwen2 / Qwen2.5: the Llama block with biases on the Q, K and V projections. llama.cpp does
// not permute Qwen2's Q/K rows (it uses NEOX-style RoPE for it), so neither do we undo it.
#include "model/arch/llama.h"

namespace persona::model {

std::unique_ptr<Transformer> build_qwen2(WeightLoader& loader) {
    return std::make_unique<Llama>(loader, LlamaOptions{/*gguf_permuted_qk=*/false, /*qkv_bias=*/true});
}

}  // namespace persona::model
