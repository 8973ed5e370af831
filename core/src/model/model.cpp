// Runs a Transformer over batches: builds masks and RoPE tables for each step, applies steering
// and reads activations between blocks, generates with a KV cache and per-row samplers.
#include "persona/model.h"

#include "model/cpu_kernels.h"
#include "model/model_files.h"
#include "model/sampler.h"
#include "model/transformer.h"
#include "tokenizer/chat_template.h"
#include "persona/errors.h"
#include "persona/fingerprint.h"
#include "persona/process_memory.h"
#include "persona/tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <optional>
#include <cmath>

namespace persona {

using model::KvCache;
using model::StepContext;
using torch::indexing::Slice;

const char* stop_reason_name(StopReason reason) {
    switch (reason) {
        case StopReason::MaxTokens: return "max_tokens";
        case StopReason::EndOfSequence: return "end_of_sequence";
        case StopReason::StopString: return "stop_string";
        case StopReason::Cancelled: return "cancelled";
    }
    return "unknown";
}

namespace {

// Where each row's prompt sits inside one forward step's window of slots.
struct RowLayout {
    std::int64_t padding = 0;     // left padding slots
    std::int64_t prompt_end = 0;  // absolute slot where the prompt ends (exclusive)
};

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

struct Model::Impl {
    std::unique_ptr<model::Transformer> net;
    std::unique_ptr<Tokenizer> tokenizer;
    std::optional<ChatTemplate> chat;  // absent when the model's format is unknown
    std::string chat_error;
    ModelFacts facts;
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
        torch::Tensor direction;  // v/|v|, for Ablate
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
            if (s.operation == SteerOperation::Ablate && norm == 0.0)
                throw Error("row " + std::to_string(row) + ": cannot ablate along a zero vector");
            out.push_back({s.layer, s.positions, s.operation, s.preserve_norm, v * s.alpha,
                           norm > 0 ? v / norm : v});
        }
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
                torch::Tensor updated;
                if (s.operation == SteerOperation::Add) {
                    updated = h + mask * s.delta;
                } else {
                    const torch::Tensor along = (h * s.direction).sum(-1, true);
                    updated = h - mask * along * s.direction;
                }
                if (s.preserve_norm)
                    updated = updated * (h.norm(2, -1, true) / updated.norm(2, -1, true).clamp_min(1e-12));
                h.copy_(updated);
            }
        }
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
        };
        tables(net->global_inv_freq(), step.global_cos, step.global_sin);
        if (c.sliding_window > 0) tables(net->local_inv_freq(), step.local_cos, step.local_sin);
        return step;
    }

    // One forward step; `between` sees hidden_states[l] for l = 0..L and may change it.
    template <typename Between>
    torch::Tensor forward(const torch::Tensor& tokens, const std::vector<RowLayout>& layout, std::int64_t past,
                          KvCache* cache, Between&& between, const CancelFn& cancelled) const {
        StepContext step = make_step(layout, past, tokens.size(1), cache);
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

    void check_tokens(const std::vector<std::int32_t>& tokens, std::size_t row) const {
        if (tokens.empty()) throw Error("row " + std::to_string(row) + ": the prompt is empty");
        for (auto t : tokens)
            if (t < 0 || t >= config().vocabulary)
                throw Error("row " + std::to_string(row) + ": token id " + std::to_string(t) + " is outside the vocabulary of " +
                            std::to_string(config().vocabulary));
    }
};

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;

