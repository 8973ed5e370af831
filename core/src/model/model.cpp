// Runs a Transformer over batches: builds masks and RoPE tables for each step, applies steering
// and reads activations between blocks, generates with a KV cache and per-row samplers.
#include "model/model_impl.h"

#include "model/cpu_kernels.h"
#include "model/lora.h"
#include "model/model_files.h"
#include "model/row_decoding.h"
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
#include <malloc.h>  // malloc_trim

namespace persona {

using model::KvCache;
using model::RowLayout;
using model::StepContext;
using torch::indexing::Slice;

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;

std::unique_ptr<Model> Model::load(const std::string& path, const ModelLoadOptions& options, const ProgressFn& progress,
                                   const CancelFn& cancelled) {
    // Not InferenceMode: weights made under it could never take part in LoRA training's autograd.
    torch::NoGradGuard no_gradients;
    auto impl = std::make_unique<Impl>();
    impl->load_options = options;
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
    if (impl->chat) {
        impl->chat->set_thinking(options.thinking);
        impl->facts.chat_format = chat_family_name(impl->chat->family());
        if (impl->chat->family() == ChatFamily::Qwen3) impl->facts.chat_format += options.thinking ? ", thinking on" : ", thinking off";
        if (impl->chat->dated_system_turn()) impl->facts.chat_format += ", dated system turn";
    }

    const auto join = [](const std::vector<std::string>& names) {
        std::string text;
        for (const auto& name : names) text += (text.empty() ? "" : ", ") + name;
        return text;
    };
    const auto device = device_from_name(options.device);
    if (!device) throw Error("unknown device '" + options.device + "' (" + join(device_names()) + ")");
    const auto dtype = dtype_from_name(options.dtype);
    if (!dtype) throw Error("unknown dtype '" + options.dtype + "' (" + join(dtype_names()) + ")");
    std::optional<model::ActivationRounding> keep_quantized;
    if (*dtype == DTypeChoice::Quantized) keep_quantized = model::ActivationRounding::Int8;
    if (*dtype == DTypeChoice::QuantizedPrecise) keep_quantized = model::ActivationRounding::TwoPassInt8;
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
        case DTypeChoice::Quantized:
        case DTypeChoice::QuantizedPrecise:
            if (impl->device.is_cuda()) throw Error("quantized weights run on the CPU only; use bf16 on CUDA");
            impl->dtype = model::cpu::available() && *dtype == DTypeChoice::Quantized ? torch::kBFloat16 : torch::kFloat32;
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
    model::WeightLoader loader(
        *files.weights, impl->dtype, impl->device,
        [&] {
            check_cancelled(cancelled);
            report("Loading weights", ++tensors_done, tensor_total);
        },
        keep_quantized);
    impl->net = model::build_transformer(loader);
    if (!options.adapter.empty()) {
        report("Merging the adapter " + options.adapter, 0, 1);
        model::merge_peft_adapter(*impl->net, options.adapter);
        // Runs and vectors of the adapted model must not pass for the base model's.
        impl->facts.fingerprint = text_sha256(impl->facts.fingerprint + "\nadapter " +
                                              file_sha256(options.adapter + "/" + kAdapterConfigFileName) + " " +
                                              file_sha256(options.adapter + "/" + kAdapterWeightsFileName));
        impl->facts.adapter = options.adapter;
    }
    if (impl->tokenizer->vocab_size() != static_cast<std::size_t>(impl->net->config().vocabulary))
        throw FileError(path, "the tokenizer has " + std::to_string(impl->tokenizer->vocab_size()) +
                                  " tokens but the embedding has " + std::to_string(impl->net->config().vocabulary) + " rows");

    impl->facts.device = impl->device.is_cuda() ? "cuda" : "cpu";
    impl->facts.dtype = dtype_name(keep_quantized                    ? *dtype
                                   : impl->dtype == torch::kBFloat16 ? DTypeChoice::BF16
                                   : impl->dtype == torch::kFloat16  ? DTypeChoice::F16
                                                                     : DTypeChoice::F32);
    impl->facts.weight_bytes = impl->net->weight_bytes();
    // Loading freed hundreds of MB of temporaries (float32 tensors, GGUF blocks before repacking)
    // in pieces glibc keeps for reuse; giving them back makes the resident size the model's.
    malloc_trim(0);
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
const ModelLoadOptions& Model::load_options() const { return impl_->load_options; }

std::vector<std::int32_t> Model::encode_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
    if (!impl_->chat) throw Error(impl_->chat_error);
    return impl_->chat->encode(*impl_->tokenizer, messages, add_generation_prompt);
}

bool Model::can_encode_chat() const { return impl_->chat.has_value(); }

std::vector<std::int32_t> Model::Impl::checked_prompt(const GenerationRow& row, std::size_t r) const {
    if (row.prompt_tokens.empty() && !chat) throw Error(chat_error);
    std::vector<std::int32_t> prompt =
        row.prompt_tokens.empty() ? chat->encode(*tokenizer, row.messages, row.add_generation_prompt) : row.prompt_tokens;
    check_tokens(prompt, r);
    if (row.sampling.max_new_tokens < 0) throw Error("row " + std::to_string(r) + ": max_new_tokens is negative");
    const std::int64_t needed = static_cast<std::int64_t>(prompt.size()) + row.sampling.max_new_tokens;
    if (needed > config().context)
        throw Error("row " + std::to_string(r) + ": the prompt of " + std::to_string(prompt.size()) + " tokens plus up to " +
                    std::to_string(row.sampling.max_new_tokens) + " new tokens exceeds the model's context of " +
                    std::to_string(config().context) + " tokens");
    return prompt;
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
        results[r].prompt_tokens = m.checked_prompt(row, r);
        steering[r] = m.resolve(row.steering, r);
        longest_prompt = std::max<std::int64_t>(longest_prompt, static_cast<std::int64_t>(results[r].prompt_tokens.size()));
        most_new = std::max<std::int64_t>(most_new, row.sampling.max_new_tokens);
    }

