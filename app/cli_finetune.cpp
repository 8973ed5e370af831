// persona-cli finetune: train a LoRA adapter on a chat JSONL file, optionally with a persona
// vector steering every training pass (preventative steering, docs/finetuning.md), and write it
// in PEFT's layout. Progress on stderr, a JSON summary on stdout.
#include "cli_commands.h"

#include "persona/finetune.h"
#include "persona/model.h"
#include "persona/paths.h"
#include "persona/process_memory.h"
#include "persona/steering_vector.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace persona_cli {

namespace {

struct FinetuneOptions {
    std::string model = persona::default_model_path();
    std::string data;
    std::vector<std::string> steer;
    std::vector<std::string> ablate;
    bool quiet = false;
    bool bench = false;
    persona::FinetuneSettings settings;
};

int run_finetune(const GlobalOptions& global, FinetuneOptions& options) {
    if (options.data.empty() && !options.bench) {
        std::fprintf(stderr, "persona-cli: finetune needs --data (or --bench)\n");
        return kExitUsage;
    }
    if (options.settings.output_dir.empty() && !options.bench) {
        std::fprintf(stderr, "persona-cli: finetune needs --out (or --bench)\n");
        return kExitUsage;
    }
    // A bench trains a few steps on the built-in neutral set into a folder it removes again.
    std::optional<std::filesystem::path> scratch;
    if (options.bench) {
        if (options.settings.max_steps == 0) options.settings.max_steps = 6;
        options.settings.epochs = std::max(options.settings.epochs, 1000);  // the steps bound it, not the data
        if (options.settings.output_dir.empty()) {
            scratch = std::filesystem::temp_directory_path() / ("persona-finetune-bench-" + std::to_string(::getpid()));
            options.settings.output_dir = scratch->string();
        }
    }
    struct RemoveScratch {
        const std::optional<std::filesystem::path>& path;
        ~RemoveScratch() {
            std::error_code ignored;
            if (path) std::filesystem::remove_all(*path, ignored);
        }
    } remove_scratch{scratch};
    const std::vector<persona::TrainingExample> examples =
        options.data.empty() ? persona::neutral_heldout_examples() : persona::read_training_jsonl(options.data);
    persona::Engine engine(engine_options(global));
    g_engine = &engine;
    persona::ModelFacts facts;
    if (!load(engine, options.model, options.quiet, &facts)) return g_interrupted ? kExitCancelled : kExitFailed;
    if (options.settings.base_model.empty())
        options.settings.base_model = facts.name.empty() ? std::filesystem::path(options.model).filename().string() : facts.name;

    persona::FinetuneResult result;
    const persona::JobState state = run_job(engine, [&](persona::Model& model, const persona::JobContext& job) {
        auto& settings = options.settings;
        for (const auto& spec : options.steer) {
            persona::Steering steering = persona::parse_steering_spec(spec, model.layer_count(), model.hidden_size());
            steering.positions = persona::SteerPositions::All;
            settings.steering.push_back(std::move(steering));
        }
        for (const auto& spec : options.ablate) {
            // FILE:LAYER; the coefficient means nothing to an ablation.
            persona::Steering steering = persona::parse_steering_spec(spec + ":0", model.layer_count(), model.hidden_size());
            steering.positions = persona::SteerPositions::All;
            steering.operation = persona::SteerOperation::Ablate;
            settings.steering.push_back(std::move(steering));
        }
        result = model.finetune(examples, settings, [&](const persona::FinetuneProgress& p) {
            job.progress({"train", static_cast<std::uint64_t>(p.step), static_cast<std::uint64_t>(p.total_steps)});
            if (!options.quiet)
                std::fprintf(stderr, "step %d/%d  loss %.4f  lr %.3g  %.0f tok/s  eta %.0f s\n", p.step, p.total_steps, p.loss,
                             p.learning_rate, p.tokens_per_second, p.eta_seconds);
        }, job.cancelled);
    });
    if (state == persona::JobState::cancelled) {
        std::fprintf(stderr, "persona-cli: cancelled; the last checkpoint in %s is kept and a rerun resumes it\n",
                     options.settings.output_dir.c_str());
        return kExitCancelled;
    }
    if (state != persona::JobState::finished) return kExitFailed;
    const auto memory = persona::read_process_memory();
    nlohmann::json summary = {
        {"adapter", options.bench && scratch ? "" : result.adapter_dir},
        {"steps", result.steps},
        {"resumed_from_step", result.resumed_from_step},
        {"first_loss", result.losses.empty() ? 0.0 : result.losses.front()},
        {"last_loss", result.losses.empty() ? 0.0 : result.losses.back()},
        {"examples", result.examples},
        {"examples_without_answer_tokens", result.examples_without_answer_tokens},
        {"trained_tokens", result.trained_tokens},
        {"sequence_tokens", result.sequence_tokens},
        {"seconds", result.seconds},
        {"tokens_per_second", result.seconds > 0 ? static_cast<double>(result.sequence_tokens) / result.seconds : 0.0},
        {"peak_rss_bytes", memory.peak_resident_bytes},
        {"device", facts.device},
        {"dtype", facts.dtype},
    };
    std::cout << summary.dump(2) << "\n";
    return kExitOk;
}

}  // namespace