std::unique_ptr<Model> Model::load(const std::string& path, const ModelLoadOptions& options, const ProgressFn& progress,
                                   const CancelFn& cancelled) {
    torch::InferenceMode inference;
    auto impl = std::make_unique<Impl>();
    auto report = [&](const std::string& stage, std::uint64_t done, std::uint64_t total) {
        if (progress) progress(Progress{stage, done, total});
    };
    report("Reading " + path, 0, 1);
    // A directory is a Hugging Face checkpoint; anything else must be a GGUF file.
    std::error_code not_a_directory;
    model::ModelFiles files = std::filesystem::is_directory(path, not_a_directory) ? model::open_hf_checkpoint(path)
                                                                                   : model::open_gguf_model(path);
    impl->facts = std::move(files.facts);
    // Checkpoints, runs and vectors name the model by its content; the hash is cached, so only a
    // model's first load reads it all.
    report("Fingerprinting " + path, 0, 1);
    impl->facts.fingerprint = model_fingerprint(path);
    check_cancelled(cancelled);
    impl->tokenizer = std::move(files.tokenizer);
    impl->chat = std::move(files.chat);
    impl->chat_error = std::move(files.chat_error);

    const auto join = [](const std::vector<std::string>& names) {
        std::string text;
        for (const auto& name : names) text += (text.empty() ? "" : ", ") + name;
        return text;
    };
    const auto device = device_from_name(options.device);
    if (!device) throw Error("unknown device '" + options.device + "' (" + join(device_names()) + ")");
    const auto dtype = dtype_from_name(options.dtype);
    if (!dtype) throw Error("unknown dtype '" + options.dtype + "' (" + join(dtype_names()) + ")");
    const bool cuda_available = torch::cuda::is_available();
    if (*device == DeviceChoice::Cuda && !cuda_available)
        throw Error("CUDA was requested but no CUDA device is available to libtorch");
    const bool cuda = *device == DeviceChoice::Cuda || (*device == DeviceChoice::Auto && cuda_available);
    impl->device = cuda ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
    switch (*dtype) {
        case DTypeChoice::Auto:
            // bf16 halves the weights' memory traffic where the hardware computes it natively (a
            // GPU, AVX512-BF16); on an AVX2-only CPU libtorch emulates it and a forward pass runs
            // about ten times slower than in f32 (measured: 7 vs 77 prompt tokens/s), so auto
            // takes f32 there.
            impl->dtype = cuda || model::cpu::available() ? torch::kBFloat16 : torch::kFloat32;
            break;
        case DTypeChoice::BF16: impl->dtype = torch::kBFloat16; break;
        case DTypeChoice::F32: impl->dtype = torch::kFloat32; break;
        case DTypeChoice::F16:
            if (impl->device.is_cpu())
                throw Error("f16 matrix products are not implemented on the CPU by libtorch; use bf16 or f32");
            impl->dtype = torch::kFloat16;
            break;
    }

    const std::uint64_t tensor_total = files.weights->tensor_count();
    std::uint64_t tensors_done = 0;
    model::WeightLoader loader(*files.weights, impl->dtype, impl->device, [&] {
        check_cancelled(cancelled);
        report("Loading weights", ++tensors_done, tensor_total);
    });
    impl->net = model::build_transformer(loader);
    if (impl->tokenizer->vocab_size() != static_cast<std::size_t>(impl->net->config().vocabulary))
        throw FileError(path, "the tokenizer has " + std::to_string(impl->tokenizer->vocab_size()) +
                                  " tokens but the embedding has " + std::to_string(impl->net->config().vocabulary) + " rows");

    impl->facts.device = impl->device.is_cuda() ? "cuda" : "cpu";
    impl->facts.dtype = dtype_name(impl->dtype == torch::kBFloat16 ? DTypeChoice::BF16
                                   : impl->dtype == torch::kFloat16 ? DTypeChoice::F16
                                                                    : DTypeChoice::F32);
    impl->facts.weight_bytes = impl->net->weight_bytes();
    impl->facts.process_rss_bytes = read_process_memory().resident_bytes;
    return std::unique_ptr<Model>(new Model(std::move(impl)));
}

const ModelFacts& Model::facts() const { return impl_->facts; }
const Tokenizer& Model::tokenizer() const { return *impl_->tokenizer; }
int Model::layer_count() const { return impl_->config().layers; }
int Model::hidden_size() const { return impl_->config().hidden; }
int Model::context_length() const { return impl_->config().context; }
std::string Model::device() const { return impl_->facts.device; }
std::string Model::dtype() const { return impl_->facts.dtype; }

std::vector<std::int32_t> Model::encode_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
    if (!impl_->chat) throw Error(impl_->chat_error);
    return impl_->chat->encode(*impl_->tokenizer, messages, add_generation_prompt);
}

