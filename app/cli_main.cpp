// persona-cli: the headless face of the engine, for servers and batch jobs. Every command runs
// its work on the engine thread, exactly as the GUI does.
#include "cli_commands.h"
#include "cli_common.h"
#include "persona/model.h"

#include <CLI/CLI.hpp>

#include <csignal>
#include <exception>
#include <iostream>

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
    } catch (const std::exception& e) {
        std::cerr << "persona-cli: " << e.what() << "\n";
        return kExitFailed;
    }
    return kExitUsage;
}
