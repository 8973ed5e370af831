// persona-cli monitor-prompts: the monitoring study (persona/monitoring_study.h). A ladder of
// system prompts from discouraging to encouraging a trait, the last prompt token's projection
// read before each answer, the answers judged, and Pearson's r between the two.
#include "cli_commands.h"

#include "persona/errors.h"
#include "persona/monitoring_study.h"
#include "persona/paths.h"
#include "persona/project.h"
#include "persona/vector_files.h"

#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

namespace persona_cli {

namespace {

struct MonitorPromptsOptions {
    std::string trait;
    std::string vector;
    std::string model = persona::default_model_path();
    int layer = -1;
    std::vector<std::string> systems;  // "LABEL=TEXT"
    int ladder_pairs = 2;
    JudgeOptions judge;
    std::string csv;
    std::string project;
    persona::MonitoringStudySettings settings;
};

int run_monitor_prompts(const GlobalOptions& global, MonitorPromptsOptions options) {
    const persona::Trait trait = load_trait(options.trait);
    const persona::PersonaVector vector = persona::read_vector_file(options.vector);
    options.settings.layer = chosen_layer(options.layer, vector, options.vector);
    const auto judge = judge_settings(options.judge);
    if (!judge) return kExitUsage;
    options.settings.judge = *judge;
    for (const std::string& system : options.systems) {
        const auto equals = system.find('=');
        if (equals == std::string::npos || equals == 0) {
            std::fprintf(stderr, "persona-cli monitor-prompts: --system '%s' is not LABEL=TEXT\n", system.c_str());
            return kExitUsage;
        }
        options.settings.prompts.push_back({system.substr(0, equals), system.substr(equals + 1)});
    }
    if (options.settings.prompts.empty()) options.settings.prompts = persona::default_prompt_ladder(trait, options.ladder_pairs);

    persona::Engine engine(engine_options(global));
    g_engine = &engine;
    if (!load(engine, options.model, true)) return g_interrupted ? kExitCancelled : kExitFailed;

    int exit_code = kExitOk;
    persona::MonitoringStudy study;
    if (run_job(engine,
        [&](persona::Model& model, const persona::JobContext& job) {
            persona::check_vector_fits(vector, model, options.vector);
            study = persona::run_monitoring_study(model, trait, vector, options.settings,
                [](const persona::Progress& p) {
                    std::fprintf(stderr, "\r%s %llu/%llu   ", p.stage.c_str(), static_cast<unsigned long long>(p.done),
                                 static_cast<unsigned long long>(p.total));
                    std::fflush(stderr);
                },
                {}, job.cancelled);
            std::fprintf(stderr, "\n");
        }) == persona::JobState::failed)
        exit_code = kExitFailed;
    if (g_interrupted) return kExitCancelled;
    if (exit_code != kExitOk) return exit_code;

    // Per rung: the mean prediction and the mean score, the picture's summary in a table.
    std::fprintf(stderr, "%-18s %10s %7s %7s\n", "system prompt", "projection", "trait", "scored");
    for (std::size_t p = 0; p < study.prompts.size(); ++p) {
        double projection = 0, score = 0;
        int count = 0, scored = 0;
        for (const auto& point : study.points) {
            if (point.prompt_index != int(p)) continue;
            projection += point.projection;
            ++count;
            if (point.trait_score) {
                score += *point.trait_score;
                ++scored;
            }
        }
        const std::string mean_score = scored ? std::to_string(score / scored).substr(0, 5) : "-";
        std::fprintf(stderr, "%-18s %10.3f %7s %7d\n", study.prompts[p].label.c_str(), count ? projection / count : 0.0,
                     mean_score.c_str(), scored);
    }
    if (study.correlation)
        std::fprintf(stderr, "Pearson r = %.3f (95%% interval %.3f .. %.3f, n = %d), layer %d\n", study.correlation->r,
                     study.correlation->low, study.correlation->high, study.correlation->n, study.layer);
    else
        std::fprintf(stderr, "no correlation: fewer than 3 scored answers, or no variation\n");
    if (!options.csv.empty()) persona::write_monitoring_study_csv(options.csv, study);
    if (!options.project.empty()) {
        persona::Project project = persona::read_project(options.project);
        const std::string key = project.add_monitoring_study(study);
        persona::write_project(options.project, project);
        std::fprintf(stderr, "kept in %s as %s\n", options.project.c_str(), key.c_str());
    }
    std::cout << persona::monitoring_study_json(study).dump(2, ' ', false, nlohmann::json::error_handler_t::replace)
              << "\n";
    return kExitOk;
}

}  // namespace

void add_monitor_prompts_command(CLI::App& app, const GlobalOptions& global, Command& selected) {
    auto options = std::make_shared<MonitorPromptsOptions>();
    auto* cmd = app.add_subcommand("monitor-prompts",
        "Does the last prompt token's projection predict the trait? A ladder of system prompts x the trait's "
        "evaluation questions, answers judged, Pearson r (JSON on stdout)");
    cmd->add_option("--trait", options->trait, "Built-in trait name or trait file")->required();
    cmd->add_option("--vector", options->vector, "Vector file (safetensors, [L+1, hidden])")->required()->check(CLI::ExistingFile);
    cmd->add_option("--model,-m", options->model, "GGUF model file or Hugging Face checkpoint directory")->capture_default_str();
    cmd->add_option("--layer", options->layer, "Layer of the projection (default: the vector's suggested layer)")
        ->check(CLI::PositiveNumber);
    cmd->add_option("--system", options->systems,
                    "A rung of the ladder, LABEL=TEXT (repeatable, in order; an empty TEXT is no system prompt). "
                    "Default: the trait's negative prompts, none, its positive prompts");
    cmd->add_option("--ladder-pairs", options->ladder_pairs, "Instruction pairs in the default ladder")
        ->check(CLI::Range(0, 64))->capture_default_str();
    cmd->add_option("--questions", options->settings.question_limit, "Evaluation questions to use (0: all)")
        ->check(CLI::NonNegativeNumber)->capture_default_str();
    cmd->add_option("--max-tokens,-n", options->settings.max_new_tokens)->check(CLI::Range(1, 1 << 16))->capture_default_str();
    cmd->add_option("--temperature,-t", options->settings.temperature, "0 for greedy")->capture_default_str();
    cmd->add_option("--seed", options->settings.seed)->capture_default_str();
    cmd->add_option("--batch", options->settings.batch_size, "Conversations per batch")
        ->check(CLI::Range(1, 4096))->capture_default_str();
    add_judge_options(*cmd, options->judge, "projections and answers only");
    cmd->add_option("--csv", options->csv, "Also write the points as CSV");
    cmd->add_option("--project", options->project,
                    "Also keep the study in this project (its monitoring/ folder), where the Monitoring tab shows it")
        ->check(CLI::ExistingDirectory);
    cmd->callback([&global, &selected, options] {
        selected = [&global, options] { return run_monitor_prompts(global, *options); };
    });
}

}  // namespace persona_cli
