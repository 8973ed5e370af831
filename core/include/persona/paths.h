#pragma once
#include <string>

namespace persona {

// The workbench's own cache: $XDG_CACHE_HOME/persona-workbench, else ~/.cache/persona-workbench.
// It holds what can be measured again (file hashes, a model's typical residual norms).
std::string workbench_cache_dir();

// Where setup puts downloaded models: $PERSONA_MODEL_DIR, else $XDG_CACHE_HOME/persona-workbench/models,
// else ~/.cache/persona-workbench/models. Models never live in the repository.
std::string model_cache_dir();

// File names setup writes into the cache.
constexpr const char* kDefaultModelFile = "SmolLM2-135M-Instruct.Q4_1.gguf";
constexpr const char* kSecondModelFile = "gemma-3-270m-q4_k_m.gguf";
// A judge for the default model: the two above are too small to answer a rubric with a number.
constexpr const char* kJudgeModelFile = "Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf";

std::string default_model_path();
std::string judge_model_path();

}  // namespace persona
