#pragma once
// The extraction pipeline of METHOD.md for one trait: generate contrastive answers, judge them,
// keep the pairs that show the contrast, capture their activations and turn them into persona
// vectors with per-layer diagnostics. Plain data in and out, no torch types.
#include "persona/generation.h"
#include "persona/persona_vector.h"
#include "persona/progress.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace persona {

class Model;
class Tokenizer;
struct Trait;

enum class JudgeKind {
    Local,  // the loaded model judges its own answers, as METHOD.md step 4 describes
    None,   // no judge: every pair is kept and scores stay absent. For quick runs and tests;
            // the vector then contrasts the system prompts, not verified trait expression.
    // An OpenAI-compatible HTTP judge belongs here next; run_extraction reaches judges only
    // through judge_answer() in extraction.cpp.
};
const char* judge_kind_name(JudgeKind kind);  // "local", "none"
std::optional<JudgeKind> judge_kind_from_name(const std::string& name);

struct ExtractionSettings {
    int samples_per_question = 1;
    int max_new_tokens = 64;
    float temperature = 1.0f;
    float top_p = 1.0f;
    std::uint64_t seed = 0;
    int batch_size = 8;
    int question_limit = 0;  // 0: every extraction question
    int pair_limit = 0;      // 0: every instruction pair
    JudgeKind judge = JudgeKind::Local;
    double trait_threshold = 50;
    double coherence_threshold = 50;
    // Empty: no checkpoint. Otherwise finished samples are saved here after every batch, and a
    // run that finds a matching checkpoint continues from it.
    std::string checkpoint_path;
};

enum class Side { Positive, Negative };
const char* side_name(Side side);

struct Sample {
    int question_index = 0;
    std::string question;
    int pair = 0;          // instruction pair index
    Side side = Side::Positive;
    int sample_index = 0;  // 0 .. samples_per_question-1
    std::string answer;
    std::vector<std::int32_t> answer_tokens;
    bool judged = false;
    std::optional<double> trait_score;  // 0..100; absent without a judge or on refusal
    std::optional<double> coherence;
    bool trait_refusal = false;         // under 0.25 of the judge's probability mass was numeric
    bool coherence_refusal = false;
    // How much of the judge's next-token probability fell on numbers: why a refusal was one.
    double trait_numeric_mass = 0;
    double coherence_numeric_mass = 0;
    bool kept = false;                  // its pair passed the filter
};

// One aggregate's result: the vector, how well each layer separates the kept samples, and the
// layer to start steering with (suggest_layer).
struct AggregateResult {
    PersonaVector vector;
    std::vector<LayerDiagnostics> diagnostics;
    int suggested_layer = -1;
    // The kept samples (indices into ExtractionResult::samples, every positive first, then every
    // negative) and, for each, its activation's projection on the vector's unit direction at
    // every layer 0..L: the numbers diagnostics summarises, kept for a layer x sample heat map.
    std::vector<std::size_t> kept_samples;
    std::vector<std::vector<float>> sample_projections;  // [kept sample][layer]
};

struct ExtractionResult {
    std::string trait;
    std::vector<Sample> samples;  // every sample, kept or not
    std::size_t pairs_total = 0;
    std::size_t pairs_kept = 0;
    // Why pairs were dropped; a pair may count under several reasons.
    std::size_t pairs_failing_positive_trait = 0;
    std::size_t pairs_failing_negative_trait = 0;
    std::size_t pairs_failing_coherence = 0;
    std::size_t pairs_with_empty_answer = 0;
    // One per Aggregate in declaration order (response_avg, prompt_avg, prompt_last); empty when
    // no pair was kept.
    std::vector<AggregateResult> aggregates;
    // What this run did itself rather than take from the checkpoint.
    std::size_t samples_generated = 0;
    std::size_t samples_judged = 0;
    std::size_t samples_resumed = 0;

    // Throws persona::Error when no pair was kept.
    const AggregateResult& aggregate(Aggregate which) const;
};

// Stages, in order: "generate", "judge" (skipped with JudgeKind::None), "filter" (counting
// pairs), "capture", "vectors" (counting aggregates); the last two only when a pair was kept.
using ExtractionProgressFn = std::function<void(const std::string& stage, std::size_t done, std::size_t total)>;

// Runs on the thread that owns the model. on_sample sees each sample when it is generated and
// again when it is judged. Throws Cancelled when cancelled, leaving the checkpoint (if any) with
// every finished batch; FileError for a checkpoint from another trait, model or settings;
// Error when the trait has no questions or instruction pairs. A run in which no pair passes the
// filter returns with pairs_kept == 0 and no aggregates.
ExtractionResult run_extraction(Model& model, const Trait& trait, const ExtractionSettings& settings,
                                const ExtractionProgressFn& progress = {},
                                const std::function<void(const Sample&)>& on_sample = {},
                                const CancelFn& cancelled = {});

// --- The local judge's scoring, exposed so it can be tested on synthetic distributions ---------

// How the integers 0..100 are spelt in a vocabulary: the tokens the judge would emit for each.
struct NumberSpelling {
    int value = 0;
    std::vector<std::int32_t> tokens;
};
std::vector<NumberSpelling> spell_judge_numbers(const Tokenizer& tokenizer);
// Every token whose text starts with a digit: after a number, one of these makes it longer.
std::vector<std::int32_t> digit_leading_tokens(const Tokenizer& tokenizer);

struct JudgeScore {
    std::optional<double> score;  // absent on refusal
    bool refusal = false;
    double numeric_mass = 0;      // probability that the answer starts with one of the numbers
    int forward_passes = 0;
};

// Probabilities of the next token after the judge prompt followed by each prefix of `path`:
// path.size() + 1 distributions over the vocabulary (one forward pass gives them all).
using NextTokenDistributions = std::function<std::vector<std::vector<float>>(const std::vector<std::int32_t>& path)>;

// The probability-weighted mean over the integers 0..100 (METHOD.md step 4), exact also when a
// number takes several tokens: P("42") = P("4") P("2" | "4") rather than P("4"), which would
// also count 4 and 40..49. A number that is a prefix of another ("1" of "10") gets only the mass
// of ending there: P("1") (1 - P(digit-led token | "1")). A number that is no other's prefix is
// assumed to end (a judge on a 0-100 scale rarely continues "42" into "420"). Prefixes holding
// under `prune_below` of the probability are not expanded; their mass counts as numeric for the
// refusal rule but not in the mean. Refusal: numeric mass < 0.25.
JudgeScore score_judge_distribution(const std::vector<NumberSpelling>& spellings,
                                    const std::vector<std::int32_t>& digit_leading,
                                    const NextTokenDistributions& distributions, double prune_below = 0.01);

constexpr double kRefusalNumericMass = 0.25;

}  // namespace persona
