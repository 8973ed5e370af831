// The project in memory: its members, equality, and what a run records of its model.
#include "persona/project.h"

#include "persona/errors.h"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <filesystem>

namespace persona {

namespace {

bool same_diagnostic_value(double a, double b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

std::string slug_for_file(const std::string& text) {
    std::string slug;
    for (char c : text) {
        const bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
        slug += keep ? c : '_';
    }
    if (slug.empty() || slug.front() == '.') slug = "vector" + slug;
    return slug;
}

}  // namespace

// --- Prompt / Project members --------------------------------------------------------------------

std::string Prompt::system() const {
    for (const ChatMessage& m : messages)
        if (m.role == "system") return m.content;
    return "";
}

std::string Prompt::user() const {
    for (auto it = messages.rbegin(); it != messages.rend(); ++it)
        if (it->role == "user") return it->content;
    return "";
}

Prompt Prompt::single_turn(const std::string& name, const std::string& system, const std::string& user) {
    Prompt prompt;
    prompt.name = name;
    if (!system.empty()) prompt.messages.push_back({"system", system});
    prompt.messages.push_back({"user", user});
    return prompt;
}

const RunResult* Project::latest_run(const std::string& trait) const {
    for (auto it = runs.rbegin(); it != runs.rend(); ++it)
        if (it->trait == trait) return &*it;
    return nullptr;
}

std::string Project::add_run(RunResult run, const PersonaVector* vector) {
    std::string key;
    if (vector) {
        vector->check_shape();
        const std::string stem = std::string(kProjectVectorFolder) + "/" + slug_for_file(run.trait.empty() ? vector->trait : run.trait) +
                                 "." + aggregate_name(vector->aggregate);
        key = stem + ".safetensors";
        for (int n = 2; vectors.count(key); ++n) key = stem + "-" + std::to_string(n) + ".safetensors";
        vectors[key] = *vector;
        run.aggregate = vector->aggregate;
    }
    run.vector = key;
    runs.push_back(std::move(run));
    return key;
}

namespace {
// "FOLDER/STEM-YYYYMMDDTHHMMSSZ.json", with -2, -3, ... when `taken` has it.
template <typename Kept>
std::string new_result_key(const char* folder, const std::string& stem, const Kept& kept) {
    char stamp[32];
    const std::time_t now = std::time(nullptr);
    std::tm utc{};
    gmtime_r(&now, &utc);
    std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &utc);
    const std::string base = std::string(folder) + "/" + stem + "-" + stamp;
    const auto taken = [&](const std::string& key) {
        return std::any_of(kept.begin(), kept.end(), [&](const auto& entry) { return entry.first == key; });
    };
    std::string key = base + ".json";
    for (int n = 2; taken(key); ++n) key = base + "-" + std::to_string(n) + ".json";
    return key;
}
}  // namespace

std::string Project::add_monitoring_study(MonitoringStudy study) {
    const std::string key = new_result_key(kProjectMonitoringFolder,
                                           slug_for_file(study.trait) + "-layer" + std::to_string(study.layer), monitoring);
    monitoring.emplace_back(key, std::move(study));
    return key;
}

std::string Project::add_sweep(SweepResult sweep) {
    const std::string key = new_result_key(kProjectSweepFolder, slug_for_file(sweep.trait), sweeps);
    sweeps.emplace_back(key, std::move(sweep));
    return key;
}

bool operator==(const Prompt& a, const Prompt& b) {
    if (a.name != b.name || a.messages.size() != b.messages.size()) return false;
    for (std::size_t i = 0; i < a.messages.size(); ++i)
        if (a.messages[i].role != b.messages[i].role || a.messages[i].content != b.messages[i].content) return false;
    return true;
}

bool operator==(const SteeringTerm& a, const SteeringTerm& b) {
    return a.vector == b.vector && a.layer == b.layer && a.value == b.value && a.operation == b.operation;
}

bool operator==(const SteeringSettings& a, const SteeringSettings& b) {
    return a.vector == b.vector && a.layer == b.layer && a.coefficient == b.coefficient && a.positions == b.positions &&
           a.operation == b.operation && a.more_vectors == b.more_vectors && a.preserve_norm == b.preserve_norm &&
           a.system_prompt == b.system_prompt && a.prompt == b.prompt && a.max_new_tokens == b.max_new_tokens && a.sample == b.sample &&
           a.temperature == b.temperature && a.seed == b.seed;
}

namespace {
bool same_extraction_settings(const ExtractionSettings& a, const ExtractionSettings& b) {
    return a.samples_per_question == b.samples_per_question && a.max_new_tokens == b.max_new_tokens &&
           a.temperature == b.temperature && a.top_p == b.top_p && a.seed == b.seed && a.batch_size == b.batch_size &&
           a.question_limit == b.question_limit && a.pair_limit == b.pair_limit && judge_label(a.judge) == judge_label(b.judge) &&
           a.judge_mode == b.judge_mode && a.pairwise_threshold == b.pairwise_threshold &&
           a.trait_threshold == b.trait_threshold && a.negative_threshold == b.negative_threshold &&
           a.coherence_threshold == b.coherence_threshold;
}

bool same_vector(const PersonaVector& a, const PersonaVector& b) {
    return a.trait == b.trait && a.aggregate == b.aggregate && a.layer_count == b.layer_count &&
           a.hidden_size == b.hidden_size && a.values.size() == b.values.size() &&
           std::memcmp(a.values.data(), b.values.data(), a.values.size() * sizeof(float)) == 0 &&
           a.provenance == b.provenance;
}
}  // namespace

bool operator==(const ProjectSettings& a, const ProjectSettings& b) {
    return same_extraction_settings(a.extraction, b.extraction) && a.extraction_aggregate == b.extraction_aggregate &&
           a.steering == b.steering;
}

bool operator==(const ModelIdentity& a, const ModelIdentity& b) {
    return a.name == b.name && a.file == b.file && a.sha256 == b.sha256 && a.file_bytes == b.file_bytes &&
           a.dtype == b.dtype && a.device == b.device;
}

bool operator==(const RunResult& a, const RunResult& b) {
    if (!(a.trait == b.trait && a.vector == b.vector && a.aggregate == b.aggregate && a.model == b.model &&
          a.started == b.started && a.finished == b.finished && same_extraction_settings(a.settings, b.settings) &&
          a.pairs == b.pairs && a.positive_samples == b.positive_samples &&
          a.negative_samples == b.negative_samples && a.suggested_layer == b.suggested_layer &&
          a.diagnostics.size() == b.diagnostics.size()))
        return false;
    for (std::size_t i = 0; i < a.diagnostics.size(); ++i) {
        const LayerDiagnostics& x = a.diagnostics[i];
        const LayerDiagnostics& y = b.diagnostics[i];
        if (x.layer != y.layer || !same_diagnostic_value(x.vector_norm, y.vector_norm) ||
            !same_diagnostic_value(x.effect_size, y.effect_size) || !same_diagnostic_value(x.auroc, y.auroc) ||
            !same_diagnostic_value(x.positive_mean_projection, y.positive_mean_projection) ||
            !same_diagnostic_value(x.negative_mean_projection, y.negative_mean_projection))
            return false;
    }
    return true;
}

bool operator==(const Project& a, const Project& b) {
    if (!(a.name == b.name && a.description == b.description && a.created == b.created && a.modified == b.modified &&
          a.app_version == b.app_version && a.traits == b.traits && a.prompts == b.prompts && a.settings == b.settings &&
          a.runs == b.runs && a.vectors.size() == b.vectors.size() && a.monitoring.size() == b.monitoring.size()))
        return false;
    for (std::size_t i = 0; i < a.monitoring.size(); ++i)
        if (a.monitoring[i].first != b.monitoring[i].first ||
            monitoring_study_json(a.monitoring[i].second) != monitoring_study_json(b.monitoring[i].second))
            return false;
    if (a.sweeps.size() != b.sweeps.size()) return false;
    for (std::size_t i = 0; i < a.sweeps.size(); ++i)
        if (a.sweeps[i].first != b.sweeps[i].first ||
            sweep_result_json(a.sweeps[i].second) != sweep_result_json(b.sweeps[i].second))
            return false;
    for (auto x = a.vectors.begin(), y = b.vectors.begin(); x != a.vectors.end(); ++x, ++y)
        if (x->first != y->first || !same_vector(x->second, y->second)) return false;
    return true;
}

bool operator!=(const Project& a, const Project& b) { return !(a == b); }

ModelIdentity model_identity(const ModelFacts& facts) {
    ModelIdentity identity;
    identity.name = facts.name;
    identity.file = std::filesystem::path(facts.path).lexically_normal().filename().string();
    if (identity.file.empty()) identity.file = std::filesystem::path(facts.path).lexically_normal().parent_path().filename().string();
    identity.sha256 = facts.fingerprint;
    identity.file_bytes = facts.file_bytes;
    identity.dtype = facts.dtype;
    identity.device = facts.device;
    return identity;
}

std::string utc_timestamp() {
    const std::time_t now = std::time(nullptr);
    std::tm utc{};
    gmtime_r(&now, &utc);
    char text[32];
    std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
    return text;
}

RunResult run_result_from_extraction(const ExtractionResult& result, const ExtractionSettings& settings,
                                     Aggregate aggregate) {
    RunResult run;
    run.trait = result.trait;
    run.aggregate = aggregate;
    run.settings = settings;
    run.settings.checkpoint_path.clear();
    run.pairs = result.pairs;
    for (const Sample& sample : result.samples)
        if (sample.kept) (sample.side == Side::Positive ? run.positive_samples : run.negative_samples)++;
    if (result.pairs.kept > 0) {
        const AggregateResult& chosen = result.aggregate(aggregate);
        run.suggested_layer = chosen.suggested_layer;
        run.diagnostics = chosen.diagnostics;
    }
    return run;
}

}  // namespace persona
