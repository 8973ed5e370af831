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
    if (g_engine) g_engine->cancel();  // only sets an atomic flag: safe in a signal handler
}

persona::EngineOptions engine_options(const GlobalOptions& global) {
    return persona::EngineOptions{global.threads, global.device, global.dtype};
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

}  // namespace persona_cli
