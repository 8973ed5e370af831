// persona-cli generate: one reply to a prompt, optionally steered, streamed to stdout as it is
// generated (or one JSON object at the end with --json).
#include "cli_commands.h"

#include "persona/generation.h"
#include "persona/model.h"
#include "persona/paths.h"
#include "persona/steering_vector.h"
#include "persona/tokenizer.h"

#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace persona_cli {

namespace {

struct GenerateOptions {
    std::string model = persona::default_model_path();
    std::string system;
    std::string prompt;
    std::vector<std::string> steer;
    std::vector<std::string> cap;
    std::string positions = "response";
    bool ablate = false;
    bool preserve_norm = false;
    bool raw = false;
    bool json = false;
    persona::SamplingOptions sampling;
};

int run_generate(const GlobalOptions& global, const GenerateOptions& options) {
    persona::Engine engine(engine_options(global));
    g_engine = &engine;
    if (!load(engine, options.model, true)) return g_interrupted ? kExitCancelled : kExitFailed;

    int exit_code = kExitOk;
    nlohmann::json output;
    if (run_job(engine,
        [&](persona::Model& model, const persona::JobContext& job) {
            persona::GenerationRow row;
            row.sampling = options.sampling;
            if (options.raw) {
                row.prompt_tokens = model.tokenizer().encode(options.prompt, /*add_special=*/true, /*parse_special=*/false);
            } else {
                if (!options.system.empty()) row.messages.push_back({"system", options.system});
                row.messages.push_back({"user", options.prompt});
            }
            const auto add_steering = [&](const std::string& spec, persona::SteerOperation operation) {
                persona::Steering steering = persona::parse_steering_spec(spec, model.layer_count(), model.hidden_size());
                steering.positions = *persona::steer_positions_from_name(options.positions);  // checked by the parser
                steering.operation = operation;
                steering.preserve_norm = options.preserve_norm;
                row.steering.push_back(std::move(steering));
            };
            for (const auto& spec : options.steer)
                add_steering(spec, options.ablate ? persona::SteerOperation::Ablate : persona::SteerOperation::Add);
            for (const auto& spec : options.cap) add_steering(spec, persona::SteerOperation::Cap);
            const auto start = std::chrono::steady_clock::now();
            nlohmann::json logprobs = nlohmann::json::array();
            auto results = model.generate({row},
                [&](const persona::TokenEvent& event) {
                    if (event.logprobs) {
                        nlohmann::json top = nlohmann::json::array();
                        for (const auto& t : event.logprobs->top) top.push_back({{"token", t.token}, {"logprob", t.logprob}});
                        logprobs.push_back({{"token", event.logprobs->chosen.token}, {"logprob", event.logprobs->chosen.logprob},
                                            {"top", top}});
                    }
                    if (!options.json) {
                        std::fwrite(event.text.data(), 1, event.text.size(), stdout);
                        std::fflush(stdout);
                    }
                },
                nullptr, job.cancelled);
            const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            const auto& result = results.front();
            if (options.json) {
                output = {{"text", result.text}, {"tokens", result.tokens}, {"prompt_tokens", result.prompt_tokens.size()},
                          {"prompt_token_ids", result.prompt_tokens},
                          {"stop_reason", persona::stop_reason_name(result.stop_reason)}, {"seconds", seconds}};
                if (options.sampling.top_logprobs >= 0) output["logprobs"] = logprobs;
            } else {
                std::printf("\n");
                std::fprintf(stderr, "[%zu prompt tokens, %zu generated, %s, %.2f s]\n", result.prompt_tokens.size(),
                             result.tokens.size(), persona::stop_reason_name(result.stop_reason), seconds);
            }
        }) == persona::JobState::failed)
        exit_code = kExitFailed;
    if (g_interrupted) return kExitCancelled;
    if (options.json && exit_code == kExitOk) std::cout << output.dump(2) << "\n";
    return exit_code;
}

}  // namespace

void add_generate_command(CLI::App& app, const GlobalOptions& global, Command& selected) {
    auto gen = std::make_shared<GenerateOptions>();
    auto* generate = app.add_subcommand("generate", "Generate a reply, optionally steered, streaming it to stdout");
    generate->add_option("--model,-m", gen->model, "GGUF model file or Hugging Face checkpoint directory")->capture_default_str();
    generate->add_option("--system,-s", gen->system, "System prompt");
    generate->add_option("--prompt,-p", gen->prompt, "User prompt")->required();
    generate->add_option("--steer", gen->steer,
                         "FILE:LAYER:ALPHA: add ALPHA times the vector of LAYER (hidden_states index) from FILE "
                         "(safetensors [L+1, hidden] or [hidden]); repeatable");
    generate->add_option("--positions", gen->positions, "Steered positions")->check(CLI::IsMember(persona::steer_positions_names()))
        ->capture_default_str();
    generate->add_option("--cap", gen->cap,
                         "FILE:LAYER:MAX: keep the projection on the vector's direction (v/|v|) at LAYER at most MAX, "
                         "lowering only the activations above it; repeatable, and combines with --steer");
    generate->add_flag("--ablate", gen->ablate, "Remove the component along the vector instead of adding it (--steer)");
    generate->add_flag("--preserve-norm", gen->preserve_norm, "Keep each steered activation's norm");
    generate->add_flag("--raw", gen->raw, "Use the prompt as raw text, without the chat template");
    generate->add_option("--temperature,-t", gen->sampling.temperature, "0 for greedy")->capture_default_str();
    generate->add_option("--top-p", gen->sampling.top_p)->capture_default_str();
    generate->add_option("--top-k", gen->sampling.top_k)->capture_default_str();
    generate->add_option("--seed", gen->sampling.seed)->capture_default_str();
    generate->add_option("--max-tokens,-n", gen->sampling.max_new_tokens)->check(CLI::Range(0, 1 << 20))->capture_default_str();
    generate->add_option("--stop", gen->sampling.stop_strings, "Stop when this text appears; repeatable");
    generate->add_flag("--json", gen->json, "Print one JSON object at the end instead of streaming text");
    generate->add_option("--logprobs", gen->sampling.top_logprobs,
                         "With --json: each generated token's log-probability and this many most likely alternatives")
        ->check(CLI::Range(0, 20));
    generate->callback([&global, &selected, gen] { selected = [&global, gen] { return run_generate(global, *gen); }; });
}

}  // namespace persona_cli
