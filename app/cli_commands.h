#pragma once
// Commands that live in their own cli_<command>.cpp, each registered with one line in main().
#include "cli_common.h"

namespace persona_cli {

// `persona-cli traits draft`: a subcommand of `traits`, so it takes that command's App.
void add_traits_draft_command(CLI::App& traits, const GlobalOptions& global, Command& selected);

}  // namespace persona_cli
