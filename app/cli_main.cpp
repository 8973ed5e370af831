// persona-cli: the headless face of the engine, for servers and batch jobs. Every command runs
// its work on the engine thread, exactly as the GUI does.
#include "persona/engine.h"
#include "persona/errors.h"
#include "persona/extraction.h"
#include "persona/gguf.h"
#include "persona/model.h"
#include "persona/paths.h"
#include "persona/process_memory.h"
#include "persona/steering_vector.h"
#include "persona/tokenizer.h"
#include "persona/trait.h"
#include "persona/vector_files.h"

#include "cli_commands.h"
#include "cli_common.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>

namespace {

using namespace persona_cli;

int run_info(const GlobalOptions& global, const std::string& model_path) {
    persona::Engine engine(engine_options(global));
    g_engine = &engine;
    persona::ModelFacts facts;
    if (!load(engine, model_path, true, &facts)) return g_interrupted ? kExitCancelled : kExitFailed;
    std::cout << persona::to_json(facts).dump(2) << "\n";
    return kExitOk;
}

struct GenerateOptions {
    std::string model = persona::default_model_path();
    std::string system;
    std::string prompt;
    std::vector<std::string> steer;
    std::string positions = "response";
    bool ablate = false;
    bool preserve_norm = false;
    bool raw = false;
    bool json = false;
    persona::SamplingOptions sampling;
};

persona::SteerPositions parse_positions(const std::string& name) {
    if (name == "all") return persona::SteerPositions::All;
    if (name == "prompt") return persona::SteerPositions::Prompt;
    return persona::SteerPositions::Response;
}

int run_generate(const GlobalOptions& global, const GenerateOptions& options) {
    persona::Engine engine(engine_options(global));
    g_engine = &engine;
    if (!load(engine, options.model, true)) return g_interrupted ? kExitCancelled : kExitFailed;

    int exit_code = kExitOk;
    nlohmann::json output;
    engine.submit(
        [&](persona::Model& model, const persona::CancelFn& cancelled) {
            persona::GenerationRow row;
            row.sampling = options.sampling;
            if (options.raw) {
                row.prompt_tokens = model.tokenizer().encode(options.prompt, /*add_special=*/true, /*parse_special=*/false);
            } else {
                if (!options.system.empty()) row.messages.push_back({"system", options.system});
                row.messages.push_back({"user", options.prompt});
            }
            for (const auto& spec : options.steer) {
                persona::Steering steering = persona::parse_steering_spec(spec, model.layer_count(), model.hidden_size());
                steering.positions = parse_positions(options.positions);
                steering.operation = options.ablate ? persona::SteerOperation::Ablate : persona::SteerOperation::Add;
                steering.preserve_norm = options.preserve_norm;
                row.steering.push_back(std::move(steering));
            }
            const auto start = std::chrono::steady_clock::now();
            auto results = model.generate({row},
                [&](const persona::TokenEvent& event) {
                    if (!options.json) {
                        std::fwrite(event.text.data(), 1, event.text.size(), stdout);
                        std::fflush(stdout);
                    }
                },
                nullptr, cancelled);
            const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            const auto& result = results.front();
            if (options.json) {
                output = {{"text", result.text}, {"tokens", result.tokens}, {"prompt_tokens", result.prompt_tokens.size()},
                          {"stop_reason", persona::stop_reason_name(result.stop_reason)}, {"seconds", seconds}};
            } else {
                std::printf("\n");
                std::fprintf(stderr, "[%zu prompt tokens, %zu generated, %s, %.2f s]\n", result.prompt_tokens.size(),
                             result.tokens.size(), persona::stop_reason_name(result.stop_reason), seconds);
            }
        },
        [&](const std::string& error) {
            std::fprintf(stderr, "persona-cli: %s\n", error.c_str());
            exit_code = kExitFailed;
        });
    engine.wait_idle();
    if (g_interrupted) return kExitCancelled;
    if (options.json && exit_code == kExitOk) std::cout << output.dump(2) << "\n";
    return exit_code;
}

struct BenchOptions {
    std::string model = persona::default_model_path();
    int prompt_tokens = 256;
    int new_tokens = 64;
    std::vector<int> batches{1, 2, 8};
    bool json_only = false;
};

int run_bench(const GlobalOptions& global, const BenchOptions& options) {
    using clock = std::chrono::steady_clock;
    persona::Engine engine(engine_options(global));
    g_engine = &engine;
    const auto load_start = clock::now();
    persona::ModelFacts facts;
    if (!load(engine, options.model, true, &facts)) return g_interrupted ? kExitCancelled : kExitFailed;
    const double load_seconds = std::chrono::duration<double>(clock::now() - load_start).count();

    nlohmann::json report = {{"model", facts.name}, {"path", facts.path}, {"device", facts.device}, {"dtype", facts.dtype},
                             {"threads", engine.threads()}, {"load_seconds", load_seconds}};
    int exit_code = kExitOk;
    engine.submit(
        [&](persona::Model& model, const persona::CancelFn& cancelled) {
            // A deterministic prompt of ordinary tokens, so every run measures the same work.
            std::vector<std::int32_t> prompt;
            for (int i = 0; i < options.prompt_tokens; ++i) prompt.push_back(1000 + (i * 37) % 20000);
            auto timed = [&](const std::vector<persona::GenerationRow>& rows) {
                const auto start = clock::now();
                model.generate(rows, {}, nullptr, cancelled);
                return std::chrono::duration<double>(clock::now() - start).count();
            };
            persona::GenerationRow row;
            row.prompt_tokens = prompt;
            row.sampling.stop_at_eos = false;
            // Prefill: one new token costs the prompt's forward pass plus one sampling step.
            row.sampling.max_new_tokens = 1;
            timed({row});  // warm-up: first calls allocate
            const double prefill = timed({row});
            report["prefill_tokens"] = options.prompt_tokens;
            report["prefill_tokens_per_second"] = options.prompt_tokens / prefill;

            nlohmann::json decode = nlohmann::json::array();
            for (int batch : options.batches) {
                persona::GenerationRow short_row;
                short_row.prompt_tokens.assign(prompt.begin(), prompt.begin() + std::min<int>(16, options.prompt_tokens));
                short_row.sampling.stop_at_eos = false;
                short_row.sampling.max_new_tokens = 1;
                const std::vector<persona::GenerationRow> first(static_cast<std::size_t>(batch), short_row);
                const double one = timed(first);
                short_row.sampling.max_new_tokens = options.new_tokens + 1;
                const std::vector<persona::GenerationRow> rows(static_cast<std::size_t>(batch), short_row);
                const double all = timed(rows);
                // Decode rate excludes the prefill step measured just before.
                const double seconds = std::max(all - one, 1e-9);
                const double per_row = options.new_tokens / seconds;
                decode.push_back({{"batch", batch}, {"tokens_per_second_per_row", per_row},
                                  {"tokens_per_second_total", per_row * batch}});
            }
            report["decode"] = decode;
            report["new_tokens"] = options.new_tokens;
        },
        [&](const std::string& error) {
            std::fprintf(stderr, "persona-cli: %s\n", error.c_str());
            exit_code = kExitFailed;
        });
    engine.wait_idle();
    if (exit_code != kExitOk) return exit_code;
    if (g_interrupted) return kExitCancelled;
    report["peak_rss_bytes"] = persona::read_process_memory().peak_resident_bytes;

    if (!options.json_only) {
        std::printf("model   %s (%s, %s, %d threads)\n", facts.name.c_str(), report["device"].get<std::string>().c_str(),
                    report["dtype"].get<std::string>().c_str(), engine.threads());
        std::printf("| %-28s | %12s |\n", "test", "value");
        std::printf("|%s|%s|\n", std::string(30, '-').c_str(), std::string(14, '-').c_str());
        std::printf("| %-28s | %10.2f s |\n", "load", load_seconds);
        std::printf("| %-28s | %8.1f t/s |\n", ("prefill " + std::to_string(options.prompt_tokens) + " tokens").c_str(),
                    report["prefill_tokens_per_second"].get<double>());
        for (const auto& d : report["decode"]) {
            const std::string name = "decode batch " + std::to_string(d["batch"].get<int>()) + " (total)";
            std::printf("| %-28s | %8.1f t/s |\n", name.c_str(), d["tokens_per_second_total"].get<double>());
        }
        std::printf("| %-28s | %9.1f MB |\n", "peak RSS", report["peak_rss_bytes"].get<double>() / 1e6);
    }
    std::cout << report.dump() << "\n";
    return kExitOk;
}


// --- traits -----------------------------------------------------------------------------------

nlohmann::json trait_counts(const persona::Trait& trait) {
    return {{"name", trait.name}, {"instruction_pairs", trait.instructions.size()},
            {"extraction_questions", trait.extraction_questions.size()},
            {"evaluation_questions", trait.evaluation_questions.size()}};
}

int run_traits_list(bool json) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& name : persona::builtin_trait_names()) list.push_back(trait_counts(persona::load_builtin_trait(name)));
    if (json) {
        std::cout << list.dump(2) << "\n";
        return kExitOk;
    }
    std::printf("%-16s %6s %10s %10s\n", "trait", "pairs", "extract", "evaluate");
    for (const auto& t : list)
        std::printf("%-16s %6d %10d %10d\n", t["name"].get<std::string>().c_str(), t["instruction_pairs"].get<int>(),
                    t["extraction_questions"].get<int>(), t["evaluation_questions"].get<int>());
    return kExitOk;
}

