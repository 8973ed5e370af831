// persona-cli shift: the shift table of preventative steering (docs/finetuning.md). For a base
// model and its fine-tunes (adapters), each optionally steered at inference: the judged trait
// score and coherence on the trait's evaluation questions with no system prompt, the answers'
// projection on the vector and its shift from the base model, and the perplexity of held-out
// neutral answers; with --data, the training set's projection difference (flag) on the base.
#include "cli_commands.h"

#include "persona/errors.h"
#include "persona/flagging.h"
#include "persona/model.h"
#include "persona/paths.h"
#include "persona/shift.h"
#include "persona/vector_files.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

namespace persona_cli {

namespace {

struct ShiftOptions {
    std::string model = persona::default_model_path();
    std::string trait;
    std::string vector;
    int layer = -1;
    std::string heldout;
    std::string data;
    std::vector<std::string> variants;
    JudgeOptions judge;
    persona::ShiftSettings settings;
};

// NAME, NAME=ADAPTER, NAME=ADAPTER@ALPHA or NAME=@ALPHA.
struct Variant {
    std::string name;
    std::string adapter;
    double coefficient = 0;
};

Variant parse_variant(const std::string& spec) {
    Variant v;
    const auto equals = spec.find('=');
    v.name = spec.substr(0, equals);
    if (v.name.empty()) throw persona::Error("variant '" + spec + "' has no name (NAME[=ADAPTER][@ALPHA])");
    if (equals == std::string::npos) return v;
    const std::string rest = spec.substr(equals + 1);
    const auto at = rest.rfind('@');
    v.adapter = rest.substr(0, at);
    if (at != std::string::npos) {
        try {
            std::size_t used = 0;
            v.coefficient = std::stod(rest.substr(at + 1), &used);
            if (used != rest.size() - at - 1 || !std::isfinite(v.coefficient)) throw std::invalid_argument("alpha");
        } catch (const std::logic_error&) {
            throw persona::Error("variant '" + spec + "': ALPHA after @ must be a finite number");
        }
    }
    return v;
}

std::string cell(const std::optional<double>& value, const char* format) {
    if (!value) return "-";
    char text[32];
    std::snprintf(text, sizeof text, format, *value);
    return text;
}

int run_shift(const GlobalOptions& global, ShiftOptions options) {
    const persona::Trait trait = load_trait(options.trait);
    const persona::PersonaVector vector = persona::read_vector_file(options.vector);
    options.settings.layer = chosen_layer(options.layer, vector, options.vector);
    const auto judge = judge_settings(options.judge);
    if (!judge) return kExitUsage;
    options.settings.judge = *judge;
    const std::vector<persona::TrainingExample> heldout = options.heldout.empty()   ? persona::neutral_heldout_examples()
                                                         : options.heldout == "none" ? std::vector<persona::TrainingExample>{}
                                                                                     : persona::read_training_jsonl(options.heldout);
    if (options.variants.empty()) options.variants = {"base"};
    std::vector<Variant> variants;
    for (const auto& spec : options.variants) variants.push_back(parse_variant(spec));

    persona::Engine engine(engine_options(global));
    g_engine = &engine;
    std::vector<persona::ShiftMeasure> measured(variants.size());
    nlohmann::json dataset_difference = nullptr;  // the training set's flag difference, with --data
    std::vector<bool> done(variants.size(), false);
    // Each model (base or adapter) loads once and measures all of its variants' coefficients.
    for (std::size_t first = 0; first < variants.size(); ++first) {
        if (done[first]) continue;
        const std::string adapter = variants[first].adapter;
        persona::ShiftSettings settings = options.settings;
        settings.coefficients.clear();
        std::vector<std::size_t> group;
        for (std::size_t i = first; i < variants.size(); ++i)
            if (!done[i] && variants[i].adapter == adapter) {
                group.push_back(i);
                settings.coefficients.push_back(variants[i].coefficient);
                done[i] = true;
            }
        persona::ModelLoadOptions load_options{global.device, global.dtype, global.thinking, adapter};
        bool loaded = false;
        engine.load_model(options.model, load_options,
                          {{}, [&](const persona::ModelFacts&) { loaded = true; },
                           [](const std::string& error) { std::fprintf(stderr, "persona-cli: %s\n", error.c_str()); }, {}});
        engine.wait_idle();
        if (!loaded) return g_interrupted ? kExitCancelled : kExitFailed;
        std::fprintf(stderr, "measuring %s\n", adapter.empty() ? "the base model" : adapter.c_str());

        std::vector<persona::ShiftMeasure> measures;
        const bool flag_data = adapter.empty() && !options.data.empty() && dataset_difference.is_null();
        const auto state = run_job(engine, [&](persona::Model& model, const persona::JobContext& job) {
            measures = persona::measure_shift(model, trait, vector, heldout, settings, job.progress, job.cancelled);
            if (!flag_data) return;
            // The training set's projection difference on the base model: what flagging predicts.
            const auto scratch = std::filesystem::temp_directory_path() /
                                 ("persona-shift-flag-" + std::to_string(::getpid()) + ".jsonl");
            persona::FlagSettings flag;
            flag.layer = settings.layer;
            flag.max_new_tokens = settings.max_new_tokens;
            const auto summary = persona::flag_dataset(model, vector, options.data, scratch.string(), flag, {}, {}, job.cancelled);
            std::filesystem::remove(scratch);
            double sum = 0;
            std::size_t scored = 0;
            for (const auto& record : summary.records)
                if (record.difference) {
                    sum += *record.difference;
                    ++scored;
                }
            dataset_difference = {{"mean", scored ? nlohmann::json(sum / static_cast<double>(scored)) : nlohmann::json()},
                                  {"scored", scored}};
        });
        if (state == persona::JobState::cancelled) return kExitCancelled;
        if (state != persona::JobState::finished) return kExitFailed;
        for (std::size_t k = 0; k < group.size(); ++k) measured[group[k]] = measures[k];
    }
    // The shift is measured from the unsteered base model, whichever order the variants came in.
    std::optional<double> base_projection;
    for (std::size_t i = 0; i < variants.size() && !base_projection; ++i)
        if (variants[i].adapter.empty() && variants[i].coefficient == 0) base_projection = measured[i].projection;
    nlohmann::json rows = nlohmann::json::array();
    std::fprintf(stderr, "%-20s %7s %7s %10s %10s %10s\n", "variant", "trait", "coher", "projection", "shift", "perplexity");
    for (std::size_t i = 0; i < variants.size(); ++i) {
        const persona::ShiftMeasure& m = measured[i];
        std::optional<double> shift;
        if (m.projection && base_projection) shift = *m.projection - *base_projection;
        std::fprintf(stderr, "%-20s %7s %7s %10s %10s %10s\n", variants[i].name.c_str(), cell(m.trait_score, "%.1f").c_str(),
                     cell(m.coherence, "%.1f").c_str(), cell(m.projection, "%.3f").c_str(), cell(shift, "%+.3f").c_str(),
                     cell(m.perplexity, "%.2f").c_str());
        nlohmann::json row = persona::to_json(m);
        row["name"] = variants[i].name;
        row["adapter"] = variants[i].adapter;
        row["projection_shift"] = shift ? nlohmann::json(*shift) : nlohmann::json();
        rows.push_back(row);
    }
    const nlohmann::json output = {{"trait", trait.name}, {"vector", options.vector}, {"layer", options.settings.layer},
                                   {"judge", persona::judge_label(options.settings.judge)}, {"heldout", options.heldout},
                                   {"data", options.data}, {"dataset_projection_difference", dataset_difference},
                                   {"variants", rows}};
    std::cout << output.dump(2) << "\n";
    return kExitOk;
}

}  // namespace

void add_shift_command(CLI::App& app, const GlobalOptions& global, Command& selected) {
    auto options = std::make_shared<ShiftOptions>();
    auto& s = options->settings;
    auto* command = app.add_subcommand("shift", "Measure how far fine-tunes moved a model along a persona vector: judged "
                                                "trait and coherence, projection shift and held-out perplexity per variant");
    command->add_option("--model,-m", options->model, "The base model")->capture_default_str();
    command->add_option("--trait", options->trait, "Built-in trait name or trait file (its evaluation questions)")->required();
    command->add_option("--vector", options->vector, "The trait's persona vector file")->required();
    command->add_option("--layer", options->layer, "Layer of the projection and of inference steering (default: the vector's suggestion)");
    command->add_option("--variant", options->variants,
                        "NAME (the base model), NAME=ADAPTER (a LoRA folder), NAME=ADAPTER@ALPHA (steered at inference "
                        "with ALPHA at the layer) or NAME=@ALPHA (the base, steered); repeatable; default: base");
    command->add_option("--heldout", options->heldout, "Chat JSONL of neutral answers for the perplexity proxy of general ability (default: the 24 built-in "
                        "ones; none: skip)");
    command->add_option("--data", options->data, "The training set: its projection difference on the base model (flag)");
    add_judge_options(*command, options->judge, "projections and perplexity only");
    command->add_option("--questions", s.question_limit, "Evaluation questions to use (0: all)")->capture_default_str();
    command->add_option("--samples", s.samples_per_question, "Answers per question")->check(CLI::Range(1, 1000))->capture_default_str();
    command->add_option("--max-tokens,-n", s.max_new_tokens)->check(CLI::Range(1, 1 << 16))->capture_default_str();
    command->add_option("--temperature,-t", s.temperature)->capture_default_str();
    command->add_option("--seed", s.seed)->capture_default_str();
    command->callback([&global, &selected, options] { selected = [&global, options] { return run_shift(global, *options); }; });
}

}  // namespace persona_cli
