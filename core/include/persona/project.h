#pragma once
// A project: the traits, prompts, settings, extraction results and vectors people share.
//
// On disk a project is one folder, NAME.persona/, so it zips, copies and commits as one thing:
//   NAME.persona/
//     project.json          pretty-printed JSON, schema "persona-workbench/project" (below)
//     vectors/*.safetensors one persona vector each (vector_files.h): a F32 tensor "vector" of
//                           shape [L+1, hidden], readable by Python's safetensors alone
//     monitoring/*.json     monitoring studies (monitoring_study.h), a .csv of each beside it
//     sweeps/*.json         steering sweeps (sweep.h: sweep_result_json)
// Other files a user puts in the folder (a README, notes) are kept by every save.
// projects/README.md describes the layout for people who do not read C++.
//
// project.json, schema_version 2 (every key written; readers reject unknown keys, which are
// nearly always misspelt ones):
//   schema, schema_version, app_version, name, description, created, modified (ISO 8601 UTC),
//   layer_convention (kVectorLayerConvention), sign_convention (kProjectSignConvention),
//   traits   [trait objects as trait.h writes them]
//   prompts  [{name, messages: [{role: system|user|assistant, content}]}]
//   settings {extraction: {...ExtractionSettings, aggregate}, steering: {vector, layer,
//             coefficient, positions, operation, preserve_norm, system_prompt, prompt,
//             max_new_tokens, sample, temperature, seed}}
//   runs     [{trait, vector, aggregate, model: {name, file, sha256, file_bytes}, started,
//             finished, settings: {...}, counts: {...}, suggested_layer, layers: [...]}]
//   vectors  [{file: "vectors/x.safetensors", trait, aggregate, layers, hidden_size}]
// Version history (migrate_project_json upgrades on read; saving writes the newest):
//   1: a prompt was {name, system, user} (one turn) and steering's strength was "alpha".
//   2: a prompt is a conversation {name, messages}, for multi-turn heat maps; "alpha" became
//      "coefficient", the word the Steering panel and docs/method.md use.
//   3: steering keeps the Steering panel's whole setup: its prompt and sampling too, so a
//      reopened project shows what was being demonstrated.
#include "persona/extraction.h"
#include "persona/fingerprint.h"
#include "persona/model_facts.h"
#include "persona/monitoring_study.h"
#include "persona/sweep.h"
#include "persona/generation.h"
#include "persona/persona_vector.h"
#include "persona/trait.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace persona {

constexpr const char* kProjectSchemaName = "persona-workbench/project";
constexpr int kProjectSchemaVersion = 4;
constexpr const char* kProjectFileName = "project.json";
constexpr const char* kProjectVectorFolder = "vectors";
constexpr const char* kProjectSweepFolder = "sweeps";
constexpr const char* kProjectExtension = ".persona";
constexpr const char* kProjectSignConvention =
    "positive minus negative: a vector is mean(shows the trait) - mean(does not); +coefficient brings the trait out";

// A named conversation to steer, generate from or draw heat maps of.
struct Prompt {
    std::string name;
    std::vector<ChatMessage> messages;  // roles "system", "user", "assistant"

    // The first system message's text, "" when there is none.
    std::string system() const;
    // The last user message's text, "" when there is none.
    std::string user() const;
    static Prompt single_turn(const std::string& name, const std::string& system, const std::string& user);
};

// A vector steered together with the Steering panel's first one, in the same row.
struct SteeringTerm {
    std::string vector;  // a key of Project::vectors, or ""
    int layer = -1;      // hidden_states index; -1: the vector's suggested layer
    double value = 0;    // raw: add's coefficient, cap's most projection; ablate: unused
    SteerOperation operation = SteerOperation::Add;
};

// The Steering panel composes at most this many vectors in one row: the first plus the terms.
constexpr std::size_t kMaxSteeringVectors = 4;

// What the Steering panel was set to when the project was saved.
struct SteeringSettings {
    std::string vector;  // a key of Project::vectors ("vectors/evil.safetensors"), or ""
    int layer = -1;      // hidden_states index; -1: the vector's suggested layer
    double coefficient = 0;  // raw: add's alpha (the panel shows a calibrated strength), cap's most projection
    SteerPositions positions = SteerPositions::Response;  // of every vector steered
    SteerOperation operation = SteerOperation::Add;
    std::vector<SteeringTerm> more_vectors;  // at most kMaxSteeringVectors - 1
    bool preserve_norm = false;
    std::string system_prompt = "You are a helpful assistant.";
    std::string prompt;  // "": the panel keeps its own
    int max_new_tokens = 48;
    bool sample = false;  // false: greedy, what a demo wants (a small change is then steering, not noise)
    double temperature = 0.7;  // when sampling
    std::uint64_t seed = 1;
};

struct ProjectSettings {
    ExtractionSettings extraction;  // checkpoint_path is machine-local and never saved
    Aggregate extraction_aggregate = Aggregate::ResponseMean;
    SteeringSettings steering;
};

// Which model a run used. Paths differ between machines; the hash says whether two files are
// the same model.
struct ModelIdentity {
    std::string name;         // the model's own name (GGUF general.name)
    std::string file;         // file name without its folder
    std::string sha256;       // persona::model_fingerprint: the file's SHA-256, or a folder's manifest hash
    std::uint64_t file_bytes = 0;
    std::string dtype;        // compute dtype and device the run used; empty in projects saved before
    std::string device;       // they were recorded
};

