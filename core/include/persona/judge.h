#pragma once
// Judges (docs/method.md step 4): score an answer 0..100 against a rubric with {question} and
// {answer}. Extraction, sweeps and anything else that judges reach them only through Judge, so
// a new kind of judge is one more class behind make_judge(). Plain data, no torch types.
#include "persona/chat_endpoint.h"
#include "persona/progress.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace persona {

class Model;
class Tokenizer;

enum class JudgeKind {
    Local,  // a local model: the one being studied, or a second one (JudgeSettings::model_path)
    None,   // no judge: every pair is kept and scores stay absent. For quick runs and tests;
            // a vector then contrasts the system prompts, not verified trait expression.
    Http,   // an OpenAI-compatible chat completions endpoint that returns logprobs
};
const char* judge_kind_name(JudgeKind kind);  // "local", "none", "http"
std::optional<JudgeKind> judge_kind_from_name(const std::string& name);
std::vector<std::string> judge_kind_names();

// How an extraction asks the judge whether a pair shows the trait.
enum class JudgeMode {
    Absolute,  // the reference method: each answer scored 0-100 on the trait's rubric
    Pairwise,  // our extension for small judges: the two answers of a pair shown together, the
               // judge names the one that shows the trait more, in both orders (docs/method.md)
};
const char* judge_mode_name(JudgeMode mode);  // "absolute", "pairwise"
std::optional<JudgeMode> judge_mode_from_name(const std::string& name);
std::vector<std::string> judge_mode_names();

struct JudgeSettings {
    // Implicit on purpose: `settings.judge = JudgeKind::None` reads as what it means.
    JudgeSettings(JudgeKind kind_ = JudgeKind::Local) : kind(kind_) {}
    JudgeKind kind = JudgeKind::Local;
    // Local: empty judges with the model being studied; a path loads a second model to judge.
    std::string model_path;
    // Http: where to ask. The API key stays in its environment variable (endpoint.api_key_env).
    ChatEndpoint endpoint;
    // Local: each score runs its prompt only from where it differs from the last one under the
    // same rubric (Model::prefill's reuse). false: every prompt in full, for benchmarks.
    bool reuse_prompt_prefix = true;
};

// Names the judge in checkpoints and vector provenance: scores from one judge are never reused
// under another. "local" (the studied model), "local:FILE", "none", "http:BASE#MODEL".
std::string judge_label(const JudgeSettings& settings);

struct JudgeScore {
    std::optional<double> score;  // absent on refusal
    bool refusal = false;
    double numeric_mass = 0;      // probability that the answer starts with one of the numbers
    int forward_passes = 0;
    std::size_t reused_prompt_tokens = 0;  // a local judge's prompt tokens taken from its last prompt's cache
};

// A judge's pick between answer A and answer B.
struct JudgePick {
    std::optional<double> a_wins;  // P(A) / (P(A) + P(B)); absent on refusal
    bool refusal = false;
    double letter_mass = 0;        // probability that the reply starts with A or B
};

class Judge {
public:
    virtual ~Judge() = default;
    // Scores `answer` to `question` under `rubric` (a trait or coherence rubric). Throws
    // Cancelled when `cancelled` turns true, persona::Error when the judge cannot answer.
    virtual JudgeScore score(const std::string& rubric, const std::string& question, const std::string& answer,
                             const CancelFn& cancelled) = 0;
    // Asks `prompt` (a question whose reply is the letter A or B) and reads the first token.
    virtual JudgePick pick(const std::string& prompt, const CancelFn& cancelled) = 0;
};

// The pairwise question: the trait's name and definition, the question, both answers, "which
// shows the trait more? Reply A or B".
std::string pairwise_judge_prompt(const std::string& trait, const std::string& definition, const std::string& question,
                                  const std::string& answer_a, const std::string& answer_b);

// How likely `positive` shows the trait more than `negative`, asked in both orders so the
// judge's preference for a position cancels: the mean of P(positive | shown first) and
// P(positive | shown second). A refusal when either order is one. Two pick() calls.
JudgePick judge_pair(Judge& judge, const std::string& trait, const std::string& definition,
                       const std::string& question, const std::string& positive, const std::string& negative,
                       const CancelFn& cancelled = {});

