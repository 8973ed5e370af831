#pragma once
// The monitoring study (docs/method.md: monitoring): does the projection of the last prompt
// token, read before any answer exists, predict how strongly the answer will show the trait?
// A ladder of system prompts from discouraging to encouraging the trait, each asked every
// evaluation question; per answer the prediction, the answer and its judged trait score, and
// over all answers Pearson's r between prediction and score. Plain data, no torch types.
#include "persona/judge.h"
#include "persona/persona_vector.h"
#include "persona/progress.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace persona {

class Model;
struct Trait;

struct LadderPrompt {
    std::string label;   // what the plot's legend shows
    std::string system;  // "": no system prompt
};

// From discouraging to encouraging: the negative system prompts of the first `pairs` instruction
// pairs, no system prompt, then their positive system prompts (trait.h's
// negative_system_prompt / positive_system_prompt); 2 pairs give five rungs.
std::vector<LadderPrompt> default_prompt_ladder(const Trait& trait, int pairs = 2);

struct MonitoringStudySettings {
    int layer = 0;                     // hidden_states index, 1..L
    std::vector<LadderPrompt> prompts; // empty: default_prompt_ladder(trait)
    int question_limit = 0;            // 0: every evaluation question
    int max_new_tokens = 48;
    float temperature = 0;             // 0: greedy
    std::uint64_t seed = 1;            // a question's seed is the same under every prompt
    int batch_size = 8;
    JudgeSettings judge;               // JudgeKind::None: projections and answers only
    // While an answer is generated: the index of its point (in MonitoringStudy::points order) and
    // the projection at `layer` of each token as it comes (the panel's live gauge).
    std::function<void(int point, double projection)> on_token;
};

struct MonitoringPoint {
    int prompt_index = 0;
    int question_index = 0;
    double projection = 0;  // last prompt token at the study's layer, on the unit vector
    std::string answer;
    std::optional<double> trait_score;  // absent without a judge or on refusal
    std::optional<double> coherence;
};

struct Correlation {
    int n = 0;
    double r = 0;
    double low = 0, high = 0;  // 95% interval from Fisher's z; equal to r when n < 4
};

// Pearson's r of paired values; absent under 3 pairs or when either side does not vary.
std::optional<Correlation> pearson_correlation(const std::vector<double>& x, const std::vector<double>& y);

struct MonitoringStudy {
    std::string trait;
    std::string judge;  // judge_label()
    int layer = 0;
    std::vector<LadderPrompt> prompts;
    std::vector<std::string> questions;
    std::vector<MonitoringPoint> points;  // by prompt, then question
    // Of projection against trait score over the points the judge scored.
    std::optional<Correlation> correlation;
    double seconds = 0;
};

// Runs the study on the thread that owns the model: one generation and one capture per
// `batch_size` conversations (persona::monitor), then each answer judged for the trait and for
// coherence. on_point sees each point once judged. Progress stages: "answers" (generated and
// read), "judge". Throws Cancelled when cancelled; Error when the vector does not fit the model,
// the layer is outside 1..L, the ladder or the questions are empty.
MonitoringStudy run_monitoring_study(Model& model, const Trait& trait, const PersonaVector& vector,
                                     const MonitoringStudySettings& settings, const ProgressFn& progress = {},
                                     const std::function<void(const MonitoringPoint&)>& on_point = {},
                                     const CancelFn& cancelled = {});
// The same with a judge the caller made (nullptr: none), e.g. one already loaded for an earlier
// study; settings.judge then only names it in the result.
MonitoringStudy run_monitoring_study(Model& model, const Trait& trait, const PersonaVector& vector,
                                     const MonitoringStudySettings& settings, Judge* judge,
                                     const ProgressFn& progress = {},
                                     const std::function<void(const MonitoringPoint&)>& on_point = {},
                                     const CancelFn& cancelled = {});

// The study as JSON (what `persona-cli monitor-prompts` prints and a project keeps under
// monitoring/) and back; the reader throws FileError naming `source` for anything malformed.
nlohmann::json monitoring_study_json(const MonitoringStudy& study);
MonitoringStudy monitoring_study_from_json(const nlohmann::json& json, const std::string& source);
// One row per point: prompt label, system prompt, question, projection, trait score, coherence,
// answer (RFC 4180 quoting).
std::string monitoring_study_csv(const MonitoringStudy& study);
// The JSON (or the CSV) in a file, saved atomically; the JSON read back (FileError naming the file).
void write_monitoring_study(const std::string& path, const MonitoringStudy& study);
void write_monitoring_study_csv(const std::string& path, const MonitoringStudy& study);
MonitoringStudy read_monitoring_study(const std::string& path);

// A project keeps its studies in this folder inside its own, each as NAME.json (what the
// Monitoring tab reads) and NAME.csv beside it (project.h: Project::monitoring).
constexpr const char* kProjectMonitoringFolder = "monitoring";

}  // namespace persona
