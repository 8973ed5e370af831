#include "persona/vector_files.h"

#include "persona/errors.h"
#include "formats/control_vector.h"
#include "formats/gguf_writer.h"
#include "formats/safetensors.h"
#include "formats/torch_file.h"
#include "formats/vector_values.h"
#include "io/shape_text.h"

#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>

namespace persona {

namespace {

constexpr const char* kProvenancePrefix = "provenance.";
constexpr const char* kWriter = "persona-workbench " PERSONA_VERSION;

std::string file_stem(const std::string& path) { return std::filesystem::path(path).stem().string(); }

// persona_vectors saves "{trait}_{aggregate}_diff.pt"; a converted file usually keeps the stem.
void infer_from_file_name(const std::string& path, PersonaVector& vector) {
    const std::string stem = file_stem(path);
    vector.trait = stem;
    vector.aggregate = Aggregate::ResponseMean;
    for (Aggregate candidate : {Aggregate::ResponseMean, Aggregate::PromptMean, Aggregate::PromptLast}) {
        const std::string marker = std::string("_") + aggregate_name(candidate);
        const auto at = stem.find(marker);
        if (at == std::string::npos) continue;
        vector.aggregate = candidate;
        if (at > 0) vector.trait = stem.substr(0, at);
        break;
    }
}

const SafetensorsTensorInfo& the_vector_tensor(const SafetensorsFile& file) {
    // read_vector_file and read_layer_vector both find the tensor here: a file one reads the
    // other reads too.
    if (file.tensors().size() == 1) return file.tensors().front();
    if (const auto* named = file.find_tensor("vector")) return *named;
    throw FileError(file.path(), "holds " + std::to_string(file.tensors().size()) +
                                     " tensors; a vector file holds one (or one named 'vector')");
}

// An empty vector of a file's [layers + 1, hidden] shape, after checking it is one.
PersonaVector vector_of_shape(const std::string& path, const std::string& tensor, const std::vector<std::int64_t>& shape) {
    if (shape.size() != 2 || shape[0] < 1 || shape[1] < 1)
        throw FileError(path, tensor + " has shape " + shape_text(shape) +
                                  "; a persona vector has one row per layer: [layers + 1, hidden]");
    if (shape[0] > (1 << 20) || shape[1] > (1 << 24))
        throw FileError(path, tensor + " shape " + shape_text(shape) + " is too large for a persona vector");
    PersonaVector vector;
    vector.layer_count = int(shape[0]);
    vector.hidden_size = int(shape[1]);
    return vector;
}

// torch.save output holds the bare tensor: names come from the file name, as for a bare
// safetensors file.
PersonaVector read_torch_vector(const std::string& path) {
    TorchFloatTensor tensor = read_torch_tensor(path);
    PersonaVector vector = vector_of_shape(path, "its tensor", tensor.shape);
    vector.values = std::move(tensor.values);
    check_finite_vector_values(path, vector.values, vector.hidden_size);
    infer_from_file_name(path, vector);
    vector.provenance["source"] = "PyTorch file (torch.save) without persona-workbench metadata: trait and aggregate "
                                  "taken from the file name";
    if (tensor.storage_type != "FloatStorage") vector.provenance["source_storage"] = tensor.storage_type;
    return vector;
}

}  // namespace

void write_vector_file(const std::string& path, const PersonaVector& vector) {
    vector.check_shape();
    if (is_torch_vector_path(path)) {
        write_torch_tensor(path, {vector.layer_count, vector.hidden_size}, vector.values.data());
        return;
    }
    std::map<std::string, std::string> metadata;
    for (const auto& [key, value] : vector.provenance) {
        if (key.empty()) throw Error(vector.description() + " has a provenance entry with an empty key");
        metadata[kProvenancePrefix + key] = value;
    }
    metadata["schema"] = kVectorSchema;
    metadata["schema_version"] = std::to_string(kVectorSchemaVersion);
    metadata["trait"] = vector.trait;
    metadata["aggregate"] = aggregate_name(vector.aggregate);
    metadata["layer_convention"] = kVectorLayerConvention;
    metadata["writer"] = kWriter;
    write_safetensors(path, {{"vector", {vector.layer_count, vector.hidden_size}, vector.values.data(), vector.values.size()}},
                      metadata);
}

std::vector<float> read_layer_vector(const std::string& path, int layer, int layer_count, int hidden_size) {
    if (layer < 0 || layer > layer_count)
        throw FileError(path, "layer " + std::to_string(layer) + " is outside 0.." + std::to_string(layer_count));
    std::vector<std::int64_t> shape;
    std::vector<float> values;
    std::string name;
    if (is_torch_vector_path(path)) {
        TorchFloatTensor tensor = read_torch_tensor(path);
        shape = std::move(tensor.shape);
        values = std::move(tensor.values);
        name = "its tensor";
    } else {
        const auto file = SafetensorsFile::open(path);
        const SafetensorsTensorInfo& tensor = the_vector_tensor(*file);
        shape = tensor.shape;
        values = file->read_floats(tensor);
        name = "tensor '" + tensor.name + "'";
    }
    if (shape.size() == 2 && shape[0] == layer_count + 1 && shape[1] == hidden_size) {
        check_finite_vector_values(path, values, hidden_size);
        return std::vector<float>(values.begin() + static_cast<std::ptrdiff_t>(layer) * hidden_size,
                                  values.begin() + static_cast<std::ptrdiff_t>(layer + 1) * hidden_size);
    }
    if (shape.size() == 1 && shape[0] == hidden_size) {
        check_finite_vector_values(path, values, hidden_size);
        return values;
    }
    throw FileError(path, name + " has shape " + shape_text(shape) + "; this model needs [" +
                              std::to_string(layer_count + 1) + ", " + std::to_string(hidden_size) + "] or [" +
                              std::to_string(hidden_size) + "]");
}

PersonaVector read_vector_file(const std::string& path) {
    if (is_torch_vector_path(path)) return read_torch_vector(path);
    const auto file = SafetensorsFile::open(path);
    const SafetensorsTensorInfo& tensor = the_vector_tensor(*file);
    PersonaVector vector = vector_of_shape(path, "tensor '" + tensor.name + "'", tensor.shape);
    vector.values = file->read_floats(tensor);
    check_finite_vector_values(path, vector.values, vector.hidden_size);

    const auto& metadata = file->metadata();
    const auto find = [&](const std::string& key) -> const std::string* {
        const auto it = metadata.find(key);
        return it == metadata.end() ? nullptr : &it->second;
    };
    const std::string* schema = find("schema");
    if (!schema) {
        infer_from_file_name(path, vector);
        vector.provenance["source"] = "no persona-workbench metadata: trait and aggregate taken from the file name";
        return vector;
    }
    if (*schema != kVectorSchema)
        throw FileError(path, "metadata schema is '" + *schema + "', not '" + kVectorSchema + "'");
    const std::string* version = find("schema_version");
    if (!version) throw FileError(path, "has a schema but no schema_version");
    int version_number = 0;
    try {
        std::size_t used = 0;
        version_number = std::stoi(*version, &used);
        if (used != version->size()) throw std::invalid_argument("trailing text");
    } catch (const std::logic_error&) {
        throw FileError(path, "schema_version '" + *version + "' is not a number");
    }
    if (version_number < 1 || version_number > kVectorSchemaVersion)
        throw FileError(path, "schema_version " + *version + " is not one this build reads (1 to " +
                                  std::to_string(kVectorSchemaVersion) + "); it may come from a newer Persona Workbench");
    if (const std::string* convention = find("layer_convention"); convention && *convention != kVectorLayerConvention)
        throw FileError(path, "layer_convention is '" + *convention + "'; this build reads only '" +
                                  kVectorLayerConvention + "' and would steer the wrong layer otherwise");
    if (const std::string* trait = find("trait")) vector.trait = *trait;
    else vector.trait = file_stem(path);
    if (const std::string* aggregate = find("aggregate")) {
        const auto parsed = aggregate_from_name(*aggregate);
        if (!parsed)
            throw FileError(path, "aggregate '" + *aggregate + "' is not response_avg, prompt_avg or prompt_last");
        vector.aggregate = *parsed;
    }
    const std::size_t prefix = std::strlen(kProvenancePrefix);
    for (const auto& [key, value] : metadata)
        if (key.size() > prefix && key.compare(0, prefix, kProvenancePrefix) == 0) vector.provenance[key.substr(prefix)] = value;
    return vector;
}

bool is_torch_vector_path(const std::string& path) {
    std::string extension = std::filesystem::path(path).extension().string();
    for (char& c : extension) c = char(std::tolower(static_cast<unsigned char>(c)));
    return extension == ".pt" || extension == ".pth";
}


void export_control_vector(const std::string& path, const PersonaVector& vector, double coefficient,
                           const std::string& model_hint) {
    vector.check_shape();
    const int blocks = vector.layer_count - 1;
    if (blocks < 2)
        throw Error(vector.description() + " covers " + std::to_string(blocks) +
                    " block(s); llama.cpp steers blocks 1 and up, so a control vector needs at least 2");
    if (!std::isfinite(coefficient)) throw Error("control-vector coefficient " + exact_number_text(coefficient) + " is not finite");

    GgufWriter writer;
    writer.add_string("general.architecture", kControlVectorArchitecture);
    writer.add_string(std::string(kControlVectorArchitecture) + ".model_hint", model_hint);
    writer.add_uint32(std::string(kControlVectorArchitecture) + ".layer_count", std::uint32_t(blocks - 1));
    writer.add_string(std::string(kControlVectorKeyPrefix) + "trait", vector.trait);
    writer.add_string(std::string(kControlVectorKeyPrefix) + "aggregate", aggregate_name(vector.aggregate));
    writer.add_float32(std::string(kControlVectorKeyPrefix) + "coefficient", static_cast<float>(coefficient));
    writer.add_uint32(std::string(kControlVectorKeyPrefix) + "block_count", std::uint32_t(blocks));
    writer.add_string(std::string(kControlVectorKeyPrefix) + "layer_convention", kControlVectorLayerConvention);
    writer.add_string(std::string(kControlVectorKeyPrefix) + "writer", kWriter);
    for (const auto& [key, value] : vector.provenance) {
        if (key.empty()) throw Error(vector.description() + " has a provenance entry with an empty key");
        writer.add_string(kControlVectorProvenancePrefix + key, value);
    }
    const auto hidden = std::size_t(vector.hidden_size);
    for (int block = 1; block < blocks; ++block) {
        const LayerView source = vector.layer(block + 1);
        std::vector<float> direction(hidden);
        for (std::size_t i = 0; i < hidden; ++i)
            direction[i] = static_cast<float>(coefficient * double(source[int(i)]));
        writer.add_f32_tensor(kDirectionPrefix + std::to_string(block), {std::uint64_t(hidden)}, std::move(direction));
    }
    writer.write(path);
}

}  // namespace persona
