#include "persona/paths.h"

#include <cstdlib>

namespace persona {

namespace {
std::string env(const char* name) {
    const char* value = std::getenv(name);
    return value && *value ? value : "";
}
}  // namespace

std::string workbench_cache_dir() {
    if (auto xdg = env("XDG_CACHE_HOME"); !xdg.empty()) return xdg + "/persona-workbench";
    return (env("HOME").empty() ? std::string(".") : env("HOME")) + "/.cache/persona-workbench";
}

std::string model_cache_dir() {
    if (auto dir = env("PERSONA_MODEL_DIR"); !dir.empty()) return dir;
    return workbench_cache_dir() + "/models";
}

std::string default_model_path() { return model_cache_dir() + "/" + kDefaultModelFile; }
std::string judge_model_path() { return model_cache_dir() + "/" + kJudgeModelFile; }

}  // namespace persona
