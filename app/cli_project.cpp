// persona-cli project: build and inspect project folders (NAME.persona, core/include/persona/
// project.h) from the shell, e.g. to assemble the example projects from `extract` runs.
#include "cli_commands.h"

#include "persona/errors.h"
#include "persona/extraction.h"
#include "persona/files.h"
#include "persona/fingerprint.h"
#include "persona/model_facts.h"
#include "persona/paths.h"
#include "persona/project.h"
#include "persona/vector_files.h"

#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <optional>

namespace persona_cli {

namespace {

namespace fs = std::filesystem;

struct ProjectOptions {
    std::string folder;
    std::string name;
    std::string description;
    std::string trait;
    std::string prompt_name;
    std::string system;
    std::string user;
    std::string summary;
    std::string sweep;
    std::optional<int> sweep_layer;
    std::optional<double> sweep_strength;
    std::string model = persona::default_model_path();
    bool steer = false;
    double coefficient = 4.0;
};

std::string provenance(const persona::PersonaVector& vector, const std::string& key, const std::string& fallback = "") {
    const auto found = vector.provenance.find(key);
    return found == vector.provenance.end() ? fallback : found->second;
}

std::size_t count_at(const nlohmann::json& summary, const char* key) {
    return summary.contains(key) ? summary.at(key).get<std::size_t>() : 0;
}

double number_or_nan(const nlohmann::json& value) {
    return value.is_number() ? value.get<double>() : std::numeric_limits<double>::quiet_NaN();
}

std::string timestamp_of(std::time_t when) {
    std::tm utc{};
    gmtime_r(&when, &utc);
    char text[32];
    std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
    return text;
}

// A JSON report another persona-cli command printed; `what` names that command's output.
nlohmann::json read_report(const std::string& path, const std::string& what) {
    // A report is kilobytes of JSON (a sweep's with examples, a few megabytes); far more is the wrong file.
    const std::string text = persona::read_file_bytes(path, 50'000'000);
    try {
        return nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception&) {
        throw persona::FileError(path, "not " + what);
    }
}

// `extract`'s stdout summary plus its vector file -> a RunResult and the vector to store.
persona::RunResult run_from_summary(const std::string& summary_path, const std::string& model_path,
                                    persona::PersonaVector& vector) {
    const nlohmann::json summary = read_report(summary_path, "the JSON summary that persona-cli extract prints");
    if (!summary.is_object() || !summary.contains("vector") || !summary.contains("layers"))
        throw persona::FileError(summary_path, "not an extract summary with a vector (no \"vector\" or \"layers\")");
    std::string vector_path = summary.at("vector").get<std::string>();
    if (fs::path(vector_path).is_relative() && !fs::exists(vector_path))
        vector_path = (fs::path(summary_path).parent_path() / vector_path).string();
    vector = persona::read_vector_file(vector_path);

    persona::RunResult run;
    run.trait = summary.at("trait").get<std::string>();
    run.aggregate = vector.aggregate;
    persona::visit_pair_counts(run.pairs, [&](const char* name, std::size_t& count) { count = count_at(summary, name); });
    run.positive_samples = std::stoul(provenance(vector, "positive_samples", "0"));
    run.negative_samples = std::stoul(provenance(vector, "negative_samples", "0"));
    run.suggested_layer = summary.value("suggested_layer", -1);
    for (const auto& layer : summary.at("layers")) {
        persona::LayerDiagnostics d;
        d.layer = layer.at("layer").get<int>();
        d.vector_norm = number_or_nan(layer.at("norm"));
        d.effect_size = number_or_nan(layer.at("effect_size"));
        d.auroc = number_or_nan(layer.at("auroc"));
        d.positive_mean_projection = number_or_nan(layer.at("positive_mean_projection"));
        d.negative_mean_projection = number_or_nan(layer.at("negative_mean_projection"));
        run.diagnostics.push_back(d);
    }

    persona::ExtractionSettings& s = run.settings;
    const std::string judge = summary.value("judge", "local");
    if (!persona::apply_judging_label(judge, s)) throw persona::FileError(summary_path, "unknown judge '" + judge + "'");
    s.trait_threshold = std::stod(provenance(vector, "trait_threshold", "50"));
    if (const std::string pairwise = provenance(vector, "pairwise_threshold"); !pairwise.empty())
        s.pairwise_threshold = std::stod(pairwise);
    if (const std::string negative = provenance(vector, "negative_threshold"); !negative.empty())
        s.negative_threshold = std::stod(negative);
    s.coherence_threshold = std::stod(provenance(vector, "coherence_threshold", "50"));
    s.question_limit = std::stoi(provenance(vector, "questions", "0"));
    s.pair_limit = std::stoi(provenance(vector, "instruction_pairs", "0"));
    const std::string generation = provenance(vector, "generation");
    if (!generation.empty()) {
        const auto g = nlohmann::json::parse(generation);
        s.samples_per_question = g.value("samples_per_question", s.samples_per_question);
        s.max_new_tokens = g.value("max_new_tokens", s.max_new_tokens);
        s.temperature = g.value("temperature", s.temperature);
        s.top_p = g.value("top_p", s.top_p);
        s.seed = g.value("seed", s.seed);
    }

    // The model's metadata and content hash, not its weights: a GGUF file or a checkpoint folder.
    persona::ModelFacts facts = persona::inspect_model(model_path);
    persona::check_vector_fits(vector, facts.layers, facts.hidden_size, vector_path);
    facts.fingerprint = persona::model_fingerprint(model_path);
    facts.dtype = provenance(vector, "dtype");
    facts.device = provenance(vector, "device");
    run.model = persona::model_identity(facts);
    const auto written = fs::last_write_time(vector_path);
    const auto finished = std::chrono::system_clock::to_time_t(
        std::chrono::time_point_cast<std::chrono::system_clock::duration>(
            written - fs::file_time_type::clock::now() + std::chrono::system_clock::now()));
    run.finished = timestamp_of(finished);
    run.started = timestamp_of(finished - std::time_t(std::lround(summary.value("seconds", 0.0))));
    return run;
}

// The steering preset a sweep of this run's vector measured (`persona-cli sweep`'s report): its
// recommendation, or the cell at `layer` and calibrated `strength` when both are given (for a
// trait the judge cannot see, whose recommendation means nothing). A report of another trait or
// vector, or without that cell or recommendation, is refused: a coefficient only means something
// for the vector it was swept with.
void steer_from_sweep(const std::string& report_path, const persona::RunResult& run, const persona::PersonaVector& vector,
                      std::optional<int> layer, std::optional<double> strength, persona::SteeringSettings& steering) {
    const nlohmann::json report = read_report(report_path, "the JSON report that persona-cli sweep prints");
    if (!report.is_object() || !report.contains("recommendation") || !report.value("cells", nlohmann::json()).is_array() ||
        !report.value("trait", nlohmann::json()).is_string() || !report.value("vector", nlohmann::json()).is_string())
        throw persona::FileError(report_path, "not a sweep report (no \"trait\", \"vector\", \"cells\" or \"recommendation\")");
    const std::string trait = report.at("trait").get<std::string>();
    if (trait != run.trait)
        throw persona::FileError(report_path, "is a sweep of trait '" + trait + "', not of '" + run.trait + "'");
    std::string swept = report.at("vector").get<std::string>();
    if (fs::path(swept).is_relative() && !fs::exists(swept)) swept = (fs::path(report_path).parent_path() / swept).string();
    if (!fs::exists(swept))
        throw persona::FileError(report_path, "names the vector file '" + swept + "', which is not there to compare with the run's");
    if (persona::read_vector_file(swept).values != vector.values)
        throw persona::FileError(report_path, "is a sweep of " + swept + ", whose values differ from the run's vector");
    const auto field = [](const nlohmann::json& object, const char* key) {
        return object.is_object() && object.contains(key) ? number_or_nan(object.at(key))
                                                          : std::numeric_limits<double>::quiet_NaN();
    };
    if (layer && strength) {
        for (const auto& cell : report.at("cells"))
            if (field(cell, "layer") == *layer && std::abs(field(cell, "calibrated_strength") - *strength) < 1e-9 &&
                std::isfinite(field(cell, "coefficient"))) {
                steering.layer = *layer;
                steering.coefficient = field(cell, "coefficient");
                return;
            }
        throw persona::FileError(report_path, "has no cell at layer " + std::to_string(*layer) + ", strength " +
                                                  nlohmann::json(*strength).dump());
    }
    const nlohmann::json& recommended = report.at("recommendation");
    const double recommended_layer = field(recommended, "layer"), coefficient = field(recommended, "coefficient");
    if (!(recommended_layer >= 0 && recommended_layer < (1 << 20)) || !std::isfinite(coefficient))
        throw persona::FileError(report_path, "recommends nothing: " + (recommended.is_object() && recommended.contains("reason") &&
                                                                                recommended.at("reason").is_string()
                                                                            ? recommended.at("reason").get<std::string>()
                                                                            : std::string("no reason given")));
    steering.layer = int(recommended_layer);
    steering.coefficient = coefficient;
}

nlohmann::json overview(const persona::Project& project, const std::string& folder) {
    nlohmann::json traits = nlohmann::json::array(), prompts = nlohmann::json::array(), runs = nlohmann::json::array(),
                   vectors = nlohmann::json::array();
    for (const auto& trait : project.traits) traits.push_back(trait.name);
    for (const auto& prompt : project.prompts) prompts.push_back(prompt.name);
    for (const auto& run : project.runs)
        runs.push_back({{"trait", run.trait}, {"vector", run.vector}, {"model", run.model.name},
                        {"pairs_kept", run.pairs.kept}, {"pairs_total", run.pairs.total},
                        {"suggested_layer", run.suggested_layer}, {"judge", persona::judge_label(run.settings.judge)}});
    for (const auto& [key, vector] : project.vectors)
        vectors.push_back({{"file", key}, {"trait", vector.trait}, {"shape", {vector.layer_count, vector.hidden_size}}});
    return {{"project", folder}, {"name", project.name}, {"description", project.description},
            {"created", project.created}, {"modified", project.modified}, {"app_version", project.app_version},
            {"traits", traits}, {"prompts", prompts}, {"runs", runs}, {"vectors", vectors}};
}

int run_project(const std::string& action, ProjectOptions o) {
    const std::string folder = persona::project_folder(o.folder);
    persona::Project project;
    if (action == "new") {
        if (fs::exists(folder)) throw persona::FileError(folder, "already exists; pick another name");
        project.name = o.name.empty() ? fs::path(folder).stem().string() : o.name;
        project.description = o.description;
    } else {
        project = persona::read_project(folder);
    }
    if (action == "show") {
        std::cout << overview(project, folder).dump(2) << "\n";
        return kExitOk;
    }
    if (action == "add-trait") {
        persona::Trait trait = load_trait(o.trait);
        if (project.find_trait(trait.name)) throw persona::Error("the project already has a trait '" + trait.name + "'");
        project.traits.push_back(std::move(trait));
    } else if (action == "add-prompt") {
        project.prompts.push_back(persona::Prompt::single_turn(o.prompt_name, o.system, o.user));
    } else if (action == "add-run") {
        persona::PersonaVector vector;
        persona::RunResult run = run_from_summary(o.summary, o.model, vector);
        if (!project.find_trait(run.trait)) project.traits.push_back(load_trait(run.trait));
        const std::string key = project.add_run(run, &vector);
        if (o.steer) {
            project.settings.steering.vector = key;
            project.settings.steering.layer = run.suggested_layer;
            project.settings.steering.coefficient = o.coefficient;
            if (!o.sweep.empty()) {
                steer_from_sweep(o.sweep, run, vector, o.sweep_layer, o.sweep_strength, project.settings.steering);
                // The sweep itself, for the Sweeps tab; a hand-trimmed report still sets the preset.
                try {
                    project.add_sweep(persona::read_sweep_result(o.sweep));
                } catch (const persona::Error& e) {
                    std::fprintf(stderr, "persona-cli: the preset is set, but the report is not kept in the project: %s\n", e.what());
                }
            }
        }
    }
    persona::write_project(folder, project);
    std::cout << overview(project, folder).dump(2) << "\n";
    return kExitOk;
}

}  // namespace

void add_project_command(CLI::App& app, const GlobalOptions&, Command& selected) {
    auto options = std::make_shared<ProjectOptions>();
    auto* project = app.add_subcommand("project", "Create, fill and inspect project folders (NAME.persona)");
    project->require_subcommand(1);
    const auto add = [&](const char* name, const char* help) {
        auto* sub = project->add_subcommand(name, help);
        sub->add_option("folder", options->folder, "Project folder (NAME.persona)")->required();
        sub->callback([options, &selected, action = std::string(name)] {
            selected = [options, action] { return run_project(action, *options); };
        });
        return sub;
    };
    auto* create = add("new", "Create an empty project folder");
    create->add_option("--name", options->name, "Project name (default: the folder's name)");
    create->add_option("--description", options->description, "What the project is for");
    add("show", "Read a project (every vector checked) and print an overview as JSON");
    add("add-trait", "Add a trait (built-in name or trait file)")
        ->add_option("--trait", options->trait, "Built-in trait name or trait file")->required();
    auto* prompt = add("add-prompt", "Add a named single-turn prompt");
    prompt->add_option("--name", options->prompt_name, "Prompt name")->required();
    prompt->add_option("--system,-s", options->system, "System message");
    prompt->add_option("--user,-u", options->user, "User message")->required();
    auto* run = add("add-run", "Add an extract run: its JSON summary (stdout of extract) and the vector it wrote");
    run->add_option("--summary", options->summary, "File holding extract's stdout")->required();
    run->add_option("--model,-m", options->model, "The model the run used: a GGUF file or a Hugging Face checkpoint folder (hashed)")->capture_default_str();
    auto* steer = run->add_flag("--steer", options->steer, "Also make this vector the Steering panel's, at its suggested layer");
    auto* coefficient = run->add_option("--coefficient", options->coefficient, "Steering coefficient with --steer");
    coefficient->capture_default_str()->needs(steer);
    auto* sweep = run->add_option("--sweep", options->sweep,
                    "With --steer: take the layer and coefficient from this sweep report's recommendation (persona-cli sweep's "
                    "stdout), and keep the sweep in the project")
        ->needs(steer)
        ->excludes(coefficient);
    auto* layer = run->add_option("--layer", options->sweep_layer, "With --sweep: the swept cell at this layer instead of the recommendation");
    auto* strength = run->add_option("--strength", options->sweep_strength, "With --sweep and --layer: that cell's calibrated strength");
    layer->needs(sweep)->needs(strength);
    strength->needs(layer);
}

}  // namespace persona_cli
