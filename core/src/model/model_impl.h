#pragma once
// Model's insides, shared by model.cpp (loading, generation) and model_capture.cpp (capture,
// traces, the judge's kept prompts): the network, its tokenizer and what one forward step needs.
#include "persona/model.h"

#include "model/cpu_share.h"
#include "model/transformer.h"
#include "tokenizer/chat_template.h"
#include "persona/errors.h"
#include "persona/tokenizer.h"

#include <algorithm>
#include <optional>

namespace persona {

namespace model {
// Where each row's prompt sits inside one forward step's window of slots.
struct RowLayout {
    std::int64_t padding = 0;     // left padding slots
    std::int64_t prompt_end = 0;  // absolute slot where the prompt ends (exclusive)
};
}  // namespace model

struct Model::Impl {
    using RowLayout = model::RowLayout;
    using KvCache = model::KvCache;
    using StepContext = model::StepContext;

    std::unique_ptr<model::Transformer> net;
    std::unique_ptr<Tokenizer> tokenizer;
    std::optional<ChatTemplate> chat;  // absent when the model's format is unknown
    std::string chat_error;
    ModelFacts facts;
    ModelLoadOptions load_options;
    torch::Device device{torch::kCPU};
    torch::ScalarType dtype = torch::kBFloat16;

    const model::TransformerConfig& config() const { return net->config(); }

    // GenerationRow::reuse_prompt_prefix: the keys and values of the last such row's prompt
    // without its last token, per block [kv_heads, tokens, head_dim].
    struct PromptPrefix {
        std::vector<std::int32_t> tokens;
        std::vector<torch::Tensor> keys, values;
    };
    std::optional<PromptPrefix> prompt_prefix;

    // Steering at "response" positions starts at the last prompt token: what comes before it
    // is computed as without steering, and its cache is shared by every strength.
    static bool leaves_prefix_unsteered(const GenerationRow& row) {
        return std::all_of(row.steering.begin(), row.steering.end(),
                           [](const Steering& s) { return s.positions == SteerPositions::Response; });
    }

    // One steering spec, resolved to tensors on the device.
    struct ResolvedSteering {
        int layer;
        SteerPositions positions;
        SteerOperation operation;
        bool preserve_norm;
        torch::Tensor delta;      // alpha * v, for Add
        torch::Tensor direction;  // v/|v|, for Ablate and Cap
        float limit;              // alpha, for Cap
    };

    std::vector<ResolvedSteering> resolve(const std::vector<Steering>& steering, std::size_t row) const {
        std::vector<ResolvedSteering> out;
        for (const auto& s : steering) {
            if (s.layer < 0 || s.layer > config().layers)
                throw Error("row " + std::to_string(row) + ": steering layer " + std::to_string(s.layer) +
                            " is outside 0.." + std::to_string(config().layers));
            if (static_cast<int>(s.vector.size()) != config().hidden)
                throw Error("row " + std::to_string(row) + ": steering vector has " + std::to_string(s.vector.size()) +
                            " values, the model's hidden size is " + std::to_string(config().hidden));
            const torch::Tensor v = torch::tensor(s.vector, torch::kFloat32).to(device);
            const double norm = v.norm().item<double>();
            if (s.operation != SteerOperation::Add && norm == 0.0)
                throw Error("row " + std::to_string(row) + ": cannot " + steer_operation_name(s.operation) +
                            " along a zero vector");
            out.push_back({s.layer, s.positions, s.operation, s.preserve_norm, v * s.alpha,
                           norm > 0 ? v / norm : v, s.alpha});
        }
        return out;
    }