int run_traits_show(const std::string& name_or_file) {
    std::cout << persona::to_json(load_trait(name_or_file)).dump(2) << "\n";
    return kExitOk;
}

int run_traits_validate(const std::string& path) {
    nlohmann::json report = {{"file", path}};
    std::vector<persona::TraitProblem> problems;
    try {
        problems = persona::validate(persona::read_trait_file(path));
    } catch (const persona::FileError& e) {
        problems.push_back({"", e.problem(), persona::TraitProblemSeverity::Error});
    }
    nlohmann::json listed = nlohmann::json::array();
    for (const auto& problem : problems) {
        const bool error = problem.severity == persona::TraitProblemSeverity::Error;
        listed.push_back({{"field", problem.field}, {"message", problem.message}, {"severity", error ? "error" : "warning"}});
        std::fprintf(stderr, "%s: %s%s%s: %s\n", path.c_str(), problem.field.c_str(), problem.field.empty() ? "" : " ",
                     error ? "error" : "warning", problem.message.c_str());
    }
    const bool valid = !persona::has_errors(problems);
    report["valid"] = valid;
    report["problems"] = listed;
    std::cout << report.dump(2) << "\n";
    return valid ? kExitOk : kExitFailed;
}

// --- extract ----------------------------------------------------------------------------------

