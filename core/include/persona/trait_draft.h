#pragma once
// Drafting a trait's data with a language model (docs/method.md step 2: the paper had a frontier
// model write instruction pairs, questions and the rubric from the definition). One structured
// request per part; replies are parsed leniently (JSON, or numbered / bulleted lists), and what
// cannot be parsed is reported, never filled in. The result is a draft for a person to edit.
#include "persona/chat_endpoint.h"
#include "persona/generation.h"
#include "persona/progress.h"
#include "persona/trait.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace persona {

class Model;

// Writes a reply to a conversation, at most max_tokens long. Throws Cancelled when cancelled.
using TextGenerator =
    std::function<std::string(const std::vector<ChatMessage>& messages, int max_tokens, const CancelFn& cancelled)>;

// A loaded model writes the reply (call on the thread that owns the model). Temperature 0 is
// greedy; small models loop less when sampling.
TextGenerator model_text_generator(Model& model, float temperature = 0.7f, std::uint64_t seed = 1);
// An OpenAI-compatible endpoint writes it (chat completions, no logprobs), over one kept-open
// connection. Throws Error at once for a malformed URL or a missing model name.
TextGenerator endpoint_text_generator(const ChatEndpoint& endpoint, double temperature = 0.7);

struct TraitDraftSettings {
    std::size_t instruction_pairs = kRecommendedInstructionPairs;
    std::size_t questions = kRecommendedExtractionQuestions;  // extraction, and as many for evaluation
    int max_tokens = 0;  // per request; 0: enough for the amounts asked for
};

// Something a reply did not give: which part, what went wrong, and the start of the reply.
struct DraftNote {
    std::string part;  // "instructions", "extraction_questions", "evaluation_questions", "judge_rubric"
    std::string message;
    std::string reply;  // the generator's reply (up to 2000 characters), for the user to see
};

struct TraitDraft {
    // Always a draft: whatever parsed, nothing invented. The coherence rubric is the workbench's
    // own (default_coherence_rubric()), as for imported paper traits.
    Trait trait;
    std::vector<DraftNote> notes;
    std::vector<TraitProblem> problems;  // validate(trait)
    // Every reply in full, by part, so a person can see what the model wrote.
    std::map<std::string, std::string> replies;
};

// Progress stages in order: "instructions", "extraction_questions", "evaluation_questions",
// "judge_rubric" (done/total counts parts). Throws Cancelled, and whatever the generator throws
// (an unreachable endpoint is an Error naming its URL).
TraitDraft draft_trait(const std::string& name, const std::string& definition, const TextGenerator& generator,
                       const TraitDraftSettings& settings = {}, const ProgressFn& progress = {},
                       const CancelFn& cancelled = {});

// --- The lenient parsers, exposed for tests ------------------------------------------------------
// Each returns what it could read and sets `problem` (empty when the reply read cleanly).

// A JSON array of strings (or of objects with a "question"/"text" field, or an object holding
// such an array), possibly inside a code fence or cut off mid-array; else a numbered or bulleted
// list, one item per line.
std::vector<std::string> parse_text_list(const std::string& reply, std::string& problem);
// A JSON array of {"pos","neg"} (or "positive"/"negative") objects, possibly cut off; else lines
// "Positive: ..." / "Negative: ..." in turn.
std::vector<InstructionPair> parse_instruction_pairs(const std::string& reply, std::string& problem);
// The reply's text, or the string in {"rubric": ...} / {"eval_prompt": ...}; placeholders written
// as {{question}} or {Question} become {question} (and the same for answer).
std::string parse_rubric(const std::string& reply, std::string& problem);

}  // namespace persona