    const Impl::ResolvedProbe probed_layers = m.resolve_probe(probe);

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
    std::vector<model::RowDecoding> decoding;
    for (const auto& row : rows) decoding.emplace_back(row.sampling, *m.tokenizer);

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
        if (std::none_of(decoding.begin(), decoding.end(), [](const model::RowDecoding& d) { return d.active(); })) break;
        check_cancelled(cancelled);
        const std::int64_t past = cache.length;
        std::vector<torch::Tensor> probed(probed_layers.count());
        const torch::Tensor hidden = m.forward(input, layout, past, &cache,
            [&](int layer, torch::Tensor& h) {
                m.apply_steering(h, layer, steering, layout, past);
                for (int slot : probed_layers.slots[static_cast<std::size_t>(layer)])
                    probed[std::size_t(slot)] = torch::matmul(h.select(1, h.size(1) - 1), probed_layers.directions[slot]);
            },
            cancelled);
        if (step == 0 && !reusing) keep_prefix();
        const torch::Tensor logits = m.net->logits(hidden.narrow(1, hidden.size(1) - 1, 1)).squeeze(1).to(torch::kCPU).contiguous();
        if (!probed.empty()) projections = torch::stack(probed, 1).to(torch::kCPU).contiguous();  // [B, P]

        std::vector<std::int64_t> next(rows.size(), pad_token);
        for (std::size_t r = 0; r < rows.size(); ++r) {
            if (!decoding[r].active()) continue;
            TokenEvent event;
            event.row = static_cast<int>(r);
            event.step = step;
            if (projections.defined()) {
                const float* p = projections[static_cast<std::int64_t>(r)].data_ptr<float>();
                event.projections.assign(p, p + projections.size(1));
            }
            decoding[r].advance(logits[static_cast<std::int64_t>(r)].data_ptr<float>(), static_cast<std::size_t>(c.vocabulary), event);
            next[r] = event.token;
            if (on_token) on_token(event);
        }
        input = torch::tensor(next, torch::kInt64).view({batch, 1}).to(m.device);
    }
    for (std::size_t r = 0; r < rows.size(); ++r) {
        results[r].tokens = std::move(decoding[r].result.tokens);
        results[r].text = std::move(decoding[r].result.text);
        results[r].stop_reason = decoding[r].result.stop_reason;
    }
    return results;
}

}  // namespace persona
