#include "persona/steering_vector.h"

#include "persona/errors.h"
#include "persona/vector_files.h"

#include <cmath>

namespace persona {

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
    // stof reads "nan" and "inf": a NaN alpha would turn every activation into NaN.
    if (!std::isfinite(steering.alpha)) throw Error("steering '" + spec + "': ALPHA must be a finite number");
    steering.vector = read_layer_vector(spec.substr(0, first), steering.layer, layer_count, hidden_size);
    return steering;
}

}  // namespace persona