// The judge that `settings` asks for, running on the calling (engine) thread beside `studied`;
// nullptr for JudgeKind::None. A second local model is loaded here (progress reported).
std::unique_ptr<Judge> make_judge(Model& studied, const JudgeSettings& settings, const ProgressFn& progress = {},
                                  const CancelFn& cancelled = {});

// The HTTP judge on its own, for callers with no model at hand. Throws Error when the endpoint
// lacks a URL or a model name; nothing is sent until the first score().
std::unique_ptr<Judge> make_http_judge(const ChatEndpoint& endpoint);

// --- A local judge's scoring, exposed so it can be tested on synthetic distributions ---------

// How the integers 0..100 are spelt in a vocabulary: the tokens the judge would emit for each.
struct NumberSpelling {
    int value = 0;
    std::vector<std::int32_t> tokens;
};
std::vector<NumberSpelling> spell_judge_numbers(const Tokenizer& tokenizer);
// Every token whose text starts with a digit: after a number, one of these makes it longer.
std::vector<std::int32_t> digit_leading_tokens(const Tokenizer& tokenizer);

// Probabilities of the next token after the judge prompt followed by each prefix of `path`:
// path.size() + 1 distributions over the vocabulary (one forward pass gives them all).
using NextTokenDistributions = std::function<std::vector<std::vector<float>>(const std::vector<std::int32_t>& path)>;

// The probability-weighted mean over the integers 0..100 (docs/method.md step 4), exact also when a
// number takes several tokens: P("42") = P("4") P("2" | "4") rather than P("4"), which would
// also count 4 and 40..49. A number that is a prefix of another ("1" of "10") gets only the mass
// of ending there: P("1") (1 - P(digit-led token | "1")). A number that is no other's prefix is
// assumed to end (a judge on a 0-100 scale rarely continues "42" into "420"). Prefixes holding
// under `prune_below` of the probability are not expanded; their mass counts as numeric for the
// refusal rule but not in the mean. Refusal: numeric mass < 0.25.
//
// With `batch`, the prefixes the first distribution shows are worth expanding run as one batched
// pass (a local judge's rows share the prompt's keys and values) instead of one pass each.
constexpr double kJudgePruneBelow = 0.01;
using NextTokenDistributionsBatch =
    std::function<std::vector<std::vector<std::vector<float>>>(const std::vector<std::vector<std::int32_t>>& paths)>;
JudgeScore score_judge_distribution(const std::vector<NumberSpelling>& spellings,
                                    const std::vector<std::int32_t>& digit_leading,
                                    const NextTokenDistributions& distributions, double prune_below = kJudgePruneBelow,
                                    const NextTokenDistributionsBatch& batch = {});

constexpr double kRefusalNumericMass = 0.25;

// The tokens a reply "A" or "B" may start with in a vocabulary ("A", " A"; likewise B).
struct PickTokens {
    std::vector<std::int32_t> a, b;
};
PickTokens pick_tokens(const Tokenizer& tokenizer);
// The pick read from one next-token distribution; a refusal when A and B together hold under
// kRefusalNumericMass.
JudgePick pick_from_distribution(const std::vector<float>& probabilities, const PickTokens& tokens);

// --- An HTTP judge's scoring --------------------------------------------------------------------

// The judge's request for one answer: the rendered rubric as the user message, one token,
// temperature 0, the top 20 logprobs of that token.
ChatCompletionRequest http_judge_request(const std::string& rubric, const std::string& question,
                                         const std::string& answer);

// docs/method.md step 4 on the alternatives an endpoint lists for the first token: the probability-
// weighted mean over those that are integers 0..100 (surrounding whitespace allowed, " 42" is
// 42; the same number under several spellings counts each), a refusal when their total
// probability is under kRefusalNumericMass. forward_passes stays 0. Throws Error when the
// alternatives are kDigitSplitEvidence or more single digits and no larger number: the endpoint's
// tokenizer splits numbers into digits and the first token cannot give a 0-100 score.
constexpr std::size_t kDigitSplitEvidence = 3;
JudgeScore score_top_logprobs(const std::vector<TopLogprob>& alternatives);
// The same for a pick: alternatives spelling "A" or "B" (whitespace around allowed).
JudgePick pick_from_top_logprobs(const std::vector<TopLogprob>& alternatives);

}  // namespace persona
