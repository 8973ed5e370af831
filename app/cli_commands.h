#pragma once
// The persona-cli commands that live in files of their own (cli_<command>.cpp); main() adds each
// with one line. See cli_common.h for what a command gets and how it reports.
#include "cli_common.h"

namespace persona_cli {

// persona-cli sweep: steer at layers x coefficients on the evaluation questions, judge, recommend.
void add_sweep_command(CLI::App& app, const GlobalOptions& global, Command& selected);

// persona-cli monitor: per-token, per-layer projections of a conversation on a persona vector.
void add_monitor_command(CLI::App& app, const GlobalOptions& global, Command& selected);

// persona-cli flag: rank a chat dataset's samples by projection difference; --merge for shards.
void add_flag_command(CLI::App& app, const GlobalOptions& global, Command& selected);

// persona-cli project: create, inspect and assemble project folders (NAME.persona).
void add_project_command(CLI::App& app, const GlobalOptions& global, Command& selected);

// `persona-cli traits draft`: a subcommand of `traits`, so it takes that command's App.
void add_traits_draft_command(CLI::App& traits, const GlobalOptions& global, Command& selected);

}  // namespace persona_cli
