#pragma once
// The persona-cli commands that live in files of their own (cli_<command>.cpp); main() adds each
// with one line. See cli_common.h for what a command gets and how it reports.
#include "cli_common.h"

namespace persona_cli {

void add_sweep_command(CLI::App& app, const GlobalOptions& global, Command& selected);

}  // namespace persona_cli
