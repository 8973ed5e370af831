#pragma once
// A steering sweep (docs/method.md: steering, evaluation): for one trait and one persona vector,
// generate answers to the trait's held-out evaluation questions steered at each chosen layer with
// each coefficient, judge trait expression and coherence, measure how far the answers move along
// the vector, and recommend where and how hard to steer. Plain data in and out, no torch types.
#include "persona/generation.h"
#include "persona/judge.h"
#include "persona/persona_vector.h"
#include "persona/progress.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace persona {

class Model;
struct Trait;

struct SweepSettings {
    std::vector<int> layers;           // hidden_states indexing, 1..L (default_sweep_layers)
    // Raw alphas (the steering coefficient), or calibrated strengths when calibrated_coefficients
    // is set (see SweepCalibration). 0 is added when missing: every cell is compared with the
    // unsteered baseline, and the calibration is measured on it.
    std::vector<double> coefficients{-4, 0, 2, 4, 8};
    bool calibrated_coefficients = false;
    int question_limit = 0;            // 0: every evaluation question
    int samples_per_question = 1;
    int max_new_tokens = 64;
    float temperature = 1.0f;          // the paper evaluates with sampling at temperature 1
    float top_p = 1.0f;
    std::uint64_t seed = 0;
    int batch_size = 16;               // rows per Model::generate call; rows of several cells share one
    SteerPositions positions = SteerPositions::Response;
    JudgeSettings judge;               // the loaded model by default; JudgeKind::None for projections only
    double coherence_threshold = 50;
    // A cell's judge means are trusted for the recommendation only when at least this fraction
    // of its answers got a number (not a refusal) for both trait and coherence.
    double min_scored_fraction = 0.5;
    // Also answer the questions unsteered under the trait's first positive system prompt and
    // judge them: does steering beat simply asking for the trait?
    bool prompting_baseline = true;
    // Empty: none. Otherwise every finished batch (answers, projections, scores) is saved here,
    // and a sweep started with the same model, vector, trait and settings continues from it,
    // giving the cells an uninterrupted run gives. Removed when the sweep finishes.
    std::string checkpoint_path;
};

// Steering strength in units that mean the same across layers and models:
//   calibrated = coefficient * |v_l| / mean |h_l|
// where mean |h_l| is the mean norm of the unsteered residual stream at layer l at the last token
// of each evaluation prompt (the position "response" steering starts at; mean_residual_norms()
// explains why that token). Calibrated 1 adds a vector as long as a typical activation.
struct SweepCalibration {
    int layer_count = 0;                      // L + 1
    std::vector<double> vector_norms;         // |v_l| for l = 0..L
    std::vector<double> mean_residual_norms;  // mean |h_l| for l = 0..L
    // Throw persona::Error for a layer outside 0..L or a zero norm at that layer.
    double calibrated(int layer, double coefficient) const;
    double coefficient(int layer, double calibrated) const;  // the inverse
};

// Measures the calibration for `vector` from the unsteered activations of `prompts` (each a
// conversation rendered with the generation prompt). Throws persona::Error when the vector does
// not fit the model or prompts is empty.
SweepCalibration measure_calibration(Model& model, const PersonaVector& vector,
                                     const std::vector<std::vector<ChatMessage>>& prompts,
                                     const CancelFn& cancelled = {});

// mean |h_l| (l = 0..L) at the last token of each prompt, rendered with the generation prompt:
// the denominator of the calibrated strength.
std::vector<double> prompt_end_residual_norms(Model& model, const std::vector<std::vector<ChatMessage>>& prompts,
                                              const CancelFn& cancelled = {});

// prompt_end_residual_norms over a fixed set of everyday questions: what "one typical
// activation" is for this model, independent of any one prompt, so a strength on the Steering
// slider means the same alpha whatever the user types. The engine measures it at load
// (ModelFacts::typical_residual_norms).
std::vector<double> typical_residual_norms(Model& model, const CancelFn& cancelled = {});
// The same, remembered per model content, dtype and device in typical_residual_norms_cache_path(),
// so loading a model again skips the measurement (the 1.5B judge model then loads in 1.15 s, not 2.3-2.5).
std::vector<double> remembered_typical_residual_norms(Model& model, const CancelFn& cancelled = {});
// $XDG_CACHE_HOME/persona-workbench/typical-residual-norms.json, else ~/.cache/...
std::string typical_residual_norms_cache_path();

struct SweepAnswer {
    int question_index = 0;
    int sample_index = 0;
    std::string text;
    std::vector<std::int32_t> tokens;
    StopReason stop_reason = StopReason::MaxTokens;
    std::optional<double> trait_score;  // absent without a judge or on refusal
    std::optional<double> coherence;
    bool trait_refusal = false;
    bool coherence_refusal = false;
    // Mean projection on the unit vector at the cell's layer, over the positions the answer was
    // generated from (the last prompt token and each generated token but the last), read while
    // generating: steering included, so it rises by coefficient * |v_l| by construction, plus
    // whatever the model does with the push.
    double steered_projection = 0;
    // The answer read back by the unsteered model (prompt + answer teacher-forced): the mean
    // over the answer's tokens of their projection at the cell's layer (response_avg, the
    // paper's monitoring measure). It says how much the text itself carries the trait. Absent
    // for an empty answer.
    std::optional<double> readback_projection;
};

