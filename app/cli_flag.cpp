// persona-cli flag: ranks a chat dataset's samples by projection difference (docs/method.md:
// flagging training data), one shard of it per job if asked; --merge ranks the shards together.
#include "cli_commands.h"

#include "persona/errors.h"
#include "persona/flagging.h"
#include "persona/model.h"
#include "persona/monitoring.h"
#include "persona/paths.h"
#include "persona/vector_files.h"

#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>

namespace persona_cli {

namespace {

struct FlagOptions {
    std::string model = persona::default_model_path();
    std::string vector;
    std::string input;
    std::string out;
    std::string shard = "0/1";
    std::vector<std::string> merge;
    int top = 10;
    persona::FlagSettings settings;
};

// "i/N" with 0 <= i < N; false when it is not.
bool parse_shard(const std::string& text, int& index, int& count) {
    const auto slash = text.find('/');
    if (slash == std::string::npos) return false;
    try {
        std::size_t used = 0;
        index = std::stoi(text.substr(0, slash), &used);
        if (used != slash) return false;
        const std::string rest = text.substr(slash + 1);
        count = std::stoi(rest, &used);
        if (used != rest.size()) return false;
    } catch (const std::exception&) {
        return false;
    }
    return count >= 1 && index >= 0 && index < count;
}

nlohmann::json top_json(const std::vector<persona::FlagRecord>& ranked, int top) {
    nlohmann::json list = nlohmann::json::array();
    for (std::size_t i = 0; i < ranked.size() && i < static_cast<std::size_t>(top); ++i) {
        nlohmann::json entry = persona::to_json(ranked[i]);
        entry.erase("run");
        list.push_back(std::move(entry));
    }
    return list;
}

int run_merge(const FlagOptions& options) {
    const auto ranked = persona::merge_flag_results(options.merge);
    if (options.out.empty()) {
        for (const auto& record : ranked)
            std::cout << persona::to_json(record).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
        return kExitOk;
    }
    persona::write_flag_results(options.out, ranked);
    std::size_t scored = 0;
    for (const auto& r : ranked) scored += r.difference ? 1 : 0;
    nlohmann::json summary = {{"files", options.merge}, {"out", options.out}, {"samples", ranked.size()},
                              {"scored", scored}, {"unscored", ranked.size() - scored},
                              {"run", ranked.empty() ? "" : ranked.front().run}, {"top", top_json(ranked, options.top)}};
    std::cout << summary.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return kExitOk;
}

int run_flag(const GlobalOptions& global, FlagOptions options) {
    if (!options.merge.empty()) return run_merge(options);
    if (options.vector.empty() || options.input.empty() || options.out.empty()) {
        std::fprintf(stderr, "persona-cli flag: --vector, --input and --out are needed (or --merge FILES)\n");
        return kExitUsage;
    }
    if (!parse_shard(options.shard, options.settings.shard_index, options.settings.shard_count)) {
        std::fprintf(stderr, "persona-cli flag: --shard '%s' is not i/N with 0 <= i < N\n", options.shard.c_str());
        return kExitUsage;
    }
    const persona::PersonaVector vector = persona::read_vector_file(options.vector);
    options.settings.layer = chosen_layer(options.settings.layer, vector, options.vector);

    // The dataset is checked before the model loads: a bad line is reported at once.
    const persona::FlagInput input = persona::scan_flag_input(options.input, options.settings, [](const std::string& warning) {
        std::fprintf(stderr, "persona-cli: warning: %s\n", warning.c_str());
    });

    persona::Engine engine(engine_options(global));
    g_engine = &engine;
    persona::ModelFacts facts;
    if (!load(engine, options.model, true, &facts)) return g_interrupted ? kExitCancelled : kExitFailed;
    if (options.settings.layer > facts.layers) {
        std::fprintf(stderr, "persona-cli flag: layer %d is outside 0..%d\n", options.settings.layer, facts.layers);
        return kExitUsage;
    }

    int exit_code = kExitOk;
    nlohmann::json summary;
    const auto start = std::chrono::steady_clock::now();
    if (run_job(engine,
        [&](persona::Model& model, const persona::JobContext& job) {
            persona::check_vector_fits(vector, model, options.vector);
            const auto result = persona::flag_dataset(model, vector, input, options.out, options.settings,
                [](const persona::Progress& p) {
                    std::fprintf(stderr, "\r%s %llu/%llu", p.stage.c_str(), static_cast<unsigned long long>(p.done),
                                 static_cast<unsigned long long>(p.total));
                    std::fflush(stderr);
                },
                job.cancelled);
            std::fprintf(stderr, "\n");
            summary = {{"model", facts.path}, {"vector", options.vector}, {"layer", options.settings.layer},
                       {"input", options.input}, {"out", options.out}, {"shard", options.shard}, {"run", result.run},
                       {"lines", result.lines}, {"samples_in_shard", result.in_shard},
                       {"bad_lines_skipped", result.bad_lines_skipped}, {"resumed", result.resumed},
                       {"scored", result.scored}, {"unscored", result.unscored},
                       {"max_tokens", options.settings.max_new_tokens}, {"temperature", options.settings.temperature},
                       {"seed", options.settings.seed}, {"top", top_json(result.records, options.top)}};
        }) == persona::JobState::failed)
        exit_code = kExitFailed;
    if (g_interrupted) {
        std::fprintf(stderr, "\npersona-cli: cancelled; run the same command again to resume from %s\n", options.out.c_str());
        return kExitCancelled;
    }
    if (exit_code != kExitOk) return exit_code;
    summary["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::cout << summary.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return kExitOk;
}

}  // namespace

void add_flag_command(CLI::App& app, const GlobalOptions& global, Command& selected) {
    auto options = std::make_shared<FlagOptions>();
    auto* cmd = app.add_subcommand(
        "flag", "Rank a chat dataset's samples by projection difference (dataset answer minus the model's own), "
                "results as JSONL, summary as JSON; --merge ranks shards together");
    cmd->add_option("--model,-m", options->model, "GGUF model file or Hugging Face checkpoint directory")->capture_default_str();
    cmd->add_option("--vector", options->vector, "Vector file (safetensors, [L+1, hidden])");
    cmd->add_option("--layer", options->settings.layer, "Layer to project at (default: the vector's suggested layer)")
        ->check(CLI::NonNegativeNumber);
    cmd->add_option("--input,-i", options->input,
                    "JSONL dataset, {\"messages\":[...]} per line; the last message is the assistant's answer");
    cmd->add_option("--out,-o", options->out,
                    "Results JSONL, appended to (an earlier run's lines are skipped); with --merge: the ranked file");
    cmd->add_option("--shard", options->shard, "i/N: only lines whose 0-based index % N == i")->capture_default_str();
    cmd->add_option("--max-tokens,-n", options->settings.max_new_tokens, "New tokens of the model's own answer")
        ->check(CLI::Range(1, 1 << 16))->capture_default_str();
    cmd->add_option("--temperature,-t", options->settings.temperature, "Of the model's own answer; 0 for greedy")
        ->capture_default_str();
    cmd->add_option("--top-p", options->settings.top_p)->capture_default_str();
    cmd->add_option("--seed", options->settings.seed, "Each sample's seed derives from it and the line number")
        ->capture_default_str();
    cmd->add_option("--batch", options->settings.batch_size, "Samples per batch")->check(CLI::Range(1, 4096))->capture_default_str();
    cmd->add_flag("--skip-bad", options->settings.skip_bad_lines, "Skip bad lines with a warning instead of failing");
    cmd->add_option("--top", options->top, "Highest-ranked samples in the summary")->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    cmd->add_option("--merge", options->merge,
                    "Results files (shards of one run) to rank together: to --out, or as JSONL on stdout")
        ->expected(1, -1);
    cmd->callback([&global, &selected, options] { selected = [&global, options] { return run_flag(global, *options); }; });
}

}  // namespace persona_cli
