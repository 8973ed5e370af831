#pragma once
// What every persona-cli command shares: exit codes, global options, loading a model on the
// engine thread, Ctrl-C handling, and how a command file registers itself with the parser.
// Each command lives in its own cli_<command>.cpp so commands can grow without one huge file.
#include "persona/engine.h"
#include "persona/judge.h"
#include "persona/model_facts.h"
#include "persona/persona_vector.h"
#include "persona/trait.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <csignal>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace persona_cli {

// Exit codes scripts can rely on.
constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;  // the input was bad or the job failed
constexpr int kExitUsage = 2;   // the command line was wrong (CLI11 uses this too)
constexpr int kExitCancelled = 130;

// The engine whose jobs SIGINT/SIGTERM cancel; a command sets it once it made its engine.
extern persona::Engine* g_engine;
extern volatile std::sig_atomic_t g_interrupted;
void on_interrupt(int);

struct GlobalOptions {
    std::string device = "auto";
    std::string dtype = "auto";
    int threads = 0;
    bool thinking = false;
    std::string adapter;
};

persona::EngineOptions engine_options(const GlobalOptions& global);

// Loads the model on the engine thread, reporting progress on stderr unless quiet; false when
// it failed (the reason is on stderr).
bool load(persona::Engine& engine, const std::string& path, bool quiet, persona::ModelFacts* facts_out = nullptr);

// Runs `work` as one engine job and waits for its ending; a failure's message goes to stderr
// ("persona-cli: ..."). Returns how the job ended.
persona::JobState run_job(persona::Engine& engine, persona::Engine::Work work);

// A built-in trait's name, else a trait file: so --trait evil and --trait my/evil.json both work.
persona::Trait load_trait(const std::string& name_or_file);

// --layer when given (>= 0), else the layer the vector's extraction suggested; FileError naming
// the vector file when it suggests none.
int chosen_layer(int requested, const persona::PersonaVector& vector, const std::string& vector_path);

// Per-layer diagnostics as JSON (NaN effect sizes become null: JSON has no NaN).
nlohmann::json diagnostics_json(const std::vector<persona::LayerDiagnostics>& diagnostics);

// The judge choice as the command line gives it: --judge local|http|none, a second local model,
// or an OpenAI-compatible endpoint. extract and sweep take the same options.
struct JudgeOptions {
    std::string kind = "local";
    std::string model;
    persona::ChatEndpoint endpoint;
};
void add_judge_options(CLI::App& command, JudgeOptions& options, const std::string& none_means);
// The settings core takes; nothing (the reason printed on stderr, a usage error) when --judge
// http lacks its URL or model name.
std::optional<persona::JudgeSettings> judge_settings(const JudgeOptions& options);

// A command file adds its subcommand to `app` and, when the subcommand was given, sets
// `selected` (in a CLI11 callback) to the function main() then runs inside its error handling:
//     void add_sweep_command(CLI::App& app, const GlobalOptions& global, Command& selected);
using Command = std::function<int()>;

}  // namespace persona_cli
