// Reading llama.cpp / repeng control vectors (persona/vector_files.h has the mapping); the
// writer is export_control_vector in vector_files.cpp. Apart from the vector math so that it can
// be fuzzed without libtorch.
#include "formats/control_vector.h"

#include "formats/ggml_types.h"
#include "formats/gguf.h"
#include "formats/vector_values.h"
#include "persona/errors.h"
#include "persona/vector_files.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <optional>

namespace persona {

namespace {

// Parses the N of "direction.N"; nullopt for any other name.
std::optional<int> direction_index(const std::string& name) {
    const std::size_t prefix = std::strlen(kDirectionPrefix);
    if (name.compare(0, prefix, kDirectionPrefix) != 0) return std::nullopt;
    const std::string digits = name.substr(prefix);
    if (digits.empty() || digits.size() > 6) return std::nullopt;
    for (char c : digits)
        if (c < '0' || c > '9') return std::nullopt;
    return std::stoi(digits);
}

}  // namespace

PersonaVector import_control_vector(const std::string& path, int expected_hidden, int expected_block_count) {
    if (expected_hidden < 1) throw Error("cannot import " + path + ": the expected hidden size must be positive");
    const auto file = GgufFile::open(path);
    const auto architecture = file->find_string("general.architecture");
    if (!architecture)
        throw FileError(path, "has no general.architecture; a control vector says \"controlvector\"");
    if (*architecture != kControlVectorArchitecture)
        throw FileError(path, "general.architecture is '" + *architecture + "', not '" + kControlVectorArchitecture +
                                  "': this is not a control vector");
    if (file->tensors().empty()) throw FileError(path, "holds no direction tensors");

    int highest = -1;
    for (const auto& tensor : file->tensors()) {
        const auto block = direction_index(tensor.name);
        if (!block) throw FileError(path, "tensor '" + tensor.name + "' is not named direction.<block number>");
        if (tensor.type != static_cast<std::uint32_t>(GgmlType::F32))
            throw FileError(path, "tensor '" + tensor.name + "' is " + ggml_type_name(tensor.type) +
                                      "; control-vector directions are F32");
        if (tensor.shape.size() != 1)
            throw FileError(path, "tensor '" + tensor.name + "' has " + std::to_string(tensor.shape.size()) +
                                      " dimensions; a direction is 1-D");
        if (tensor.shape[0] != std::uint64_t(expected_hidden))
            throw FileError(path, "tensor '" + tensor.name + "' has " + std::to_string(tensor.shape[0]) +
                                      " values; the model's hidden size is " + std::to_string(expected_hidden));
        highest = std::max(highest, *block);
    }

    const auto recorded_blocks = file->find_int(std::string(kControlVectorKeyPrefix) + "block_count");
    if (expected_block_count > 0 && recorded_blocks && *recorded_blocks != expected_block_count)
        throw FileError(path, "was exported for a model with " + std::to_string(*recorded_blocks) +
                                  " blocks; this model has " + std::to_string(expected_block_count));
    const int blocks = expected_block_count > 0 ? expected_block_count
                       : recorded_blocks && *recorded_blocks > 0 && *recorded_blocks < (1 << 20) ? int(*recorded_blocks)
                                                                                                 : highest + 1;
    if (highest >= blocks)
        throw FileError(path, "direction." + std::to_string(highest) + " steers block " + std::to_string(highest) +
                                  ", but the model has blocks 0.." + std::to_string(blocks - 1));

    PersonaVector vector;
    vector.layer_count = blocks + 1;
    vector.hidden_size = expected_hidden;
    vector.values.assign(std::size_t(vector.layer_count) * std::size_t(expected_hidden), 0.0f);
    for (const auto& tensor : file->tensors()) {
        const int block = *direction_index(tensor.name);
        std::memcpy(vector.values.data() + std::size_t(block + 1) * std::size_t(expected_hidden),
                    file->tensor_data(tensor), std::size_t(expected_hidden) * sizeof(float));
    }
    check_finite_vector_values(path, vector.values, expected_hidden);

    vector.trait = file->find_string(std::string(kControlVectorKeyPrefix) + "trait").value_or(std::filesystem::path(path).stem().string());
    if (const auto aggregate = file->find_string(std::string(kControlVectorKeyPrefix) + "aggregate")) {
        const auto parsed = aggregate_from_name(*aggregate);
        if (!parsed)
            throw FileError(path, "persona_workbench.aggregate '" + *aggregate +
                                      "' is not response_avg, prompt_avg or prompt_last");
        vector.aggregate = *parsed;
    }
    const std::string provenance_prefix = kControlVectorProvenancePrefix;
    for (const auto& [key, value] : file->metadata())
        if (key.size() > provenance_prefix.size() && key.compare(0, provenance_prefix.size(), provenance_prefix) == 0 &&
            value.type() == GgufValueType::String)
            vector.provenance[key.substr(provenance_prefix.size())] = value.as_string();
    vector.provenance["source"] = "control vector " + std::filesystem::path(path).filename().string() +
                                  " (values are coefficient * vector; hidden_states[0] and layers without a "
                                  "direction tensor are zero)";
    if (const auto hint = file->find_string(std::string(kControlVectorArchitecture) + ".model_hint"))
        vector.provenance["model_hint"] = *hint;
    if (const auto coefficient = file->find_float(std::string(kControlVectorKeyPrefix) + "coefficient"))
        vector.provenance["coefficient"] = exact_number_text(*coefficient);
    if (file->find_tensor(std::string(kDirectionPrefix) + "0"))
        vector.provenance["warning"] = "the file holds direction.0, which llama.cpp refuses to load";
    return vector;
}

}  // namespace persona