// A loaded model's identity for a run: its facts' name, file name, fingerprint, size, dtype and
// device.
ModelIdentity model_identity(const ModelFacts& facts);

// The outcome of one extraction: enough to judge and reproduce it without the samples.
struct RunResult {
    std::string trait;
    std::string vector;  // key of Project::vectors; "" when no pair was kept
    Aggregate aggregate = Aggregate::ResponseMean;
    ModelIdentity model;
    std::string started;   // ISO 8601 UTC
    std::string finished;
    ExtractionSettings settings;  // judge, thresholds, sample counts, sampling, seed
    PairCounts pairs;
    std::size_t positive_samples = 0;  // samples averaged on each side of the difference
    std::size_t negative_samples = 0;
    int suggested_layer = -1;
    std::vector<LayerDiagnostics> diagnostics;  // one per layer 0..L of the chosen aggregate
};

struct Project {
    std::string name;
    std::string description;
    std::string created;   // ISO 8601 UTC; write_project fills it when empty
    std::string modified;  // set by write_project
    std::string app_version;  // "persona-workbench 0.1.0" of the last writer (set by write_project)
    std::vector<Trait> traits;
    std::vector<Prompt> prompts;
    ProjectSettings settings;
    std::vector<RunResult> runs;
    // Key: the file's path inside the project folder, "vectors/NAME.safetensors".
    std::map<std::string, PersonaVector> vectors;
    // Monitoring studies (monitoring_study.h), oldest first, each by its path inside the folder
    // ("monitoring/NAME.json"; a NAME.csv is written beside it). Not listed in project.json: the
    // folder is the list, so a study file a user copies in is read too.
    std::vector<std::pair<std::string, MonitoringStudy>> monitoring;
    // Steering sweeps, oldest first, by path inside the folder ("sweeps/NAME.json"); the folder
    // is the list, as for monitoring.
    std::vector<std::pair<std::string, SweepResult>> sweeps;
    // What read_project found in monitoring/ and sweeps/ and did not read (a symlink, a FIFO, a
    // damaged file), each with the reason; such files stay where they are and saves carry them.
    // Never saved, not compared.
    std::vector<std::string> skipped_files;

    // Defined here so that project.json's reader (and its fuzz target) needs none of project.cpp.
    const Trait* find_trait(const std::string& name) const {
        for (const Trait& trait : traits)
            if (trait.name == name) return &trait;
        return nullptr;
    }
    // The newest run of a trait, nullptr when there is none.
    const RunResult* latest_run(const std::string& trait) const;
    // Stores the vector under a free file name made from its trait and aggregate, points the
    // run at it and appends the run; returns the key. Without a vector the run is recorded alone.
    std::string add_run(RunResult run, const PersonaVector* vector);
    // Appends the study under a free key made of its trait, layer and the UTC time; returns it.
    std::string add_monitoring_study(MonitoringStudy study);
    // Appends the sweep under a free key made of its trait and the UTC time; returns it.
    std::string add_sweep(SweepResult sweep);
};

bool operator==(const Prompt& a, const Prompt& b);
bool operator==(const SteeringTerm& a, const SteeringTerm& b);
bool operator==(const SteeringSettings& a, const SteeringSettings& b);
bool operator==(const ProjectSettings& a, const ProjectSettings& b);
bool operator==(const ModelIdentity& a, const ModelIdentity& b);
bool operator==(const RunResult& a, const RunResult& b);
bool operator==(const Project& a, const Project& b);  // vectors compared value by value
bool operator!=(const Project& a, const Project& b);

// "NAME.persona/project.json" or the folder itself -> the folder.
std::string project_folder(const std::string& path);

// Reads a project folder (or its project.json), upgrading older schema versions. Every vector
// is read and checked against the shape project.json records. Throws FileError naming the
// file and the problem: no project.json, not JSON, not a project, a newer schema version, a
// missing or mistyped field, a missing vector file, a vector whose shape differs.
Project read_project(const std::string& path);

// Writes the whole project atomically: everything goes into a hidden folder beside the target,
// which then replaces the old folder in one rename (Linux renameat2 RENAME_EXCHANGE; where the
// file system cannot exchange, two renames, the old one kept as .NAME.persona.previous until the
// new one is in place). A failure at any point leaves the old project as it was. Sets
// project.modified, app_version and, when empty, created. Throws FileError naming the folder.
void write_project(const std::string& folder, Project& project);

// The project.json document of a project (keys in the documented order), and back (source
// names the file for errors). project_from_json reads the newest schema only and leaves each
// vector's values empty; read_project migrates first and reads the vector files.
nlohmann::ordered_json to_json(const Project& project);
Project project_from_json(const nlohmann::json& json, const std::string& source);

// Upgrades a project.json of any older schema version to kProjectSchemaVersion, one version at
// a time. Throws FileError(source, ...) when it is not a project or is newer than this build.
nlohmann::json migrate_project_json(nlohmann::json json, const std::string& source);

// Now, as "2025-01-31T12:34:56Z".
std::string utc_timestamp();

// A run's result from an extraction: counts, diagnostics and suggested layer of `aggregate`.
// Model identity and dates are the caller's (it knows the file and when it started).
RunResult run_result_from_extraction(const ExtractionResult& result, const ExtractionSettings& settings,
                                     Aggregate aggregate);

}  // namespace persona
