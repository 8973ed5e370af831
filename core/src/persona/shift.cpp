#include "persona/shift.h"

#include "persona/errors.h"
#include "persona/extraction.h"
#include "persona/model.h"
#include "persona/trait.h"

#include <algorithm>
#include <cctype>
#include <cmath>

namespace persona {

namespace {

constexpr std::size_t kExampleAnswers = 3;

bool is_blank(const std::string& text) {
    return std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isspace(c) != 0; });
}

nlohmann::json optional_json(const std::optional<double>& value) { return value ? nlohmann::json(*value) : nlohmann::json(); }

}  // namespace

nlohmann::json to_json(const ShiftMeasure& m) {
    return {{"coefficient", m.coefficient},           {"trait_score", optional_json(m.trait_score)},
            {"coherence", optional_json(m.coherence)}, {"answers", m.answers},
            {"trait_scored", m.trait_scored},          {"projection", optional_json(m.projection)},
            {"heldout_loss", optional_json(m.heldout_loss)}, {"perplexity", optional_json(m.perplexity)},
            {"example_answers", m.example_answers}};
}

std::vector<ShiftMeasure> measure_shift(Model& model, const Trait& trait, const PersonaVector& vector,
                                        const std::vector<TrainingExample>& heldout, const ShiftSettings& settings,
                                        const ProgressFn& progress, const CancelFn& cancelled) {
    if (settings.layer < 0 || settings.layer > model.layer_count())
        throw Error("layer " + std::to_string(settings.layer) + " is outside 0.." + std::to_string(model.layer_count()));
    // The sweep answers the evaluation questions with no system prompt, judges them and reads each
    // answer back onto the vector: one layer, the asked coefficients, no prompting baseline.
    SweepSettings sweep;
    sweep.layers = {settings.layer};
    sweep.coefficients = settings.coefficients;
    sweep.question_limit = settings.question_limit;
    sweep.samples_per_question = settings.samples_per_question;
    sweep.max_new_tokens = settings.max_new_tokens;
    sweep.temperature = settings.temperature;
    sweep.seed = settings.seed;
    sweep.batch_size = settings.batch_size;
    sweep.judge = settings.judge;
    sweep.prompting_baseline = false;
    const SweepResult result = run_sweep(model, trait, vector, sweep, progress, {}, cancelled);

    std::vector<ShiftMeasure> measures;
    for (const double coefficient : settings.coefficients) {
        const auto cell = std::find_if(result.cells.begin(), result.cells.end(),
                                       [&](const SweepCell& c) { return c.coefficient == coefficient; });
        if (cell == result.cells.end()) throw Error("the sweep has no cell for coefficient " + std::to_string(coefficient));
        ShiftMeasure measure;
        measure.coefficient = coefficient;
        measure.trait_score = cell->mean_trait;
        measure.coherence = cell->mean_coherence;
        measure.answers = static_cast<int>(cell->answers.size());
        measure.trait_scored = cell->trait_scored;
        measure.projection = cell->readback_projection;
        for (const auto& answer : cell->answers)
            if (measure.example_answers.size() < kExampleAnswers && !is_blank(answer.text))
                measure.example_answers.push_back(answer.text);
        if (!heldout.empty()) {
            std::vector<Steering> steering;
            if (coefficient != 0) {
                Steering s;
                s.layer = settings.layer;
                const LayerView direction = vector.layer(settings.layer);
                s.vector.assign(direction.begin(), direction.end());
                s.alpha = static_cast<float>(coefficient);
                s.positions = SteerPositions::All;
                steering.push_back(std::move(s));
            }
            measure.heldout_loss = model.assistant_token_loss(heldout, settings.max_length, steering, cancelled);
            measure.perplexity = std::exp(*measure.heldout_loss);
        }
        measures.push_back(std::move(measure));
    }
    return measures;
}

std::vector<TrainingExample> trait_inducing_examples(const ExtractionResult& run, const ExtractionSettings& settings) {
    const bool judged = settings.judge.kind != JudgeKind::None;
    std::vector<TrainingExample> examples;
    for (const Sample& sample : run.samples) {
        if (sample.side != Side::Positive || is_blank(sample.answer)) continue;
        if (judged && !(shows_trait(sample, settings) && sample.coherence && *sample.coherence >= settings.coherence_threshold))
            continue;
        examples.push_back({{{"user", sample.question}, {"assistant", sample.answer}}, 0});
    }
    return examples;
}

}  // namespace persona
