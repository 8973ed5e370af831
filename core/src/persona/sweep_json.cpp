// A sweep's result as JSON (what `persona-cli sweep` prints and a project keeps under sweeps/),
// and back.
#include "persona/sweep.h"

#include "io/atomic_file.h"
#include "io/json_file.h"
#include "io/json_reader.h"
#include "persona/errors.h"
#include "persona/sweep_checkpoint.h"
#include "persona/trait.h"

#include <cmath>

namespace persona {

namespace {

using detail::JsonObjectReader;

nlohmann::json optional_number(const std::optional<double>& value) {
    return value && std::isfinite(*value) ? nlohmann::json(*value) : nlohmann::json(nullptr);
}

nlohmann::json cell_json(const SweepCell& cell, const Trait* trait, int examples) {
    nlohmann::json shown = nlohmann::json::array();
    for (const SweepAnswer& answer : cell.answers) {
        if (examples >= 0 && int(shown.size()) >= examples) break;
        nlohmann::json entry = {{"question_index", answer.question_index}};
        if (trait && answer.question_index >= 0 && std::size_t(answer.question_index) < trait->evaluation_questions.size())
            entry["question"] = trait->evaluation_questions[std::size_t(answer.question_index)];
        entry.update({{"sample_index", answer.sample_index},
                      {"answer", answer.text},
                      {"stop_reason", stop_reason_name(answer.stop_reason)},
                      {"trait_score", optional_number(answer.trait_score)},
                      {"coherence", optional_number(answer.coherence)},
                      {"trait_refusal", answer.trait_refusal},
                      {"coherence_refusal", answer.coherence_refusal},
                      {"steered_projection", answer.steered_projection},
                      {"readback_projection", optional_number(answer.readback_projection)}});
        shown.push_back(std::move(entry));
    }
    return {{"layer", cell.layer},
            {"coefficient", cell.coefficient},
            {"calibrated_strength", cell.calibrated_strength},
            {"baseline", cell.baseline},
            {"answers", cell.answers.size()},
            {"mean_trait", optional_number(cell.mean_trait)},
            {"mean_coherence", optional_number(cell.mean_coherence)},
            {"trait_scored", cell.trait_scored},
            {"trait_refusals", cell.trait_refusals},
            {"coherence_scored", cell.coherence_scored},
            {"coherence_refusals", cell.coherence_refusals},
            {"empty_answers", cell.empty_answers},
            {"steered_projection", cell.steered_projection},
            {"readback_projection", optional_number(cell.readback_projection)},
            {"readback_rise", optional_number(cell.readback_rise)},
            {"readback_rise_calibrated", optional_number(cell.readback_rise_calibrated)},
            {"examples", shown}};
}

}  // namespace

namespace detail {

StopReason read_stop_reason(JsonObjectReader& reader, const std::string& key) {
    const std::string name = reader.string(key);
    if (const auto reason = stop_reason_from_name(name)) return *reason;
    reader.fail(reader.field(key) + " is \"" + name + "\", not a stop reason");
}

}  // namespace detail

namespace {

SweepCell cell_from(const nlohmann::json& json, const std::string& where, const std::string& source) {
    JsonObjectReader reader(json, where, source, detail::JsonNull::IsAbsent);
    SweepCell cell;
    cell.layer = int(reader.integer("layer", 0, 1 << 20));
    cell.coefficient = reader.number("coefficient");
    cell.calibrated_strength = reader.number("calibrated_strength");
    cell.baseline = reader.boolean("baseline");
    reader.integer("answers", 0, 1LL << 40);  // the count; the answers kept are the examples
    cell.mean_trait = reader.optional_number("mean_trait");
    cell.mean_coherence = reader.optional_number("mean_coherence");
    cell.trait_scored = int(reader.integer("trait_scored", 0, 1 << 30));
    cell.trait_refusals = int(reader.integer("trait_refusals", 0, 1 << 30));
    cell.coherence_scored = int(reader.integer("coherence_scored", 0, 1 << 30));
    cell.coherence_refusals = int(reader.integer("coherence_refusals", 0, 1 << 30));
    cell.empty_answers = int(reader.integer("empty_answers", 0, 1 << 30));
    cell.steered_projection = reader.number("steered_projection");
    cell.readback_projection = reader.optional_number("readback_projection");
    cell.readback_rise = reader.optional_number("readback_rise");
    cell.readback_rise_calibrated = reader.optional_number("readback_rise_calibrated");
    const nlohmann::json& examples = reader.array("examples", "a list of answers");
    for (std::size_t i = 0; i < examples.size(); ++i) {
        JsonObjectReader a(examples[i], reader.field(detail::indexed("examples", i)), source, detail::JsonNull::IsAbsent);
        SweepAnswer answer;
        answer.question_index = int(a.integer("question_index", 0, 1 << 30));
        a.optional_string("question");
        answer.sample_index = int(a.integer("sample_index", 0, 1 << 30));
        answer.text = a.string("answer");
        answer.stop_reason = detail::read_stop_reason(a, "stop_reason");
        answer.trait_score = a.optional_number("trait_score");
        answer.coherence = a.optional_number("coherence");
        answer.trait_refusal = a.boolean("trait_refusal");
        answer.coherence_refusal = a.boolean("coherence_refusal");
        answer.steered_projection = a.number("steered_projection");
        answer.readback_projection = a.optional_number("readback_projection");
        a.finish();
        cell.answers.push_back(std::move(answer));
    }
    reader.finish();
    return cell;
}

}  // namespace

nlohmann::json sweep_result_json(const SweepResult& result, const Trait* trait, int examples) {
    nlohmann::json calibration = nlohmann::json::array();
    for (int l = 1; l < result.calibration.layer_count; ++l) {
        const double vector_norm = result.calibration.vector_norms[std::size_t(l)];
        const double residual = result.calibration.mean_residual_norms[std::size_t(l)];
        calibration.push_back({{"layer", l}, {"vector_norm", vector_norm}, {"mean_residual_norm", residual},
                               {"coefficient_per_unit_strength",
                                vector_norm > 0 ? nlohmann::json(residual / vector_norm) : nlohmann::json(nullptr)}});
    }
    nlohmann::json cells = nlohmann::json::array();
    for (const SweepCell& cell : result.cells) cells.push_back(cell_json(cell, trait, examples));
    const SweepRecommendation& r = result.recommendation;
    nlohmann::json recommendation = {{"basis", recommendation_basis_name(r.basis)}, {"reason", r.reason}};
    if (r.basis != RecommendationBasis::None) {
        recommendation["layer"] = r.layer;
        recommendation["coefficient"] = r.coefficient;
        recommendation["calibrated_strength"] = r.calibrated_strength;
    }
    return {{"trait", result.trait},
            {"judge", result.judge},
            {"layers", result.layers},
            {"coefficients", result.coefficients},
            {"calibrated_coefficients", result.calibrated_coefficients},
            {"calibration",
             {{"definition", "calibrated = coefficient * |v_layer| / mean |h_layer|, mean over the "
                             "unsteered last prompt token of each evaluation question"},
              {"layers", calibration}}},
            {"cells", cells},
            {"prompting_baseline", result.prompting_baseline
                                       ? nlohmann::json{{"system_prompt", result.prompting_system_prompt},
                                                        {"cell", cell_json(*result.prompting_baseline, trait, examples)}}
                                       : nlohmann::json(nullptr)},
            {"recommendation", recommendation},
            {"rows_generated", result.rows_generated},
            {"rows_resumed", result.rows_resumed},
            {"seconds", result.seconds}};
}

SweepResult sweep_result_from_json(const nlohmann::json& json, const std::string& source) {
    JsonObjectReader top(json, "", source, detail::JsonNull::IsAbsent);
    SweepResult result;
    result.trait = top.string("trait");
    result.judge = top.string("judge");
    for (long long layer : top.integers("layers", 0, 1 << 20)) result.layers.push_back(int(layer));
    const nlohmann::json& coefficients = top.array("coefficients", "a list of numbers");
    for (const auto& c : coefficients) {
        if (!c.is_number()) top.fail(top.field("coefficients") + " holds something other than numbers");
        result.coefficients.push_back(c.get<double>());
    }
    result.calibrated_coefficients = top.boolean("calibrated_coefficients");
    {
        JsonObjectReader calibration = top.object("calibration");
        calibration.string("definition");
        const nlohmann::json& layers = calibration.array("layers", "a list of {layer, vector_norm, mean_residual_norm}");
        result.calibration.layer_count = int(layers.size()) + 1;
        result.calibration.vector_norms.assign(layers.size() + 1, 0.0);
        result.calibration.mean_residual_norms.assign(layers.size() + 1, 0.0);
        for (std::size_t i = 0; i < layers.size(); ++i) {
            JsonObjectReader layer(layers[i], calibration.field(detail::indexed("layers", i)), source, detail::JsonNull::IsAbsent);
            if (layer.integer("layer", 1, 1 << 20) != (long long)(i + 1)) layer.fail(layer.field("layer") + " is out of order");
            result.calibration.vector_norms[i + 1] = layer.number("vector_norm");
            result.calibration.mean_residual_norms[i + 1] = layer.number("mean_residual_norm");
            layer.optional_number("coefficient_per_unit_strength");
            layer.finish();
        }
        calibration.finish();
    }
    const nlohmann::json& cells = top.array("cells", "a list of cells");
    for (std::size_t i = 0; i < cells.size(); ++i) result.cells.push_back(cell_from(cells[i], detail::indexed("cells", i), source));
    if (top.has("prompting_baseline")) {
        JsonObjectReader prompted = top.object("prompting_baseline");
        result.prompting_system_prompt = prompted.string("system_prompt");
        result.prompting_baseline = cell_from(prompted.required("cell"), prompted.field("cell"), source);
        prompted.finish();
    }
    {
        JsonObjectReader r = top.object("recommendation");
        const std::string basis = r.string("basis");
        result.recommendation.reason = r.string("reason");
        if (basis == "scores" || basis == "projection") {
            result.recommendation.basis = basis == "scores" ? RecommendationBasis::Scores : RecommendationBasis::Projection;
            result.recommendation.layer = int(r.integer("layer", 0, 1 << 20));
            result.recommendation.coefficient = r.number("coefficient");
            result.recommendation.calibrated_strength = r.number("calibrated_strength");
        } else if (basis != "none") {
            r.fail(r.field("basis") + " is \"" + basis + "\", not scores, projection or none");
        }
        r.finish();
    }
    result.rows_generated = std::size_t(top.integer("rows_generated", 0, 1LL << 40));
    result.rows_resumed = std::size_t(top.optional_integer("rows_resumed", 0, 1LL << 40).value_or(0));
    result.seconds = top.number("seconds");
    // What persona-cli adds for the reader of its report: settings and the files' paths.
    top.find("settings");
    top.find("model");
    top.find("vector");
    top.finish();
    return result;
}

void write_sweep_result(const std::string& path, const SweepResult& result, const Trait* trait) {
    detail::write_file_atomically(path, sweep_result_json(result, trait).dump(1, ' ', false,
                                                                             nlohmann::json::error_handler_t::replace) + "\n");
}

SweepResult read_sweep_result(const std::string& path) { return sweep_result_from_json(detail::read_json_file(path), path); }

}  // namespace persona
