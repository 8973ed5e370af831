// project.json: the schema as C++ structs both ways, with the migration of older versions. The
// folder around it (vectors, atomic saves) is project_folder.cpp.
#include "persona/project.h"

#include "io/json_reader.h"
#include "persona/errors.h"
#include "persona/vector_files.h"
#include "project/project_internal.h"

#include <cmath>
#include <limits>
#include <optional>
#include <set>

namespace persona {

namespace detail {
const char* const kAppVersion = "persona-workbench " PERSONA_VERSION;
}

namespace {

using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;
using detail::indexed;
using detail::json_type_phrase;
using detail::JsonObjectReader;

using detail::kAppVersion;

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
    json["judge_mode"] = judge_mode_name(s.judge_mode);
    json["pairwise_threshold"] = s.pairwise_threshold;
    json["trait_threshold"] = s.trait_threshold;
    if (s.negative_threshold) json["negative_threshold"] = *s.negative_threshold;
    json["coherence_threshold"] = s.coherence_threshold;
    return json;
}

// Sampling values a project may hold, for the extraction and the Steering panel alike.
constexpr long long kMaxNewTokensInFile = 1 << 20;
constexpr double kMaxTemperatureInFile = 100;

ExtractionSettings extraction_settings_from(JsonObjectReader& r) {
    ExtractionSettings s;
    s.samples_per_question = int(r.integer("samples_per_question", 1, 1 << 20));
    s.max_new_tokens = int(r.integer("max_new_tokens", 1, kMaxNewTokensInFile));
    s.temperature = float(r.number("temperature", 0, kMaxTemperatureInFile));
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
    // Absent in projects written before the pairwise mode: they judged absolutely.
    if (r.has("judge_mode")) s.judge_mode = enum_from(r, "judge_mode", judge_mode_from_name, judge_mode_names);
    if (r.has("pairwise_threshold")) s.pairwise_threshold = r.number("pairwise_threshold", 0, 100);
    s.trait_threshold = r.number("trait_threshold", 0, 100);
    // Absent: 100 - trait_threshold, the rule every project before this key used at 50.
    if (r.has("negative_threshold")) s.negative_threshold = r.number("negative_threshold", 0, 100);
    s.coherence_threshold = r.number("coherence_threshold", 0, 100);
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

// v2 -> v3: steering gains the panel's prompt and sampling; a v2 project's first prompt was what
// the panel showed on open, and it sampled at temperature 0.7.
Json migrate_2_to_3(Json json) {
    if (!json.contains("settings") || !json["settings"].is_object() || !json["settings"].contains("steering") ||
        !json["settings"]["steering"].is_object()) {
        json["schema_version"] = 3;
        return json;  // the v3 reader names what is missing
    }
    Json& steering = json["settings"]["steering"];
    const SteeringSettings defaults;
    steering["system_prompt"] = defaults.system_prompt;
    steering["prompt"] = "";
    if (json.contains("prompts") && json["prompts"].is_array() && !json["prompts"].empty() &&
        json["prompts"][0].is_object() && json["prompts"][0].contains("messages") && json["prompts"][0]["messages"].is_array()) {
        std::string system, user;
        for (const Json& message : json["prompts"][0]["messages"]) {
            if (!message.is_object() || !message.contains("content") || !message["content"].is_string()) continue;
            const std::string role = message.value("role", "");
            if (role == "system" && system.empty()) system = message["content"];
            if (role == "user") user = message["content"];
        }
        steering["system_prompt"] = system;
        steering["prompt"] = user;
    }
    steering["max_new_tokens"] = defaults.max_new_tokens;
    steering["sample"] = true;
    steering["temperature"] = defaults.temperature;
    steering["seed"] = defaults.seed;
    json["schema_version"] = 3;
    return json;
}

// v3 -> v4: the Steering tab steers with up to four vectors; a v3 project steered with one.
Json migrate_3_to_4(Json json) {
    if (json.contains("settings") && json["settings"].is_object() && json["settings"].contains("steering") &&
        json["settings"]["steering"].is_object())
        json["settings"]["steering"]["more_vectors"] = Json::array();
    json["schema_version"] = 4;
    return json;
}

}  // namespace

namespace detail {

void check_vector_key(const std::string& key, const std::string& field, const std::string& source) {
    check_file_key(key, kProjectVectorFolder, ".safetensors", "a vector", field, source);
}

void check_file_key(const std::string& key, const std::string& folder, const std::string& suffix, const char* what,
                    const std::string& field, const std::string& source) {
    const std::string prefix = folder + "/";
    const bool shaped = key.size() > prefix.size() + suffix.size() && key.compare(0, prefix.size(), prefix) == 0 &&
                        key.compare(key.size() - suffix.size(), suffix.size(), suffix) == 0;
    const std::string name = shaped ? key.substr(prefix.size()) : "";
    const bool plain_name = shaped && name.find('/') == std::string::npos && name.find('\\') == std::string::npos &&
                            name.front() != '.';
    if (!plain_name)
        fail(source, field + " is \"" + key + "\"; " + what + " is a file " + prefix + "NAME" + suffix +
                         " inside the project folder");
}

}  // namespace detail

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
    OrderedJson more = OrderedJson::array();
    for (const SteeringTerm& term : s.more_vectors)
        more.push_back({{"vector", term.vector},
                        {"layer", term.layer},
                        {"value", term.value},
                        {"operation", steer_operation_name(term.operation)}});
    steering["more_vectors"] = std::move(more);
    steering["preserve_norm"] = s.preserve_norm;
    steering["system_prompt"] = s.system_prompt;
    steering["prompt"] = s.prompt;
    steering["max_new_tokens"] = s.max_new_tokens;
    steering["sample"] = s.sample;
    steering["temperature"] = s.temperature;
    steering["seed"] = s.seed;
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

namespace detail {

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
        const Json& more = steering.array("more_vectors", "a list of vectors steered with the first");
        if (more.size() > kMaxSteeringVectors - 1)
            fail(source, steering.field("more_vectors") + " lists " + std::to_string(more.size()) +
                             " vectors; the Steering tab steers with at most " +
                             std::to_string(kMaxSteeringVectors - 1) + " beside the first");
        for (std::size_t i = 0; i < more.size(); ++i) {
            JsonObjectReader t(more[i], steering.field(indexed("more_vectors", i)), source);
            SteeringTerm term;
            term.vector = t.string("vector");
            term.layer = int(t.integer("layer", -1, kMaxLayerIndex));
            term.value = t.number("value");
            term.operation = enum_from(t, "operation", steer_operation_from_name, steer_operation_names);
            t.finish(kUnknownKeyHint);
            s.more_vectors.push_back(std::move(term));
        }
        s.preserve_norm = steering.boolean("preserve_norm");
        s.system_prompt = steering.string("system_prompt");
        s.prompt = steering.string("prompt");
        s.max_new_tokens = int(steering.integer("max_new_tokens", 1, kMaxNewTokensInFile));
        s.sample = steering.boolean("sample");
        s.temperature = steering.number("temperature", 0, kMaxTemperatureInFile);
        s.seed = steering.unsigned_integer("seed");
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
    const std::vector<SteeringTerm>& more = project.settings.steering.more_vectors;
    for (std::size_t i = 0; i < more.size(); ++i)
        if (!more[i].vector.empty() && !listed.count(more[i].vector))
            fail(source, "settings.steering." + indexed("more_vectors", i) + ".vector \"" + more[i].vector +
                             "\" is not in \"vectors\"");
    return project;
}

}  // namespace detail

Project project_from_json(const nlohmann::json& json, const std::string& source) {
    return detail::project_and_vector_entries(json, source, nullptr);
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
    if (number <= 2) json = migrate_2_to_3(std::move(json));
    if (number <= 3) json = migrate_3_to_4(std::move(json));
    return json;
}

}  // namespace persona
