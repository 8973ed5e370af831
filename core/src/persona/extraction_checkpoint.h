#pragma once
// An extraction's checkpoint (ExtractionSettings::checkpoint_path, docs/formats.md): the samples
// finished so far and what they were made with, so an interrupted run resumes where it stopped.
// Private to core.
#include "persona/extraction.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace persona {

struct ModelFacts;
struct Trait;

namespace detail {

// What a checkpoint's samples depend on besides the generation settings.
struct RunIdentity {
    std::string trait;
    std::string trait_fingerprint;
    std::string model_name;
    std::uint64_t model_bytes = 0;
    std::string model_fingerprint;
    std::string dtype;
    std::string device;
};

RunIdentity run_identity(const Trait& trait, const ModelFacts& facts);

// The settings a sample's answer depends on (judging and filtering may change between runs).
nlohmann::json generation_settings_json(const ExtractionSettings& s);

// Writes the generated samples (and those outside this run, kept as read) atomically.
void write_checkpoint(const std::string& path, const RunIdentity& id, const ExtractionSettings& settings,
                      const std::vector<Sample>& samples, const std::vector<bool>& generated,
                      const std::vector<nlohmann::json>& outside_this_run);

// Fills in the samples the checkpoint finished; returns how many it held. Refuses a checkpoint
// written for another trait, model or generation settings: mixing its answers in would give a
// vector nobody asked for.
// Samples beyond this run's question or pair limit go to outside_this_run, to be written back:
// a run with fewer questions must not throw away what a larger one finished.
std::size_t read_checkpoint(const std::string& path, const RunIdentity& id, const ExtractionSettings& settings,
                            std::vector<Sample>& samples, std::vector<bool>& generated,
                            std::vector<nlohmann::json>& outside_this_run);

}  // namespace detail
}  // namespace persona
