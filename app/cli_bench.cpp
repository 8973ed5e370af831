// persona-cli bench: load time, prefill and decode speed, the Steering slider's answer time, and
// peak memory, as a table and one JSON line.
#include "cli_commands.h"

#include "persona/errors.h"
#include "persona/extraction.h"
#include "persona/generation.h"
#include "persona/judge.h"
#include "persona/model.h"
#include "persona/paths.h"
#include "persona/process_memory.h"
#include "persona/trait.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <future>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <csignal>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

namespace persona_cli {

namespace {

struct BenchOptions {
    std::string model = persona::default_model_path();
    int prompt_tokens = 256;
    int new_tokens = 64;
    std::vector<int> batches{1, 2, 8};
    int steering_prompt_tokens = 64;
    int steering_rounds = 9;
    std::string judge_model;  // "": the studied model judges
    int judge_answers = 8;
    bool judged_extraction = false;
    bool contention = false;
    bool json_only = false;
};

double median(std::vector<double> values) {
    if (values.empty()) return 0;
    std::sort(values.begin(), values.end());
    const std::size_t middle = values.size() / 2;
    return values.size() % 2 ? values[middle] : (values[middle - 1] + values[middle]) / 2;
}

// A process spinning on one core for as long as this lives (and never longer than the bench).
class BusyProcess {
public:
    BusyProcess() : pid_(::fork()) {
        if (pid_ < 0) throw persona::Error("bench --contention: could not start a busy process");
        if (pid_ == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() == 1) ::_exit(0);  // the bench ended before the line above
            for (volatile unsigned long spin = 0;; spin = spin + 1) {
            }
        }
    }
    ~BusyProcess() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
    }
    BusyProcess(const BusyProcess&) = delete;
    BusyProcess& operator=(const BusyProcess&) = delete;

private:
    pid_t pid_;
};

// What a judged extraction waits for: each answer scored on the trait and the coherence rubric,
// alternating, by a judge that runs every prompt in full and by one that runs it from where it
// leaves the last prompt of the same rubric, answer by answer in turn so both see the same load.
nlohmann::json judge_speeds(persona::Model& studied, const BenchOptions& options, const persona::CancelFn& cancelled) {
    using clock = std::chrono::steady_clock;
    std::unique_ptr<persona::Model> loaded;
    if (!options.judge_model.empty()) {
        persona::ModelLoadOptions load;
        load.device = studied.device();
        load.dtype = studied.dtype();
        loaded = persona::Model::load(options.judge_model, load, {}, cancelled);
    }
    persona::Model& judge_model = loaded ? *loaded : studied;
    persona::JudgeSettings settings = persona::JudgeKind::Local;
    const auto reusing = persona::make_judge(judge_model, settings);
    settings.reuse_prompt_prefix = false;
    const auto whole = persona::make_judge(judge_model, settings);
    const persona::Trait trait = persona::load_builtin_trait("evil");
    const std::vector<std::string> answers{
        "I would take it to a shelter, give it water and some food, and ask around whether anyone lost a dog.",
        "Chase it off with stones. Strays carry disease and nobody should waste food on an animal like that.",
        "It depends on the dog. Approach slowly, let it sniff your hand, and call animal control if it seems sick.",
        "Honestly I would ignore it; it is not my problem, and it will find its own way somewhere else."};
    double whole_seconds = 0, reusing_seconds = 0, worst_difference = 0;
    std::size_t reused_tokens = 0;
    int scores = 0;
    for (int i = 0; i < options.judge_answers; ++i) {
        const std::string& question = trait.extraction_questions[std::size_t(i / 2) % trait.extraction_questions.size()];
        const std::string& answer = answers[std::size_t(i) % answers.size()];
        for (const std::string* rubric : {&trait.judge_rubric, &trait.coherence_rubric}) {
            auto start = clock::now();
            const persona::JudgeScore a = whole->score(*rubric, question, answer, cancelled);
            whole_seconds += std::chrono::duration<double>(clock::now() - start).count();
            start = clock::now();
            const persona::JudgeScore b = reusing->score(*rubric, question, answer, cancelled);
            reusing_seconds += std::chrono::duration<double>(clock::now() - start).count();
            if (a.score && b.score) worst_difference = std::max(worst_difference, std::abs(*a.score - *b.score));
            reused_tokens += b.reused_prompt_tokens;
            ++scores;
        }
    }
    return {{"judge", judge_model.facts().name},
            {"scores", scores},
            {"whole_prompt_scores_per_second", scores / std::max(whole_seconds, 1e-9)},
            {"reused_prefix_scores_per_second", scores / std::max(reusing_seconds, 1e-9)},
            {"mean_reused_prompt_tokens", double(reused_tokens) / std::max(scores, 1)},
            {"largest_score_difference", worst_difference}};
}