void add_finetune_command(CLI::App& app, const GlobalOptions& global, Command& selected) {
    auto options = std::make_shared<FinetuneOptions>();
    auto& s = options->settings;
    auto* command = app.add_subcommand("finetune", "Train a LoRA adapter (PEFT layout) on chat JSONL, optionally with "
                                                   "preventative steering");
    command->add_option("--model,-m", options->model, "GGUF model file or Hugging Face checkpoint directory")->capture_default_str();
    command->add_option("--data,-d", options->data, "Chat JSONL: {\"messages\":[...]} per line; the loss covers the "
                                                    "assistant turns");
    command->add_option("--out,-o", s.output_dir, "Folder for the adapter, training.json and checkpoints");
    command->add_flag("--bench", options->bench,
                      "Measure: train --max-steps (default 6) on the built-in neutral set (or --data) into a scratch "
                      "folder and print tokens/s and peak RSS");
    command->add_option("--steer", options->steer,
                        "FILE:LAYER:ALPHA: add ALPHA times the vector at LAYER in every training pass, every position "
                        "(preventative steering); repeatable");
    command->add_option("--ablate", options->ablate,
                        "FILE:LAYER: remove the component along the vector at LAYER in every training pass; repeatable");
    command->add_option("--rank,-r", s.lora.rank)->check(CLI::Range(1, 4096))->capture_default_str();
    command->add_option("--alpha", s.lora.alpha, "LoRA alpha")->capture_default_str();
    command->add_flag("!--no-rslora", s.lora.rslora, "Scale by alpha / rank instead of rsLoRA's alpha / sqrt(rank)");
    command->add_option("--dropout", s.lora.dropout, "LoRA dropout")->check(CLI::Range(0.0, 0.99))->capture_default_str();
    command->add_option("--targets", s.lora.target_modules,
                        "Projections to adapt (q_proj k_proj v_proj o_proj gate_proj up_proj down_proj; Phi-3: qkv_proj "
                        "gate_up_proj); default: all");
    command->add_option("--lr", s.learning_rate, "Peak learning rate")->capture_default_str();
    command->add_option("--weight-decay", s.weight_decay)->capture_default_str();
    command->add_option("--max-grad-norm", s.max_grad_norm, "Clip gradients to this norm (0: off)")->capture_default_str();
    command->add_option("--warmup", s.warmup_steps, "Linear warm-up steps")->check(CLI::NonNegativeNumber)->capture_default_str();
    command->add_option("--epochs", s.epochs)->check(CLI::Range(1, 10000))->capture_default_str();
    command->add_option("--max-steps", s.max_steps, "Stop after this many optimiser steps (0: all epochs)")
        ->check(CLI::NonNegativeNumber)->capture_default_str();
    command->add_option("--batch-size", s.batch_size, "Sequences per forward pass")->check(CLI::Range(1, 4096))->capture_default_str();
    command->add_option("--grad-accum", s.gradient_accumulation, "Forward passes per optimiser step")
        ->check(CLI::Range(1, 4096))->capture_default_str();
    command->add_option("--max-length", s.max_length, "Tokens per sequence; longer ones are cut")
        ->check(CLI::Range(2, 1 << 20))->capture_default_str();
    command->add_flag("!--no-bucket", s.bucket_by_length, "Keep the shuffled order inside a step instead of grouping by length");
    command->add_option("--seed", s.seed)->capture_default_str();
    command->add_option("--checkpoint", s.checkpoint_every, "Save a resumable checkpoint every N optimiser steps (0: never)")
        ->check(CLI::NonNegativeNumber)->capture_default_str();
    command->add_option("--base-model-name", s.base_model, "adapter_config.json's base_model_name_or_path (default: the model's name)");
    command->add_flag("--quiet,-q", options->quiet, "No progress on stderr");
    command->callback([&global, &selected, options] { selected = [&global, options] { return run_finetune(global, *options); }; });
}

}  // namespace persona_cli
