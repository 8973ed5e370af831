// persona-cli traits draft: a model (the local one, or an OpenAI-compatible endpoint) drafts a
// trait file from a name and a definition; every problem with the draft is listed for a person
// to fix before extracting with it.
#include "persona/errors.h"
#include "persona/paths.h"
#include "persona/trait.h"
#include "persona/trait_draft.h"

#include "cli_commands.h"

#include <cstdio>
#include <iostream>

namespace persona_cli {

namespace {

struct DraftOptions {
    std::string name;
    std::string definition;
    std::string out;
    std::string model = persona::default_model_path();
    persona::ChatEndpoint endpoint;
    persona::TraitDraftSettings settings;
    float temperature = 0.7f;
    std::uint64_t seed = 1;
};

int run_traits_draft(const GlobalOptions& global, const DraftOptions& options) {
    const bool use_endpoint = !options.endpoint.base_url.empty();
    if (use_endpoint && options.endpoint.model.empty()) {
        std::fprintf(stderr, "persona-cli: --endpoint needs --endpoint-model\n");
        return kExitUsage;
    }
    // Reported before each part (done = parts finished) and once at the end.
    const auto show_progress = [](const persona::Progress& p) {
        if (p.done < p.total)
            std::fprintf(stderr, "drafting %s (%llu/%llu)\n", p.stage.c_str(), static_cast<unsigned long long>(p.done + 1),
                         static_cast<unsigned long long>(p.total));
    };
    persona::TraitDraft draft;
    if (use_endpoint) {
        persona::CancelFn cancelled = [] { return g_interrupted != 0; };
        draft = persona::draft_trait(options.name, options.definition,
                                     persona::endpoint_text_generator(options.endpoint, options.temperature),
                                     options.settings, show_progress, cancelled);
    } else {
        persona::Engine engine(engine_options(global));
        g_engine = &engine;
        if (!load(engine, options.model, true)) return g_interrupted ? kExitCancelled : kExitFailed;
        const persona::JobState ended = run_job(engine, [&](persona::Model& model, const persona::JobContext& job) {
            draft = persona::draft_trait(options.name, options.definition,
                                         persona::model_text_generator(model, options.temperature, options.seed),
                                         options.settings, show_progress, job.cancelled);
        });
        if (g_interrupted) return kExitCancelled;
        if (ended != persona::JobState::finished) return kExitFailed;
    }
    if (g_interrupted) return kExitCancelled;

    persona::write_trait_file(options.out, draft.trait);
    nlohmann::json notes = nlohmann::json::array();
    for (const auto& note : draft.notes) {
        std::fprintf(stderr, "%s: %s: could not use all of the reply: %s\n", options.out.c_str(), note.part.c_str(),
                     note.message.c_str());
        notes.push_back({{"part", note.part}, {"message", note.message}, {"reply", note.reply}});
    }
    nlohmann::json problems = nlohmann::json::array();
    for (const auto& problem : draft.problems) {
        const bool error = problem.severity == persona::TraitProblemSeverity::Error;
        std::fprintf(stderr, "%s: %s%s%s: %s\n", options.out.c_str(), problem.field.c_str(),
                     problem.field.empty() ? "" : " ", error ? "error" : "warning", problem.message.c_str());
        problems.push_back({{"field", problem.field}, {"message", problem.message}, {"severity", error ? "error" : "warning"}});
    }
    const bool valid = !persona::has_errors(draft.problems);
    if (!valid)
        std::fprintf(stderr, "persona-cli: wrote the draft to %s; it has errors: edit it, then check it with "
                     "'persona-cli traits validate %s'\n", options.out.c_str(), options.out.c_str());
    std::cout << nlohmann::json{{"file", options.out},
                                {"draft", true},
                                {"writer", use_endpoint ? "http:" + options.endpoint.base_url + "#" + options.endpoint.model
                                                        : options.model},
                                {"instruction_pairs", draft.trait.instructions.size()},
                                {"extraction_questions", draft.trait.extraction_questions.size()},
                                {"evaluation_questions", draft.trait.evaluation_questions.size()},
                                {"valid", valid},
                                {"problems", problems},
                                {"unparsed", notes},
                                {"replies", draft.replies}}
                     .dump(2)
              << "\n";
    return valid ? kExitOk : kExitFailed;
}

}  // namespace

void add_traits_draft_command(CLI::App& traits, const GlobalOptions& global, Command& selected) {
    auto options = std::make_shared<DraftOptions>();
    auto* draft = traits.add_subcommand(
        "draft", "Have a model draft a trait file (instruction pairs, questions, rubric) from a definition");
    draft->add_option("--name", options->name, "Trait name (lowercase, e.g. optimistic)")->required();
    draft->add_option("--definition", options->definition, "One paragraph saying what the trait is")->required();
    draft->add_option("--out,-o", options->out, "Trait file to write (the draft)")->required();
    draft->add_option("--model,-m", options->model, "Local model that writes the draft (without --endpoint)")
        ->capture_default_str();
    draft->add_option("--endpoint", options->endpoint.base_url,
                      "An OpenAI-compatible endpoint writes the draft instead, e.g. https://api.openai.com/v1");
    draft->add_option("--endpoint-model", options->endpoint.model, "The model name the endpoint knows");
    draft->add_option("--endpoint-key-env", options->endpoint.api_key_env,
                      "Environment variable holding the endpoint's API key (never stored)")
        ->capture_default_str();
    draft->add_option("--pairs", options->settings.instruction_pairs, "Instruction pairs to ask for")
        ->check(CLI::Range(1, 50))->capture_default_str();
    draft->add_option("--questions", options->settings.questions,
                      "Extraction questions to ask for, and as many evaluation questions")
        ->check(CLI::Range(1, 200))->capture_default_str();
    draft->add_option("--max-tokens,-n", options->settings.max_tokens, "Tokens per request (0: enough for the amounts)")
        ->check(CLI::Range(0, 1 << 16))->capture_default_str();
    draft->add_option("--temperature,-t", options->temperature)->capture_default_str();
    draft->add_option("--seed", options->seed, "Sampling seed for the local model")->capture_default_str();
    draft->callback([options, &global, &selected] { selected = [options, &global] { return run_traits_draft(global, *options); }; });
}

}  // namespace persona_cli
