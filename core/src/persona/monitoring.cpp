#include "persona/monitoring.h"

#include "persona/errors.h"
#include "persona/model.h"
#include "persona/tokenizer.h"

#include <algorithm>

namespace persona {

namespace {

void report(const ProgressFn& progress, const char* stage, std::size_t done, std::size_t total) {
    if (progress) progress(Progress{stage, done, total});
}

}  // namespace

std::size_t MonitorResult::layer_index(int layer) const {
    const auto found = std::find(layers.begin(), layers.end(), layer);
    if (found == layers.end()) throw Error("layer " + std::to_string(layer) + " was not monitored");
    return static_cast<std::size_t>(found - layers.begin());
}

PromptAndAnswer split_answer(const std::vector<ChatMessage>& messages) {
    PromptAndAnswer out;
    out.prompt = messages;
    if (!out.prompt.empty() && out.prompt.back().role == "assistant") {
        out.answer = std::move(out.prompt.back().content);
        out.prompt.pop_back();
    }
    return out;
}

std::vector<std::int32_t> answer_tokens(const Model& model, const std::vector<ChatMessage>& prompt, const std::string& answer) {
    const std::vector<std::int32_t> prompt_tokens = model.encode_chat(prompt, true);
    std::vector<ChatMessage> conversation = prompt;
    conversation.push_back({"assistant", answer});
    const std::vector<std::int32_t> full = model.encode_chat(conversation, false);
    const Tokenizer& tokenizer = model.tokenizer();
    if (full.size() >= prompt_tokens.size() && std::equal(prompt_tokens.begin(), prompt_tokens.end(), full.begin())) {
        std::vector<std::int32_t> tokens(full.begin() + static_cast<std::ptrdiff_t>(prompt_tokens.size()), full.end());
        // Generation stops before the turn's closing token, so the answer ends there too.
        const auto closing = std::find_if(tokens.begin(), tokens.end(),
                                          [&](std::int32_t t) { return tokenizer.is_end_of_generation(t); });
        tokens.erase(closing, tokens.end());
        return tokens;
    }
    return tokenizer.encode(answer, /*add_special=*/false, /*parse_special=*/false);
}

std::vector<MonitorResult> monitor(Model& model, const PersonaVector& vector, const std::vector<MonitorInput>& inputs,
                                   const MonitorOptions& options, const ProgressFn& progress, const CancelFn& cancelled) {
    check_vector_fits(vector, model);
    const int layer_count = model.layer_count() + 1;
    std::vector<int> layers = options.layers;
    if (layers.empty())
        for (int l = 0; l < layer_count; ++l) layers.push_back(l);
    // Ascending and unique: Model::capture returns a probe's projections in layer order
    // whatever order the probe lists its layers in.
    std::sort(layers.begin(), layers.end());
    layers.erase(std::unique(layers.begin(), layers.end()), layers.end());
    for (int l : layers)
        if (l < 0 || l >= layer_count)
            throw Error("layer " + std::to_string(l) + " is outside 0.." + std::to_string(layer_count - 1));
    const std::size_t batch_size = static_cast<std::size_t>(std::max(1, options.batch_size));

    ProjectionProbe probe;
    probe.layers = layers;
    for (int l : layers) {
        const LayerView direction = vector.layer(l);
        probe.directions.emplace_back(direction.begin(), direction.end());
    }

    // Prompts and given answers first, so a bad conversation fails before any model work.
    std::vector<MonitorResult> results(inputs.size());
    std::vector<std::vector<ChatMessage>> prompts(inputs.size());
    std::vector<std::size_t> to_generate;
    const auto where = [](std::size_t i) { return "conversation " + std::to_string(i + 1) + ": "; };
    for (std::size_t i = 0; i < inputs.size(); ++i) {
        if (inputs[i].messages.empty()) throw Error(where(i) + "it has no messages");
        PromptAndAnswer parts = split_answer(inputs[i].messages);
        MonitorResult& result = results[i];
        result.layers = layers;
        result.tokens = model.encode_chat(parts.prompt, true);
        result.prompt_length = static_cast<int>(result.tokens.size());
        std::size_t needed = result.tokens.size();
        if (parts.answer) {
            const auto answer = answer_tokens(model, parts.prompt, *parts.answer);
            result.tokens.insert(result.tokens.end(), answer.begin(), answer.end());
            result.answer = std::move(*parts.answer);
            needed = result.tokens.size();
        } else if (inputs[i].generate_answer) {
            to_generate.push_back(i);
            needed += static_cast<std::size_t>(std::max(0, inputs[i].sampling.max_new_tokens));
        }
        if (needed > static_cast<std::size_t>(model.context_length()))
            throw Error(where(i) + std::to_string(needed) + " tokens (prompt and answer) exceed the model's context of " +
                        std::to_string(model.context_length()));
        prompts[i] = std::move(parts.prompt);
    }

    report(progress, "generate", 0, to_generate.size());
    for (std::size_t start = 0; start < to_generate.size(); start += batch_size) {
        check_cancelled(cancelled);
        const std::size_t end = std::min(to_generate.size(), start + batch_size);
        std::vector<GenerationRow> rows;
        for (std::size_t k = start; k < end; ++k) {
            GenerationRow row;
            row.prompt_tokens = results[to_generate[k]].tokens;
            row.sampling = inputs[to_generate[k]].sampling;
            rows.push_back(std::move(row));
        }
        const auto generated =
            options.on_token
                ? model.generate(rows, [&](const TokenEvent& token) { options.on_token(to_generate[start + std::size_t(token.row)], token); },
                                 &probe, cancelled)
                : model.generate(rows, {}, nullptr, cancelled);
        for (std::size_t k = start; k < end; ++k) {
            MonitorResult& result = results[to_generate[k]];
            const GenerationResult& output = generated[k - start];
            result.tokens.insert(result.tokens.end(), output.tokens.begin(), output.tokens.end());
            result.answer = output.text;
            result.answer_generated = true;
        }
        report(progress, "generate", end, to_generate.size());
    }

    CaptureOptions capture_options;
    capture_options.probe = probe;
    report(progress, "capture", 0, inputs.size());
    for (std::size_t start = 0; start < inputs.size(); start += batch_size) {
        check_cancelled(cancelled);
        const std::size_t end = std::min(inputs.size(), start + batch_size);
        std::vector<CaptureRow> rows;
        for (std::size_t i = start; i < end; ++i) rows.push_back({results[i].tokens, results[i].prompt_length});
        const CaptureResult captured = model.capture(rows, capture_options, cancelled);
        for (std::size_t i = start; i < end; ++i) {
            MonitorResult& result = results[i];
            const std::vector<float>& flat = captured.projections[i - start];  // [layer index][token]
            const std::size_t tokens = result.tokens.size();
            const std::size_t last = static_cast<std::size_t>(result.prompt_length - 1);
            const bool has_answer = tokens > static_cast<std::size_t>(result.prompt_length);
            if (has_answer) result.response_average.emplace();
            for (std::size_t p = 0; p < layers.size(); ++p) {
                const auto begin = flat.begin() + static_cast<std::ptrdiff_t>(p * tokens);
                result.projections.emplace_back(begin, begin + static_cast<std::ptrdiff_t>(tokens));
                result.prompt_last.push_back(result.projections.back()[last]);
                if (has_answer) {
                    const float* mean = captured.response_mean[i - start].data() +
                                        static_cast<std::size_t>(layers[p]) * static_cast<std::size_t>(captured.hidden_size);
                    result.response_average->push_back(project(mean, vector.layer(layers[p]).values, captured.hidden_size));
                }
            }
        }
        report(progress, "capture", end, inputs.size());
    }
    return results;
}

}  // namespace persona