    // A probe's directions as unit vectors [P, H] on the device, and which of them each layer
    // 0..L is projected on (the probe's own order is the order of the projections handed back).
    struct ResolvedProbe {
        torch::Tensor directions;  // undefined: no probe
        std::vector<std::vector<int>> slots;
        std::size_t count() const { return directions.defined() ? std::size_t(directions.size(0)) : 0; }
    };
    ResolvedProbe resolve_probe(const ProjectionProbe* probe) const {
        ResolvedProbe out;
        out.slots.resize(static_cast<std::size_t>(config().layers + 1));
        if (!probe || probe->layers.empty()) return out;
        if (probe->directions.size() != probe->layers.size()) throw Error("probe: one direction is needed per layer");
        std::vector<torch::Tensor> units;
        for (std::size_t i = 0; i < probe->layers.size(); ++i) {
            const int layer = probe->layers[i];
            if (layer < 0 || layer > config().layers) throw Error("probe layer " + std::to_string(layer) + " is outside the model");
            if (static_cast<int>(probe->directions[i].size()) != config().hidden) throw Error("probe direction has the wrong size");
            torch::Tensor v = torch::tensor(probe->directions[i], torch::kFloat32);
            units.push_back(v / v.norm().clamp_min(1e-12));
            out.slots[static_cast<std::size_t>(layer)].push_back(static_cast<int>(i));
        }
        out.directions = torch::stack(units).to(device);
        return out;
    }

    // Position masks of one row for one step: which of the step's T slots a steering spec
    // touches. Slots are absolute: past + t.
    torch::Tensor position_mask(SteerPositions positions, const RowLayout& row, std::int64_t past, std::int64_t steps) const {
        const torch::Tensor slot = torch::arange(past, past + steps, torch::kInt64);
        torch::Tensor mask;
        switch (positions) {
            case SteerPositions::All: mask = slot >= row.padding; break;
            case SteerPositions::Prompt: mask = (slot >= row.padding) & (slot < row.prompt_end); break;
            case SteerPositions::Response: mask = slot >= std::max(row.padding, row.prompt_end - 1); break;
        }
        return mask.to(torch::kFloat32).unsqueeze(-1).to(device);  // [T, 1]
    }

    void apply_steering(torch::Tensor& hidden, int layer, const std::vector<std::vector<ResolvedSteering>>& rows,
                        const std::vector<RowLayout>& layout, std::int64_t past) const {
        for (std::size_t r = 0; r < rows.size(); ++r) {
            for (const auto& s : rows[r]) {
                if (s.layer != layer) continue;
                const torch::Tensor mask = position_mask(s.positions, layout[r], past, hidden.size(1));
                torch::Tensor h = hidden[static_cast<std::int64_t>(r)];  // [T, H], a view
                h.copy_(steered(h, s, mask));
            }
        }
    }

    // h [..., H] with one steering applied where `mask` (broadcast over the last dim) is 1.
    static torch::Tensor steered(const torch::Tensor& h, const ResolvedSteering& s, const torch::Tensor& mask) {
        torch::Tensor updated;
        if (s.operation == SteerOperation::Add) {
            updated = h + mask * s.delta;
        } else {
            const torch::Tensor along = (h * s.direction).sum(-1, true);
            const torch::Tensor removed = s.operation == SteerOperation::Cap ? (along - s.limit).clamp_min(0) : along;
            updated = h - mask * removed * s.direction;
        }
        if (s.preserve_norm) updated = updated * (h.norm(2, -1, true) / updated.norm(2, -1, true).clamp_min(1e-12));
        return updated;
    }

