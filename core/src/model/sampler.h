#pragma once
#include "persona/generation.h"

#include <cstdint>
#include <random>
#include <vector>

namespace persona::model {

// Picks the next token of one row. Each row owns its generator, seeded from its own options,
// so a row's tokens never depend on what else shares the batch.
class Sampler {
public:
    explicit Sampler(const SamplingOptions& options);
    std::int32_t next(const float* logits, std::size_t vocabulary);

private:
    double uniform();  // [0, 1), the same on every platform for a given seed
    SamplingOptions options_;
    std::mt19937_64 generator_;
    std::vector<std::pair<float, std::int32_t>> candidates_;
};

// The log-softmax of one row's logits at `chosen` and at the `top` most likely tokens.
StepLogprobs step_logprobs(const float* logits, std::size_t vocabulary, std::int32_t chosen, int top);

}  // namespace persona::model
