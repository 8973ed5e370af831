// persona-cli extract: extract a persona vector for a trait (docs/method.md), write it, and print
// a summary of the run as JSON; --checkpoint makes an interrupted run resumable.
#include "cli_commands.h"

#include "persona/errors.h"
#include "persona/extraction.h"
#include "persona/model.h"
#include "persona/paths.h"
#include "persona/persona_vector.h"
#include "persona/shift.h"
#include "persona/trait.h"
#include "persona/vector_files.h"

#include <chrono>
#include <filesystem>
#include <cstddef>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

namespace persona_cli {

namespace {

struct ExtractOptions {
    std::string trait;
    std::string model = persona::default_model_path();
    std::string out;
    std::string aggregate = "response_avg";
    JudgeOptions judge;
    std::string judge_mode = "absolute";
    persona::ExtractionSettings settings;
    bool keep_checkpoint = false;
    std::string training_set;
};

int run_extract(const GlobalOptions& global, ExtractOptions options) {
    const persona::Trait trait = load_trait(options.trait);
    // A trait with errors would fail part-way, or give a vector of nothing: refuse it first.
    const auto problems = persona::validate(trait);
    if (persona::has_errors(problems)) {
        for (const auto& problem : problems)
            if (problem.severity == persona::TraitProblemSeverity::Error)
                std::fprintf(stderr, "persona-cli: trait '%s' %s: %s\n", trait.name.c_str(), problem.field.c_str(),
                             problem.message.c_str());
        std::fprintf(stderr, "persona-cli: fix the trait first (persona-cli traits validate FILE lists every problem)\n");
        return kExitFailed;
    }
    const auto aggregate = persona::aggregate_from_name(options.aggregate);
    if (!aggregate) throw persona::Error("unknown aggregate '" + options.aggregate + "'");
    const auto judge = judge_settings(options.judge);
    if (!judge) return kExitUsage;
    options.settings.judge = *judge;
    options.settings.judge_mode = *persona::judge_mode_from_name(options.judge_mode);  // CLI checked the name
    if (options.out.empty()) options.out = trait.name + ".safetensors";

    persona::Engine engine(engine_options(global));
    g_engine = &engine;
    persona::ModelFacts facts;
    if (!load(engine, options.model, true, &facts)) return g_interrupted ? kExitCancelled : kExitFailed;

    int exit_code = kExitOk;
    nlohmann::json summary;
    const auto start = std::chrono::steady_clock::now();
    if (run_job(engine,
        [&](persona::Model& model, const persona::JobContext& job) {
            std::string last_stage;
            const auto result = persona::run_extraction(model, trait, options.settings,
                [&](const std::string& stage, std::size_t done, std::size_t total) {
                    if (stage != last_stage && !last_stage.empty()) std::fprintf(stderr, "\n");
                    last_stage = stage;
                    std::fprintf(stderr, "\r%s %zu/%zu", stage.c_str(), done, total);
                    std::fflush(stderr);
                },
                {}, job.cancelled);
            std::fprintf(stderr, "\n");
            summary = {{"trait", trait.name}, {"model", facts.path},
                       {"samples_generated", result.samples_generated}, {"samples_judged", result.samples_judged},
                       {"samples_resumed", result.samples_resumed}, {"judge", persona::judging_label(options.settings)},
                       {"aggregate", options.aggregate}, {"stage_seconds", result.stage_seconds}};
            persona::visit_pair_counts(result.pairs, [&](const char* name, std::size_t count) { summary[name] = count; });
            if (!options.settings.checkpoint_path.empty()) summary["checkpoint"] = options.settings.checkpoint_path;
            if (!options.training_set.empty()) {
                const auto examples = persona::trait_inducing_examples(result, options.settings);
                persona::write_training_jsonl(options.training_set, examples);
                summary["training_set"] = {{"file", options.training_set}, {"examples", examples.size()}};
            }
            if (result.pairs.kept == 0) {
                std::fprintf(stderr, "persona-cli: no pair of answers passed the judge's filter for trait '%s' "
                             "(%zu pairs; see the counts on stdout); try more samples or --judge none\n",
                             trait.name.c_str(), result.pairs.total);
                exit_code = kExitFailed;
                return;
            }
            const auto& chosen = result.aggregate(*aggregate);
            persona::write_vector_file(options.out, chosen.vector);
            if (chosen.suggested_layer >= 0) summary["suggested_layer"] = chosen.suggested_layer;
            if (!result.warnings.empty()) summary["warnings"] = result.warnings;
            for (const std::string& warning : result.warnings)
                std::fprintf(stderr, "persona-cli: warning: %s\n", warning.c_str());
            summary["layers"] = diagnostics_json(chosen.diagnostics);
            summary["vector"] = options.out;
            summary["vector_shape"] = {chosen.vector.layer_count, chosen.vector.hidden_size};
            // The vector is written: the checkpoint has served. A run that kept nothing keeps it, so
            // the same samples can be filtered again with other thresholds without generating them.
            if (!options.settings.checkpoint_path.empty() && !options.keep_checkpoint) {
                std::error_code ignored;
                std::filesystem::remove(options.settings.checkpoint_path, ignored);
                summary["checkpoint_removed"] = true;
            }
        }) == persona::JobState::failed)
        exit_code = kExitFailed;
    if (g_interrupted) {
        if (!options.settings.checkpoint_path.empty())
            std::fprintf(stderr, "\npersona-cli: cancelled; run the same command again to resume from %s\n",
                         options.settings.checkpoint_path.c_str());
        return kExitCancelled;
    }
    if (!summary.is_null()) {
        summary["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::cout << summary.dump(2) << "\n";
    }
    return exit_code;
}

}  // namespace

void add_extract_command(CLI::App& app, const GlobalOptions& global, Command& selected) {
    auto ex = std::make_shared<ExtractOptions>();
    auto* extract = app.add_subcommand("extract", "Extract a persona vector for a trait (docs/method.md), summary as JSON");
    extract->add_option("--trait", ex->trait, "Built-in trait name or trait file")->required();
    extract->add_option("--model,-m", ex->model, "GGUF model file")->capture_default_str();
    extract->add_option("--out,-o", ex->out, "Vector file to write (default: TRAIT.safetensors)");
    extract->add_option("--aggregate", ex->aggregate, "Which activation the written vector is made of")
        ->check(CLI::IsMember(persona::aggregate_names()))->capture_default_str();
    extract->add_option("--questions", ex->settings.question_limit, "Extraction questions to use (0: all)")
        ->check(CLI::NonNegativeNumber)->capture_default_str();
    extract->add_option("--pairs", ex->settings.pair_limit, "Instruction pairs to use (0: all)")
        ->check(CLI::NonNegativeNumber)->capture_default_str();
    extract->add_option("--samples", ex->settings.samples_per_question, "Answers per question, pair and side")
        ->check(CLI::Range(1, 1000))->capture_default_str();
    extract->add_option("--max-tokens,-n", ex->settings.max_new_tokens)->check(CLI::Range(1, 1 << 16))->capture_default_str();
    extract->add_option("--temperature,-t", ex->settings.temperature)->capture_default_str();
    extract->add_option("--top-p", ex->settings.top_p)->capture_default_str();
    extract->add_option("--seed", ex->settings.seed)->capture_default_str();
    extract->add_option("--batch", ex->settings.batch_size)->check(CLI::Range(1, 4096))->capture_default_str();
    add_judge_options(*extract, ex->judge, "keep every pair");
    extract->add_option("--judge-mode", ex->judge_mode,
                        "absolute: each answer scored 0-100 (the reference method); pairwise: the judge picks which "
                        "answer of a pair shows the trait more, in both orders (our extension, docs/method.md)")
        ->check(CLI::IsMember(persona::judge_mode_names()))->capture_default_str();
    extract->add_option("--trait-threshold", ex->settings.trait_threshold,
                        "absolute mode: the positive answer scores at least this")
        ->check(CLI::Range(0.0, 100.0))->capture_default_str();
    extract->add_option_function<double>(
               "--negative-threshold", [ex](double value) { ex->settings.negative_threshold = value; },
               "absolute mode: the negative answer scores less than this (default: 100 - trait threshold, "
               "the reference method's rule)")
        ->check(CLI::Range(0.0, 100.0));
    extract->add_option("--pairwise-threshold", ex->settings.pairwise_threshold,
                        "pairwise mode: the positive answer shows the trait more with at least this probability, in %")
        ->check(CLI::Range(0.0, 100.0))->capture_default_str();
    extract->add_option("--coherence-threshold", ex->settings.coherence_threshold)
        ->check(CLI::Range(0.0, 100.0))->capture_default_str();
    extract->add_option("--checkpoint", ex->settings.checkpoint_path,
                        "Save finished samples here and resume from it; removed once the vector is written");
    extract->add_flag("--keep-checkpoint", ex->keep_checkpoint, "Keep the checkpoint after a successful run");
    extract->add_option("--training-set", ex->training_set,
                        "Also write the positive answers that show the trait (judged above the thresholds) as chat JSONL "
                        "without the system prompt: a trait-inducing set for finetune");
    extract->callback([&global, &selected, ex] { selected = [&global, ex] { return run_extract(global, *ex); }; });
}

}  // namespace persona_cli
