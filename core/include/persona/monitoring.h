#pragma once
// Monitoring (docs/method.md): where a persona vector lights up in a conversation, token by token and
// layer by layer, and the projection of the last prompt token as a predictor of how strongly
// the answer will show the trait.
//
// Every projection here is onto the unit direction of the vector's own layer, h . v_l/|v_l|
// (persona::project, and what the Steering panel's ProjectionProbe computes), so numbers are
// in the residual stream's units and comparable between tokens; a layer whose vector is zero
// projects to 0.
#include "persona/generation.h"
#include "persona/persona_vector.h"
#include "persona/progress.h"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace persona {

class Model;

// One conversation to monitor. A trailing assistant message is the answer; without one the
// answer is generated when `generate_answer` is set, else only the prompt is read.
struct MonitorInput {
    std::vector<ChatMessage> messages;
    bool generate_answer = false;
    SamplingOptions sampling;  // for a generated answer
};

struct MonitorOptions {
    std::vector<int> layers;  // hidden_states indices to project at; empty: every layer 0..L
    int batch_size = 8;       // conversations per generation / capture batch
    // While answers are generated: each token as it comes, with the index of its input and its
    // projections at `layers` (ascending), for a live display. Called on the calling thread.
    std::function<void(std::size_t input, const TokenEvent& token)> on_token;
};

struct MonitorResult {
    std::vector<std::int32_t> tokens;  // prompt (chat template, generation prompt) then answer
    int prompt_length = 0;             // tokens before the answer
    std::string answer;                // the answer's text (given or generated); empty without one
    bool answer_generated = false;
    std::vector<int> layers;  // as requested (or 0..L), ascending, each once
    // [layer index][token]: projection of hidden_states[layers[i]] at each token.
    std::vector<std::vector<float>> projections;
    // Per layer index: the projection at the last prompt token (tokens[prompt_length - 1]),
    // i.e. before any of the answer is read: docs/method.md's predictor of the trait.
    std::vector<double> prompt_last;
    // Per layer index: projection of the mean activation over the answer's tokens (equal to the
    // mean of the answer's per-token projections); absent when there is no answer.
    std::optional<std::vector<double>> response_average;

    // The value of prompt_last / projections at a layer that was requested; throws
    // persona::Error for one that was not.
    std::size_t layer_index(int layer) const;
};

// Splits a conversation into the prompt (every message before a trailing assistant message)
// and that answer's text; no answer when the last message is not the assistant's.
struct PromptAndAnswer {
    std::vector<ChatMessage> prompt;
    std::optional<std::string> answer;
};
PromptAndAnswer split_answer(const std::vector<ChatMessage>& messages);

// The tokens of `answer` as they follow encode_chat(prompt, true) in the model's chat format:
// the template renders prompt + answer, the prompt's tokens come off the front and the turn's
// closing tokens (end of turn / EOS) off the back, so they are the tokens the model would have
// generated. When the template's tokens do not start with the prompt's (a merge across the
// boundary, e.g. an answer that opens with newlines), the answer is tokenized on its own.
std::vector<std::int32_t> answer_tokens(const Model& model, const std::vector<ChatMessage>& prompt,
                                        const std::string& answer);

// Reads each conversation (generating answers first where asked), batched: one generation
// batch and one teacher-forced capture (Model::capture with a probe) per `batch_size`
// conversations; only the listed layers' per-token projections are kept, never the hidden
// states themselves. Progress stages: "generate", "capture". Throws persona::Cancelled when
// cancelled, persona::Error for a vector of the wrong shape, a layer outside 0..L, an empty
// conversation or one longer than the model's context.
std::vector<MonitorResult> monitor(Model& model, const PersonaVector& vector, const std::vector<MonitorInput>& inputs,
                                   const MonitorOptions& options = {}, const ProgressFn& progress = {},
                                   const CancelFn& cancelled = {});

}  // namespace persona
