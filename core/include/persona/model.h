#pragma once
#include "persona/finetune.h"
#include "persona/generation.h"
#include "persona/model_facts.h"
#include "persona/progress.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace persona {

class Tokenizer;

// Where the weights go and in which dtype they compute. Options carry the names ("auto",
// "cpu", "cuda"; "auto", "f32", "bf16", "f16", "quantized", "quantized-precise"), which users
// type and settings store; these functions are the one place that knows them.
enum class DeviceChoice { Auto, Cpu, Cuda };  // auto: CUDA when present
// auto: bf16 on a GPU or a CPU with native bf16 (AVX512-BF16), f32 elsewhere; f16 on CUDA only.
// quantized (CPU only): a GGUF file's quantized matrices stay in their blocks and multiply with
// int8 activations (docs/platform-notes.md, "Quantized weights"); other tensors take auto's dtype.
// quantized-precise: the same weights, activations rounded in two int8 passes and prompts and
// other tensors in float32, for results within ~1e-4 of float32's at a slower decode.
enum class DTypeChoice { Auto, F32, BF16, F16, Quantized, QuantizedPrecise };
const char* device_name(DeviceChoice device);
std::optional<DeviceChoice> device_from_name(const std::string& name);
std::vector<std::string> device_names();
const char* dtype_name(DTypeChoice dtype);
std::optional<DTypeChoice> dtype_from_name(const std::string& name);
std::vector<std::string> dtype_names();

struct ModelLoadOptions {
    std::string device = "auto";  // a device_names() entry
    std::string dtype = "auto";   // a dtype_names() entry
    // Models whose template has a thinking switch (Qwen3): let them reason in a <think> block
    // before answering. Off by default: extraction and steering read the answer's activations.
    bool thinking = false;
    // A PEFT LoRA adapter folder, merged into the weights at load; empty: none.
    std::string adapter{};
};

// A loaded transformer: weights on a device, its tokenizer and chat template. Not thread-safe:
// the engine thread owns it (docs/architecture.md). Every method that runs the model polls `cancelled`
// between steps and throws persona::Cancelled.
class Model {
public:
    static std::unique_ptr<Model> load(const std::string& path, const ModelLoadOptions& options = {},
                                       const ProgressFn& progress = {}, const CancelFn& cancelled = {});
    ~Model();
    Model(const Model&) = delete;
    Model& operator=(const Model&) = delete;

    const ModelFacts& facts() const;
    const Tokenizer& tokenizer() const;
    int layer_count() const;  // L: blocks; hidden_states has L + 1 entries
    int hidden_size() const;
    int context_length() const;
    std::string device() const;
    std::string dtype() const;
    // What the model was loaded with (the adapter included).
    const ModelLoadOptions& load_options() const;

    std::vector<std::int32_t> encode_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
    // False when encode_chat would throw: no chat template, or one of a format we do not know.
    bool can_encode_chat() const;

    // Batched generation; rows may differ in prompt, steering and sampling. on_token runs on
    // the calling thread after every step for every row still generating.
    std::vector<GenerationResult> generate(const std::vector<GenerationRow>& rows,
                                           const std::function<void(const TokenEvent&)>& on_token = {},
                                           const ProjectionProbe* probe = nullptr,
                                           const CancelFn& cancelled = {});

    // Teacher-forced activations of prompt + answer, aggregated per row and layer on the fly.
    CaptureResult capture(const std::vector<CaptureRow>& rows, const CaptureOptions& options = {},
                          const CancelFn& cancelled = {});

    // Everything about one sequence, for tests and inspection: hidden_states [L+1][T][H] and
    // the logits [T][V], as float32.
    struct Trace {
        int tokens = 0;
        std::vector<float> hidden_states;
        std::vector<float> logits;
    };
    Trace trace(const std::vector<std::int32_t>& tokens, const std::vector<Steering>& steering = {});

    // A prompt run once, its keys and values kept, so that several short continuations of it
    // cost only their own tokens (the local judge reads the distribution after "", "1", "10",
    // "2", ... behind the same rubric).
    // With `reuse` (an earlier state of this model), the tokens the two prompts share at their
    // start are taken from its cache and only the rest is run: a judge's rubric up to the
    // question costs once. The probabilities may differ from a whole prefill's in the last bits.
    struct PromptState;
    static constexpr int kMaxContinuation = 8;
    std::shared_ptr<PromptState> prefill(const std::vector<std::int32_t>& prompt, const CancelFn& cancelled = {},
                                         const PromptState* reuse = nullptr);
    // How many of the state's prompt tokens came from `reuse`'s cache.
    static std::size_t reused_tokens(const PromptState& state);
    // Next-token probabilities after the prompt and after each prefix of `continuation`
    // (continuation.size() + 1 rows of vocabulary size); at most kMaxContinuation tokens.
    std::vector<std::vector<float>> next_token_probabilities(PromptState& state, const std::vector<std::int32_t>& continuation,
                                                             const CancelFn& cancelled = {});
    // The same for several continuations in one batched pass, each row starting from the
    // prompt's keys and values: one result per continuation.
    std::vector<std::vector<std::vector<float>>> next_token_probabilities_batch(
        PromptState& state, const std::vector<std::vector<std::int32_t>>& continuations, const CancelFn& cancelled = {});

    // Trains a LoRA adapter on `examples` and writes it to settings.output_dir in PEFT's layout
    // (persona/finetune.h). A checkpoint there from the same settings and data is resumed and the
    // run continues bit for bit as if never stopped; a cancel between steps keeps the last
    // checkpoint. This model's own weights are unchanged.
    FinetuneResult finetune(const std::vector<TrainingExample>& examples, const FinetuneSettings& settings,
                            const std::function<void(const FinetuneProgress&)>& on_step = {}, const CancelFn& cancelled = {});
    // Mean loss (natural log) per assistant token of `examples`, with `steering` at every
    // position; its exp is the perplexity.
    double assistant_token_loss(const std::vector<TrainingExample>& examples, int max_length = 2048,
                                const std::vector<Steering>& steering = {}, const CancelFn& cancelled = {});

    struct Impl;
    // For core's own files and its tests (model/model_impl.h); opaque everywhere else.
    Impl& internals() { return *impl_; }

private:
    explicit Model(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace persona
