// persona-cli bench: load time, prefill and decode speed, and peak memory, as a table and one
// JSON line.
#include "cli_commands.h"

#include "persona/generation.h"
#include "persona/model.h"
#include "persona/paths.h"
#include "persona/process_memory.h"

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

namespace persona_cli {

namespace {

struct BenchOptions {
    std::string model = persona::default_model_path();
    int prompt_tokens = 256;
    int new_tokens = 64;
    std::vector<int> batches{1, 2, 8};
    bool json_only = false;
};

int run_bench(const GlobalOptions& global, const BenchOptions& options) {
    using clock = std::chrono::steady_clock;
    persona::Engine engine(engine_options(global));
    g_engine = &engine;
    const auto load_start = clock::now();
    persona::ModelFacts facts;
    if (!load(engine, options.model, true, &facts)) return g_interrupted ? kExitCancelled : kExitFailed;
    const double load_seconds = std::chrono::duration<double>(clock::now() - load_start).count();

    nlohmann::json report = {{"model", facts.name}, {"path", facts.path}, {"device", facts.device}, {"dtype", facts.dtype},
                             {"threads", engine.threads()}, {"load_seconds", load_seconds}};
    int exit_code = kExitOk;
    if (run_job(engine,
        [&](persona::Model& model, const persona::JobContext& job) {
            // A deterministic prompt of ordinary tokens, so every run measures the same work.
            std::vector<std::int32_t> prompt;
            for (int i = 0; i < options.prompt_tokens; ++i) prompt.push_back(1000 + (i * 37) % 20000);
            auto timed = [&](const std::vector<persona::GenerationRow>& rows) {
                const auto start = clock::now();
                model.generate(rows, {}, nullptr, job.cancelled);
                return std::chrono::duration<double>(clock::now() - start).count();
            };
            persona::GenerationRow row;
            row.prompt_tokens = prompt;
            row.sampling.stop_at_eos = false;
            // Prefill: one new token costs the prompt's forward pass plus one sampling step.
            row.sampling.max_new_tokens = 1;
            timed({row});  // warm-up: first calls allocate
            const double prefill = timed({row});
            report["prefill_tokens"] = options.prompt_tokens;
            report["prefill_tokens_per_second"] = options.prompt_tokens / prefill;

            nlohmann::json decode = nlohmann::json::array();
            for (int batch : options.batches) {
                persona::GenerationRow short_row;
                short_row.prompt_tokens.assign(prompt.begin(), prompt.begin() + std::min<int>(16, options.prompt_tokens));
                short_row.sampling.stop_at_eos = false;
                short_row.sampling.max_new_tokens = 1;
                const std::vector<persona::GenerationRow> first(static_cast<std::size_t>(batch), short_row);
                const double one = timed(first);
                short_row.sampling.max_new_tokens = options.new_tokens + 1;
                const std::vector<persona::GenerationRow> rows(static_cast<std::size_t>(batch), short_row);
                const double all = timed(rows);
                // Decode rate excludes the prefill step measured just before.
                const double seconds = std::max(all - one, 1e-9);
                const double per_row = options.new_tokens / seconds;
                decode.push_back({{"batch", batch}, {"tokens_per_second_per_row", per_row},
                                  {"tokens_per_second_total", per_row * batch}});
            }
            report["decode"] = decode;
            report["new_tokens"] = options.new_tokens;
        }) == persona::JobState::failed)
        exit_code = kExitFailed;
    if (exit_code != kExitOk) return exit_code;
    if (g_interrupted) return kExitCancelled;
    report["peak_rss_bytes"] = persona::read_process_memory().peak_resident_bytes;

    if (!options.json_only) {
        std::printf("model   %s (%s, %s, %d threads)\n", facts.name.c_str(), report["device"].get<std::string>().c_str(),
                    report["dtype"].get<std::string>().c_str(), engine.threads());
        std::printf("| %-28s | %12s |\n", "test", "value");
        std::printf("|%s|%s|\n", std::string(30, '-').c_str(), std::string(14, '-').c_str());
        std::printf("| %-28s | %10.2f s |\n", "load", load_seconds);
        std::printf("| %-28s | %8.1f t/s |\n", ("prefill " + std::to_string(options.prompt_tokens) + " tokens").c_str(),
                    report["prefill_tokens_per_second"].get<double>());
        for (const auto& d : report["decode"]) {
            const std::string name = "decode batch " + std::to_string(d["batch"].get<int>()) + " (total)";
            std::printf("| %-28s | %8.1f t/s |\n", name.c_str(), d["tokens_per_second_total"].get<double>());
        }
        std::printf("| %-28s | %9.1f MB |\n", "peak RSS", report["peak_rss_bytes"].get<double>() / 1e6);
    }
    std::cout << report.dump() << "\n";
    return kExitOk;
}

}  // namespace

void add_bench_command(CLI::App& app, const GlobalOptions& global, Command& selected) {
    auto bench_options = std::make_shared<BenchOptions>();
    auto* bench = app.add_subcommand("bench", "Measure load time, prefill and decode speed, and peak memory");
    bench->add_option("--model,-m", bench_options->model, "GGUF model file or Hugging Face checkpoint directory")->capture_default_str();
    bench->add_option("--prompt-tokens", bench_options->prompt_tokens)->check(CLI::Range(1, 1 << 16))->capture_default_str();
    bench->add_option("--new-tokens", bench_options->new_tokens)->check(CLI::Range(1, 1 << 16))->capture_default_str();
    bench->add_option("--batch", bench_options->batches, "Decode batch sizes")->capture_default_str();
    bench->add_flag("--json", bench_options->json_only, "Print only the JSON line");
    bench->callback([&global, &selected, bench_options] {
        selected = [&global, bench_options] { return run_bench(global, *bench_options); };
    });
}

}  // namespace persona_cli
