// persona-cli traits: list the built-in traits, show one (built-in or a file) as JSON,
// validate a trait file, or import the reference code's pair of trait files. `traits draft`
// lives in cli_traits_draft.cpp.
#include "cli_commands.h"

#include "persona/errors.h"
#include "persona/trait.h"

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

namespace persona_cli {

namespace {

struct TraitsOptions {
    bool json = false;
    std::string show_name;
    std::string validate_path;
    std::string import_extract, import_eval, import_out, import_name, import_definition;
};

nlohmann::json trait_counts(const persona::Trait& trait) {
    return {{"name", trait.name}, {"instruction_pairs", trait.instructions.size()},
            {"extraction_questions", trait.extraction_questions.size()},
            {"evaluation_questions", trait.evaluation_questions.size()}};
}

int run_traits_list(bool json) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& name : persona::builtin_trait_names()) list.push_back(trait_counts(persona::load_builtin_trait(name)));
    if (json) {
        std::cout << list.dump(2) << "\n";
        return kExitOk;
    }
    std::printf("%-16s %6s %10s %10s\n", "trait", "pairs", "extract", "evaluate");
    for (const auto& t : list)
        std::printf("%-16s %6d %10d %10d\n", t["name"].get<std::string>().c_str(), t["instruction_pairs"].get<int>(),
                    t["extraction_questions"].get<int>(), t["evaluation_questions"].get<int>());
    return kExitOk;
}

int run_traits_show(const std::string& name_or_file) {
    std::cout << persona::to_json(load_trait(name_or_file)).dump(2) << "\n";
    return kExitOk;
}

// Prints the problems on stderr and a report on stdout; exit 1 when one is an error.
int report_problems(const std::string& path, const std::vector<persona::TraitProblem>& problems) {
    nlohmann::json report = {{"file", path}};
    nlohmann::json listed = nlohmann::json::array();
    for (const auto& problem : problems) {
        const bool error = problem.severity == persona::TraitProblemSeverity::Error;
        listed.push_back({{"field", problem.field}, {"message", problem.message}, {"severity", error ? "error" : "warning"}});
        std::fprintf(stderr, "%s: %s%s%s: %s\n", path.c_str(), problem.field.c_str(), problem.field.empty() ? "" : " ",
                     error ? "error" : "warning", problem.message.c_str());
    }
    const bool valid = !persona::has_errors(problems);
    report["valid"] = valid;
    report["problems"] = listed;
    std::cout << report.dump(2) << "\n";
    return valid ? kExitOk : kExitFailed;
}

int run_traits_validate(const std::string& path) {
    std::vector<persona::TraitProblem> problems;
    try {
        problems = persona::validate(persona::read_trait_file(path));
    } catch (const persona::FileError& e) {
        problems.push_back({"", e.problem(), persona::TraitProblemSeverity::Error});
    }
    return report_problems(path, problems);
}

// The trait is written even when it is not ready (a definition to add, say): the report says
// what is missing, and the exit code whether it can be used as it is.
int run_traits_import(const TraitsOptions& options) {
    const std::string name =
        options.import_name.empty() ? std::filesystem::path(options.import_extract).stem().string() : options.import_name;
    // The reference keeps evaluation questions, which must differ from the extraction ones, in a
    // second file of the same layout.
    const std::string eval = options.import_eval.empty() ? options.import_extract : options.import_eval;
    persona::Trait trait = persona::import_paper_trait(name, options.import_extract, eval);
    if (options.import_eval.empty()) {
        trait.evaluation_questions.clear();
        std::fprintf(stderr, "persona-cli: no evaluation file given: the trait has no evaluation questions yet "
                             "(the reference keeps them in trait_data_eval/%s.json)\n", name.c_str());
    }
    if (!options.import_definition.empty()) trait.definition = options.import_definition;
    persona::write_trait_file(options.import_out, trait);
    if (trait.definition.empty())
        std::fprintf(stderr, "persona-cli: %s has no definition of '%s': give one with --definition, or write it into "
                             "the file's \"definition\"\n",
                     options.import_out.c_str(), name.c_str());
    return report_problems(options.import_out, persona::validate(trait));
}

}  // namespace

void add_traits_command(CLI::App& app, const GlobalOptions& global, Command& selected) {
    auto options = std::make_shared<TraitsOptions>();
    auto* traits = app.add_subcommand("traits", "List the built-in traits; show, validate or import one");
    traits->add_flag("--json", options->json, "Print the list as JSON");
    traits->require_subcommand(0, 1);
    auto* traits_show = traits->add_subcommand("show", "Print a trait (built-in name or file) as JSON");
    traits_show->add_option("name", options->show_name, "Built-in trait name or trait file")->required();
    traits_show->callback([&selected, options] { selected = [options] { return run_traits_show(options->show_name); }; });
    auto* traits_validate = traits->add_subcommand("validate", "Check a trait file; exit 1 when it has errors");
    traits_validate->add_option("file", options->validate_path, "Trait file")->required();
    traits_validate->callback([&selected, options] {
        selected = [options] { return run_traits_validate(options->validate_path); };
    });
    auto* traits_import = traits->add_subcommand(
        "import", "Import the reference code's trait files (instruction, questions, eval_prompt) as a trait file");
    traits_import->add_option("extract", options->import_extract, "The extraction file (trait_data_extract/NAME.json)")
        ->required();
    traits_import->add_option("eval", options->import_eval,
                              "The evaluation file (trait_data_eval/NAME.json); without it the trait has no evaluation "
                              "questions yet");
    traits_import->add_option("--out,-o", options->import_out, "Trait file to write")->required();
    traits_import->add_option("--name", options->import_name, "The trait's name (default: the extraction file's name)");
    traits_import->add_option("--definition", options->import_definition,
                              "What the trait means, in a sentence or two (the reference files carry none)");
    traits_import->callback([&selected, options] { selected = [options] { return run_traits_import(*options); }; });
    add_traits_draft_command(*traits, global, selected);
    // Only a bare `traits` lists: show, validate and draft set `selected` in their own callbacks,
    // and asking CLI11 which subcommand was given does not depend on the order it runs those in.
    traits->callback([traits, &selected, options] {
        if (traits->get_subcommands().empty()) selected = [options] { return run_traits_list(options->json); };
    });
}

}  // namespace persona_cli