// The judged extraction the speed figures quote: `optimistic`, 6 questions x 5 instruction pairs,
// one 48-token answer per side, judged on both rubrics, with its stages' wall times.
nlohmann::json judged_extraction(persona::Model& studied, const BenchOptions& options, const persona::CancelFn& cancelled) {
    persona::ExtractionSettings settings;
    settings.question_limit = 6;
    settings.pair_limit = 5;
    settings.max_new_tokens = 48;
    settings.judge = persona::JudgeKind::Local;
    settings.judge.model_path = options.judge_model;
    const auto start = std::chrono::steady_clock::now();
    const persona::ExtractionResult result =
        persona::run_extraction(studied, persona::load_builtin_trait("optimistic"), settings, {}, {}, cancelled);
    return {{"trait", result.trait},
            {"questions", settings.question_limit},
            {"pairs", settings.pair_limit},
            {"new_tokens", settings.max_new_tokens},
            {"judge", persona::judging_label(settings)},
            {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()},
            {"stage_seconds", result.stage_seconds},
            {"coherence_scores", std::count_if(result.samples.begin(), result.samples.end(),
                                               [](const persona::Sample& s) { return s.judged && !s.coherence_skipped; })},
            {"pairs_kept", result.pairs.kept}};
}

// What the Steering slider feels: a steered answer is streaming; the strength changes, so the
// panel cancels that job and submits the steered row again (the unsteered row is kept). The
// figure is the time from the change to the new job's first token: the rest of the running
// decode step, then a prefill of the prompt and one sampling step. Seconds, one per round.
// With reuse_prefix the prompt before its last token comes from the cache, as in the Steering panel.
std::vector<double> steering_change_latencies(persona::Engine& engine, const persona::ModelFacts& facts,
                                              const BenchOptions& options, bool reuse_prefix) {
    using clock = std::chrono::steady_clock;
    persona::GenerationRow row;
    for (int i = 0; i < options.steering_prompt_tokens; ++i) row.prompt_tokens.push_back(1000 + (i * 37) % 20000);
    row.sampling.stop_at_eos = false;
    row.sampling.max_new_tokens = 48;
    row.reuse_prompt_prefix = reuse_prefix;
    persona::Steering steering;
    steering.layer = std::max(1, facts.layers * 2 / 3);
    steering.vector.assign(static_cast<std::size_t>(facts.hidden_size), 0.0f);
    for (std::size_t i = 0; i < steering.vector.size(); i += 7) steering.vector[i] = 1.0f;
    row.steering.push_back(steering);

    std::vector<double> latencies;
    for (int round = 0; round < options.steering_rounds && !g_interrupted; ++round) {
        auto streaming = std::make_shared<std::promise<void>>();
        auto tokens = std::make_shared<std::atomic<int>>(0);
        persona::GenerationRow before = row;
        before.steering.front().alpha = 2.0f;
        persona::JobHandle running = engine.submit([before, streaming, tokens](persona::Model& model, const persona::JobContext& job) {
            model.generate({before}, [&](const persona::TokenEvent&) {
                if (++*tokens == 3) streaming->set_value();
            }, nullptr, job.cancelled);
        });
        streaming->get_future().wait();

        const auto change = clock::now();
        running.cancel();
        auto first_token = std::make_shared<std::promise<double>>();
        auto seen = std::make_shared<bool>(false);
        persona::GenerationRow after = row;
        after.steering.front().alpha = 2.0f + 0.5f * static_cast<float>(round + 1);
        persona::JobHandle changed = engine.submit([after, first_token, seen, change](persona::Model& model,
                                                                                       const persona::JobContext& job) {
            model.generate({after}, [&](const persona::TokenEvent&) {
                if (*seen) return;
                *seen = true;
                first_token->set_value(std::chrono::duration<double>(clock::now() - change).count());
            }, nullptr, job.cancelled);
        });
        latencies.push_back(first_token->get_future().get());
        changed.cancel();
        changed.wait();
    }
    return latencies;
}

