#include "model/row_decoding.h"

#include <algorithm>

namespace persona::model {

namespace {

// Length of the longest suffix of `text` that is a proper prefix of some stop string: text that
// must be held back because the next token may complete a stop string.
std::size_t pending_stop_prefix(const std::string& text, const std::vector<std::string>& stops) {
    std::size_t longest = 0;
    for (const auto& stop : stops) {
        for (std::size_t n = std::min(stop.size() - 1, text.size()); n > longest; --n) {
            if (text.compare(text.size() - n, n, stop, 0, n) == 0) {
                longest = n;
                break;
            }
        }
    }
    return longest;
}

}  // namespace

RowDecoding::RowDecoding(const SamplingOptions& options, const Tokenizer& tokenizer)
    : options_(options), tokenizer_(tokenizer), sampler_(options), decoder_(tokenizer), active_(options.max_new_tokens > 0) {}

void RowDecoding::advance(const float* logits, std::size_t vocabulary, TokenEvent& event) {
    const std::int32_t token = sampler_.next(logits, vocabulary);
    event.token = token;
    if (options_.stop_at_eos && tokenizer_.is_end_of_generation(token)) {
        result.stop_reason = StopReason::EndOfSequence;
        active_ = false;
        result.text += decoder_.finish();
    } else {
        result.tokens.push_back(token);
        if (options_.top_logprobs >= 0) event.logprobs = step_logprobs(logits, vocabulary, token, options_.top_logprobs);
        result.text += decoder_.push(token);
        if (static_cast<int>(result.tokens.size()) >= options_.max_new_tokens) {
            result.text += decoder_.finish();
            active_ = false;
            result.stop_reason = StopReason::MaxTokens;
        }
    }
    // Stop strings may span tokens: hold back text that could still become one.
    std::size_t safe = result.text.size();
    for (const auto& stop : options_.stop_strings) {
        const auto at = stop.empty() ? std::string::npos
                                     : result.text.find(stop, emitted_ > stop.size() ? emitted_ - stop.size() : 0);
        if (at != std::string::npos) {
            result.text.resize(at);
            result.stop_reason = StopReason::StopString;
            active_ = false;
            safe = at;
        }
    }
    if (active_) safe = result.text.size() - pending_stop_prefix(result.text, options_.stop_strings);
    if (safe > emitted_) {
        event.text = result.text.substr(emitted_, safe - emitted_);
        emitted_ = safe;
    }
    if (!active_ && emitted_ < result.text.size()) {
        event.text += result.text.substr(emitted_);
        emitted_ = result.text.size();
    }
}

void RowDecoding::cancel() {
    if (!active_) return;
    active_ = false;
    result.stop_reason = StopReason::Cancelled;
}

}  // namespace persona::model
