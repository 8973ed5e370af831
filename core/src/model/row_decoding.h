#pragma once
// What becomes of one row's logits at each step: the sampler, the ends (EOS, max tokens, stop
// strings held back across tokens), the streamed text and log-probabilities. Model::generate and
// GenerationBatch both decode rows through it, so a row ends the same way in either.
#include "model/sampler.h"
#include "persona/generation.h"
#include "persona/tokenizer.h"

#include <cstddef>
#include <cstdint>

namespace persona::model {

class RowDecoding {
public:
    RowDecoding(const SamplingOptions& options, const Tokenizer& tokenizer);

    bool active() const { return active_; }
    // Picks the row's next token from its logits and fills `event` (token, text, logprobs); the
    // row may end here.
    void advance(const float* logits, std::size_t vocabulary, TokenEvent& event);
    // Ends the row as cancelled (its client went away).
    void cancel();

    GenerationResult result;

private:
    SamplingOptions options_;
    const Tokenizer& tokenizer_;
    Sampler sampler_;
    StreamingDecoder decoder_;
    bool active_ = true;
    std::size_t emitted_ = 0;  // bytes of result.text already handed out in events
};

}  // namespace persona::model