struct SweepCell {
    int layer = 0;
    double coefficient = 0;          // raw alpha
    double calibrated_strength = 0;  // coefficient * |v_l| / mean |h_l|
    bool baseline = false;           // coefficient 0: the one unsteered generation, shared by every layer
    std::vector<SweepAnswer> answers;  // questions x samples, in question order
    std::optional<double> mean_trait;  // over answers the judge scored
    std::optional<double> mean_coherence;
    int trait_scored = 0;
    int trait_refusals = 0;
    int coherence_scored = 0;
    int coherence_refusals = 0;
    int empty_answers = 0;
    double steered_projection = 0;     // mean over answers
    std::optional<double> readback_projection;  // mean over non-empty answers
    // readback_projection minus the baseline's at the same layer, raw and divided by the layer's
    // mean residual norm (comparable across layers); absent when either side is.
    std::optional<double> readback_rise;
    std::optional<double> readback_rise_calibrated;
};

enum class RecommendationBasis {
    Scores,      // the judge's trait and coherence means
    Projection,  // no usable judge scores: the read-back projection, coherence unchecked
    None,        // nothing to recommend
};
const char* recommendation_basis_name(RecommendationBasis basis);  // "scores", "projection", "none"

struct SweepRecommendation {
    RecommendationBasis basis = RecommendationBasis::None;
    int layer = 0;
    double coefficient = 0;
    double calibrated_strength = 0;
    std::string reason;  // one or two sentences a user can read
};

// The rule (a pure function of the cells):
//  1. Scores: among steered cells (coefficient != 0) whose judge scored at least
//     min_scored_fraction of the answers for trait and for coherence, keep those with
//     mean coherence >= coherence_threshold and pick the highest mean trait score; ties go to
//     the smaller |calibrated strength| (the gentler push), then the lower layer. When the
//     winner does not beat the baseline's trait score at its layer the reason says so.
//  2. When no cell has usable scores (no judge, or the judge refused), no recommendation can be
//     made from scores; the fallback picks the steered cell with the largest calibrated read-back
//     rise, labelled Projection: it measures trait content, not coherence, so check its answers.
//     A rise that is not positive recommends nothing.
//  3. When cells have usable scores but none stays coherent enough, basis None: steering at
//     these layers and coefficients breaks the model before it expresses the trait.
SweepRecommendation recommend_steering(const std::vector<SweepCell>& cells, double coherence_threshold,
                                       double min_scored_fraction = 0.5);

struct SweepResult {
    std::string trait;
    std::string judge;                // judge_label()
    std::vector<int> layers;
    // As asked for (sorted, 0 included): raw alphas, or calibrated strengths when
    // calibrated_coefficients; each cell carries both.
    std::vector<double> coefficients;
    bool calibrated_coefficients = false;
    SweepCalibration calibration;
    std::vector<SweepCell> cells;     // one per layer and coefficient, by layer then coefficient
    SweepRecommendation recommendation;
    // With SweepSettings::prompting_baseline: the questions answered unsteered under
    // `prompting_system_prompt`, judged (layer 0, coefficient 0; its projections are read at the
    // first swept layer). The recommendation never picks it: it is the bar steering has to clear.
    std::optional<SweepCell> prompting_baseline;
    std::string prompting_system_prompt;
    std::size_t rows_generated = 0;   // the baseline counted once
    std::size_t rows_resumed = 0;     // of those, taken from the checkpoint
    double seconds = 0;
};

// The seed of a question's sample: the same in every cell, so cells differ only by steering and
// coefficient 0 reproduces an unsteered generation with this seed.
std::uint64_t sweep_sample_seed(std::uint64_t seed, int question_index, int sample_index);

// The conversation an evaluation question is asked in: the question alone, no system prompt
// (docs/method.md: evaluation).
std::vector<ChatMessage> sweep_messages(const std::string& question);

// The vector's suggested layer (provenance "suggested_layer", written by extraction) and its
// neighbours at +-spread, kept within 1..L; without one, the layers at a third, half and two
// thirds of the depth. `from_provenance`, when given, says which happened.
std::vector<int> default_sweep_layers(const PersonaVector& vector, int spread = 4, bool* from_provenance = nullptr);

// Runs the sweep on the thread that owns the model (with a checkpoint, see SweepSettings).
// Progress stages: "generate" (rows),
// "judge" (answers, only with a judge), "cells" (finished cells, reaching layers x coefficients).
// on_cell sees each cell as soon as its answers are generated and judged (baseline cells first).
// Throws Cancelled when cancelled (the checkpoint keeps every finished batch); Error when the
// vector does not fit the model, is zero at a chosen layer, a layer is outside 1..L, there are
// no coefficients or evaluation questions; FileError for a checkpoint of another sweep.
SweepResult run_sweep(Model& model, const Trait& trait, const PersonaVector& vector, const SweepSettings& settings,
                      const ProgressFn& progress = {}, const std::function<void(const SweepCell&)>& on_cell = {},
                      const CancelFn& cancelled = {});

// The result as JSON: what `persona-cli sweep` prints (it adds its settings and the model's and
// vector's paths) and a project keeps under sweeps/. Answers: the first `examples` of each cell
// (-1: all), each with its question's text when `trait` is given. The reader takes that JSON
// back (answers without their token ids) and throws FileError naming `source` and the field.
nlohmann::json sweep_result_json(const SweepResult& result, const Trait* trait = nullptr, int examples = -1);
SweepResult sweep_result_from_json(const nlohmann::json& json, const std::string& source);
void write_sweep_result(const std::string& path, const SweepResult& result, const Trait* trait = nullptr);
SweepResult read_sweep_result(const std::string& path);

}  // namespace persona
