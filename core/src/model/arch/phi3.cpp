// Phi-3 / Phi-3.5: the Llama block with Q, K and V in one matrix and the feed-forward's gate and
// up halves in another (gate first), as both Hugging Face and GGUF store them. "longrope" scaling
// arrives as per-frequency divisors and a cos/sin factor in the config. Phi-4-mini shares the
// block but rotates only part of each head, which the loaders refuse for now.
#include "model/arch/llama.h"

namespace persona::model {

std::unique_ptr<Transformer> build_phi3(WeightLoader& loader) {
    LlamaOptions options;
    options.gguf_permuted_qk = false;
    options.fused_projections = true;
    return std::make_unique<Llama>(loader, options);
}

}  // namespace persona::model
