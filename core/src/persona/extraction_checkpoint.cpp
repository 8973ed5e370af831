#include "persona/extraction_checkpoint.h"

#include "io/atomic_file.h"
#include "io/fnv_hash.h"
#include "io/json_file.h"
#include "persona/errors.h"
#include "persona/fingerprint.h"
#include "persona/model_facts.h"
#include "persona/trait.h"

#include <cctype>
#include <map>
#include <tuple>

namespace persona {

namespace {

using Json = nlohmann::json;

constexpr const char* kCheckpointSchema = "persona-workbench/extraction-checkpoint";
// Version 2 records the model's content fingerprint, dtype and device (version 1 hashed a
// GGUF's first and last megabytes, and read a Hugging Face folder as 0 bytes).
constexpr int kCheckpointVersion = 2;

std::string trait_fingerprint(const Trait& trait) {
    return detail::fnv1a_hex(to_json(trait).dump());
}

using SampleKey = std::tuple<int, int, int, int>;  // question, pair, sample, side
SampleKey key_of(const Sample& s) { return {s.question_index, s.pair, s.sample_index, s.side == Side::Positive ? 0 : 1}; }

Json sample_to_json(const Sample& s, const std::string& judge) {
    Json j = {{"question_index", s.question_index}, {"pair", s.pair}, {"side", side_name(s.side)},
              {"sample_index", s.sample_index}, {"answer", s.answer}, {"answer_tokens", s.answer_tokens}};
    if (s.judged) {
        j["judge"] = judge;
        j["trait_score"] = s.trait_score ? Json(*s.trait_score) : Json(nullptr);
        j["coherence"] = s.coherence ? Json(*s.coherence) : Json(nullptr);
        j["trait_refusal"] = s.trait_refusal;
        j["coherence_refusal"] = s.coherence_refusal;
        if (s.coherence_skipped) j["coherence_skipped"] = true;
        j["trait_numeric_mass"] = s.trait_numeric_mass;
        j["coherence_numeric_mass"] = s.coherence_numeric_mass;
    }
    return j;
}

}  // namespace

namespace detail {

RunIdentity run_identity(const Trait& trait, const ModelFacts& facts) {
    RunIdentity identity;
    identity.trait = trait.name;
    identity.trait_fingerprint = trait_fingerprint(trait);
    identity.model_name = facts.name;
    identity.model_bytes = facts.file_bytes;
    identity.model_fingerprint = facts.fingerprint.empty() ? model_fingerprint(facts.path) : facts.fingerprint;
    identity.dtype = facts.dtype;
    identity.device = facts.device;
    return identity;
}

Json generation_settings_json(const ExtractionSettings& s) {
    return {{"samples_per_question", s.samples_per_question}, {"max_new_tokens", s.max_new_tokens},
            {"temperature", s.temperature}, {"top_p", s.top_p}, {"seed", s.seed}};
}

void write_checkpoint(const std::string& path, const RunIdentity& id, const ExtractionSettings& settings,
                      const std::vector<Sample>& samples, const std::vector<bool>& generated,
                      const std::vector<Json>& outside_this_run) {
    Json done = Json::array();
    for (const Json& sample : outside_this_run) done.push_back(sample);
    for (std::size_t i = 0; i < samples.size(); ++i)
        if (generated[i]) done.push_back(sample_to_json(samples[i], judging_label(settings)));
    const Json j = {{"schema", kCheckpointSchema},
                    {"version", kCheckpointVersion},
                    {"trait", id.trait},
                    {"trait_fingerprint", id.trait_fingerprint},
                    {"model", {{"name", id.model_name}, {"file_bytes", id.model_bytes}, {"fingerprint", id.model_fingerprint},
                               {"dtype", id.dtype}, {"device", id.device}}},
                    {"generation", generation_settings_json(settings)},
                    {"samples", done}};
    detail::write_file_atomically(path, j.dump(1) + "\n");
}

std::size_t read_checkpoint(const std::string& path, const RunIdentity& id, const ExtractionSettings& settings,
                            std::vector<Sample>& samples, std::vector<bool>& generated,
                            std::vector<Json>& outside_this_run) {
    const Json j = detail::read_json_file(path);
    const auto refuse = [&](const std::string& problem) {
        throw FileError(path, problem + "; delete it or choose another --checkpoint file");
    };
    try {
        if (!j.is_object() || j.value("schema", "") != kCheckpointSchema) refuse("is not an extraction checkpoint");
        if (j.at("version").get<int>() != kCheckpointVersion)
            refuse("is checkpoint version " + j.at("version").dump() + ", this build reads version " +
                   std::to_string(kCheckpointVersion));
        const std::string trait = j.at("trait").get<std::string>();
        if (trait != id.trait) refuse("is a checkpoint for trait '" + trait + "', not '" + id.trait + "'");
        if (j.at("trait_fingerprint").get<std::string>() != id.trait_fingerprint)
            refuse("was written for a different version of trait '" + trait + "' (its prompts or questions changed)");
        const Json& model = j.at("model");
        if (model.at("file_bytes").get<std::uint64_t>() != id.model_bytes ||
            model.at("fingerprint").get<std::string>() != id.model_fingerprint)
            refuse("was written with another model (" + model.at("name").get<std::string>() + ", " +
                   std::to_string(model.at("file_bytes").get<std::uint64_t>()) + " bytes)");
        // Answers sampled in bf16 differ from f32 ones: resuming would mix two runs.
        const std::string dtype = model.at("dtype").get<std::string>(), device = model.at("device").get<std::string>();
        if (dtype != id.dtype || device != id.device)
            refuse("was written with the model in " + dtype + " on " + device + ", and this run has it in " + id.dtype +
                   " on " + id.device);
        const Json expected = generation_settings_json(settings);
        if (j.at("generation") != expected)
            refuse("was written with other generation settings (" + j.at("generation").dump() + ", now " + expected.dump() + ")");

        std::map<SampleKey, std::size_t> index;
        for (std::size_t i = 0; i < samples.size(); ++i) index[key_of(samples[i])] = i;
        std::size_t restored = 0;
        for (const Json& s : j.at("samples")) {
            Sample probe;
            probe.question_index = s.at("question_index").get<int>();
            probe.pair = s.at("pair").get<int>();
            probe.sample_index = s.at("sample_index").get<int>();
            const std::string side = s.at("side").get<std::string>();
            if (side != "positive" && side != "negative") refuse("has a sample with side '" + side + "'");
            probe.side = side == "positive" ? Side::Positive : Side::Negative;
            const auto found = index.find(key_of(probe));
            if (found == index.end()) {
                outside_this_run.push_back(s);
                continue;
            }
            Sample& target = samples[found->second];
            target.answer = s.at("answer").get<std::string>();
            target.answer_tokens = s.at("answer_tokens").get<std::vector<std::int32_t>>();
            if (s.contains("judge") && s.at("judge").get<std::string>() == judging_label(settings)) {
                target.judged = true;
                if (!s.at("trait_score").is_null()) target.trait_score = s.at("trait_score").get<double>();
                if (!s.at("coherence").is_null()) target.coherence = s.at("coherence").get<double>();
                target.trait_refusal = s.at("trait_refusal").get<bool>();
                target.coherence_refusal = s.at("coherence_refusal").get<bool>();
                target.coherence_skipped = s.value("coherence_skipped", false);
                target.trait_numeric_mass = s.at("trait_numeric_mass").get<double>();
                target.coherence_numeric_mass = s.at("coherence_numeric_mass").get<double>();
            }
            generated[found->second] = true;
            ++restored;
        }
        return restored;
    } catch (const Json::exception& e) {
        refuse("is damaged: " + detail::json_error_text(e));
    }
    return 0;
}

}  // namespace detail

std::string extraction_checkpoint_file(const std::string& directory, const Trait& trait,
                                       const ExtractionSettings& settings, const ModelFacts& model) {
    const detail::RunIdentity id = detail::run_identity(trait, model);
    const std::string key = id.trait_fingerprint + "|" + id.model_fingerprint + "|" + id.dtype + "|" + id.device + "|" +
                            detail::generation_settings_json(settings).dump();
    std::string name = trait.name;
    // The trait's name is a user's: keep the file name safe on every file system.
    for (char& c : name)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') c = '_';
    return directory + "/" + name + "-" + detail::fnv1a_hex(key) + ".json";
}

}  // namespace persona
