#include "persona/sweep_checkpoint.h"

#include "io/atomic_file.h"
#include "io/fnv_hash.h"
#include "io/json_file.h"
#include "io/json_reader.h"
#include "persona/errors.h"
#include "persona/model.h"
#include "persona/persona_vector.h"
#include "persona/sweep.h"
#include "persona/trait.h"

#include <cmath>

namespace persona::detail {

namespace {

constexpr const char* kSchema = "persona-workbench/sweep-checkpoint";
constexpr int kVersion = 1;

nlohmann::json score_json(const JudgeScore& score) {
    return {{"score", score.score && std::isfinite(*score.score) ? nlohmann::json(*score.score) : nlohmann::json(nullptr)},
            {"refusal", score.refusal},
            {"numeric_mass", score.numeric_mass}};
}

JudgeScore score_from(JsonObjectReader reader) {
    JudgeScore score;
    score.score = reader.optional_number("score");
    score.refusal = reader.boolean("refusal");
    score.numeric_mass = reader.number("numeric_mass");
    reader.finish();
    return score;
}

}  // namespace

std::string sweep_fingerprint(const Model& model, const Trait& trait, const PersonaVector& vector,
                              const SweepSettings& settings, const std::vector<int>& layers,
                              const std::vector<double>& coefficients) {
    Fnv1a f;
    f.add(model.facts().name);
    f.add(std::to_string(model.facts().file_bytes));
    f.add(model.facts().dtype);
    f.add(model.facts().device);
    f.add(vector.values.data(), vector.values.size() * sizeof(float));
    f.add(to_json(trait).dump());
    const nlohmann::json s = {{"layers", layers},
                              {"coefficients", coefficients},
                              {"calibrated", settings.calibrated_coefficients},
                              {"questions", settings.question_limit},
                              {"samples", settings.samples_per_question},
                              {"max_new_tokens", settings.max_new_tokens},
                              {"temperature", settings.temperature},
                              {"top_p", settings.top_p},
                              {"seed", settings.seed},
                              {"batch", settings.batch_size},
                              {"positions", steer_positions_name(settings.positions)},
                              {"judge", judge_label(settings.judge)},
                              {"prompting_baseline", settings.prompting_baseline}};
    f.add(s.dump());
    return f.hex();
}

void write_sweep_checkpoint(const std::string& path, const std::string& fingerprint,
                            const std::vector<const SweepRow*>& rows) {
    nlohmann::json list = nlohmann::json::array();
    for (const SweepRow* row : rows) {
        nlohmann::json readback = nlohmann::json::array();
        for (const auto& value : row->readback) readback.push_back(value ? nlohmann::json(*value) : nlohmann::json(nullptr));
        nlohmann::json entry = {{"question", row->question_index},
                                {"sample", row->sample_index},
                                {"text", row->result.text},
                                {"tokens", row->result.tokens},
                                {"stop_reason", stop_reason_name(row->result.stop_reason)},
                                {"steered", row->steered},
                                {"readback", readback},
                                {"trait", row->judged ? score_json(row->trait) : nlohmann::json(nullptr)},
                                {"coherence", row->judged ? score_json(row->coherence) : nlohmann::json(nullptr)}};
        list.push_back(std::move(entry));
    }
    const nlohmann::json json = {{"schema", kSchema}, {"version", kVersion}, {"run", fingerprint}, {"rows", list}};
    write_file_atomically(path, json.dump(0, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

std::vector<SweepRow> read_sweep_checkpoint(const std::string& path, const std::string& fingerprint,
                                            const std::vector<const SweepRow*>& expected) {
    const nlohmann::json json = read_json_file(path);
    JsonObjectReader top(json, "", path);
    if (top.string("schema") != kSchema) top.fail("is not a sweep checkpoint");
    if (top.integer("version", 0, 1 << 30) != kVersion) top.fail("is a sweep checkpoint of another version");
    if (top.string("run") != fingerprint)
        top.fail("is the checkpoint of another sweep (model, vector, trait or settings differ); delete it to start over");
    const nlohmann::json& rows = top.array("rows", "a list of rows");
    if (rows.size() > expected.size()) top.fail("holds more rows than this sweep generates");
    std::vector<SweepRow> restored;
    for (std::size_t i = 0; i < rows.size(); ++i) {
        JsonObjectReader reader(rows[i], indexed("rows", i), path, JsonNull::IsAbsent);
        SweepRow row;
        row.question_index = int(reader.integer("question", 0, 1 << 30));
        row.sample_index = int(reader.integer("sample", 0, 1 << 30));
        if (row.question_index != expected[i]->question_index || row.sample_index != expected[i]->sample_index)
            reader.fail(reader.field("question") + " is not the row this sweep generates there");
        row.result.text = reader.string("text");
        for (long long token : reader.integers("tokens", 0, (1LL << 31) - 1)) row.result.tokens.push_back(std::int32_t(token));
        row.result.stop_reason = read_stop_reason(reader, "stop_reason");
        const nlohmann::json& steered = reader.array("steered", "a list of numbers");
        const nlohmann::json& readback = reader.array("readback", "a list of numbers or nulls");
        if (steered.size() != expected[i]->steered.size() || readback.size() != expected[i]->readback.size())
            reader.fail(reader.field("steered") + " does not have one value per swept layer");
        for (const auto& value : steered) {
            if (!value.is_number()) reader.fail(reader.field("steered") + " holds something other than numbers");
            row.steered.push_back(value.get<double>());
        }
        for (const auto& value : readback) {
            if (!value.is_null() && !value.is_number()) reader.fail(reader.field("readback") + " holds something other than numbers");
            row.readback.push_back(value.is_null() ? std::nullopt : std::optional<double>(value.get<double>()));
        }
        const bool has_trait = reader.has("trait"), has_coherence = reader.has("coherence");  // both looked up
        if (has_trait && has_coherence) {
            row.judged = true;
            row.trait = score_from(reader.object("trait"));
            row.coherence = score_from(reader.object("coherence"));
        }
        reader.finish();
        restored.push_back(std::move(row));
    }
    top.finish();
    return restored;
}

}  // namespace persona::detail
