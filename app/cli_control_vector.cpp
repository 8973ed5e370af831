// persona-cli export and import: a vector file to a llama.cpp control vector (GGUF) and back, so
// a persona vector can steer llama.cpp and a llama.cpp / repeng control vector can be studied here.
#include "cli_commands.h"

#include "persona/model_facts.h"
#include "persona/paths.h"
#include "persona/persona_vector.h"
#include "persona/vector_files.h"

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>

namespace persona_cli {

namespace {

struct ExportOptions {
    std::string vector;
    std::string out;
    std::string hint;
    double coefficient = 1.0;
};

struct ImportOptions {
    std::string file;
    std::string out;
    std::string model = persona::default_model_path();
};

int run_export(const std::string& vector_path, const std::string& out, double coefficient, std::string model_hint) {
    const persona::PersonaVector vector = persona::read_vector_file(vector_path);
    if (persona::is_torch_vector_path(out) || std::filesystem::path(out).extension() == ".safetensors") {
        // These hold the vector as it is: a coefficient would change it silently.
        if (coefficient != 1.0) {
            std::fprintf(stderr, "persona-cli export: --coefficient applies to control vectors (.gguf) only\n");
            return kExitUsage;
        }
        persona::write_vector_file(out, vector);
        std::cout << nlohmann::json{{"vector", vector_path}, {"out", out}, {"shape", {vector.layer_count, vector.hidden_size}}}
                         .dump(2)
                  << "\n";
        return kExitOk;
    }
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
    const persona::ModelFacts facts = persona::inspect_model(model_path);
    const persona::PersonaVector vector = persona::import_control_vector(control_vector, facts.hidden_size, facts.layers);
    persona::write_vector_file(out, vector);
    std::cout << nlohmann::json{{"control_vector", control_vector}, {"vector", out},
                                {"shape", {vector.layer_count, vector.hidden_size}}}
                     .dump(2)
              << "\n";
    return kExitOk;
}

}  // namespace

void add_export_command(CLI::App& app, const GlobalOptions&, Command& selected) {
    auto options = std::make_shared<ExportOptions>();
    auto* export_cmd = app.add_subcommand("export", "Write a vector in the format OUT's extension names: a llama.cpp "
                                                    "control vector (.gguf), a PyTorch tensor for the persona_vectors "
                                                    "scripts (.pt), or our vector file (.safetensors)");
    export_cmd->add_option("--vector", options->vector, "Vector file (safetensors, or .pt from persona_vectors)")->required();
    export_cmd->add_option("--out,-o", options->out, "File to write (.pt, .pth, .safetensors; any other name: a GGUF control vector)")->required();
    export_cmd->add_option("--coefficient", options->coefficient, "Scale baked into a .gguf's directions")->capture_default_str();
    export_cmd->add_option("--model-hint", options->hint, "controlvector.model_hint (default: the vector's model)");
    export_cmd->callback([&selected, options] {
        selected = [options] { return run_export(options->vector, options->out, options->coefficient, options->hint); };
    });
}

void add_import_command(CLI::App& app, const GlobalOptions&, Command& selected) {
    auto options = std::make_shared<ImportOptions>();
    auto* import_cmd = app.add_subcommand("import", "Read a llama.cpp / repeng control vector into a vector file");
    import_cmd->add_option("--control-vector", options->file, "Control vector (.gguf)")->required();
    import_cmd->add_option("--out,-o", options->out, "Vector file to write (safetensors)")->required();
    import_cmd->add_option("--model,-m", options->model, "The model it steers (for its shape)")->capture_default_str();
    import_cmd->callback([&selected, options] {
        selected = [options] { return run_import(options->file, options->out, options->model); };
    });
}

}  // namespace persona_cli
