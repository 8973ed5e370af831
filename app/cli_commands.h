#pragma once
// Commands that live in their own cli_<command>.cpp; main() registers each with one line.
#include "cli_common.h"

namespace persona_cli {

void add_project_command(CLI::App& app, const GlobalOptions& global, Command& selected);

}  // namespace persona_cli
