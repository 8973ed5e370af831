// Teacher-forced passes: activations aggregated per row and layer (capture), everything about
// one sequence (trace), and a prompt kept for short continuations (the local judge).
#include "model/model_impl.h"

#include <algorithm>
#include <cmath>

namespace persona {

using model::KvCache;
using model::RowLayout;
using model::StepContext;
using torch::indexing::Slice;

CaptureResult Model::capture(const std::vector<CaptureRow>& rows, const CaptureOptions& options, const CancelFn& cancelled) {
    torch::InferenceMode inference;
    Impl& m = *impl_;
    const auto& c = m.config();
    CaptureResult result;
    result.layers = c.layers + 1;
    result.hidden_size = c.hidden;
    const std::int64_t layers = result.layers;

    std::int64_t longest = 0;
    for (std::size_t r = 0; r < rows.size(); ++r) {
        m.check_tokens(rows[r].tokens, r);
        if (rows[r].prompt_length < 1 || rows[r].prompt_length > static_cast<int>(rows[r].tokens.size()))
            throw Error("row " + std::to_string(r) + ": prompt length " + std::to_string(rows[r].prompt_length) +
                        " is not within the row's " + std::to_string(rows[r].tokens.size()) + " tokens");
        if (static_cast<int>(rows[r].tokens.size()) > c.context)
            throw Error("row " + std::to_string(r) + ": " + std::to_string(rows[r].tokens.size()) +
                        " tokens exceed the model's context of " + std::to_string(c.context));
        longest = std::max<std::int64_t>(longest, static_cast<std::int64_t>(rows[r].tokens.size()));
    }
    const std::int64_t batch = static_cast<std::int64_t>(rows.size());
    if (batch == 0) return result;

    const auto& probe = options.probe;
    torch::Tensor probe_directions;
    std::vector<std::vector<int>> probe_slots(static_cast<std::size_t>(layers));
    if (!probe.layers.empty()) {
        std::vector<torch::Tensor> units;
        for (std::size_t i = 0; i < probe.layers.size(); ++i) {
            if (probe.layers[i] < 0 || probe.layers[i] >= layers) throw Error("probe layer is outside the model");
            torch::Tensor v = torch::tensor(probe.directions.at(i), torch::kFloat32);
            if (v.numel() != c.hidden) throw Error("probe direction has the wrong size");
            units.push_back(v / v.norm().clamp_min(1e-12));
            probe_slots[static_cast<std::size_t>(probe.layers[i])].push_back(static_cast<int>(i));
        }
        probe_directions = torch::stack(units).to(m.device);
    }

    std::vector<RowLayout> layout(rows.size());
    std::vector<std::int64_t> token_matrix(static_cast<std::size_t>(batch * longest), m.tokenizer->eos_id().value_or(0));
    // Averaging weights: rows of [B, T] that sum to 1 over each row's prompt / answer slots.
    torch::Tensor prompt_weights = torch::zeros({batch, longest});
    torch::Tensor answer_weights = torch::zeros({batch, longest});
    std::vector<std::int64_t> last_prompt_slot(rows.size());
    for (std::size_t r = 0; r < rows.size(); ++r) {
        const auto& tokens = rows[r].tokens;
        const std::int64_t length = static_cast<std::int64_t>(tokens.size());
        layout[r].padding = longest - length;
        layout[r].prompt_end = layout[r].padding + rows[r].prompt_length;
        for (std::int64_t t = 0; t < length; ++t) token_matrix[static_cast<std::size_t>(r * longest + layout[r].padding + t)] = tokens[t];
        const auto ri = static_cast<std::int64_t>(r);
        prompt_weights[ri].narrow(0, layout[r].padding, rows[r].prompt_length).fill_(1.0 / rows[r].prompt_length);
        const std::int64_t answer = length - rows[r].prompt_length;
        if (answer > 0) answer_weights[ri].narrow(0, layout[r].prompt_end, answer).fill_(1.0 / static_cast<double>(answer));
        last_prompt_slot[r] = layout[r].prompt_end - 1;
    }
    prompt_weights = prompt_weights.to(m.device).unsqueeze(1);  // [B, 1, T]
    answer_weights = answer_weights.to(m.device).unsqueeze(1);
    const torch::Tensor last_index = torch::tensor(last_prompt_slot, torch::kInt64).to(m.device);
    const torch::Tensor row_index = torch::arange(batch, torch::TensorOptions(torch::kInt64).device(m.device));

    std::vector<torch::Tensor> prompt_mean, answer_mean, prompt_last;
    std::vector<torch::Tensor> probed(probe_directions.defined() ? std::size_t(probe_directions.size(0)) : 0);
    const torch::Tensor tokens = torch::tensor(token_matrix, torch::kInt64).view({batch, longest}).to(m.device);
    m.forward(tokens, layout, 0, nullptr,
        [&](int layer, torch::Tensor& h) {
            prompt_mean.push_back(torch::bmm(prompt_weights, h).squeeze(1));
            answer_mean.push_back(torch::bmm(answer_weights, h).squeeze(1));
            prompt_last.push_back(h.index({row_index, last_index}));
            for (int slot : probe_slots[static_cast<std::size_t>(layer)])
                probed[std::size_t(slot)] = torch::matmul(h, probe_directions[slot]);  // [B, T]
        },
        cancelled);

    auto to_rows = [&](const std::vector<torch::Tensor>& per_layer) {
        const torch::Tensor all = torch::stack(per_layer, 1).to(torch::kCPU).contiguous();  // [B, L+1, H]
        std::vector<std::vector<float>> out(rows.size());
        for (std::size_t r = 0; r < rows.size(); ++r) {
            const float* p = all[static_cast<std::int64_t>(r)].data_ptr<float>();
            out[r].assign(p, p + layers * c.hidden);
        }
        return out;
    };
    result.prompt_mean = to_rows(prompt_mean);
    result.response_mean = to_rows(answer_mean);
    result.prompt_last = to_rows(prompt_last);
    if (!probed.empty()) {
        const torch::Tensor all = torch::stack(probed, 1).to(torch::kCPU).contiguous();  // [B, P, T]
        result.projections.resize(rows.size());
        for (std::size_t r = 0; r < rows.size(); ++r) {
            const std::int64_t length = static_cast<std::int64_t>(rows[r].tokens.size());
            const torch::Tensor mine = all[static_cast<std::int64_t>(r)].narrow(1, layout[r].padding, length).contiguous();
            result.projections[r].assign(mine.data_ptr<float>(), mine.data_ptr<float>() + mine.numel());
        }
    }
    return result;
}

Model::Trace Model::trace(const std::vector<std::int32_t>& tokens, const std::vector<Steering>& steering) {
    torch::InferenceMode inference;
    Impl& m = *impl_;
    m.check_tokens(tokens, 0);
    if (static_cast<int>(tokens.size()) > m.config().context)
        throw Error(std::to_string(tokens.size()) + " tokens exceed the model's context of " + std::to_string(m.config().context));
    const std::int64_t length = static_cast<std::int64_t>(tokens.size());
    std::vector<RowLayout> layout{{0, length}};
    const std::vector<std::vector<Impl::ResolvedSteering>> resolved{m.resolve(steering, 0)};
    std::vector<torch::Tensor> states;
    const torch::Tensor input = m.single_row(tokens);
    const torch::Tensor hidden = m.forward(input, layout, 0, nullptr,
        [&](int layer, torch::Tensor& h) {
            m.apply_steering(h, layer, resolved, layout, 0);
            states.push_back(h[0].clone());
        },
        {});
    Trace trace;
    trace.tokens = static_cast<int>(length);
    const torch::Tensor all = torch::stack(states).to(torch::kCPU).contiguous();
    trace.hidden_states.assign(all.data_ptr<float>(), all.data_ptr<float>() + all.numel());
    const torch::Tensor logits = m.net->logits(hidden)[0].to(torch::kCPU).contiguous();
    trace.logits.assign(logits.data_ptr<float>(), logits.data_ptr<float>() + logits.numel());
    return trace;
}

struct Model::PromptState {
    KvCache cache;
    std::vector<std::int32_t> prompt;
    std::int64_t reused = 0;
    std::vector<float> after_prompt;
    std::int64_t prompt_length() const { return std::int64_t(prompt.size()); }
};

std::size_t Model::reused_tokens(const PromptState& state) { return static_cast<std::size_t>(state.reused); }

namespace {
void check_continuation(const Model::Impl& m, const std::vector<std::int32_t>& continuation) {
    if (continuation.size() > std::size_t(Model::kMaxContinuation))
        throw Error("a continuation of " + std::to_string(continuation.size()) + " tokens is longer than " +
                    std::to_string(Model::kMaxContinuation));
    if (!continuation.empty()) m.check_tokens(continuation, 0);
}

std::vector<std::vector<float>> probability_rows(const torch::Tensor& logits) {  // [T, V]
    const torch::Tensor p = torch::softmax(logits.to(torch::kFloat32), -1).to(torch::kCPU).contiguous();
    std::vector<std::vector<float>> rows(static_cast<std::size_t>(p.size(0)));
    for (std::int64_t t = 0; t < p.size(0); ++t) {
        const float* row = p[t].data_ptr<float>();
        rows[static_cast<std::size_t>(t)].assign(row, row + p.size(1));
    }
    return rows;
}
}  // namespace

std::shared_ptr<Model::PromptState> Model::prefill(const std::vector<std::int32_t>& prompt, const CancelFn& cancelled,
                                                   const PromptState* reuse) {
    torch::InferenceMode inference;
    Impl& m = *impl_;
    m.check_tokens(prompt, 0);
    const std::int64_t length = static_cast<std::int64_t>(prompt.size());
    if (length + kMaxContinuation > m.config().context)
        throw Error(std::to_string(prompt.size()) + " tokens leave no room for an answer in the model's context of " +
                    std::to_string(m.config().context));
    auto state = std::make_shared<PromptState>();
    state->cache = m.make_cache(1, length + kMaxContinuation);
    state->prompt = prompt;
    // At least the last token is run: its logits are the distribution after the prompt. Slots
    // of `reuse` past its prompt hold a continuation's keys, never copied.
    std::int64_t shared = 0;
    if (reuse && !reuse->cache.keys.empty() && reuse->cache.keys[0].device() == state->cache.keys[0].device()) {
        const std::int64_t most = std::min(reuse->prompt_length(), length - 1);
        while (shared < most && reuse->prompt[std::size_t(shared)] == prompt[std::size_t(shared)]) ++shared;
    }
    for (std::size_t i = 0; shared > 0 && i < state->cache.keys.size(); ++i) {
        state->cache.keys[i][0].narrow(1, 0, shared).copy_(reuse->cache.keys[i][0].narrow(1, 0, shared));
        state->cache.values[i][0].narrow(1, 0, shared).copy_(reuse->cache.values[i][0].narrow(1, 0, shared));
    }
    state->cache.length = shared;
    state->reused = shared;
    const std::vector<RowLayout> layout{{0, length}};
    const torch::Tensor input = m.single_row(std::vector<std::int32_t>(prompt.begin() + shared, prompt.end()));
    const torch::Tensor hidden = m.forward(input, layout, shared, &state->cache, [](int, torch::Tensor&) {}, cancelled);
    state->after_prompt = probability_rows(m.net->logits(hidden.narrow(1, hidden.size(1) - 1, 1))[0]).front();
    return state;
}

std::vector<std::vector<float>> Model::next_token_probabilities(PromptState& state, const std::vector<std::int32_t>& continuation,
                                                                const CancelFn& cancelled) {
    torch::InferenceMode inference;
    Impl& m = *impl_;
    check_continuation(m, continuation);
    std::vector<std::vector<float>> rows{state.after_prompt};
    if (continuation.empty()) return rows;
    // Slots after the prompt are overwritten by each continuation: attention reads only those
    // below the current length.
    state.cache.length = state.prompt_length();
    const std::vector<RowLayout> layout{{0, state.prompt_length()}};
    const torch::Tensor input = m.single_row(continuation);
    const torch::Tensor hidden = m.forward(input, layout, state.prompt_length(), &state.cache, [](int, torch::Tensor&) {}, cancelled);
    for (auto& row : probability_rows(m.net->logits(hidden)[0])) rows.push_back(std::move(row));
    return rows;
}

std::vector<std::vector<std::vector<float>>> Model::next_token_probabilities_batch(
    PromptState& state, const std::vector<std::vector<std::int32_t>>& continuations, const CancelFn& cancelled) {
    torch::InferenceMode inference;
    Impl& m = *impl_;
    std::int64_t longest = 0;
    for (const auto& continuation : continuations) {
        check_continuation(m, continuation);
        longest = std::max<std::int64_t>(longest, std::int64_t(continuation.size()));
    }
    std::vector<std::vector<std::vector<float>>> results(continuations.size(), {state.after_prompt});
    if (longest == 0) return results;
    const auto rows = std::int64_t(continuations.size());
    // Every row starts from the prompt's keys and values; a shorter continuation is padded at
    // its end, where causal attention keeps the padding out of the positions that are read.
    KvCache cache = m.make_cache(rows, state.prompt_length() + longest);
    for (std::size_t i = 0; i < cache.keys.size(); ++i) {
        cache.keys[i].narrow(2, 0, state.prompt_length()).copy_(state.cache.keys[i].narrow(2, 0, state.prompt_length()));
        cache.values[i].narrow(2, 0, state.prompt_length()).copy_(state.cache.values[i].narrow(2, 0, state.prompt_length()));
    }
    cache.length = state.prompt_length();
    std::vector<std::int64_t> tokens(std::size_t(rows * longest), 0);
    for (std::size_t r = 0; r < continuations.size(); ++r)
        std::copy(continuations[r].begin(), continuations[r].end(), tokens.begin() + std::ptrdiff_t(r * std::size_t(longest)));
    const torch::Tensor input = torch::tensor(tokens, torch::kInt64).view({rows, longest}).to(m.device);
    const std::vector<RowLayout> layout(continuations.size(), RowLayout{0, state.prompt_length()});
    const torch::Tensor hidden = m.forward(input, layout, state.prompt_length(), &cache, [](int, torch::Tensor&) {}, cancelled);
    const torch::Tensor logits = m.net->logits(hidden);  // [rows, longest, V]
    for (std::size_t r = 0; r < continuations.size(); ++r) {
        const auto length = std::int64_t(continuations[r].size());
        if (length == 0) continue;
        for (auto& row : probability_rows(logits[std::int64_t(r)].narrow(0, 0, length))) results[r].push_back(std::move(row));
    }
    return results;
}

}  // namespace persona
