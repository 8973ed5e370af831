// persona-cli monitor: where a persona vector lights up in a conversation (docs/method.md:
// monitoring), and the last prompt token's projection as a predictor of the trait.
#include "cli_commands.h"

#include "persona/chat_jsonl.h"
#include "persona/errors.h"
#include "persona/files.h"
#include "persona/model.h"
#include "persona/monitoring.h"
#include "persona/paths.h"
#include "persona/tokenizer.h"
#include "persona/vector_files.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>

namespace persona_cli {

namespace {

struct MonitorOptions {
    std::string model = persona::default_model_path();
    std::string vector;
    int layer = -1;
    std::vector<int> layers;
    std::string system;
    std::string prompt;
    std::string answer;
    bool has_answer = false;
    std::string input;
    bool generate = false;
    persona::SamplingOptions sampling;
    int batch = 8;
    bool pretty = false;
};

// Six significant digits: float precision is all there is, and the output stays readable.
nlohmann::json compact(double value) {
    char text[32];
    std::snprintf(text, sizeof text, "%.6g", value);
    return std::strtod(text, nullptr);
}

nlohmann::json compact_list(const std::vector<double>& values) {
    nlohmann::json list = nlohmann::json::array();
    for (double v : values) list.push_back(compact(v));
    return list;
}

std::vector<persona::MonitorInput> read_conversations(const std::string& path, std::vector<std::size_t>& lines,
                                                      const MonitorOptions& options) {
    persona::check_regular_file(path);
    std::ifstream in(path, std::ios::binary);
    if (!in) throw persona::FileError(path, "cannot open");
    std::vector<persona::MonitorInput> inputs;
    std::string text;
    std::size_t line = 0;
    while (std::getline(in, text)) {
        ++line;
        if (!text.empty() && text.back() == '\r') text.pop_back();
        if (text.find_first_not_of(" \t") == std::string::npos) continue;
        persona::MonitorInput input;
        input.messages = persona::parse_chat_messages(text, path, line);
        if (input.messages.empty()) throw persona::FileError(path, "line " + std::to_string(line) + ": no messages");
        input.generate_answer = options.generate;
        input.sampling = options.sampling;
        inputs.push_back(std::move(input));
        lines.push_back(line);
    }
    if (inputs.empty()) throw persona::FileError(path, "holds no conversation");
    return inputs;
}

int run_monitor(const GlobalOptions& global, const MonitorOptions& options) {
    if (options.input.empty() == options.prompt.empty()) {
        std::fprintf(stderr, "persona-cli monitor: give either --prompt (with --system, --answer) or --input\n");
        return kExitUsage;
    }
    const persona::PersonaVector vector = persona::read_vector_file(options.vector);
    const int layer = chosen_layer(options.layer, vector, options.vector);

    std::vector<persona::MonitorInput> inputs;
    std::vector<std::size_t> lines;
    if (!options.input.empty()) {
        inputs = read_conversations(options.input, lines, options);
    } else {
        persona::MonitorInput input;
        if (!options.system.empty()) input.messages.push_back({"system", options.system});
        input.messages.push_back({"user", options.prompt});
        if (options.has_answer) input.messages.push_back({"assistant", options.answer});
        input.generate_answer = options.generate;
        input.sampling = options.sampling;
        inputs.push_back(std::move(input));
    }

    persona::Engine engine(engine_options(global));
    g_engine = &engine;
    persona::ModelFacts facts;
    if (!load(engine, options.model, true, &facts)) return g_interrupted ? kExitCancelled : kExitFailed;
    if (layer < 0 || layer > facts.layers) {
        std::fprintf(stderr, "persona-cli monitor: layer %d is outside 0..%d\n", layer, facts.layers);
        return kExitUsage;
    }
    persona::MonitorOptions monitor_options;
    monitor_options.layers = options.layers;
    if (!monitor_options.layers.empty() &&
        std::find(monitor_options.layers.begin(), monitor_options.layers.end(), layer) == monitor_options.layers.end())
        monitor_options.layers.push_back(layer);
    monitor_options.batch_size = options.batch;

    int exit_code = kExitOk;
    nlohmann::json report;
    const auto start = std::chrono::steady_clock::now();
    if (run_job(engine,
        [&](persona::Model& model, const persona::JobContext& job) {
            persona::check_vector_fits(vector, model, options.vector);
            std::string last_stage;
            const auto results = persona::monitor(model, vector, inputs, monitor_options,
                [&](const persona::Progress& p) {
                    if (p.total == 0) return;
                    if (p.stage != last_stage && !last_stage.empty()) std::fprintf(stderr, "\n");
                    last_stage = p.stage;
                    std::fprintf(stderr, "\r%s %llu/%llu", p.stage.c_str(), static_cast<unsigned long long>(p.done),
                                 static_cast<unsigned long long>(p.total));
                    std::fflush(stderr);
                },
                job.cancelled);
            std::fprintf(stderr, "\n");

            const persona::Tokenizer& tokenizer = model.tokenizer();
            nlohmann::json conversations = nlohmann::json::array();
            for (std::size_t i = 0; i < results.size(); ++i) {
                const persona::MonitorResult& r = results[i];
                nlohmann::json texts = nlohmann::json::array();
                for (auto id : r.tokens) texts.push_back(persona::sanitize_utf8(tokenizer.token_bytes(id)));
                nlohmann::json projections = nlohmann::json::array();
                for (const auto& per_token : r.projections) {
                    nlohmann::json row = nlohmann::json::array();
                    for (float v : per_token) row.push_back(compact(v));
                    projections.push_back(std::move(row));
                }
                const std::size_t chosen = r.layer_index(layer);
                nlohmann::json entry;
                if (!lines.empty()) entry["line"] = lines[i];
                entry["prompt_length"] = r.prompt_length;
                entry["answer"] = r.answer;
                entry["answer_generated"] = r.answer_generated;
                entry["token_ids"] = r.tokens;
                entry["token_texts"] = std::move(texts);
                entry["prediction"] = compact(r.prompt_last[chosen]);
                entry["response_avg"] = r.response_average ? compact((*r.response_average)[chosen]) : nlohmann::json(nullptr);
                entry["prompt_last_projection"] = compact_list(r.prompt_last);
                entry["response_avg_projection"] = r.response_average ? compact_list(*r.response_average) : nlohmann::json(nullptr);
                entry["projections"] = std::move(projections);
                conversations.push_back(std::move(entry));
            }
            report = {{"model", facts.path}, {"vector", options.vector}, {"trait", vector.trait}, {"layer", layer},
                      {"projection", "h . v_l/|v_l|: each layer onto the unit direction of the vector's own layer"},
                      {"layers", results.front().layers}, {"conversations", std::move(conversations)}};
        }) == persona::JobState::failed)
        exit_code = kExitFailed;
    if (g_interrupted) return kExitCancelled;
    if (exit_code != kExitOk) return exit_code;
    report["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    // One line by default: a conversation has layers x tokens numbers, one per line would be thousands.
    std::cout << report.dump(options.pretty ? 1 : -1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return kExitOk;
}

}  // namespace

void add_monitor_command(CLI::App& app, const GlobalOptions& global, Command& selected) {
    auto options = std::make_shared<MonitorOptions>();
    options->sampling.max_new_tokens = 64;
    auto* cmd = app.add_subcommand(
        "monitor", "Projections of a conversation on a persona vector per token and layer, and the last prompt "
                   "token's projection as a predictor of the trait (JSON on stdout)");
    cmd->add_option("--model,-m", options->model, "GGUF model file or Hugging Face checkpoint directory")->capture_default_str();
    cmd->add_option("--vector", options->vector, "Vector file (safetensors, [L+1, hidden])")->required();
    cmd->add_option("--layer", options->layer, "The layer whose projections are the prediction (default: the vector's suggested layer)")
        ->check(CLI::NonNegativeNumber);
    cmd->add_option("--layers", options->layers, "Only these layers' projections (default: every layer)")
        ->check(CLI::NonNegativeNumber);
    auto* system = cmd->add_option("--system,-s", options->system, "System prompt");
    auto* prompt = cmd->add_option("--prompt,-p", options->prompt, "User prompt");
    auto* answer = cmd->add_option("--answer,-a", options->answer, "The assistant's answer to read (else none, or --generate)");
    auto* input = cmd->add_option("--input,-i", options->input,
                                  "JSONL of conversations, {\"messages\":[{\"role\":..,\"content\":..},...]} per line; "
                                  "a final assistant message is the answer");
    input->excludes(system)->excludes(prompt)->excludes(answer);
    auto* generate = cmd->add_flag("--generate", options->generate, "Generate the answer where the conversation has none");
    generate->excludes(answer);
    cmd->add_option("--max-tokens,-n", options->sampling.max_new_tokens, "Of a generated answer")
        ->check(CLI::Range(1, 1 << 16))->capture_default_str();
    cmd->add_option("--temperature,-t", options->sampling.temperature, "0 for greedy")->capture_default_str();
    cmd->add_option("--seed", options->sampling.seed)->capture_default_str();
    cmd->add_option("--batch", options->batch, "Conversations per batch")->check(CLI::Range(1, 4096))->capture_default_str();
    cmd->add_flag("--pretty", options->pretty, "Indent the JSON (one value per line)");
    cmd->callback([&global, &selected, options, answer] {
        options->has_answer = answer->count() > 0;
        selected = [&global, options] { return run_monitor(global, *options); };
    });
}

}  // namespace persona_cli
