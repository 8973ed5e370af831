#include "persona/monitoring_study.h"

#include "io/atomic_file.h"
#include "io/json_file.h"
#include "io/json_reader.h"
#include "persona/errors.h"
#include "persona/model.h"
#include "persona/monitoring.h"
#include "persona/sweep.h"
#include "persona/trait.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>

namespace persona {

namespace {

const char* const kStageAnswers = "answers";
const char* const kStageJudge = "judge";
constexpr const char* kStudySchema = "persona-workbench/monitoring-study";

void report(const ProgressFn& progress, const char* stage, std::size_t done, std::size_t total) {
    if (progress) progress(Progress{stage, done, total});
}

nlohmann::json optional_number(const std::optional<double>& value) {
    return value && std::isfinite(*value) ? nlohmann::json(*value) : nlohmann::json(nullptr);
}

std::string csv_field(const std::string& text) {
    if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
    std::string quoted = "\"";
    for (char c : text) {
        if (c == '"') quoted += '"';
        quoted += c;
    }
    return quoted + "\"";
}

std::string csv_number(const std::optional<double>& value) {
    if (!value) return "";
    char text[32];
    std::snprintf(text, sizeof text, "%.9g", *value);
    return text;
}

}  // namespace

std::vector<LadderPrompt> default_prompt_ladder(const Trait& trait, int pairs) {
    const int count = std::min(std::max(pairs, 0), int(trait.instructions.size()));
    std::vector<LadderPrompt> ladder;
    for (int p = count - 1; p >= 0; --p)
        ladder.push_back({"discourage " + std::to_string(p + 1), negative_system_prompt(trait, std::size_t(p))});
    ladder.push_back({"no system prompt", ""});
    for (int p = 0; p < count; ++p)
        ladder.push_back({"encourage " + std::to_string(p + 1), positive_system_prompt(trait, std::size_t(p))});
    return ladder;
}

std::optional<Correlation> pearson_correlation(const std::vector<double>& x, const std::vector<double>& y) {
    const std::size_t n = std::min(x.size(), y.size());
    if (n < 3) return std::nullopt;
    double mean_x = 0, mean_y = 0;
    for (std::size_t i = 0; i < n; ++i) {
        mean_x += x[i];
        mean_y += y[i];
    }
    mean_x /= double(n);
    mean_y /= double(n);
    double sxy = 0, sxx = 0, syy = 0;
    for (std::size_t i = 0; i < n; ++i) {
        sxy += (x[i] - mean_x) * (y[i] - mean_y);
        sxx += (x[i] - mean_x) * (x[i] - mean_x);
        syy += (y[i] - mean_y) * (y[i] - mean_y);
    }
    if (!(sxx > 0) || !(syy > 0)) return std::nullopt;
    Correlation c;
    c.n = int(n);
    c.r = std::clamp(sxy / std::sqrt(sxx * syy), -1.0, 1.0);
    c.low = c.high = c.r;
    if (n >= 4 && std::abs(c.r) < 1) {
        const double z = std::atanh(c.r);
        const double half_width = 1.959963984540054 / std::sqrt(double(n) - 3);
        c.low = std::tanh(z - half_width);
        c.high = std::tanh(z + half_width);
    }
    return c;
}

MonitoringStudy run_monitoring_study(Model& model, const Trait& trait, const PersonaVector& vector,
                                     const MonitoringStudySettings& settings, const ProgressFn& progress,
                                     const std::function<void(const MonitoringPoint&)>& on_point,
                                     const CancelFn& cancelled) {
    const std::unique_ptr<Judge> judge = make_judge(model, settings.judge, progress, cancelled);
    return run_monitoring_study(model, trait, vector, settings, judge.get(), progress, on_point, cancelled);
}

MonitoringStudy run_monitoring_study(Model& model, const Trait& trait, const PersonaVector& vector,
                                     const MonitoringStudySettings& settings, Judge* judge, const ProgressFn& progress,
                                     const std::function<void(const MonitoringPoint&)>& on_point,
                                     const CancelFn& cancelled) {
    const auto start_time = std::chrono::steady_clock::now();
    check_vector_fits(vector, model);
    if (settings.layer < 1 || settings.layer > model.layer_count())
        throw Error("monitoring layer " + std::to_string(settings.layer) + " is outside 1.." +
                    std::to_string(model.layer_count()));
    MonitoringStudy study;
    study.trait = trait.name;
    study.judge = judge_label(settings.judge);
    study.layer = settings.layer;
    study.prompts = settings.prompts.empty() ? default_prompt_ladder(trait) : settings.prompts;
    if (study.prompts.empty()) throw Error("the monitoring study has no system prompts");
    study.questions = trait.evaluation_questions;
    if (settings.question_limit > 0 && std::size_t(settings.question_limit) < study.questions.size())
        study.questions.resize(std::size_t(settings.question_limit));
    if (study.questions.empty()) throw Error("trait " + trait.name + " has no evaluation questions");

    for (std::size_t p = 0; p < study.prompts.size(); ++p)
        for (std::size_t q = 0; q < study.questions.size(); ++q) {
            MonitoringPoint point;
            point.prompt_index = int(p);
            point.question_index = int(q);
            study.points.push_back(std::move(point));
        }

    const std::size_t total = study.points.size();
    report(progress, kStageAnswers, 0, total);
    if (judge) report(progress, kStageJudge, 0, total);
    MonitorOptions options;
    options.layers = {settings.layer};
    options.batch_size = std::max(1, settings.batch_size);
    const std::size_t batch = std::size_t(options.batch_size);
    std::size_t batch_start = 0;
    if (settings.on_token)
        options.on_token = [&](std::size_t input, const TokenEvent& token) {
            if (!token.projections.empty()) settings.on_token(int(batch_start + input), token.projections.front());
        };
    std::size_t judged = 0;
    for (std::size_t begin = 0; begin < total; begin += batch) {
        check_cancelled(cancelled);
        const std::size_t end = std::min(total, begin + batch);
        batch_start = begin;
        std::vector<MonitorInput> inputs;
        for (std::size_t i = begin; i < end; ++i) {
            const MonitoringPoint& point = study.points[i];
            MonitorInput input;
            const std::string& system = study.prompts[std::size_t(point.prompt_index)].system;
            if (!system.empty()) input.messages.push_back({"system", system});
            input.messages.push_back({"user", study.questions[std::size_t(point.question_index)]});
            input.generate_answer = true;
            input.sampling.max_new_tokens = settings.max_new_tokens;
            input.sampling.temperature = settings.temperature;
            input.sampling.seed = sweep_sample_seed(settings.seed, point.question_index, 0);
            inputs.push_back(std::move(input));
        }
        const std::vector<MonitorResult> read = monitor(model, vector, inputs, options, {}, cancelled);
        report(progress, kStageAnswers, end, total);
        for (std::size_t i = begin; i < end; ++i) {
            MonitoringPoint& point = study.points[i];
            point.projection = read[i - begin].prompt_last.front();
            point.answer = read[i - begin].answer;
            if (judge) {
                const std::string& question = study.questions[std::size_t(point.question_index)];
                point.trait_score = judge->score(trait.judge_rubric, question, point.answer, cancelled).score;
                point.coherence = judge->score(trait.coherence_rubric, question, point.answer, cancelled).score;
                report(progress, kStageJudge, ++judged, total);
            }
            if (on_point) on_point(point);
        }
    }

    std::vector<double> projections, scores;
    for (const MonitoringPoint& point : study.points)
        if (point.trait_score) {
            projections.push_back(point.projection);
            scores.push_back(*point.trait_score);
        }
    study.correlation = pearson_correlation(projections, scores);
    study.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time).count();
    return study;
}

