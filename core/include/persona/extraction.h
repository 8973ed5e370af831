#pragma once
// The extraction pipeline of docs/method.md for one trait: generate contrastive answers, judge them,
// keep the pairs that show the contrast, capture their activations and turn them into persona
// vectors with per-layer diagnostics. Plain data in and out, no torch types.
#include "persona/generation.h"
#include "persona/judge.h"
#include "persona/model_facts.h"
#include "persona/persona_vector.h"
#include "persona/progress.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace persona {

class Model;
class Tokenizer;
struct Trait;

struct ExtractionSettings {
    int samples_per_question = 1;
    int max_new_tokens = 64;
    float temperature = 1.0f;
    float top_p = 1.0f;
    std::uint64_t seed = 0;
    int batch_size = 8;
    int question_limit = 0;  // 0: every extraction question
    int pair_limit = 0;      // 0: every instruction pair
    JudgeSettings judge;  // the loaded model by default
    // Pairwise: each answer's trait_score is 100 x the probability that it shows the trait more
    // than the other answer of its pair (the two add up to 100), and a pair stays when the
    // positive's is at least pairwise_threshold; coherence is scored 0-100 on its rubric in both
    // modes. 50 would keep half the pairs of a judge that guesses: the default asks for 70.
    JudgeMode judge_mode = JudgeMode::Absolute;
    double pairwise_threshold = 70;
    double trait_threshold = 50;
    // Absolute mode: a pair's negative answer must score under this. Absent: 100 - trait_threshold,
    // the reference method's rule (the same as trait_threshold only at 50).
    std::optional<double> negative_threshold;
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
    std::optional<double> trait_score;  // 0..100 (see ExtractionSettings::judge_mode); absent without a judge or on refusal
    std::optional<double> coherence;
    // Coherence decides nothing for an answer whose pair already failed on the trait (and that is
    // not a positive showing the trait, which the trait-inducing training set may take), so the
    // judge does not score it: see needs_coherence.
    bool coherence_skipped = false;
    bool trait_refusal = false;         // under 0.25 of the judge's probability mass was numeric (A or B)
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

// How many (question, instruction pair, sample) pairs an extraction tried and kept, and why it
// dropped the others; a pair may count under several reasons.
struct PairCounts {
    std::size_t total = 0;
    std::size_t kept = 0;
    std::size_t failing_positive_trait = 0;
    std::size_t failing_negative_trait = 0;
    std::size_t failing_coherence = 0;
    std::size_t with_empty_answer = 0;
    bool operator==(const PairCounts& other) const;
};

// Calls visit(name, count) for each count under the name files use ("pairs_total",
// "pairs_kept", ...): the CLI's summary, project.json and the import of a summary all spell the
// counts through this one list.
template <typename Counts, typename Visit>
void visit_pair_counts(Counts& counts, Visit&& visit) {
    visit("pairs_total", counts.total);
    visit("pairs_kept", counts.kept);
    visit("pairs_failing_positive_trait", counts.failing_positive_trait);
    visit("pairs_failing_negative_trait", counts.failing_negative_trait);
    visit("pairs_failing_coherence", counts.failing_coherence);
    visit("pairs_with_empty_answer", counts.with_empty_answer);
}

// Under this many kept pairs the layer diagnostics rest on too few samples to pick a layer (one
// pair separates perfectly at every layer): the run warns and suggests none.
constexpr std::size_t kMinKeptPairsToSuggestLayer = 3;

// The negative side's threshold in effect: negative_threshold, or 100 - trait_threshold.
double effective_negative_threshold(const ExtractionSettings& settings);
// The filter's trait tests (docs/method.md step 4): a positive answer shows the trait (absolute:
// scores at least trait_threshold; pairwise: wins with at least pairwise_threshold), a negative
// one lacks it (absolute: scores under the negative threshold; pairwise: decided by the positive).
bool shows_trait(const Sample& positive, const ExtractionSettings& settings);
bool lacks_trait(const Sample& negative, const ExtractionSettings& settings);
// Whether the sample's coherence can change the run's outcome: the positive's when it shows the
// trait, the negative's when its pair passes both trait tests.
bool needs_coherence(const Sample& sample, const Sample& positive, const Sample& negative,
                     const ExtractionSettings& settings);

struct ExtractionResult {
    std::string trait;
    std::vector<Sample> samples;  // every sample, kept or not
    PairCounts pairs;
    // One per Aggregate in declaration order (response_avg, prompt_avg, prompt_last); empty when
    // no pair was kept.
    std::vector<AggregateResult> aggregates;
    // What this run did itself rather than take from the checkpoint.
    std::size_t samples_generated = 0;
    std::size_t samples_judged = 0;
    std::size_t samples_resumed = 0;
    // Wall seconds of each stage this run went through, by the progress stage names below, and
    // "judge_load" for loading a second judge model (not counted in "judge").
    std::map<std::string, double> stage_seconds;
    // What a reader of the result must know before trusting it (too few kept pairs, ...).
    std::vector<std::string> warnings;

    // Throws persona::Error when no pair was kept.
    const AggregateResult& aggregate(Aggregate which) const;
};

// Stages, in order: "generate", "judge" (skipped without a judge), "filter" (counting
// pairs), "capture", "vectors" (counting aggregates); the last two only when a pair was kept.
using ExtractionProgressFn = std::function<void(const std::string& stage, std::size_t done, std::size_t total)>;

// Names the judge and its mode in checkpoints and provenance: judge_label, plus " pairwise".
std::string judging_label(const ExtractionSettings& settings);
// The inverse, for summaries and vectors read back: sets settings.judge (its kind, the local
// judge's file name or the HTTP endpoint's URL and model) and settings.judge_mode. False, and
// settings untouched, for a label judging_label never writes.
bool apply_judging_label(const std::string& label, ExtractionSettings& settings);

// Runs on the thread that owns the model. on_sample sees each sample when it is generated (or,
// first thing, when it was read from the checkpoint) and again when it is judged. Throws
// Cancelled when cancelled, leaving the checkpoint (if any) with
// every finished batch; FileError for a checkpoint from another trait, model or settings;
// Error when the trait has no questions or instruction pairs. A run in which no pair passes the
// filter returns with pairs.kept == 0 and no aggregates.
ExtractionResult run_extraction(Model& model, const Trait& trait, const ExtractionSettings& settings,
                                const ExtractionProgressFn& progress = {},
                                const std::function<void(const Sample&)>& on_sample = {},
                                const CancelFn& cancelled = {});

// The checkpoint file in `directory` for this trait, model and generation settings: everything
// run_extraction requires of a checkpoint it resumes (the trait's content, the model's
// fingerprint, dtype and device, samples, max tokens, temperature, top-p and seed) goes into
// the name, so changing any of them never meets a checkpoint it cannot use. Limits, batch size
// and judge may change between runs of one checkpoint.
std::string extraction_checkpoint_file(const std::string& directory, const Trait& trait,
                                       const ExtractionSettings& settings, const ModelFacts& model);

}  // namespace persona