std::vector<GenerationResult> Model::generate(const std::vector<GenerationRow>& rows,
                                              const std::function<void(const TokenEvent&)>& on_token,
                                              const ProjectionProbe* probe, const CancelFn& cancelled) {
    torch::InferenceMode inference;
    Impl& m = *impl_;
    const auto& c = m.config();
    if (rows.empty()) return {};
    const std::int64_t batch = static_cast<std::int64_t>(rows.size());

    std::vector<GenerationResult> results(rows.size());
    std::vector<std::vector<Impl::ResolvedSteering>> steering(rows.size());
    std::int64_t longest_prompt = 0, most_new = 0;
    for (std::size_t r = 0; r < rows.size(); ++r) {
        const auto& row = rows[r];
        results[r].prompt_tokens = row.prompt_tokens.empty() ? encode_chat(row.messages, row.add_generation_prompt) : row.prompt_tokens;
        m.check_tokens(results[r].prompt_tokens, r);
        if (row.sampling.max_new_tokens < 0) throw Error("row " + std::to_string(r) + ": max_new_tokens is negative");
        const std::int64_t needed = static_cast<std::int64_t>(results[r].prompt_tokens.size()) + row.sampling.max_new_tokens;
        if (needed > c.context)
            throw Error("row " + std::to_string(r) + ": the prompt of " + std::to_string(results[r].prompt_tokens.size()) +
                        " tokens plus up to " + std::to_string(row.sampling.max_new_tokens) +
                        " new tokens exceeds the model's context of " + std::to_string(c.context) + " tokens");
        steering[r] = m.resolve(row.steering, r);
        longest_prompt = std::max<std::int64_t>(longest_prompt, static_cast<std::int64_t>(results[r].prompt_tokens.size()));
        most_new = std::max<std::int64_t>(most_new, row.sampling.max_new_tokens);
    }

    // Probe directions as unit vectors [P, H].
    torch::Tensor probe_directions;
    // The probe's own order is the order of the projections it gets back, whatever the layers.
    std::vector<std::vector<int>> probe_slots(static_cast<std::size_t>(c.layers + 1));
    if (probe && !probe->layers.empty()) {
        if (probe->directions.size() != probe->layers.size()) throw Error("probe: one direction is needed per layer");
        std::vector<torch::Tensor> units;
        for (std::size_t i = 0; i < probe->layers.size(); ++i) {
            const int layer = probe->layers[i];
            if (layer < 0 || layer > c.layers) throw Error("probe layer " + std::to_string(layer) + " is outside the model");
            if (static_cast<int>(probe->directions[i].size()) != c.hidden) throw Error("probe direction has the wrong size");
            torch::Tensor v = torch::tensor(probe->directions[i], torch::kFloat32);
            units.push_back(v / v.norm().clamp_min(1e-12));
            probe_slots[static_cast<std::size_t>(layer)].push_back(static_cast<int>(i));
        }
        probe_directions = torch::stack(units).to(m.device);
    }

    // Left padding lines every prompt's last token up at the same slot.
    const std::int32_t pad_token = m.tokenizer->eos_id().value_or(0);
    std::vector<RowLayout> layout(rows.size());
    std::vector<std::int32_t> prompt_matrix(static_cast<std::size_t>(batch * longest_prompt), pad_token);
    for (std::size_t r = 0; r < rows.size(); ++r) {
        const auto& prompt = results[r].prompt_tokens;
        layout[r].padding = longest_prompt - static_cast<std::int64_t>(prompt.size());
        layout[r].prompt_end = longest_prompt;
        std::copy(prompt.begin(), prompt.end(), prompt_matrix.begin() + static_cast<std::ptrdiff_t>(r * longest_prompt + layout[r].padding));
    }

    KvCache cache = m.make_cache(batch, longest_prompt + std::max<std::int64_t>(most_new, 1));
    std::vector<model::Sampler> samplers;
    std::vector<StreamingDecoder> decoders;
    for (const auto& row : rows) {
        samplers.emplace_back(row.sampling);
        decoders.emplace_back(*m.tokenizer);
    }
    std::vector<bool> active(rows.size(), true);
    std::vector<std::size_t> emitted(rows.size(), 0);
    for (std::size_t r = 0; r < rows.size(); ++r)
        if (rows[r].sampling.max_new_tokens == 0) active[r] = false;

    torch::Tensor input = torch::tensor(prompt_matrix, torch::kInt32).view({batch, longest_prompt}).to(torch::kInt64).to(m.device);
    const auto prefix_length = [&](std::size_t r) { return std::int64_t(results[r].prompt_tokens.size()) - 1; };
    const bool reusing = batch == 1 && rows[0].reuse_prompt_prefix && Impl::leaves_prefix_unsteered(rows[0]) &&
                         prefix_length(0) > 0 && m.prompt_prefix &&
                         m.prompt_prefix->tokens.size() == std::size_t(prefix_length(0)) &&
                         std::equal(m.prompt_prefix->tokens.begin(), m.prompt_prefix->tokens.end(),
                                    results[0].prompt_tokens.begin());
    if (reusing) {
        const std::int64_t n = prefix_length(0);
        for (int i = 0; i < c.layers; ++i) {
            cache.keys[std::size_t(i)][0].narrow(1, 0, n).copy_(m.prompt_prefix->keys[std::size_t(i)]);
            cache.values[std::size_t(i)][0].narrow(1, 0, n).copy_(m.prompt_prefix->values[std::size_t(i)]);
        }
        cache.length = n;
        input = input.narrow(1, n, 1);
        results[0].prompt_tokens_reused = std::size_t(n);
    }
    // Keeps the prefix of the first row that asks, right after its prefill.
    const auto keep_prefix = [&] {
        for (std::size_t r = 0; r < rows.size(); ++r) {
            if (!rows[r].reuse_prompt_prefix || !Impl::leaves_prefix_unsteered(rows[r]) || prefix_length(r) < 1) continue;
            Impl::PromptPrefix prefix;
            const std::int64_t n = prefix_length(r);
            prefix.tokens.assign(results[r].prompt_tokens.begin(), results[r].prompt_tokens.end() - 1);
            for (int i = 0; i < c.layers; ++i) {
                prefix.keys.push_back(cache.keys[std::size_t(i)][std::int64_t(r)].narrow(1, layout[r].padding, n).clone());
                prefix.values.push_back(cache.values[std::size_t(i)][std::int64_t(r)].narrow(1, layout[r].padding, n).clone());
            }
            m.prompt_prefix = std::move(prefix);
            return;
        }
    };
    torch::Tensor projections;  // [B, P] for the last position of each step
    for (int step = 0; step < most_new; ++step) {
        if (std::none_of(active.begin(), active.end(), [](bool a) { return a; })) break;
        check_cancelled(cancelled);
        const std::int64_t past = cache.length;
        std::vector<torch::Tensor> probed(probe_directions.defined() ? std::size_t(probe_directions.size(0)) : 0);
        const torch::Tensor hidden = m.forward(input, layout, past, &cache,
            [&](int layer, torch::Tensor& h) {
                m.apply_steering(h, layer, steering, layout, past);
                for (int slot : probe_slots[static_cast<std::size_t>(layer)])
                    probed[std::size_t(slot)] = torch::matmul(h.select(1, h.size(1) - 1), probe_directions[slot]);
            },
            cancelled);
        if (step == 0 && !reusing) keep_prefix();
        const torch::Tensor logits = m.net->logits(hidden.narrow(1, hidden.size(1) - 1, 1)).squeeze(1).to(torch::kCPU).contiguous();
        if (!probed.empty()) projections = torch::stack(probed, 1).to(torch::kCPU).contiguous();  // [B, P]

        std::vector<std::int64_t> next(rows.size(), pad_token);
        for (std::size_t r = 0; r < rows.size(); ++r) {
            if (!active[r]) continue;
            const auto& options = rows[r].sampling;
            const std::int32_t token = samplers[r].next(logits[static_cast<std::int64_t>(r)].data_ptr<float>(),
                                                        static_cast<std::size_t>(c.vocabulary));
            next[r] = token;
            GenerationResult& result = results[r];
            TokenEvent event;
            event.row = static_cast<int>(r);
            event.step = step;
            event.token = token;
            if (projections.defined()) {
                const float* p = projections[static_cast<std::int64_t>(r)].data_ptr<float>();
                event.projections.assign(p, p + projections.size(1));
            }
            if (options.stop_at_eos && m.tokenizer->is_end_of_generation(token)) {
                result.stop_reason = StopReason::EndOfSequence;
                active[r] = false;
                result.text += decoders[r].finish();
            } else {
                result.tokens.push_back(token);
                result.text += decoders[r].push(token);
                if (static_cast<int>(result.tokens.size()) >= options.max_new_tokens) {
                    result.text += decoders[r].finish();
                    active[r] = false;
                    result.stop_reason = StopReason::MaxTokens;
                }
            }
            // Stop strings may span tokens: hold back text that could still become one.
            std::size_t safe = result.text.size();
            for (const auto& stop : options.stop_strings) {
                const auto at = stop.empty() ? std::string::npos : result.text.find(stop, emitted[r] > stop.size() ? emitted[r] - stop.size() : 0);
                if (at != std::string::npos) {
                    result.text.resize(at);
                    result.stop_reason = StopReason::StopString;
                    active[r] = false;
                    safe = at;
                }
            }
            if (active[r]) safe = result.text.size() - pending_stop_prefix(result.text, options.stop_strings);
            if (safe > emitted[r]) {
                event.text = result.text.substr(emitted[r], safe - emitted[r]);
                emitted[r] = safe;
            }
            if (!active[r] && emitted[r] < result.text.size()) {
                event.text += result.text.substr(emitted[r]);
                emitted[r] = result.text.size();
            }
            if (on_token) on_token(event);
        }
        input = torch::tensor(next, torch::kInt64).view({batch, 1}).to(m.device);
    }
    return results;
}

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
    std::int64_t prompt_length = 0;
    std::vector<float> after_prompt;
};

