#pragma once
// The commands that live in their own files (cli_<command>.cpp); main() registers each with one
// line: add_<command>_command(app, global, selected).
#include "cli_common.h"

namespace persona_cli {

// persona-cli monitor: per-token, per-layer projections of a conversation on a persona vector.
void add_monitor_command(CLI::App& app, const GlobalOptions& global, Command& selected);

// persona-cli flag: rank a chat dataset's samples by projection difference; --merge for shards.
void add_flag_command(CLI::App& app, const GlobalOptions& global, Command& selected);

}  // namespace persona_cli
