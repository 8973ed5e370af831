#pragma once
// What the project files of core share and no one else sees: the parts of reading project.json
// that the folder reader needs, and the test hook into write_project's stages.
#include "persona/project.h"

#include <nlohmann/json.hpp>

#include <functional>
#include <string>
#include <vector>

namespace persona::detail {

// "persona-workbench 0.1.0": the app_version a save writes.
extern const char* const kAppVersion;

// What project.json says about one vector, checked against the file once it is read.
struct VectorEntry {
    std::string file;
    std::string trait;
    Aggregate aggregate = Aggregate::ResponseMean;
    int layers = 0;
    int hidden_size = 0;
};

// project.json (already migrated) as a Project whose vectors are placeholders of the listed
// shapes; the listed files go to `entries` when it is given.
Project project_and_vector_entries(const nlohmann::json& json, const std::string& source, std::vector<VectorEntry>* entries);

// A vector's key must stay inside the project folder: a shared project must not make the
// reader open (or a save overwrite) files elsewhere. Throws FileError(source, ...) otherwise.
void check_vector_key(const std::string& key, const std::string& field, const std::string& source);
// The same rule for any file a project keeps: FOLDER/NAME.SUFFIX, NAME plain (no '/', not hidden).
void check_file_key(const std::string& key, const std::string& folder, const std::string& suffix, const char* what,
                    const std::string& field, const std::string& source);

// Called with a stage name ("foreign files", "vector vectors/x.safetensors", "project.json",
// "before replacing") as write_project reaches it; throwing from it aborts the save there, so a
// test can check that the old project survived.
extern std::function<void(const std::string& stage)> project_save_fault_hook;

}  // namespace persona::detail