struct ExtractOptions {
    std::string trait;
    std::string model = persona::default_model_path();
    std::string out;
    std::string aggregate = "response_avg";
    JudgeOptions judge;
    persona::ExtractionSettings settings;
};

int run_extract(const GlobalOptions& global, ExtractOptions options) {
    const persona::Trait trait = load_trait(options.trait);
    const auto aggregate = persona::aggregate_from_name(options.aggregate);
    if (!aggregate) throw persona::Error("unknown aggregate '" + options.aggregate + "'");
    const auto judge = judge_settings(options.judge);
    if (!judge) return kExitUsage;
    options.settings.judge = *judge;
    if (options.out.empty()) options.out = trait.name + ".safetensors";

    persona::Engine engine(engine_options(global));
    g_engine = &engine;
    persona::ModelFacts facts;
    if (!load(engine, options.model, true, &facts)) return g_interrupted ? kExitCancelled : kExitFailed;

    int exit_code = kExitOk;
    nlohmann::json summary;
    const auto start = std::chrono::steady_clock::now();
    engine.submit(
        [&](persona::Model& model, const persona::CancelFn& cancelled) {
            std::string last_stage;
            const auto result = persona::run_extraction(model, trait, options.settings,
                [&](const std::string& stage, std::size_t done, std::size_t total) {
                    if (stage != last_stage && !last_stage.empty()) std::fprintf(stderr, "\n");
                    last_stage = stage;
                    std::fprintf(stderr, "\r%s %zu/%zu", stage.c_str(), done, total);
                    std::fflush(stderr);
                },
                {}, cancelled);
            std::fprintf(stderr, "\n");
            summary = {{"trait", trait.name}, {"model", facts.path},
                       {"pairs_total", result.pairs_total}, {"pairs_kept", result.pairs_kept},
                       {"pairs_failing_positive_trait", result.pairs_failing_positive_trait},
                       {"pairs_failing_negative_trait", result.pairs_failing_negative_trait},
                       {"pairs_failing_coherence", result.pairs_failing_coherence},
                       {"pairs_with_empty_answer", result.pairs_with_empty_answer},
                       {"samples_generated", result.samples_generated}, {"samples_judged", result.samples_judged},
                       {"samples_resumed", result.samples_resumed}, {"judge", persona::judge_label(options.settings.judge)},
                       {"aggregate", options.aggregate}};
            if (!options.settings.checkpoint_path.empty()) summary["checkpoint"] = options.settings.checkpoint_path;
            if (result.pairs_kept == 0) {
                std::fprintf(stderr, "persona-cli: no pair of answers passed the judge's filter for trait '%s' "
                             "(%zu pairs; see the counts on stdout); try more samples or --judge none\n",
                             trait.name.c_str(), result.pairs_total);
                exit_code = kExitFailed;
                return;
            }
            const auto& chosen = result.aggregate(*aggregate);
            persona::write_vector_file(options.out, chosen.vector);
            summary["suggested_layer"] = chosen.suggested_layer;
            summary["layers"] = diagnostics_json(chosen.diagnostics);
            summary["vector"] = options.out;
            summary["vector_shape"] = {chosen.vector.layer_count, chosen.vector.hidden_size};
        },
        [&](const std::string& error) {
            std::fprintf(stderr, "persona-cli: %s\n", error.c_str());
            exit_code = kExitFailed;
        });
    engine.wait_idle();
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

// --- control vectors --------------------------------------------------------------------------

int run_export(const std::string& vector_path, const std::string& out, double coefficient, std::string model_hint) {
    const persona::PersonaVector vector = persona::read_vector_file(vector_path);
    if (model_hint.empty()) {
        const auto found = vector.provenance.find("model");
        if (found != vector.provenance.end()) model_hint = found->second;
    }
    persona::export_control_vector(out, vector, coefficient, model_hint);
    std::cout << nlohmann::json{{"vector", vector_path}, {"control_vector", out}, {"coefficient", coefficient},
                                {"model_hint", model_hint}, {"directions", vector.layer_count - 2}}
                     .dump(2)
              << "\n";
    return kExitOk;
}

int run_import(const std::string& control_vector, const std::string& out, const std::string& model_path) {
    // The model's shape is all the import needs: its metadata, not its weights.
    const persona::ModelFacts facts = persona::read_model_facts(*persona::GgufFile::open(model_path));
    const persona::PersonaVector vector = persona::import_control_vector(control_vector, facts.hidden_size, facts.layers);
    persona::write_vector_file(out, vector);
    std::cout << nlohmann::json{{"control_vector", control_vector}, {"vector", out},
                                {"shape", {vector.layer_count, vector.hidden_size}}}
                     .dump(2)
              << "\n";
    return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace persona_cli;
    CLI::App app{"persona-cli: persona vectors from the command line (the engine of Persona Workbench)"};
    app.set_version_flag("--version", PERSONA_VERSION);
    app.require_subcommand(1);

    GlobalOptions global;
    // Commands in their own files (cli_<command>.cpp) are added with add_<command>_command(app,
    // global, selected), which sets `selected` when that command was given.
    Command selected;
    app.add_option("--device", global.device, "Where to run the model")->check(CLI::IsMember({"auto", "cpu", "cuda"}))
        ->capture_default_str();
    app.add_option("--dtype", global.dtype, "Weight dtype (auto: bf16)")->check(CLI::IsMember({"auto", "f32", "bf16", "f16"}))
        ->capture_default_str();
    app.add_option("--threads", global.threads, "CPU threads for the model (0: one per core)")->capture_default_str();

    add_monitor_command(app, global, selected);
    add_flag_command(app, global, selected);
    add_project_command(app, global, selected);

    std::string info_model = persona::default_model_path();
    auto* info = app.add_subcommand("info", "Load a model and print its facts as JSON");
    info->add_option("model", info_model, "GGUF model file or Hugging Face checkpoint directory (default: the default model in the cache)")->capture_default_str();

    GenerateOptions gen;
    auto* generate = app.add_subcommand("generate", "Generate a reply, optionally steered, streaming it to stdout");
    generate->add_option("--model,-m", gen.model, "GGUF model file or Hugging Face checkpoint directory")->capture_default_str();
    generate->add_option("--system,-s", gen.system, "System prompt");
    generate->add_option("--prompt,-p", gen.prompt, "User prompt")->required();
    generate->add_option("--steer", gen.steer,
                         "FILE:LAYER:ALPHA: add ALPHA times the vector of LAYER (hidden_states index) from FILE "
                         "(safetensors [L+1, hidden] or [hidden]); repeatable");
    generate->add_option("--positions", gen.positions, "Steered positions")->check(CLI::IsMember({"response", "prompt", "all"}))
        ->capture_default_str();
    generate->add_flag("--ablate", gen.ablate, "Remove the component along the vector instead of adding it");
    generate->add_flag("--preserve-norm", gen.preserve_norm, "Keep each steered activation's norm");
    generate->add_flag("--raw", gen.raw, "Use the prompt as raw text, without the chat template");
    generate->add_option("--temperature,-t", gen.sampling.temperature, "0 for greedy")->capture_default_str();
    generate->add_option("--top-p", gen.sampling.top_p)->capture_default_str();
    generate->add_option("--top-k", gen.sampling.top_k)->capture_default_str();
    generate->add_option("--seed", gen.sampling.seed)->capture_default_str();
    generate->add_option("--max-tokens,-n", gen.sampling.max_new_tokens)->check(CLI::Range(0, 1 << 20))->capture_default_str();
    generate->add_option("--stop", gen.sampling.stop_strings, "Stop when this text appears; repeatable");
    generate->add_flag("--json", gen.json, "Print one JSON object at the end instead of streaming text");

    BenchOptions bench_options;
    auto* bench = app.add_subcommand("bench", "Measure load time, prefill and decode speed, and peak memory");
    bench->add_option("--model,-m", bench_options.model, "GGUF model file or Hugging Face checkpoint directory")->capture_default_str();
    bench->add_option("--prompt-tokens", bench_options.prompt_tokens)->check(CLI::Range(1, 1 << 16))->capture_default_str();
    bench->add_option("--new-tokens", bench_options.new_tokens)->check(CLI::Range(1, 1 << 16))->capture_default_str();
    bench->add_option("--batch", bench_options.batches, "Decode batch sizes")->capture_default_str();
    bench->add_flag("--json", bench_options.json_only, "Print only the JSON line");

    bool traits_json = false;
    auto* traits = app.add_subcommand("traits", "List the built-in traits; show or validate one");
    traits->add_flag("--json", traits_json, "Print the list as JSON");
    traits->require_subcommand(0, 1);
    std::string show_name;
    auto* traits_show = traits->add_subcommand("show", "Print a trait (built-in name or file) as JSON");
    traits_show->add_option("name", show_name, "Built-in trait name or trait file")->required();
    std::string validate_path;
    auto* traits_validate = traits->add_subcommand("validate", "Check a trait file; exit 1 when it has errors");
    traits_validate->add_option("file", validate_path, "Trait file")->required();
    add_traits_draft_command(*traits, global, selected);

    ExtractOptions ex;
    auto* extract = app.add_subcommand("extract", "Extract a persona vector for a trait (docs/method.md), summary as JSON");
    extract->add_option("--trait", ex.trait, "Built-in trait name or trait file")->required();
    extract->add_option("--model,-m", ex.model, "GGUF model file")->capture_default_str();
    extract->add_option("--out,-o", ex.out, "Vector file to write (default: TRAIT.safetensors)");
    extract->add_option("--aggregate", ex.aggregate, "Which activation the written vector is made of")
        ->check(CLI::IsMember({"response_avg", "prompt_avg", "prompt_last"}))->capture_default_str();
    extract->add_option("--questions", ex.settings.question_limit, "Extraction questions to use (0: all)")
        ->check(CLI::NonNegativeNumber)->capture_default_str();
    extract->add_option("--pairs", ex.settings.pair_limit, "Instruction pairs to use (0: all)")
        ->check(CLI::NonNegativeNumber)->capture_default_str();
    extract->add_option("--samples", ex.settings.samples_per_question, "Answers per question, pair and side")
        ->check(CLI::Range(1, 1000))->capture_default_str();
    extract->add_option("--max-tokens,-n", ex.settings.max_new_tokens)->check(CLI::Range(1, 1 << 16))->capture_default_str();
    extract->add_option("--temperature,-t", ex.settings.temperature)->capture_default_str();
    extract->add_option("--top-p", ex.settings.top_p)->capture_default_str();
    extract->add_option("--seed", ex.settings.seed)->capture_default_str();
    extract->add_option("--batch", ex.settings.batch_size)->check(CLI::Range(1, 4096))->capture_default_str();
    add_judge_options(*extract, ex.judge, "keep every pair");
    extract->add_option("--trait-threshold", ex.settings.trait_threshold)->capture_default_str();
    extract->add_option("--coherence-threshold", ex.settings.coherence_threshold)->capture_default_str();
    extract->add_option("--checkpoint", ex.settings.checkpoint_path, "Save finished samples here and resume from it");

    std::string export_vector, export_out, export_hint;
    double export_coefficient = 1.0;
    auto* export_cmd = app.add_subcommand("export", "Write a vector as a llama.cpp control vector (GGUF)");
    export_cmd->add_option("--vector", export_vector, "Vector file (safetensors)")->required();
    export_cmd->add_option("--out,-o", export_out, "Control vector to write (.gguf)")->required();
    export_cmd->add_option("--coefficient", export_coefficient, "Scale baked into the directions")->capture_default_str();
    export_cmd->add_option("--model-hint", export_hint, "controlvector.model_hint (default: the vector's model)");

    std::string import_file, import_out, import_model = persona::default_model_path();
    auto* import_cmd = app.add_subcommand("import", "Read a llama.cpp / repeng control vector into a vector file");
    import_cmd->add_option("--control-vector", import_file, "Control vector (.gguf)")->required();
    import_cmd->add_option("--out,-o", import_out, "Vector file to write (safetensors)")->required();
    import_cmd->add_option("--model,-m", import_model, "The model it steers (for its shape)")->capture_default_str();

    add_sweep_command(app, global, selected);

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? kExitOk : kExitUsage;
    }
    std::signal(SIGINT, on_interrupt);
    std::signal(SIGTERM, on_interrupt);

    try {
        if (selected) return selected();
        if (*info) return run_info(global, info_model);
        if (*generate) return run_generate(global, gen);
        if (*bench) return run_bench(global, bench_options);
        if (*traits_show) return run_traits_show(show_name);
        if (*traits_validate) return run_traits_validate(validate_path);
        if (*traits) return run_traits_list(traits_json);
        if (*extract) return run_extract(global, ex);
        if (*export_cmd) return run_export(export_vector, export_out, export_coefficient, export_hint);
        if (*import_cmd) return run_import(import_file, import_out, import_model);
    } catch (const std::exception& e) {
        std::cerr << "persona-cli: " << e.what() << "\n";
        return kExitFailed;
    }
    return kExitUsage;
}
