#pragma once
// Test access to write_project's stages (core/src/project.cpp), so a test can make a save fail
// after any file and check that the old project survived.
#include <functional>
#include <string>

namespace persona::detail {

// Called with a stage name ("foreign files", "vector vectors/x.safetensors", "project.json",
// "before replacing") as write_project reaches it; throwing from it aborts the save there.
extern std::function<void(const std::string& stage)> project_save_fault_hook;

}  // namespace persona::detail
