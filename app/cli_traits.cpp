// persona-cli traits: list the built-in traits, show one (built-in or a file) as JSON, or
// validate a trait file. `traits draft` lives in cli_traits_draft.cpp.
#include "cli_commands.h"

#include "persona/errors.h"
#include "persona/trait.h"

#include <cstdio>
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

int run_traits_validate(const std::string& path) {
    nlohmann::json report = {{"file", path}};
    std::vector<persona::TraitProblem> problems;
    try {
        problems = persona::validate(persona::read_trait_file(path));
    } catch (const persona::FileError& e) {
        problems.push_back({"", e.problem(), persona::TraitProblemSeverity::Error});
    }
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

}  // namespace

void add_traits_command(CLI::App& app, const GlobalOptions& global, Command& selected) {
    auto options = std::make_shared<TraitsOptions>();
    auto* traits = app.add_subcommand("traits", "List the built-in traits; show or validate one");
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
    add_traits_draft_command(*traits, global, selected);
    // Only a bare `traits` lists: show, validate and draft set `selected` in their own callbacks,
    // and asking CLI11 which subcommand was given does not depend on the order it runs those in.
    traits->callback([traits, &selected, options] {
        if (traits->get_subcommands().empty()) selected = [options] { return run_traits_list(options->json); };
    });
}

}  // namespace persona_cli
