// persona-cli sweep: steer the trait's evaluation questions at several layers and coefficients,
// judge and measure each cell, and recommend a layer and coefficient (persona/sweep.h).
#include "cli_commands.h"

#include "persona/errors.h"
#include "persona/paths.h"
#include "persona/project.h"
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
    std::string project;
    persona::SweepSettings settings;
};

// Raw alphas for a vector of SmolLM2's scale; calibrated strengths where 1 adds a vector as long
// as a typical activation.
const std::vector<double> kDefaultRaw{-4, 0, 2, 4, 8};
const std::vector<double> kDefaultCalibrated{-0.5, 0, 0.25, 0.5, 1};

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

            report = persona::sweep_result_json(result, &trait, options.examples);
            report["vector"] = options.vector;
            report["model"] = facts.path;
            report["settings"] = {{"questions", options.settings.question_limit},
                                  {"samples", options.settings.samples_per_question},
                                  {"max_tokens", options.settings.max_new_tokens},
                                  {"temperature", options.settings.temperature},
                                  {"top_p", options.settings.top_p},
                                  {"seed", options.settings.seed},
                                  {"batch", options.settings.batch_size},
                                  {"positions", options.positions},
                                  {"coherence_threshold", options.settings.coherence_threshold}};
            if (!options.project.empty()) {
                persona::Project project = persona::read_project(options.project);
                const std::string key = project.add_sweep(result);
                persona::write_project(options.project, project);
                std::fprintf(stderr, "kept in %s as %s\n", options.project.c_str(), key.c_str());
            }
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
    sweep->add_option("--project", options->project,
                      "Also keep the sweep (every answer) in this project, where the Sweeps tab shows it")
        ->check(CLI::ExistingDirectory);
    sweep->add_flag("!--no-prompting-baseline", options->settings.prompting_baseline,
                    "Skip the baseline of the questions answered under the trait's positive system prompt");
    sweep->callback([&global, &selected, options] { selected = [&global, options] { return run_sweep_command(global, *options); }; });
}

}  // namespace persona_cli