    // Masks and RoPE tables for one step over slots [past, past + T) with keys [0, past + T).
    StepContext make_step(const std::vector<RowLayout>& layout, std::int64_t past, std::int64_t steps, KvCache* cache) const {
        const std::int64_t keys = past + steps;
        const std::int64_t batch = static_cast<std::int64_t>(layout.size());
        std::vector<std::int64_t> padding(layout.size());
        for (std::size_t r = 0; r < layout.size(); ++r) padding[r] = layout[r].padding;
        const torch::Tensor pad = torch::tensor(padding, torch::kInt64).view({batch, 1});

        const torch::Tensor query_slot = torch::arange(past, keys, torch::kInt64).view({1, steps, 1});
        const torch::Tensor key_slot = torch::arange(0, keys, torch::kInt64).view({1, 1, keys});
        const torch::Tensor key_valid = (key_slot >= pad.view({batch, 1, 1}));
        // A padding query sees only itself: finite garbage that no real query ever attends to
        // (a row of all -inf would be NaN, and NaN times a zero weight is still NaN).
        const torch::Tensor allowed = ((key_slot <= query_slot) & key_valid) | (key_slot == query_slot);
        auto additive = [&](const torch::Tensor& ok) {
            return torch::zeros({batch, steps, keys}, torch::kFloat32)
                .masked_fill(ok.logical_not(), -INFINITY)
                .unsqueeze(1)
                .to(device);
        };
        StepContext step;
        step.cache = cache;
        step.global_mask = additive(allowed.expand({batch, steps, keys}));
        const auto& c = config();
        if (c.sliding_window > 0)
            step.local_mask = additive((allowed & ((query_slot - key_slot) < c.sliding_window)) | (key_slot == query_slot));

        const torch::Tensor positions =
            (torch::arange(past, keys, torch::kInt64).view({1, steps}) - pad).clamp_min(0).to(torch::kFloat32).to(device);
        auto tables = [&](const torch::Tensor& inv_freq, torch::Tensor& cos, torch::Tensor& sin) {
            const torch::Tensor angles = positions.unsqueeze(-1) * inv_freq;  // [B, T, D/2]
            cos = angles.cos().unsqueeze(2);
            sin = angles.sin().unsqueeze(2);
            if (c.rope_attention_factor != 1.0) {
                cos = cos * c.rope_attention_factor;
                sin = sin * c.rope_attention_factor;
            }
        };
        tables(net->global_inv_freq(), step.global_cos, step.global_sin);
        if (c.sliding_window > 0) tables(net->local_inv_freq(), step.local_cos, step.local_sin);
        return step;
    }

    // One forward step; `between` sees hidden_states[l] for l = 0..L and may change it.
    template <typename Between>
    torch::Tensor forward(const torch::Tensor& tokens, const std::vector<RowLayout>& layout, std::int64_t past,
                          KvCache* cache, Between&& between, const CancelFn& cancelled,
                          const model::ProjectionAdapter* adapter = nullptr) const {
        model::cpu_share::refit();
        StepContext step = make_step(layout, past, tokens.size(1), cache);
        step.adapter = adapter;
        torch::Tensor hidden = net->embed(tokens);
        between(0, hidden);
        for (int i = 0; i < config().layers; ++i) {
            hidden = net->block(i, hidden, step);
            between(i + 1, hidden);
            if ((i & 7) == 7) check_cancelled(cancelled);
        }
        if (cache) cache->length += tokens.size(1);
        return hidden;
    }

    KvCache make_cache(std::int64_t batch, std::int64_t capacity) const {
        KvCache cache;
        const auto& c = config();
        // Uninitialised: attention reads only the slots already written.
        for (int i = 0; i < c.layers; ++i) {
            cache.keys.push_back(torch::empty({batch, c.kv_heads, capacity, c.head_dim}, torch::TensorOptions(device)));
            cache.values.push_back(torch::empty({batch, c.kv_heads, capacity, c.head_dim}, torch::TensorOptions(device)));
        }
        return cache;
    }

    // One sequence as a [1, T] batch on the device.
    torch::Tensor single_row(const std::vector<std::int32_t>& tokens) const {
        return torch::tensor(std::vector<std::int64_t>(tokens.begin(), tokens.end()), torch::kInt64)
            .view({1, static_cast<std::int64_t>(tokens.size())})
            .to(device);
    }

    // Row r's prompt tokens (its messages through the chat template, or its own tokens), checked:
    // every id in the vocabulary, and room in the context for max_new_tokens more.
    std::vector<std::int32_t> checked_prompt(const GenerationRow& row, std::size_t r) const;

    void check_tokens(const std::vector<std::int32_t>& tokens, std::size_t row) const {
        if (tokens.empty()) throw Error("row " + std::to_string(row) + ": the prompt is empty");
        for (auto t : tokens)
            if (t < 0 || t >= config().vocabulary)
                throw Error("row " + std::to_string(row) + ": token id " + std::to_string(t) + " is outside the vocabulary of " +
                            std::to_string(config().vocabulary));
    }
};

}  // namespace persona
