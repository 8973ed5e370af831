#include "model/sampler.h"

#include <algorithm>
#include <cmath>

namespace persona::model {

Sampler::Sampler(const SamplingOptions& options) : options_(options), generator_(options.seed) {}

double Sampler::uniform() { return static_cast<double>(generator_() >> 11) * (1.0 / 9007199254740992.0); }

std::int32_t Sampler::next(const float* logits, std::size_t vocabulary) {
    if (options_.temperature <= 0.0f)
        return static_cast<std::int32_t>(std::max_element(logits, logits + vocabulary) - logits);

    candidates_.resize(vocabulary);
    const float inverse_temperature = 1.0f / options_.temperature;
    for (std::size_t i = 0; i < vocabulary; ++i)
        candidates_[i] = {logits[i] * inverse_temperature, static_cast<std::int32_t>(i)};
    auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };

    std::size_t kept = vocabulary;
    const bool cut_top_k = options_.top_k > 0 && static_cast<std::size_t>(options_.top_k) < vocabulary;
    const bool cut_top_p = options_.top_p > 0.0f && options_.top_p < 1.0f;
    if (cut_top_k) {
        kept = static_cast<std::size_t>(options_.top_k);
        std::partial_sort(candidates_.begin(), candidates_.begin() + static_cast<std::ptrdiff_t>(kept), candidates_.end(), by_logit);
    } else if (cut_top_p) {
        std::sort(candidates_.begin(), candidates_.end(), by_logit);
    }
    candidates_.resize(kept);

    float max_logit = -INFINITY;
    for (const auto& c : candidates_) max_logit = std::max(max_logit, c.first);
    double total = 0.0;
    for (auto& c : candidates_) {
        c.first = std::exp(c.first - max_logit);
        total += c.first;
    }
    if (cut_top_p) {  // candidates are sorted: keep the smallest prefix holding top_p of the mass
        double mass = 0.0;
        std::size_t prefix = 0;
        while (prefix < candidates_.size()) {
            mass += candidates_[prefix++].first;
            if (mass >= options_.top_p * total) break;
        }
        candidates_.resize(prefix);
        total = mass;
    }
    double target = uniform() * total;
    for (const auto& c : candidates_) {
        target -= c.first;
        if (target < 0.0) return c.second;
    }
    return candidates_.back().second;
}

StepLogprobs step_logprobs(const float* logits, std::size_t vocabulary, std::int32_t chosen, int top) {
    const float highest = *std::max_element(logits, logits + vocabulary);
    double sum = 0;
    for (std::size_t i = 0; i < vocabulary; ++i) sum += std::exp(double(logits[i]) - highest);
    const double log_normaliser = highest + std::log(sum);
    const auto logprob = [&](std::int32_t token) {
        return TokenLogprob{token, static_cast<float>(double(logits[std::size_t(token)]) - log_normaliser)};
    };
    StepLogprobs step;
    step.chosen = logprob(chosen);
    std::vector<std::int32_t> order(vocabulary);
    for (std::size_t i = 0; i < vocabulary; ++i) order[i] = static_cast<std::int32_t>(i);
    const auto count = std::min<std::size_t>(std::size_t(std::max(top, 0)), vocabulary);
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(count), order.end(),
                      [&](std::int32_t a, std::int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
    for (std::size_t i = 0; i < count; ++i) step.top.push_back(logprob(order[i]));
    return step;
}

}  // namespace persona::model
