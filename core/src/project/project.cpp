#include "persona/project.h"

#include "io/atomic_file.h"
#include "io/json_file.h"
#include "io/json_reader.h"
#include "persona/errors.h"
#include "persona/files.h"
#include "persona/vector_files.h"
#include "project/project_internal.h"


#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <unistd.h>

namespace persona {

namespace fs = std::filesystem;

namespace detail {
std::function<void(const std::string& stage)> project_save_fault_hook;
}

namespace {

using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;
using detail::indexed;
using detail::json_type_phrase;
using detail::JsonObjectReader;

constexpr const char* kAppVersion = "persona-workbench " PERSONA_VERSION;
// project.json holds diagnostics and prompts, never tensors: a bigger file is the wrong file.
constexpr std::uint64_t kMaxProjectFileBytes = 50'000'000;

[[noreturn]] void fail(const std::string& source, const std::string& problem) { throw FileError(source, problem); }

// Far more layers than any model has (the largest have about 130), so a layer index above it in
// a project file is damage, not a model.
constexpr long long kMaxLayerIndex = 4096;

// A project written by a newer Persona Workbench may hold keys this one does not know.
const std::string kUnknownKeyHint =
    " (misspelt? a project of schema version " + std::to_string(kProjectSchemaVersion) + " has no such key)";

// Names come from core's one table per enum (enum_names.cpp).
template <typename Enum>
Enum enum_from(JsonObjectReader& reader, const std::string& key, std::optional<Enum> (*from_name)(const std::string&),
               std::vector<std::string> (*names)()) {
    const std::string text = reader.string(key);
    if (const std::optional<Enum> value = from_name(text)) return *value;
    std::string known;
    for (const std::string& name : names()) known += (known.empty() ? "" : ", ") + name;
    fail(reader.source(), reader.field(key) + " is \"" + text + "\"; it must be one of " + known);
}

OrderedJson special_number(double value) {
    if (std::isnan(value)) return nullptr;
    if (std::isinf(value)) return value > 0 ? "Infinity" : "-Infinity";
    return value;
}

// --- to JSON ------------------------------------------------------------------------------------

// In the order trait.h documents, so the traits inside a project read like trait files.
OrderedJson ordered_trait(const Trait& trait) {
    const Json plain = to_json(trait);
    OrderedJson json;
    for (const char* key : {"schema", "version", "name", "definition", "instructions", "extraction_questions",
                            "evaluation_questions", "judge_rubric", "coherence_rubric"})
        json[key] = OrderedJson::parse(plain.at(key).dump());
    OrderedJson instructions = OrderedJson::array();
    for (const InstructionPair& pair : trait.instructions)
        instructions.push_back({{"positive", pair.positive}, {"negative", pair.negative}});
    json["instructions"] = std::move(instructions);
    return json;
}

OrderedJson extraction_settings_json(const ExtractionSettings& s) {
    OrderedJson json;
    json["samples_per_question"] = s.samples_per_question;
    json["max_new_tokens"] = s.max_new_tokens;
    json["temperature"] = s.temperature;
    json["top_p"] = s.top_p;
    json["seed"] = s.seed;
    json["batch_size"] = s.batch_size;
    json["question_limit"] = s.question_limit;
    json["pair_limit"] = s.pair_limit;
    json["judge"] = judge_kind_name(s.judge.kind);
    if (!s.judge.model_path.empty()) json["judge_model"] = s.judge.model_path;
    // Where an HTTP judge was asked; never its key, which stays in the named environment variable.
    if (s.judge.kind == JudgeKind::Http)
        json["judge_endpoint"] = {{"base_url", s.judge.endpoint.base_url}, {"model", s.judge.endpoint.model},
                                  {"api_key_env", s.judge.endpoint.api_key_env}};
    json["trait_threshold"] = s.trait_threshold;
    json["coherence_threshold"] = s.coherence_threshold;
    return json;
}

ExtractionSettings extraction_settings_from(JsonObjectReader& r) {
    ExtractionSettings s;
    s.samples_per_question = int(r.integer("samples_per_question", 1, 1 << 20));
    s.max_new_tokens = int(r.integer("max_new_tokens", 1, 1 << 20));
    s.temperature = float(r.number("temperature", 0, 100));
    s.top_p = float(r.number("top_p", 0, 1));
    s.seed = r.unsigned_integer("seed");
    s.batch_size = int(r.integer("batch_size", 1, 1 << 20));
    s.question_limit = int(r.integer("question_limit", 0, 1 << 20));
    s.pair_limit = int(r.integer("pair_limit", 0, 1 << 20));
    s.judge = enum_from(r, "judge", judge_kind_from_name, judge_kind_names);
    if (r.has("judge_model")) s.judge.model_path = r.string("judge_model");
    if (r.has("judge_endpoint")) {
        JsonObjectReader endpoint = r.object("judge_endpoint");
        s.judge.endpoint.base_url = endpoint.string("base_url");
        s.judge.endpoint.model = endpoint.string("model");
        s.judge.endpoint.api_key_env = endpoint.string("api_key_env");
        endpoint.finish(kUnknownKeyHint);
    }
    s.trait_threshold = r.number("trait_threshold");
    s.coherence_threshold = r.number("coherence_threshold");
    return s;
}

OrderedJson run_json(const RunResult& run) {
    OrderedJson json;
    json["trait"] = run.trait;
    json["vector"] = run.vector;
    json["aggregate"] = aggregate_name(run.aggregate);
    json["model"] = {{"name", run.model.name},
                     {"file", run.model.file},
                     {"sha256", run.model.sha256},
                     {"file_bytes", run.model.file_bytes}};
    // The same weights give other answers in another dtype or on another device.
    if (!run.model.dtype.empty()) json["model"]["dtype"] = run.model.dtype;
    if (!run.model.device.empty()) json["model"]["device"] = run.model.device;
    json["started"] = run.started;
    json["finished"] = run.finished;
    json["settings"] = extraction_settings_json(run.settings);
    OrderedJson counts;
    visit_pair_counts(run.pairs, [&](const char* name, std::size_t count) { counts[name] = count; });
    counts["positive_samples"] = run.positive_samples;
    counts["negative_samples"] = run.negative_samples;
    json["counts"] = std::move(counts);
    json["suggested_layer"] = run.suggested_layer;
    OrderedJson layers = OrderedJson::array();
    for (const LayerDiagnostics& d : run.diagnostics) {
        OrderedJson layer;
        layer["layer"] = d.layer;
        layer["vector_norm"] = special_number(d.vector_norm);
        layer["effect_size"] = special_number(d.effect_size);
        layer["auroc"] = special_number(d.auroc);
        layer["positive_mean_projection"] = special_number(d.positive_mean_projection);
        layer["negative_mean_projection"] = special_number(d.negative_mean_projection);
        layers.push_back(std::move(layer));
    }
    json["layers"] = std::move(layers);
    return json;
}

RunResult run_from(const Json& json, const std::string& where, const std::string& source) {
    JsonObjectReader r(json, where, source);
    RunResult run;
    run.trait = r.string("trait");
    run.vector = r.string("vector");
    run.aggregate = enum_from(r, "aggregate", aggregate_from_name, aggregate_names);
    {
        JsonObjectReader m = r.object("model");
        run.model.name = m.string("name");
        run.model.file = m.string("file");
        run.model.sha256 = m.string("sha256");
        run.model.file_bytes = m.unsigned_integer("file_bytes");
        if (m.has("dtype")) run.model.dtype = m.string("dtype");
        if (m.has("device")) run.model.device = m.string("device");
        m.finish(kUnknownKeyHint);
    }
    run.started = r.string("started");
    run.finished = r.string("finished");
    {
        JsonObjectReader s = r.object("settings");
        run.settings = extraction_settings_from(s);
        s.finish(kUnknownKeyHint);
    }
    {
        JsonObjectReader c = r.object("counts");
        visit_pair_counts(run.pairs, [&](const char* name, std::size_t& count) { count = c.unsigned_integer(name); });
        run.positive_samples = c.unsigned_integer("positive_samples");
        run.negative_samples = c.unsigned_integer("negative_samples");
        c.finish(kUnknownKeyHint);
        if (run.pairs.kept > run.pairs.total)
            fail(source, c.field("pairs_kept") + " is " + std::to_string(run.pairs.kept) + ", more than pairs_total " +
                             std::to_string(run.pairs.total));
    }
    run.suggested_layer = int(r.integer("suggested_layer", -1, 1 << 20));
    const Json& layers = r.array("layers", "a list of per-layer diagnostics");
    for (std::size_t i = 0; i < layers.size(); ++i) {
        JsonObjectReader l(layers[i], r.field(indexed("layers", i)), source);
        LayerDiagnostics d;
        d.layer = int(l.integer("layer", 0, kMaxLayerIndex));
        d.vector_norm = l.number_or_special("vector_norm");
        d.effect_size = l.number_or_special("effect_size");
        d.auroc = l.number_or_special("auroc");
        if (!std::isnan(d.auroc) && !(d.auroc >= 0 && d.auroc <= 1))
            fail(source, l.field("auroc") + " is " + l.required("auroc").dump() + ", outside 0..1");
        d.positive_mean_projection = l.number_or_special("positive_mean_projection");
        d.negative_mean_projection = l.number_or_special("negative_mean_projection");
        l.finish(kUnknownKeyHint);
        run.diagnostics.push_back(d);
    }
    r.finish(kUnknownKeyHint);
    return run;
}

// A vector's key must stay inside the project folder: a shared project must not make the
// reader open (or a save overwrite) files elsewhere.
void check_vector_key(const std::string& key, const std::string& field, const std::string& source) {
    const std::string prefix = std::string(kProjectVectorFolder) + "/";
    const std::string suffix = ".safetensors";
    const bool shaped = key.size() > prefix.size() + suffix.size() && key.compare(0, prefix.size(), prefix) == 0 &&
                        key.compare(key.size() - suffix.size(), suffix.size(), suffix) == 0;
    const std::string name = shaped ? key.substr(prefix.size()) : "";
    const bool plain_name = shaped && name.find('/') == std::string::npos && name.find('\\') == std::string::npos &&
                            name.front() != '.';
    if (!plain_name)
        fail(source, field + " is \"" + key + "\"; a vector is a file vectors/NAME.safetensors inside the project folder");
}

// Refuses a file of the project that resolves outside the project folder: the key check above
// looks at text only, and a shared project may hold a link to /etc/passwd.
void file_inside(const fs::path& folder, const fs::path& file) {
    std::error_code error;
    const fs::path real_folder = fs::canonical(folder, error);
    if (error) fail(folder.string(), "cannot resolve the project folder: " + error.message());
    const fs::path real_file = fs::canonical(file, error);
    if (error) fail(file.string(), "cannot resolve: " + error.message());
    const auto [folder_end, file_at] = std::mismatch(real_folder.begin(), real_folder.end(), real_file.begin(), real_file.end());
    if (folder_end != real_folder.end() || file_at == real_file.end())
        fail(file.string(), "is a link to a file outside the project folder; a project reads only its own files");
    check_regular_file(real_file.string());
}

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

// --- migrations ----------------------------------------------------------------------------------

// v1 -> v2: a prompt {name, system, user} becomes {name, messages}; steering "alpha" becomes
// "coefficient".
Json migrate_1_to_2(Json json, const std::string& source) {
    if (json.contains("prompts") && json["prompts"].is_array()) {
        Json& prompts = json["prompts"];
        for (std::size_t i = 0; i < prompts.size(); ++i) {
            Json& prompt = prompts[i];
            if (!prompt.is_object()) continue;  // the v2 reader reports it with its index
            Json messages = Json::array();
            for (const char* role : {"system", "user"}) {
                const auto found = prompt.find(role);
                if (found == prompt.end()) continue;
                if (!found->is_string())
                    fail(source, indexed("prompts", i) + "." + role + " must be a string, not " + json_type_phrase(*found));
                if (!found->get<std::string>().empty() || std::string(role) == "user")
                    messages.push_back({{"role", role}, {"content", *found}});
            }
            prompt.erase("system");
            prompt.erase("user");
            prompt["messages"] = std::move(messages);
        }
    }
    if (json.contains("settings") && json["settings"].is_object() && json["settings"].contains("steering") &&
        json["settings"]["steering"].is_object()) {
        Json& steering = json["settings"]["steering"];
        if (steering.contains("alpha")) {
            steering["coefficient"] = steering["alpha"];
            steering.erase("alpha");
        }
    }
    json["schema_version"] = 2;
    return json;
}

std::string ensure_trailing_newline(std::string text) {
    text += '\n';
    return text;
}

void run_fault_hook(const std::string& stage) {
    if (detail::project_save_fault_hook) detail::project_save_fault_hook(stage);
}

// Hidden, named after the project, so a leftover from a killed save explains itself.
fs::path sibling_path(const fs::path& folder, const std::string& tag) {
    static std::atomic<int> counter{0};
    return folder.parent_path() /
           ("." + folder.filename().string() + "." + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
}

// Staging folders of saves whose process is gone (killed mid-save) are left beside the project;
// the next save of that project removes them. A live process's staging folder is its own.
void remove_abandoned_stages(const fs::path& folder) {
    const std::string prefix = "." + folder.filename().string() + ".saving-";
    std::error_code error;
    for (const fs::directory_entry& entry : fs::directory_iterator(folder.parent_path(), error)) {
        const std::string name = entry.path().filename().string();
        if (name.compare(0, prefix.size(), prefix) != 0) continue;
        const std::string rest = name.substr(prefix.size());
        const std::size_t dash = rest.find('-');
        if (dash == 0 || dash == std::string::npos || rest.find_first_not_of("0123456789-") != std::string::npos) continue;
        const long pid = std::strtol(rest.substr(0, dash).c_str(), nullptr, 10);
        if (pid <= 0 || pid == ::getpid() || ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM) continue;
        std::error_code ignored;
        fs::remove_all(entry.path(), ignored);
    }
}

void sync_path(const fs::path& path, bool directory) {
    const int fd = ::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
    if (fd < 0) return;
    ::fsync(fd);
    ::close(fd);
}

bool managed_entry(const fs::path& relative) {
    const std::string text = relative.generic_string();
    return text == kProjectFileName || text == kProjectVectorFolder;
}

// Files the user keeps in the folder (notes, a README) travel into the new version. Vectors
// that project.json no longer lists are dropped: the project owns vectors/.
void copy_foreign_files(const fs::path& from, const fs::path& to) {
    for (const auto& entry : fs::directory_iterator(from)) {
        const fs::path name = entry.path().filename();
        if (managed_entry(name)) continue;
        if (name.string().rfind(".project.json.tmp-", 0) == 0) continue;  // a killed writer's leftover
        fs::copy(entry.path(), to / name, fs::copy_options::recursive | fs::copy_options::copy_symlinks);
    }
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

const Trait* Project::find_trait(const std::string& trait_name) const {
    for (const Trait& trait : traits)
        if (trait.name == trait_name) return &trait;
    return nullptr;
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

bool operator==(const Prompt& a, const Prompt& b) {
    if (a.name != b.name || a.messages.size() != b.messages.size()) return false;
    for (std::size_t i = 0; i < a.messages.size(); ++i)
        if (a.messages[i].role != b.messages[i].role || a.messages[i].content != b.messages[i].content) return false;
    return true;
}

bool operator==(const SteeringSettings& a, const SteeringSettings& b) {
    return a.vector == b.vector && a.layer == b.layer && a.coefficient == b.coefficient && a.positions == b.positions &&
           a.operation == b.operation && a.preserve_norm == b.preserve_norm;
}

namespace {
bool same_extraction_settings(const ExtractionSettings& a, const ExtractionSettings& b) {
    return a.samples_per_question == b.samples_per_question && a.max_new_tokens == b.max_new_tokens &&
           a.temperature == b.temperature && a.top_p == b.top_p && a.seed == b.seed && a.batch_size == b.batch_size &&
           a.question_limit == b.question_limit && a.pair_limit == b.pair_limit && judge_label(a.judge) == judge_label(b.judge) &&
           a.trait_threshold == b.trait_threshold && a.coherence_threshold == b.coherence_threshold;
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
          a.runs == b.runs && a.vectors.size() == b.vectors.size()))
        return false;
    for (auto x = a.vectors.begin(), y = b.vectors.begin(); x != a.vectors.end(); ++x, ++y)
        if (x->first != y->first || !same_vector(x->second, y->second)) return false;
    return true;
}

bool operator!=(const Project& a, const Project& b) { return !(a == b); }

// --- JSON -----------------------------------------------------------------------------------------

nlohmann::ordered_json to_json(const Project& project) {
    OrderedJson json;
    json["schema"] = kProjectSchemaName;
    json["schema_version"] = kProjectSchemaVersion;
    json["app_version"] = project.app_version.empty() ? kAppVersion : project.app_version;
    json["name"] = project.name;
    json["description"] = project.description;
    json["created"] = project.created;
    json["modified"] = project.modified;
    json["layer_convention"] = kVectorLayerConvention;
    json["sign_convention"] = kProjectSignConvention;
    OrderedJson traits = OrderedJson::array();
    for (const Trait& trait : project.traits) traits.push_back(ordered_trait(trait));
    json["traits"] = std::move(traits);
    OrderedJson prompts = OrderedJson::array();
    for (const Prompt& prompt : project.prompts) {
        OrderedJson entry;
        entry["name"] = prompt.name;
        OrderedJson messages = OrderedJson::array();
        for (const ChatMessage& m : prompt.messages) messages.push_back({{"role", m.role}, {"content", m.content}});
        entry["messages"] = std::move(messages);
        prompts.push_back(std::move(entry));
    }
    json["prompts"] = std::move(prompts);
    OrderedJson extraction = extraction_settings_json(project.settings.extraction);
    extraction["aggregate"] = aggregate_name(project.settings.extraction_aggregate);
    const SteeringSettings& s = project.settings.steering;
    OrderedJson steering;
    steering["vector"] = s.vector;
    steering["layer"] = s.layer;
    steering["coefficient"] = s.coefficient;
    steering["positions"] = steer_positions_name(s.positions);
    steering["operation"] = steer_operation_name(s.operation);
    steering["preserve_norm"] = s.preserve_norm;
    json["settings"] = {{"extraction", std::move(extraction)}, {"steering", std::move(steering)}};
    OrderedJson runs = OrderedJson::array();
    for (const RunResult& run : project.runs) runs.push_back(run_json(run));
    json["runs"] = std::move(runs);
    OrderedJson vectors = OrderedJson::array();
    for (const auto& [key, vector] : project.vectors) {
        OrderedJson entry;
        entry["file"] = key;
        entry["trait"] = vector.trait;
        entry["aggregate"] = aggregate_name(vector.aggregate);
        entry["layers"] = vector.layer_count;
        entry["hidden_size"] = vector.hidden_size;
        vectors.push_back(std::move(entry));
    }
    json["vectors"] = std::move(vectors);
    return json;
}

namespace {

// What project.json says about one vector, checked against the file once it is read.
struct VectorEntry {
    std::string file;
    std::string trait;
    Aggregate aggregate = Aggregate::ResponseMean;
    int layers = 0;
    int hidden_size = 0;
};

Project project_and_vector_entries(const Json& json, const std::string& source, std::vector<VectorEntry>* entries) {
    JsonObjectReader r(json, "", source);
    if (r.string("schema") != kProjectSchemaName)
        fail(source, "is a \"" + json.at("schema").get<std::string>() + "\" file, not a project (\"" +
                         kProjectSchemaName + "\")");
    if (r.integer("schema_version", kProjectSchemaVersion, kProjectSchemaVersion) != kProjectSchemaVersion)
        fail(source, "schema_version is not " + std::to_string(kProjectSchemaVersion));
    Project project;
    project.app_version = r.string("app_version");
    project.name = r.string("name");
    project.description = r.string("description");
    project.created = r.string("created");
    project.modified = r.string("modified");
    if (const std::string convention = r.string("layer_convention"); convention != kVectorLayerConvention)
        fail(source, "layer_convention is \"" + convention + "\"; this build reads only \"" + kVectorLayerConvention +
                         "\" and would steer the wrong layer otherwise");
    if (const std::string sign = r.string("sign_convention"); sign != kProjectSignConvention)
        fail(source, "sign_convention is \"" + sign + "\", not \"" + kProjectSignConvention +
                         "\": its vectors would steer the opposite way");

    const Json& traits = r.array("traits", "a list of traits");
    for (std::size_t i = 0; i < traits.size(); ++i) {
        Trait trait;
        try {
            trait = trait_from_json(traits[i], source);
        } catch (const FileError& e) {
            fail(source, indexed("traits", i) + ": " + e.problem());
        }
        if (project.find_trait(trait.name))
            fail(source, indexed("traits", i) + " is a second trait named \"" + trait.name + "\"");
        project.traits.push_back(std::move(trait));
    }

    const Json& prompts = r.array("prompts", "a list of prompts");
    for (std::size_t i = 0; i < prompts.size(); ++i) {
        JsonObjectReader p(prompts[i], indexed("prompts", i), source);
        Prompt prompt;
        prompt.name = p.string("name");
        const Json& messages = p.array("messages", "a list of {\"role\", \"content\"}");
        for (std::size_t m = 0; m < messages.size(); ++m) {
            JsonObjectReader message(messages[m], p.field(indexed("messages", m)), source);
            ChatMessage chat{message.string("role"), message.string("content")};
            if (chat.role != "system" && chat.role != "user" && chat.role != "assistant")
                fail(source, message.field("role") + " is \"" + chat.role + "\"; it must be system, user or assistant");
            message.finish(kUnknownKeyHint);
            prompt.messages.push_back(std::move(chat));
        }
        p.finish(kUnknownKeyHint);
        project.prompts.push_back(std::move(prompt));
    }

    {
        JsonObjectReader settings = r.object("settings");
        JsonObjectReader extraction = settings.object("extraction");
        project.settings.extraction = extraction_settings_from(extraction);
        project.settings.extraction_aggregate = enum_from(extraction, "aggregate", aggregate_from_name, aggregate_names);
        extraction.finish(kUnknownKeyHint);
        JsonObjectReader steering = settings.object("steering");
        SteeringSettings& s = project.settings.steering;
        s.vector = steering.string("vector");
        s.layer = int(steering.integer("layer", -1, kMaxLayerIndex));
        s.coefficient = steering.number("coefficient");
        s.positions = enum_from(steering, "positions", steer_positions_from_name, steer_positions_names);
        s.operation = enum_from(steering, "operation", steer_operation_from_name, steer_operation_names);
        s.preserve_norm = steering.boolean("preserve_norm");
        steering.finish(kUnknownKeyHint);
        settings.finish(kUnknownKeyHint);
    }

    const Json& runs = r.array("runs", "a list of extraction runs");
    for (std::size_t i = 0; i < runs.size(); ++i) project.runs.push_back(run_from(runs[i], indexed("runs", i), source));

    std::set<std::string> listed;
    const Json& vectors = r.array("vectors", "a list of vector files");
    for (std::size_t i = 0; i < vectors.size(); ++i) {
        JsonObjectReader v(vectors[i], indexed("vectors", i), source);
        VectorEntry entry;
        entry.file = v.string("file");
        check_vector_key(entry.file, v.field("file"), source);
        if (!listed.insert(entry.file).second) fail(source, v.field("file") + " \"" + entry.file + "\" is listed twice");
        entry.trait = v.string("trait");
        entry.aggregate = enum_from(v, "aggregate", aggregate_from_name, aggregate_names);
        entry.layers = int(v.integer("layers", 1, 1 << 20));
        entry.hidden_size = int(v.integer("hidden_size", 1, 1 << 24));
        v.finish(kUnknownKeyHint);
        if (entries) entries->push_back(entry);
        // Without the files (project_from_json) a vector is known only by what project.json says.
        PersonaVector& placeholder = project.vectors[entry.file];
        placeholder.trait = entry.trait;
        placeholder.aggregate = entry.aggregate;
        placeholder.layer_count = entry.layers;
        placeholder.hidden_size = entry.hidden_size;
    }
    r.finish(kUnknownKeyHint);

    for (std::size_t i = 0; i < project.runs.size(); ++i)
        if (!project.runs[i].vector.empty() && !listed.count(project.runs[i].vector))
            fail(source, indexed("runs", i) + ".vector \"" + project.runs[i].vector + "\" is not in \"vectors\"");
    if (!project.settings.steering.vector.empty() && !listed.count(project.settings.steering.vector))
        fail(source, "settings.steering.vector \"" + project.settings.steering.vector + "\" is not in \"vectors\"");
    return project;
}

}  // namespace

Project project_from_json(const nlohmann::json& json, const std::string& source) {
    return project_and_vector_entries(json, source, nullptr);
}

nlohmann::json migrate_project_json(nlohmann::json json, const std::string& source) {
    if (!json.is_object()) fail(source, "not a Persona Workbench project: the top level is " + json_type_phrase(json) + ", not an object");
    const auto schema = json.find("schema");
    if (schema == json.end() || !schema->is_string())
        fail(source, std::string("not a Persona Workbench project: no \"schema\": \"") + kProjectSchemaName + "\"");
    if (schema->get<std::string>() != kProjectSchemaName)
        fail(source, "is a \"" + schema->get<std::string>() + "\" file, not a project (\"" + kProjectSchemaName + "\")");
    const auto version = json.find("schema_version");
    if (version == json.end()) fail(source, "has no \"schema_version\"");
    if (!version->is_number_integer()) fail(source, "schema_version must be a whole number, not " + json_type_phrase(*version));
    const long long number = version->is_number_unsigned() ? (long long)std::min<std::uint64_t>(version->get<std::uint64_t>(), 1u << 30)
                                                           : version->get<long long>();
    if (number < 1) fail(source, "schema_version " + version->dump() + " does not exist; versions start at 1");
    if (number > kProjectSchemaVersion)
        fail(source, "schema_version " + version->dump() + " is newer than this Persona Workbench reads (up to " +
                         std::to_string(kProjectSchemaVersion) + "); update Persona Workbench to open this project");
    if (number == 1) json = migrate_1_to_2(std::move(json), source);
    return json;
}

std::string project_folder(const std::string& path) {
    fs::path p(path);
    if (p.filename() == kProjectFileName) return p.parent_path().empty() ? "." : p.parent_path().string();
    // "evil.persona/" names the same folder as "evil.persona".
    if (p.filename().empty() && p.has_parent_path()) p = p.parent_path();
    return p.string();
}

Project read_project(const std::string& path) {
    const fs::path folder(project_folder(path));
    const std::string json_path = (folder / kProjectFileName).string();
    std::error_code error;
    if (!fs::exists(folder, error)) {
        std::string hint;
        const fs::path previous = folder.parent_path() / ("." + folder.filename().string() + ".previous");
        if (fs::exists(previous, error))
            hint = "; a save was interrupted: the previous version is " + previous.string();
        fail(folder.string(), "no such project folder" + hint);
    }
    if (!fs::is_directory(folder, error))
        fail(folder.string(), "not a project folder (a project is a folder NAME.persona holding project.json)");
    if (!fs::exists(json_path, error)) fail(json_path, "missing: this folder holds no project.json, so it is not a project");

    file_inside(folder, json_path);
    const Json json = migrate_project_json(detail::read_json_file(json_path, kMaxProjectFileBytes), json_path);
    std::vector<VectorEntry> entries;
    Project project = project_and_vector_entries(json, json_path, &entries);
    for (const VectorEntry& entry : entries) {
        const fs::path file = folder / entry.file;
        if (!fs::exists(file, error))
            fail(file.string(), "missing: project.json lists this vector file, but the project folder does not hold it");
        file_inside(folder, file);
        PersonaVector vector = read_vector_file(file.string());
        if (vector.layer_count != entry.layers || vector.hidden_size != entry.hidden_size)
            fail(file.string(), "vector shape [" + std::to_string(vector.layer_count) + ", " +
                                    std::to_string(vector.hidden_size) + "] differs from the [" +
                                    std::to_string(entry.layers) + ", " + std::to_string(entry.hidden_size) +
                                    "] that project.json records");
        project.vectors[entry.file] = std::move(vector);
    }
    return project;
}

void write_project(const std::string& path, Project& project) {
    const fs::path folder = fs::absolute(project_folder(path)).lexically_normal();
    const std::string target = folder.string();
    for (const auto& [key, vector] : project.vectors) {
        check_vector_key(key, "vector \"" + key + "\"", target);
        try {
            vector.check_shape();
        } catch (const Error& e) {
            fail(target, std::string("cannot save ") + key + ": " + e.what());
        }
    }

    Project saved = project;
    const std::string now = utc_timestamp();
    if (saved.created.empty()) saved.created = now;
    saved.modified = now;
    saved.app_version = kAppVersion;
    std::string text;
    try {
        text = ensure_trailing_newline(to_json(saved).dump(2));
    } catch (const nlohmann::json::type_error& e) {
        fail(target, "cannot save: the project holds text that is not valid UTF-8 (" + detail::json_error_text(e) + ")");
    }

    std::error_code error;
    const bool replacing = fs::exists(folder, error);
    if (replacing && !fs::is_directory(folder, error)) fail(target, "exists and is not a folder; choose another name");
    if (!fs::is_directory(folder.parent_path(), error))
        fail(target, "cannot save: the folder " + folder.parent_path().string() + " does not exist");

    remove_abandoned_stages(folder);
    // Everything goes into a staging folder first: until the final rename the old project is
    // untouched, whatever fails.
    const fs::path stage = sibling_path(folder, "saving");
    struct StageCleanup {
        fs::path path;
        ~StageCleanup() {
            std::error_code ignored;
            if (!path.empty()) fs::remove_all(path, ignored);
        }
    } cleanup{stage};
    try {
        fs::create_directory(stage);
        if (replacing) copy_foreign_files(folder, stage);
        run_fault_hook("foreign files");
        if (!saved.vectors.empty()) fs::create_directory(stage / kProjectVectorFolder);
        for (const auto& [key, vector] : saved.vectors) {
            write_vector_file((stage / key).string(), vector);
            run_fault_hook("vector " + key);
        }
        detail::write_file_atomically((stage / kProjectFileName).string(), text);
        run_fault_hook("project.json");
        sync_path(stage / kProjectVectorFolder, true);
        sync_path(stage, true);
    } catch (const FileError& e) {
        fail(target, "cannot save (the project on disk is unchanged): " + e.problem());
    } catch (const fs::filesystem_error& e) {
        fail(target, std::string("cannot save (the project on disk is unchanged): ") + e.code().message() + " (" +
                         e.path1().string() + ")");
    }
    run_fault_hook("before replacing");

    if (!replacing) {
        if (std::rename(stage.c_str(), folder.c_str()) != 0)
            fail(target, std::string("cannot save: cannot rename the staged project into place: ") + std::strerror(errno));
        cleanup.path.clear();
    } else if (::renameat2(AT_FDCWD, stage.c_str(), AT_FDCWD, folder.c_str(), RENAME_EXCHANGE) == 0) {
        // The old version now sits at the staging name, which the cleanup removes.
    } else if (errno == EINVAL || errno == ENOSYS || errno == ENOTSUP) {
        // No atomic exchange here: keep the old version beside the new until the new is in place.
        const fs::path previous = folder.parent_path() / ("." + folder.filename().string() + ".previous");
        fs::remove_all(previous, error);
        if (std::rename(folder.c_str(), previous.c_str()) != 0)
            fail(target, std::string("cannot save (the project on disk is unchanged): ") + std::strerror(errno));
        if (std::rename(stage.c_str(), folder.c_str()) != 0) {
            const int rename_error = errno;
            std::rename(previous.c_str(), folder.c_str());
            fail(target, std::string("cannot save (the project on disk is unchanged): ") + std::strerror(rename_error));
        }
        cleanup.path = previous;
    } else {
        fail(target, std::string("cannot save (the project on disk is unchanged): cannot replace the folder: ") +
                         std::strerror(errno));
    }
    sync_path(folder.parent_path(), true);
    project.created = saved.created;
    project.modified = saved.modified;
    project.app_version = saved.app_version;
}

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
