// Any bytes as a project.json: a project (of any schema version, migrated) whose JSON reads back
// to the same document, or a persona::Error. Vector files are fuzzed by the format targets.
#include "persona/errors.h"
#include "persona/project.h"

#include <nlohmann/json.hpp>

#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto json = nlohmann::json::parse(data, data + size, nullptr, false);
    if (json.is_discarded()) return 0;
    try {
        const persona::Project project =
            persona::project_from_json(persona::migrate_project_json(json, "fuzz/project.json"), "fuzz/project.json");
        const auto written = persona::to_json(project);
        const persona::Project again = persona::project_from_json(nlohmann::json(written), "written");
        if (persona::to_json(again) != written) std::abort();
    } catch (const persona::Error&) {
    }
    return 0;
}
