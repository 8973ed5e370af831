#pragma once
// A sweep's checkpoint (sweep.h, SweepSettings::checkpoint_path): the rows finished so far, in
// the order the sweep generates them, so a resumed sweep continues with the same batches and
// gives the cells an uninterrupted one gives. Private to core.
#include "persona/generation.h"
#include "persona/judge.h"

#include <optional>
#include <string>
#include <vector>

namespace persona {

class Model;
struct PersonaVector;
struct SweepSettings;
struct Trait;

namespace detail {

class JsonObjectReader;

// One generated answer, with what is measured on it at every swept layer (a baseline answer is
// shared by every layer's coefficient-0 cell; a steered one uses only its own layer's slot).
struct SweepRow {
    int question_index = 0;
    int sample_index = 0;
    GenerationResult result;
    std::vector<double> steered;                   // per swept layer
    std::vector<std::optional<double>> readback;   // per swept layer
    bool judged = false;
    JudgeScore trait;
    JudgeScore coherence;
};

// Names everything the rows depend on: model (file, dtype, device), vector values, trait
// content, layers, coefficients and every generation and judging setting.
std::string sweep_fingerprint(const Model& model, const Trait& trait, const PersonaVector& vector,
                              const SweepSettings& settings, const std::vector<int>& layers,
                              const std::vector<double>& coefficients);

// A stop reason by its name (generation.h), or a FileError naming the field.
StopReason read_stop_reason(JsonObjectReader& reader, const std::string& key);

void write_sweep_checkpoint(const std::string& path, const std::string& fingerprint,
                            const std::vector<const SweepRow*>& rows);
// The rows of a checkpoint written with the same fingerprint; FileError naming the file for
// another sweep's checkpoint or a damaged one. Each row's question and sample index must match
// `expected` (the rows this sweep would generate, in order).
std::vector<SweepRow> read_sweep_checkpoint(const std::string& path, const std::string& fingerprint,
                                            const std::vector<const SweepRow*>& expected);

}  // namespace detail
}  // namespace persona