namespace {
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

std::shared_ptr<Model::PromptState> Model::prefill(const std::vector<std::int32_t>& prompt, const CancelFn& cancelled) {
    torch::InferenceMode inference;
    Impl& m = *impl_;
    m.check_tokens(prompt, 0);
    const std::int64_t length = static_cast<std::int64_t>(prompt.size());
    if (length + kMaxContinuation > m.config().context)
        throw Error(std::to_string(prompt.size()) + " tokens leave no room for an answer in the model's context of " +
                    std::to_string(m.config().context));
    auto state = std::make_shared<PromptState>();
    state->cache = m.make_cache(1, length + kMaxContinuation);
    state->prompt_length = length;
    const std::vector<RowLayout> layout{{0, length}};
    const torch::Tensor input = m.single_row(prompt);
    const torch::Tensor hidden = m.forward(input, layout, 0, &state->cache, [](int, torch::Tensor&) {}, cancelled);
    state->after_prompt = probability_rows(m.net->logits(hidden.narrow(1, length - 1, 1))[0]).front();
    return state;
}

std::vector<std::vector<float>> Model::next_token_probabilities(PromptState& state, const std::vector<std::int32_t>& continuation,
                                                                const CancelFn& cancelled) {
    torch::InferenceMode inference;
    Impl& m = *impl_;
    if (continuation.size() > std::size_t(kMaxContinuation))
        throw Error("a continuation of " + std::to_string(continuation.size()) + " tokens is longer than " +
                    std::to_string(kMaxContinuation));
    std::vector<std::vector<float>> rows{state.after_prompt};
    if (continuation.empty()) return rows;
    m.check_tokens(continuation, 0);
    // Slots after the prompt are overwritten by each continuation: attention reads only those
    // below the current length.
    state.cache.length = state.prompt_length;
    const std::vector<RowLayout> layout{{0, state.prompt_length}};
    const torch::Tensor input = m.single_row(continuation);
    const torch::Tensor hidden = m.forward(input, layout, state.prompt_length, &state.cache, [](int, torch::Tensor&) {}, cancelled);
    for (auto& row : probability_rows(m.net->logits(hidden)[0])) rows.push_back(std::move(row));
    return rows;
}

}  // namespace persona
