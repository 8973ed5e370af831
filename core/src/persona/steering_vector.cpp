#include "persona/steering_vector.h"

#include "persona/errors.h"
#include "formats/safetensors.h"
#include "io/shape_text.h"

namespace persona {

std::vector<float> read_layer_vector(const std::string& path, int layer, int layer_count, int hidden_size) {
    const auto file = SafetensorsFile::open(path);
    const SafetensorsTensorInfo* tensor = nullptr;
    if (file->tensors().size() == 1) tensor = &file->tensors().front();
    else tensor = file->find_tensor("vector");
    if (!tensor)
        throw FileError(path, "holds " + std::to_string(file->tensors().size()) +
                                  " tensors; a vector file holds one (or one named 'vector')");
    if (layer < 0 || layer > layer_count)
        throw FileError(path, "layer " + std::to_string(layer) + " is outside 0.." + std::to_string(layer_count));
    const auto& shape = tensor->shape;
    const std::vector<float> values = file->read_floats(*tensor);
    if (shape.size() == 2 && shape[0] == layer_count + 1 && shape[1] == hidden_size)
        return std::vector<float>(values.begin() + static_cast<std::ptrdiff_t>(layer) * hidden_size,
                                  values.begin() + static_cast<std::ptrdiff_t>(layer + 1) * hidden_size);
    if (shape.size() == 1 && shape[0] == hidden_size) return values;
    throw FileError(path, "tensor '" + tensor->name + "' has shape " + shape_text(shape) + "; this model needs [" +
                              std::to_string(layer_count + 1) + ", " + std::to_string(hidden_size) + "] or [" +
                              std::to_string(hidden_size) + "]");
}

Steering parse_steering_spec(const std::string& spec, int layer_count, int hidden_size) {
    // The path may itself contain ':', so the two numbers are taken from the right.
    const auto second = spec.rfind(':');
    const auto first = second == std::string::npos || second == 0 ? std::string::npos : spec.rfind(':', second - 1);
    if (first == std::string::npos || first == 0)
        throw Error("steering '" + spec + "' is not FILE:LAYER:ALPHA");
    Steering steering;
    try {
        std::size_t used = 0;
        const std::string layer_text = spec.substr(first + 1, second - first - 1);
        steering.layer = std::stoi(layer_text, &used);
        if (used != layer_text.size()) throw std::invalid_argument("layer");
        const std::string alpha_text = spec.substr(second + 1);
        steering.alpha = std::stof(alpha_text, &used);
        if (used != alpha_text.size()) throw std::invalid_argument("alpha");
    } catch (const std::logic_error&) {
        throw Error("steering '" + spec + "': LAYER must be an integer and ALPHA a number");
    }
    steering.vector = read_layer_vector(spec.substr(0, first), steering.layer, layer_count, hidden_size);
    return steering;
}

}  // namespace persona
