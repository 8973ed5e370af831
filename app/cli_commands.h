#pragma once
// Every persona-cli command lives in a file of its own (cli_<command>.cpp); main() adds each
// with one line. See cli_common.h for what a command gets and how it reports.
#include "cli_common.h"

namespace persona_cli {

// persona-cli info: load a model and print its facts as JSON.
void add_info_command(CLI::App& app, const GlobalOptions& global, Command& selected);

// persona-cli generate: one reply, optionally steered, streamed to stdout.
void add_generate_command(CLI::App& app, const GlobalOptions& global, Command& selected);

// persona-cli bench: load time, prefill and decode speed, peak memory.
void add_bench_command(CLI::App& app, const GlobalOptions& global, Command& selected);

// persona-cli traits: list the built-in traits, show or validate one; adds `traits draft` too.
void add_traits_command(CLI::App& app, const GlobalOptions& global, Command& selected);

// `persona-cli traits draft`: a subcommand of `traits`, so it takes that command's App.
void add_traits_draft_command(CLI::App& traits, const GlobalOptions& global, Command& selected);

// persona-cli finetune: a LoRA adapter trained on chat JSONL, with optional preventative steering.
void add_finetune_command(CLI::App& app, const GlobalOptions& global, Command& selected);

// persona-cli shift: judged trait, coherence, projection shift and perplexity of a base model and its fine-tunes.
void add_shift_command(CLI::App& app, const GlobalOptions& global, Command& selected);

// persona-cli extract: a persona vector for a trait, summary as JSON.
void add_extract_command(CLI::App& app, const GlobalOptions& global, Command& selected);

// persona-cli export and import (cli_control_vector.cpp): llama.cpp control vectors, out and in.
void add_export_command(CLI::App& app, const GlobalOptions& global, Command& selected);
void add_import_command(CLI::App& app, const GlobalOptions& global, Command& selected);

// persona-cli sweep: steer at layers x coefficients on the evaluation questions, judge, recommend.
void add_sweep_command(CLI::App& app, const GlobalOptions& global, Command& selected);

// persona-cli monitor: per-token, per-layer projections of a conversation on a persona vector.
void add_monitor_command(CLI::App& app, const GlobalOptions& global, Command& selected);

// persona-cli monitor-prompts: does the last prompt token predict the trait? A system-prompt ladder, judged.
void add_monitor_prompts_command(CLI::App& app, const GlobalOptions& global, Command& selected);

// persona-cli flag: rank a chat dataset's samples by projection difference; --merge for shards.
void add_flag_command(CLI::App& app, const GlobalOptions& global, Command& selected);

// persona-cli serve: an OpenAI-compatible HTTP API with per-request steering (cli_serve.cpp).
void add_serve_command(CLI::App& app, const GlobalOptions& global, Command& selected);

// persona-cli project: create, inspect and assemble project folders (NAME.persona).
void add_project_command(CLI::App& app, const GlobalOptions& global, Command& selected);

}  // namespace persona_cli
