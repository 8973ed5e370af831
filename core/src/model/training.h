#pragma once
// The pieces of LoRA training (finetune.cpp) that tests check on their own: conversations as
// token sequences with the tokens the loss covers, and the loss of a batch of them.
#include "model/model_impl.h"
#include "persona/finetune.h"

#include <cstdint>
#include <vector>

namespace persona::model {

// A conversation as tokens, with which tokens the loss covers (each is predicted from the one
// before it): every assistant turn, its closing token included.
struct Sequence {
    std::vector<std::int32_t> tokens;
    std::vector<std::uint8_t> trained;
    std::size_t trained_count = 0;
};

// Each example cut to max_length tokens (and the model's context); examples left with no trained
// token are skipped and counted in `without_answer`. Error naming the example's line when the
// chat template renders a turn differently once later turns follow; Error when nothing is left.
std::vector<Sequence> encode_training_sequences(const Model& model, const std::vector<TrainingExample>& examples,
                                                int max_length, int* without_answer);

// The summed cross-entropy of the trained tokens of `batch` (indices into `sequences`,
// left-padded into one forward pass through `adapter`, with `steering` at every position).
struct BatchLoss {
    torch::Tensor sum;
    std::int64_t tokens = 0;           // trained tokens
    std::int64_t sequence_tokens = 0;  // every token, padding not counted
};
BatchLoss batch_loss(const Model::Impl& m, const std::vector<Sequence>& sequences, const std::vector<std::size_t>& batch,
                     const ProjectionAdapter* adapter, const std::vector<Model::Impl::ResolvedSteering>& steering,
                     const CancelFn& cancelled);

}  // namespace persona::model
