#pragma once
// Plain data for generation, steering and capture requests: what the UI and CLI build and the
// engine thread executes. No torch types (docs/architecture.md: core's public headers stay torch-free).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace persona {

struct ChatMessage {
    std::string role;  // "system", "user" or "assistant"
    std::string content;
};

// Which positions a steering vector touches (docs/method.md).
enum class SteerPositions {
    All,       // every position, prompt and response
    Prompt,    // only the prompt, during prefill
    Response,  // the last prompt token and every generated token (the paper's default)
};

enum class SteerOperation {
    Add,     // h + alpha * v
    Ablate,  // h - (h.u) u with u = v/|v|: removes the component along v
    Cap,     // h - max(0, h.u - alpha) u: the projection on u = v/|v| kept at most alpha
};

// Names in files and on the command line: "all", "prompt", "response"; "add", "ablate", "cap".
const char* steer_positions_name(SteerPositions positions);
std::optional<SteerPositions> steer_positions_from_name(const std::string& name);
std::vector<std::string> steer_positions_names();
const char* steer_operation_name(SteerOperation operation);
std::optional<SteerOperation> steer_operation_from_name(const std::string& name);
std::vector<std::string> steer_operation_names();

// One intervention on the residual stream, in docs/method.md's indexing: layer l means
// hidden_states[l], the output of block l-1 (layer 0 is the embedding output).
struct Steering {
    int layer = 0;
    std::vector<float> vector;  // hidden_size values
    float alpha = 0.0f;  // Add: the coefficient; Cap: the most the projection on v/|v| may be; Ablate: unused
    SteerPositions positions = SteerPositions::Response;
    SteerOperation operation = SteerOperation::Add;
    bool preserve_norm = false;  // rescale the steered activation back to its original norm
};

struct SamplingOptions {
    float temperature = 0.0f;  // <= 0: greedy
    float top_p = 1.0f;
    int top_k = 0;             // 0: no top-k cut
    std::uint64_t seed = 0;    // each row samples from its own generator: a row's tokens do not
                               // depend on which other rows share its batch
    int max_new_tokens = 64;
    bool stop_at_eos = true;
    std::vector<std::string> stop_strings;
    // >= 0: give each generated token's log-probability and this many most likely
    // alternatives with its TokenEvent (TokenEvent::logprobs), from the model's own distribution at that
    // step, before temperature and top-p, as OpenAI's logprobs are.
    int top_logprobs = -1;
};

// One row of a batch: a conversation (rendered with the model's chat template) or raw tokens.
struct GenerationRow {
    std::vector<ChatMessage> messages;
    std::vector<std::int32_t> prompt_tokens;  // used instead of messages when not empty
    bool add_generation_prompt = true;
    std::vector<Steering> steering;
    SamplingOptions sampling;
    // Interactive use (the Steering slider): when this row's steering leaves the prompt before
    // its last token alone (positions "response"), the keys and values of that prefix are kept
    // after the prefill, and a later one-row generation with the same prefix reuses them instead
    // of running it again. Its tokens may then differ from a fresh prefill's in the last bits.
    bool reuse_prompt_prefix = false;
};

struct TokenLogprob {
    std::int32_t token = 0;
    float logprob = 0.0f;  // natural log
};

// One generated token's log-probability and the step's most likely tokens, highest first.
struct StepLogprobs {
    TokenLogprob chosen;
    std::vector<TokenLogprob> top;
};

enum class StopReason { MaxTokens, EndOfSequence, StopString, Cancelled };
const char* stop_reason_name(StopReason reason);
std::optional<StopReason> stop_reason_from_name(const std::string& name);

struct GenerationResult {
    std::vector<std::int32_t> prompt_tokens;
    std::vector<std::int32_t> tokens;  // generated tokens, stop string and EOS excluded
    std::string text;
    StopReason stop_reason = StopReason::MaxTokens;
    std::size_t prompt_tokens_reused = 0;  // taken from the kept prefix (GenerationRow::reuse_prompt_prefix)
};

// Streamed once per generated token per row.
struct TokenEvent {
    int row = 0;
    int step = 0;
    std::int32_t token = 0;
    std::string text;  // complete UTF-8 text this token finishes (may be empty)
    // Projection of this token's residual stream on each probe layer's unit direction
    // (empty unless a probe was given).
    std::vector<float> projections;
    std::optional<StepLogprobs> logprobs;  // when sampling.top_logprobs >= 0 and the token is kept (not EOS)
};

// Directions to project onto while generating or capturing: one unit-normalised direction per
// listed layer (docs/method.md: monitoring).
struct ProjectionProbe {
    std::vector<int> layers;
    std::vector<std::vector<float>> directions;  // one per layer, hidden_size values
};

// A teacher-forced pass over prompt + answer: the activations persona vectors are made of.
struct CaptureRow {
    std::vector<std::int32_t> tokens;  // prompt followed by answer
    int prompt_length = 0;
};

struct CaptureOptions {
    ProjectionProbe probe;  // per-token projections, if layers are given
};

// Per row, per layer l = 0..L (hidden_states indexing), hidden_size values each.
struct CaptureResult {
    int layers = 0;  // L + 1
    int hidden_size = 0;
    std::vector<std::vector<float>> response_mean;  // [row][l * hidden + i]
    std::vector<std::vector<float>> prompt_mean;
    std::vector<std::vector<float>> prompt_last;
    std::vector<std::vector<float>> projections;    // [row][probe layer index * tokens + t]
};

}  // namespace persona
