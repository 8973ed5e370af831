// persona-cli sweep: steer the trait's evaluation questions at several layers and coefficients,
// judge and measure each cell, and recommend a layer and coefficient (persona/sweep.h).
#include "cli_commands.h"

#include "persona/errors.h"
#include "persona/paths.h"
#include "persona/sweep.h"
#include "persona/vector_files.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

namespace persona_cli {

namespace {

struct SweepOptions {
    std::string trait;
    std::string vector;
    std::string model = persona::default_model_path();
    std::vector<int> layers;
    std::vector<double> coefficients;
    JudgeOptions judge;
    std::string positions = "response";
    int examples = 2;
    persona::SweepSettings settings;
};

// Raw alphas for a vector of SmolLM2's scale; calibrated strengths where 1 adds a vector as long
// as a typical activation.
const std::vector<double> kDefaultRaw{-4, 0, 2, 4, 8};
const std::vector<double> kDefaultCalibrated{-0.5, 0, 0.25, 0.5, 1};

nlohmann::json optional_number(const std::optional<double>& value) {
    return value && std::isfinite(*value) ? nlohmann::json(*value) : nlohmann::json(nullptr);
}

nlohmann::json cell_json(const persona::SweepCell& cell, const persona::Trait& trait, int examples) {
    nlohmann::json shown = nlohmann::json::array();
    for (const auto& answer : cell.answers) {
        if (examples >= 0 && int(shown.size()) >= examples) break;
        shown.push_back({{"question_index", answer.question_index},
                         {"question", trait.evaluation_questions[std::size_t(answer.question_index)]},
                         {"sample_index", answer.sample_index},
                         {"answer", answer.text},
                         {"stop_reason", persona::stop_reason_name(answer.stop_reason)},
                         {"trait_score", optional_number(answer.trait_score)},
                         {"coherence", optional_number(answer.coherence)},
                         {"trait_refusal", answer.trait_refusal},
                         {"coherence_refusal", answer.coherence_refusal},
                         {"steered_projection", answer.steered_projection},
                         {"readback_projection", optional_number(answer.readback_projection)}});
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

std::string column(const std::optional<double>& value, const char* format) {
    if (!value) return "-";
    char text[32];
    std::snprintf(text, sizeof text, format, *value);
    return text;
}

void print_table(const persona::SweepResult& result) {
    std::fprintf(stderr, "%5s %8s %8s %7s %7s %9s %10s %10s %8s\n", "layer", "coef", "calib", "trait", "coher",
                 "refusals", "steer-proj", "read-back", "rise/|h|");
    for (const auto& cell : result.cells) {
        const std::string refusals = std::to_string(cell.trait_refusals) + "/" + std::to_string(cell.coherence_refusals);
        std::fprintf(stderr, "%5d %8.3g %8.3g %7s %7s %9s %10.3f %10s %8s\n", cell.layer, cell.coefficient,
                     cell.calibrated_strength, column(cell.mean_trait, "%.1f").c_str(),
                     column(cell.mean_coherence, "%.1f").c_str(), refusals.c_str(), cell.steered_projection,
                     column(cell.readback_projection, "%.3f").c_str(),
                     column(cell.readback_rise_calibrated, "%+.4f").c_str());
    }
    if (const auto& prompted = result.prompting_baseline)
        std::fprintf(stderr, "prompting baseline (unsteered, the trait's positive system prompt): trait %s, coherence %s\n",
                     column(prompted->mean_trait, "%.1f").c_str(), column(prompted->mean_coherence, "%.1f").c_str());
    const auto& r = result.recommendation;
    if (r.basis == persona::RecommendationBasis::None)
        std::fprintf(stderr, "recommendation: none. %s\n", r.reason.c_str());
    else
        std::fprintf(stderr, "recommendation (%s): layer %d, coefficient %.3g (calibrated %.3g). %s\n",
                     persona::recommendation_basis_name(r.basis), r.layer, r.coefficient, r.calibrated_strength,
                     r.reason.c_str());
}

int run_sweep_command(const GlobalOptions& global, SweepOptions options) {
    const persona::Trait trait = load_trait(options.trait);
    const persona::PersonaVector vector = persona::read_vector_file(options.vector);
    const auto judge = judge_settings(options.judge);
    if (!judge) return kExitUsage;
    options.settings.judge = *judge;
    options.settings.positions = *persona::steer_positions_from_name(options.positions);  // checked by the parser
    if (options.layers.empty()) {
        bool suggested = false;
        options.layers = persona::default_sweep_layers(vector, 4, &suggested);
        std::string listed;
        for (int l : options.layers) listed += (listed.empty() ? "" : ",") + std::to_string(l);
        std::fprintf(stderr, "layers %s (%s)\n", listed.c_str(),
                     suggested ? "the vector's suggested layer and +-4"
                               : "the vector names no suggested layer: a third, half and two thirds of the depth");
    }
    options.settings.layers = options.layers;
    options.settings.coefficients = !options.coefficients.empty() ? options.coefficients
                                    : options.settings.calibrated_coefficients ? kDefaultCalibrated
                                                                                : kDefaultRaw;

    persona::Engine engine(engine_options(global));
    g_engine = &engine;
    persona::ModelFacts facts;
    if (!load(engine, options.model, true, &facts)) return g_interrupted ? kExitCancelled : kExitFailed;

    int exit_code = kExitOk;
    nlohmann::json report;
    if (run_job(engine,
        [&](persona::Model& model, const persona::JobContext& job) {
            // One status line for every stage, rewritten in place; finished cells print above it.
            std::vector<std::pair<std::string, std::string>> stages;
            const auto status = [&] {
                std::string line;
                for (const auto& [stage, count] : stages) line += stage + " " + count + "  ";
                std::fprintf(stderr, "\r%-72s", line.c_str());
                std::fflush(stderr);
            };
            const auto result = persona::run_sweep(model, trait, vector, options.settings,
                [&](const persona::Progress& p) {
                    const std::string count = std::to_string(p.done) + "/" + std::to_string(p.total);
                    const auto found = std::find_if(stages.begin(), stages.end(), [&](const auto& s) { return s.first == p.stage; });
                    if (found == stages.end()) stages.emplace_back(p.stage, count);
                    else found->second = count;
                    status();
                },
                [&](const persona::SweepCell& cell) {
                    std::fprintf(stderr, "\r%-72s\rlayer %d, coefficient %.3g: trait %s, coherence %s, steered projection %.2f, "
                                 "read-back rise %s\n", "", cell.layer, cell.coefficient, column(cell.mean_trait, "%.1f").c_str(),
                                 column(cell.mean_coherence, "%.1f").c_str(), cell.steered_projection,
                                 column(cell.readback_rise, "%+.2f").c_str());
                    status();
                },
                job.cancelled);
            std::fprintf(stderr, "\n");
            print_table(result);

            nlohmann::json calibration = nlohmann::json::array();
            for (int l = 1; l < result.calibration.layer_count; ++l) {
                const double vector_norm = result.calibration.vector_norms[std::size_t(l)];
                const double residual = result.calibration.mean_residual_norms[std::size_t(l)];
                calibration.push_back({{"layer", l}, {"vector_norm", vector_norm}, {"mean_residual_norm", residual},
                                       {"coefficient_per_unit_strength",
                                        vector_norm > 0 ? nlohmann::json(residual / vector_norm) : nlohmann::json(nullptr)}});
            }
            nlohmann::json cells = nlohmann::json::array();
            for (const auto& cell : result.cells) cells.push_back(cell_json(cell, trait, options.examples));
            const auto& r = result.recommendation;
            nlohmann::json recommendation = {{"basis", persona::recommendation_basis_name(r.basis)}, {"reason", r.reason}};
            if (r.basis != persona::RecommendationBasis::None) {
                recommendation["layer"] = r.layer;
                recommendation["coefficient"] = r.coefficient;
                recommendation["calibrated_strength"] = r.calibrated_strength;
            }
            report = {{"trait", trait.name},
                      {"vector", options.vector},
                      {"model", facts.path},
                      {"judge", result.judge},
                      {"layers", result.layers},
                      {"coefficients", result.coefficients},
                      {"calibrated_coefficients", result.calibrated_coefficients},
                      {"settings",
                       {{"questions", options.settings.question_limit},
                        {"samples", options.settings.samples_per_question},
                        {"max_tokens", options.settings.max_new_tokens},
                        {"temperature", options.settings.temperature},
                        {"top_p", options.settings.top_p},
                        {"seed", options.settings.seed},
                        {"batch", options.settings.batch_size},
                        {"positions", options.positions},
                        {"coherence_threshold", options.settings.coherence_threshold}}},
                      {"calibration",
                       {{"definition", "calibrated = coefficient * |v_layer| / mean |h_layer|, mean over the "
                                       "unsteered last prompt token of each evaluation question"},
                        {"layers", calibration}}},
                      {"cells", cells},
                      {"prompting_baseline",
                       result.prompting_baseline
                           ? nlohmann::json{{"system_prompt", result.prompting_system_prompt},
                                            {"cell", cell_json(*result.prompting_baseline, trait, options.examples)}}
                           : nlohmann::json(nullptr)},
                      {"recommendation", recommendation},
                      {"rows_generated", result.rows_generated},
                      {"rows_resumed", result.rows_resumed},
                      {"seconds", result.seconds}};
        }) == persona::JobState::failed)
        exit_code = kExitFailed;
    if (g_interrupted) return kExitCancelled;
    // An answer cut inside a character is not valid UTF-8; the report must still print.
    if (!report.is_null()) std::cout << report.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return exit_code;
}

}  // namespace

void add_sweep_command(CLI::App& app, const GlobalOptions& global, Command& selected) {
    auto options = std::make_shared<SweepOptions>();
    auto* sweep = app.add_subcommand("sweep",
        "Steer a trait's evaluation questions over layers x coefficients; judge, measure, recommend (JSON on stdout)");
    sweep->add_option("--trait", options->trait, "Built-in trait name or trait file")->required();
    sweep->add_option("--vector", options->vector, "Vector file (safetensors, [L+1, hidden])")->required()->check(CLI::ExistingFile);
    sweep->add_option("--model,-m", options->model, "GGUF model file or Hugging Face checkpoint directory")->capture_default_str();
    sweep->add_option("--layers", options->layers,
                      "Layers (hidden_states index), e.g. 8,12,16 (default: the vector's suggested layer and +-4)")
        ->delimiter(',');
    sweep->add_option("--coefficients", options->coefficients,
                      "Coefficients, e.g. -4,0,2,4,8 (0 is always added: the unsteered baseline)")
        ->delimiter(',');
    sweep->add_flag("--calibrated", options->settings.calibrated_coefficients,
                    "Read the coefficients as calibrated strengths: coefficient * |v| / mean residual norm "
                    "(default -0.5,0,0.25,0.5,1)");
    sweep->add_option("--questions", options->settings.question_limit, "Evaluation questions to use (0: all)")
        ->check(CLI::NonNegativeNumber)->capture_default_str();
    sweep->add_option("--samples", options->settings.samples_per_question, "Answers per question and cell")
        ->check(CLI::Range(1, 1000))->capture_default_str();
    sweep->add_option("--max-tokens,-n", options->settings.max_new_tokens)->check(CLI::Range(1, 1 << 16))->capture_default_str();
    sweep->add_option("--temperature,-t", options->settings.temperature)->capture_default_str();
    sweep->add_option("--top-p", options->settings.top_p)->capture_default_str();
    sweep->add_option("--seed", options->settings.seed)->capture_default_str();
    sweep->add_option("--batch", options->settings.batch_size, "Rows per generation batch")
        ->check(CLI::Range(1, 4096))->capture_default_str();
    sweep->add_option("--positions", options->positions, "Steered positions")
        ->check(CLI::IsMember(persona::steer_positions_names()))->capture_default_str();
    add_judge_options(*sweep, options->judge, "projections only");
    sweep->add_option("--coherence-threshold", options->settings.coherence_threshold,
                      "Mean coherence a recommended cell must keep")->capture_default_str();
    sweep->add_option("--examples", options->examples, "Answers per cell in the JSON (-1: all)")->capture_default_str();
    sweep->add_option("--checkpoint", options->settings.checkpoint_path,
                      "Save every finished batch here and resume from it when it exists (removed when the sweep ends)");
    sweep->add_flag("!--no-prompting-baseline", options->settings.prompting_baseline,
                    "Skip the baseline of the questions answered under the trait's positive system prompt");
    sweep->callback([&global, &selected, options] { selected = [&global, options] { return run_sweep_command(global, *options); }; });
}

}  // namespace persona_cli
