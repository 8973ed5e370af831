#include "cli_common.h"

#include "persona/errors.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

namespace persona_cli {

persona::Engine* g_engine = nullptr;
volatile std::sig_atomic_t g_interrupted = 0;

void on_interrupt(int) {
    g_interrupted = 1;
    if (g_engine) g_engine->cancel_all();  // an atomic increment: safe in a signal handler
}

persona::EngineOptions engine_options(const GlobalOptions& global) {
    return persona::EngineOptions{global.threads, global.device, global.dtype, global.thinking, global.adapter};
}

bool load(persona::Engine& engine, const std::string& path, bool quiet, persona::ModelFacts* facts_out) {
    bool ok = false;
    engine.load_model(path, {
        [quiet](const persona::Progress& p) {
            if (!quiet && p.total > 1 && (p.done == p.total || p.done % 32 == 0))
                std::fprintf(stderr, "\r%s %llu/%llu", p.stage.c_str(), static_cast<unsigned long long>(p.done),
                             static_cast<unsigned long long>(p.total));
            if (!quiet && p.total > 1 && p.done == p.total) std::fprintf(stderr, "\n");
        },
        [&](const persona::ModelFacts& facts) {
            ok = true;
            if (facts_out) *facts_out = facts;
        },
        [](const std::string& error) { std::fprintf(stderr, "persona-cli: %s\n", error.c_str()); },
        [] { std::fprintf(stderr, "persona-cli: cancelled\n"); },
    });
    engine.wait_idle();
    return ok;
}

persona::JobState run_job(persona::Engine& engine, persona::Engine::Work work) {
    persona::JobEndings endings;
    endings.failed = [](const std::string& error) { std::fprintf(stderr, "persona-cli: %s\n", error.c_str()); };
    return engine.submit(std::move(work), std::move(endings)).wait();
}

persona::Trait load_trait(const std::string& name_or_file) {
    const auto names = persona::builtin_trait_names();
    if (std::find(names.begin(), names.end(), name_or_file) != names.end()) return persona::load_builtin_trait(name_or_file);
    if (!std::filesystem::exists(name_or_file)) {
        std::string known;
        for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
        throw persona::Error("'" + name_or_file + "' is neither a built-in trait (" + known + ") nor a trait file");
    }
    return persona::read_trait_file(name_or_file);
}

nlohmann::json diagnostics_json(const std::vector<persona::LayerDiagnostics>& diagnostics) {
    nlohmann::json layers = nlohmann::json::array();
    // JSON has no NaN or infinity; a missing effect size says "not defined" honestly.
    const auto number = [](double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr); };
    for (const auto& d : diagnostics)
        layers.push_back({{"layer", d.layer}, {"norm", d.vector_norm}, {"effect_size", number(d.effect_size)},
                          {"auroc", d.auroc}, {"positive_mean_projection", d.positive_mean_projection},
                          {"negative_mean_projection", d.negative_mean_projection}});
    return layers;
}

void add_judge_options(CLI::App& command, JudgeOptions& options, const std::string& none_means) {
    command.add_option("--judge", options.kind,
                       "local: the model judges its answers; http: an OpenAI-compatible endpoint judges; none: " + none_means)
        ->check(CLI::IsMember(persona::judge_kind_names()))->capture_default_str();
    command.add_option("--judge-model", options.model,
                       "With --judge local: a second model (GGUF or HF directory) judges instead of the studied one")
        ->check(CLI::ExistingPath);
    command.add_option("--judge-url", options.endpoint.base_url,
                       "With --judge http: the endpoint's base URL, e.g. https://api.openai.com/v1 or "
                       "http://localhost:8080/v1 (requests go to URL/chat/completions)");
    command.add_option("--judge-model-name", options.endpoint.model, "With --judge http: the model name the server knows");
    command.add_option("--judge-key-env", options.endpoint.api_key_env,
                       "With --judge http: the environment variable holding the API key (never stored)")
        ->capture_default_str();
    command.add_option("--judge-timeout", options.endpoint.timeout_seconds, "With --judge http: seconds per request")
        ->check(CLI::PositiveNumber)->capture_default_str();
    command.add_option("--judge-retries", options.endpoint.retries,
                       "With --judge http: retries after HTTP 429/5xx, with doubling waits")
        ->check(CLI::Range(0, 100))->capture_default_str();
}

std::optional<persona::JudgeSettings> judge_settings(const JudgeOptions& options) {
    const auto kind = persona::judge_kind_from_name(options.kind);
    if (!kind) {
        std::fprintf(stderr, "persona-cli: unknown judge '%s' (local, http or none)\n", options.kind.c_str());
        return std::nullopt;
    }
    persona::JudgeSettings settings = *kind;
    settings.model_path = options.model;
    settings.endpoint = options.endpoint;
    if (settings.kind == persona::JudgeKind::Http && (settings.endpoint.base_url.empty() || settings.endpoint.model.empty())) {
        std::fprintf(stderr, "persona-cli: --judge http needs --judge-url and --judge-model-name\n");
        return std::nullopt;
    }
    return settings;
}

int chosen_layer(int requested, const persona::PersonaVector& vector, const std::string& vector_path) {
    if (requested >= 0) return requested;
    if (const std::optional<int> suggested = vector.suggested_layer()) return *suggested;
    throw persona::FileError(vector_path, "suggests no layer; choose one with --layer");
}

}  // namespace persona_cli
