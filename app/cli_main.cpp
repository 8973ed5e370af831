// persona-cli: the headless face of the engine, for servers and batch jobs. Every command runs
// its work on the engine thread, exactly as the GUI does.
#include "cli_commands.h"
#include "cli_common.h"
#include "persona/model.h"
#include "persona/process_setup.h"

#include <CLI/CLI.hpp>

#include <csignal>
#include <exception>
#include <iostream>

int main(int argc, char** argv) {
    persona::relaunch_with_openmp_settings(argv);
    using namespace persona_cli;
    CLI::App app{"persona-cli: persona vectors from the command line (the engine of Persona Workbench)"};
    app.set_version_flag("--version", PERSONA_VERSION);
    app.require_subcommand(1);
    // Global options may follow the command too: persona-cli generate --adapter DIR ...
    app.fallthrough();

    GlobalOptions global;
    // Each command lives in its own file (cli_<command>.cpp) and is added with
    // add_<command>_command(app, global, selected), which sets `selected` when that command was given.
    Command selected;
    app.add_option("--device", global.device, "Where to run the model")->check(CLI::IsMember(persona::device_names()))
        ->capture_default_str();
    app.add_option("--dtype", global.dtype, "Weight dtype (auto: bf16 on a GPU or an AVX512-BF16 CPU, else f32; quantized: a GGUF file's quantized matrices stay in their blocks, CPU only; quantized-precise: the same, with results within ~1e-4 of f32's and a slower decode)")->check(CLI::IsMember(persona::dtype_names()))
        ->capture_default_str();
    app.add_option("--threads", global.threads, "CPU threads for the model (0: one per core)")->capture_default_str();
    app.add_option("--adapter", global.adapter,
                   "A LoRA adapter folder in PEFT's layout (adapter_config.json, adapter_model.safetensors), merged into "
                   "the model at load")->check(CLI::ExistingDirectory);
    app.add_flag("--thinking", global.thinking,
                 "Let models with a thinking switch (Qwen3) reason in a <think> block before answering; off by default, "
                 "since extraction and steering read the answer");

    // The order here is the order `persona-cli --help` lists the commands in.
    add_monitor_command(app, global, selected);
    add_monitor_prompts_command(app, global, selected);
    add_flag_command(app, global, selected);
    add_project_command(app, global, selected);
    add_info_command(app, global, selected);
    add_generate_command(app, global, selected);
    add_bench_command(app, global, selected);
    add_traits_command(app, global, selected);
    add_extract_command(app, global, selected);
    add_export_command(app, global, selected);
    add_import_command(app, global, selected);
    add_sweep_command(app, global, selected);
    add_finetune_command(app, global, selected);
    add_shift_command(app, global, selected);
    add_serve_command(app, global, selected);

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
