#pragma once
// How far fine-tuning moved a model along a persona vector (docs/finetuning.md): the loaded model
// (a base model, or one with an adapter merged) answers the trait's evaluation questions with no
// system prompt, steered at inference or not; the answers are judged for the trait and for
// coherence and read back onto the vector; and a held-out set of neutral answers gives a
// perplexity, a proxy for general ability. Comparing the measures of a base model and of its
// fine-tunes gives the shift table of preventative steering. Plain data, no torch types.
#include "persona/finetune.h"
#include "persona/judge.h"
#include "persona/persona_vector.h"
#include "persona/progress.h"
#include "persona/sweep.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace persona {

class Model;
struct Trait;

struct ShiftSettings {
    int layer = -1;                          // hidden_states index of the vector and the steering
    std::vector<double> coefficients{0.0};   // inference steering alphas to measure (0: unsteered)
    int question_limit = 0;                  // 0: every evaluation question
    int samples_per_question = 1;
    int max_new_tokens = 48;
    float temperature = 1.0f;
    std::uint64_t seed = 0;
    int batch_size = 16;
    JudgeSettings judge;
    int max_length = 2048;                   // of a held-out conversation
};

struct ShiftMeasure {
    double coefficient = 0;
    std::optional<double> trait_score;   // mean judge score, 0..100
    std::optional<double> coherence;
    int answers = 0;
    int trait_scored = 0;
    // Mean over the answers of their response-average projection on the unit vector at the layer,
    // read back by this model unsteered: how much trait the text carries for it.
    std::optional<double> projection;
    // Mean loss per assistant token of the held-out answers, with the steering at every position;
    // perplexity = exp(loss). Absent without held-out data.
    std::optional<double> heldout_loss;
    std::optional<double> perplexity;
    std::vector<std::string> example_answers;  // the first few, to read
};

// As `persona-cli shift` prints it and the Training tab saves it (absent values are null).
nlohmann::json to_json(const ShiftMeasure& measure);

// One measure per settings.coefficients entry. Error for a layer outside the model, a vector that
// does not fit it, or a trait without evaluation questions.
std::vector<ShiftMeasure> measure_shift(Model& model, const Trait& trait, const PersonaVector& vector,
                                        const std::vector<TrainingExample>& heldout, const ShiftSettings& settings,
                                        const ProgressFn& progress = {}, const CancelFn& cancelled = {});

// The positive answers of an extraction run that show the trait (judged at or above the run's
// trait and coherence thresholds when it was judged; every non-empty one with --judge none), as
// conversations of the question and the answer without the system prompt that asked for the
// trait: data that teaches a model the trait, for demonstrating preventative steering.
struct ExtractionResult;
struct ExtractionSettings;
std::vector<TrainingExample> trait_inducing_examples(const ExtractionResult& run, const ExtractionSettings& settings);

}  // namespace persona