nlohmann::json monitoring_study_json(const MonitoringStudy& study) {
    nlohmann::json prompts = nlohmann::json::array();
    for (const LadderPrompt& prompt : study.prompts) prompts.push_back({{"label", prompt.label}, {"system", prompt.system}});
    nlohmann::json points = nlohmann::json::array();
    for (const MonitoringPoint& point : study.points)
        points.push_back({{"prompt", point.prompt_index},
                          {"question", point.question_index},
                          {"projection", point.projection},
                          {"trait_score", optional_number(point.trait_score)},
                          {"coherence", optional_number(point.coherence)},
                          {"answer", point.answer}});
    nlohmann::json correlation = nullptr;
    if (study.correlation)
        correlation = {{"n", study.correlation->n}, {"r", study.correlation->r},
                       {"low", study.correlation->low}, {"high", study.correlation->high}};
    return {{"schema", kStudySchema},
            {"trait", study.trait},
            {"judge", study.judge},
            {"layer", study.layer},
            {"projection", "last prompt token, h . v_l/|v_l|, before any answer is generated"},
            {"prompts", prompts},
            {"questions", study.questions},
            {"points", points},
            {"correlation", correlation},
            {"seconds", study.seconds}};
}

MonitoringStudy monitoring_study_from_json(const nlohmann::json& json, const std::string& source) {
    detail::JsonObjectReader top(json, "", source);
    if (top.string("schema") != kStudySchema) top.fail("schema is not \"" + std::string(kStudySchema) + "\"");
    MonitoringStudy study;
    study.trait = top.string("trait");
    study.judge = top.string("judge");
    study.layer = int(top.integer("layer", 0, 1 << 20));
    top.string("projection");
    const nlohmann::json& prompts = top.array("prompts", "a list of {label, system}");
    for (std::size_t i = 0; i < prompts.size(); ++i) {
        detail::JsonObjectReader prompt(prompts[i], detail::indexed("prompts", i), source);
        study.prompts.push_back({prompt.string("label"), prompt.string("system")});
        prompt.finish();
    }
    study.questions = top.strings("questions");
    const nlohmann::json& points = top.array("points", "a list of points");
    for (std::size_t i = 0; i < points.size(); ++i) {
        detail::JsonObjectReader reader(points[i], detail::indexed("points", i), source, detail::JsonNull::IsAbsent);
        MonitoringPoint point;
        point.prompt_index = int(reader.integer("prompt", 0, (long long)study.prompts.size() - 1));
        point.question_index = int(reader.integer("question", 0, (long long)study.questions.size() - 1));
        point.projection = reader.number("projection");
        point.trait_score = reader.optional_number("trait_score");
        point.coherence = reader.optional_number("coherence");
        point.answer = reader.string("answer");
        reader.finish();
        study.points.push_back(std::move(point));
    }
    if (const nlohmann::json* correlation = top.find("correlation"); correlation && !correlation->is_null()) {
        detail::JsonObjectReader reader(*correlation, "correlation", source);
        Correlation c;
        c.n = int(reader.integer("n", 0, 1LL << 30));
        c.r = reader.number("r", -1, 1);
        c.low = reader.number("low", -1, 1);
        c.high = reader.number("high", -1, 1);
        reader.finish();
        study.correlation = c;
    }
    study.seconds = top.number("seconds");
    top.finish();
    return study;
}

std::string monitoring_study_csv(const MonitoringStudy& study) {
    std::string csv = "prompt,system_prompt,question,projection,trait_score,coherence,answer\r\n";
    for (const MonitoringPoint& point : study.points) {
        const LadderPrompt& prompt = study.prompts[std::size_t(point.prompt_index)];
        csv += csv_field(prompt.label) + "," + csv_field(prompt.system) + "," +
               csv_field(study.questions[std::size_t(point.question_index)]) + "," + csv_number(point.projection) +
               "," + csv_number(point.trait_score) + "," + csv_number(point.coherence) + "," +
               csv_field(point.answer) + "\r\n";
    }
    return csv;
}

void write_monitoring_study(const std::string& path, const MonitoringStudy& study) {
    detail::write_file_atomically(
        path, monitoring_study_json(study).dump(1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

void write_monitoring_study_csv(const std::string& path, const MonitoringStudy& study) {
    detail::write_file_atomically(path, monitoring_study_csv(study));
}

MonitoringStudy read_monitoring_study(const std::string& path) {
    return monitoring_study_from_json(detail::read_json_file(path), path);
}

}  // namespace persona