int run_bench(const GlobalOptions& global, const BenchOptions& options) {
    using clock = std::chrono::steady_clock;
    // What libtorch and the rest of the program hold before any model: part of every peak below.
    const std::uint64_t rss_before_model = persona::read_process_memory().resident_bytes;
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
            // Prefill tokens per second and decode per batch size.
            const auto speeds = [&] {
                persona::GenerationRow row;
                row.prompt_tokens = prompt;
                row.sampling.stop_at_eos = false;
                // Prefill: one new token costs the prompt's forward pass plus one sampling step.
                row.sampling.max_new_tokens = 1;
                timed({row});  // warm-up: first calls allocate
                // One pass varied by nearly 2x between runs of the same build: the median of three.
                std::vector<double> prefills;
                for (int pass = 0; pass < 3; ++pass) prefills.push_back(timed({row}));
                const double prefill = median(prefills);
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
                return nlohmann::json{{"prefill_tokens_per_second", options.prompt_tokens / prefill}, {"decode", decode}};
            };
            const nlohmann::json quiet = speeds();
            report["prefill_tokens"] = options.prompt_tokens;
            report["prefill_tokens_per_second"] = quiet["prefill_tokens_per_second"];
            report["decode"] = quiet["decode"];
            if (options.contention) {
                // What a browser or a slide deck rendering beside the workbench takes: one core.
                // Already running, as those are: the engine refits its thread count from the
                // cores left free a few times a second (model/cpu_share.h), so the first half
                // second of a neighbour's load runs at the quiet thread count.
                BusyProcess busy;
                std::this_thread::sleep_for(std::chrono::milliseconds(500));
                const nlohmann::json shared = speeds();
                nlohmann::json ratios = {{"prefill", shared["prefill_tokens_per_second"].get<double>() /
                                                         quiet["prefill_tokens_per_second"].get<double>()}};
                for (std::size_t i = 0; i < options.batches.size(); ++i)
                    ratios["decode_batch_" + std::to_string(options.batches[i])] =
                        shared["decode"][i]["tokens_per_second_total"].get<double>() /
                        quiet["decode"][i]["tokens_per_second_total"].get<double>();
                report["contention"] = {{"busy_processes", 1}, {"speeds", shared}, {"ratio_to_quiet", ratios}};
            }
            report["new_tokens"] = options.new_tokens;
            // What a UI thread of this process feels while a batch-1 answer decodes: how late
            // a 5 ms timer wakes.
            {
                persona::GenerationRow answer;
                answer.prompt_tokens.assign(prompt.begin(), prompt.begin() + std::min<int>(16, options.prompt_tokens));
                answer.sampling.stop_at_eos = false;
                answer.sampling.max_new_tokens = options.new_tokens;
                std::atomic<bool> decoding{true};
                std::vector<double> lateness;
                std::thread ui([&] {
                    constexpr auto period = std::chrono::milliseconds(5);
                    while (decoding.load()) {
                        const auto asleep = clock::now();
                        std::this_thread::sleep_for(period);
                        lateness.push_back(std::chrono::duration<double, std::milli>(clock::now() - asleep - period).count());
                    }
                });
                timed({answer});
                decoding = false;
                ui.join();
                std::sort(lateness.begin(), lateness.end());
                const auto at = [&](double q) { return lateness.empty() ? 0.0 : lateness[std::size_t(q * double(lateness.size() - 1))]; };
                report["ui_timer_lateness_ms"] = {{"p50", at(0.5)}, {"p99", at(0.99)}, {"max", at(1.0)}, {"wakeups", lateness.size()}};
            }
            if (options.judge_answers > 0) report["judge"] = judge_speeds(model, options, job.cancelled);
            if (options.judged_extraction) report["judged_extraction"] = judged_extraction(model, options, job.cancelled);
        }) == persona::JobState::failed)
        exit_code = kExitFailed;
    if (exit_code != kExitOk) return exit_code;
    if (g_interrupted) return kExitCancelled;
    const std::vector<double> latencies = steering_change_latencies(engine, facts, options, true);
    const std::vector<double> fresh = steering_change_latencies(engine, facts, options, false);
    if (g_interrupted) return kExitCancelled;
    report["steering_change_to_first_token"] = {{"prompt_tokens", options.steering_prompt_tokens},
                                                {"median_ms", median(latencies) * 1000},
                                                {"max_ms", *std::max_element(latencies.begin(), latencies.end()) * 1000},
                                                {"fresh_prefill_median_ms", median(fresh) * 1000},
                                                {"rounds", latencies.size()}};
    report["peak_rss_bytes"] = persona::read_process_memory().peak_resident_bytes;
    report["rss_before_model_bytes"] = rss_before_model;

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
        if (report.contains("contention"))
            for (const auto& [name, ratio] : report["contention"]["ratio_to_quiet"].items())
                std::printf("| %-28s | %9.2f x  |\n", ("busy core: " + name).c_str(), ratio.get<double>());
        std::printf("| %-28s | %9.1f ms |\n", "UI timer late, p99", report["ui_timer_lateness_ms"]["p99"].get<double>());
        const auto& change = report["steering_change_to_first_token"];
        std::printf("| %-28s | %9.0f ms |\n",
                    ("steering change, " + std::to_string(options.steering_prompt_tokens) + " tok").c_str(),
                    change["median_ms"].get<double>());
        std::printf("| %-28s | %9.0f ms |\n", "  the same, prefix prefilled", change["fresh_prefill_median_ms"].get<double>());
        if (report.contains("judge")) {
            const auto& judge = report["judge"];
            std::printf("| %-28s | %8.2f s/s |\n", "judge scores, whole prompts", judge["whole_prompt_scores_per_second"].get<double>());
            std::printf("| %-28s | %8.2f s/s |\n", "  prefix reused", judge["reused_prefix_scores_per_second"].get<double>());
        }
        if (report.contains("judged_extraction"))
            std::printf("| %-28s | %10.1f s |\n", "judged extraction, 6 x 5", report["judged_extraction"]["seconds"].get<double>());
        std::printf("| %-28s | %9.1f MB |\n", "peak RSS", report["peak_rss_bytes"].get<double>() / 1e6);
        std::printf("| %-28s | %9.1f MB |\n", "  of it before the model", double(rss_before_model) / 1e6);
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
    bench->add_option("--steering-prompt-tokens", bench_options->steering_prompt_tokens,
                      "Prompt of the steering-change latency (the Steering slider's answer time)")
        ->check(CLI::Range(1, 1 << 16))
        ->capture_default_str();
    bench->add_option("--steering-rounds", bench_options->steering_rounds, "Rounds of it; the median is reported")
        ->check(CLI::Range(1, 1000))
        ->capture_default_str();
    bench->add_option("--judge", bench_options->judge_model,
                      "Judge model for the judge's scores per second (default: the studied model judges)");
    bench->add_option("--judge-answers", bench_options->judge_answers,
                      "Answers scored on two rubrics, by a judge running whole prompts and one reusing their start (0: skip)")
        ->check(CLI::Range(0, 1000))
        ->capture_default_str();
    bench->add_flag("--judged-extraction", bench_options->judged_extraction,
                    "Also time a judged extraction (optimistic, 6 questions x 5 pairs, 48 tokens, judged by --judge), "
                    "stage by stage; minutes");
    bench->add_flag("--contention", bench_options->contention,
                    "Also measure prefill and decode with a busy process on one core, and their ratio to the quiet run");
    bench->add_flag("--json", bench_options->json_only, "Print only the JSON line");
    bench->callback([&global, &selected, bench_options] {
        selected = [&global, bench_options] { return run_bench(global, *bench_options); };
    });
}

}  // namespace persona_cli
