// persona-cli info: load a model and print its facts as JSON.
#include "cli_commands.h"

#include "persona/model_facts.h"
#include "persona/paths.h"

#include <iostream>
#include <memory>
#include <string>

namespace persona_cli {

namespace {

int run_info(const GlobalOptions& global, const std::string& model_path) {
    persona::Engine engine(engine_options(global));
    g_engine = &engine;
    persona::ModelFacts facts;
    if (!load(engine, model_path, true, &facts)) return g_interrupted ? kExitCancelled : kExitFailed;
    std::cout << persona::to_json(facts).dump(2) << "\n";
    return kExitOk;
}

}  // namespace

void add_info_command(CLI::App& app, const GlobalOptions& global, Command& selected) {
    auto model = std::make_shared<std::string>(persona::default_model_path());
    auto* info = app.add_subcommand("info", "Load a model and print its facts as JSON");
    info->add_option("model", *model, "GGUF model file or Hugging Face checkpoint directory (default: the default model in the cache)")->capture_default_str();
    info->callback([&global, &selected, model] { selected = [&global, model] { return run_info(global, *model); }; });
}

}  // namespace persona_cli
