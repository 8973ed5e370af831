#include "formats/vector_values.h"

#include "persona/errors.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace persona {

void check_finite_vector_values(const std::string& path, const std::vector<float>& values, int hidden_size) {
    const auto bad = std::find_if(values.begin(), values.end(), [](float value) { return !std::isfinite(value); });
    if (bad == values.end()) return;
    const auto index = std::size_t(bad - values.begin());
    throw FileError(path, "holds " + exact_number_text(*bad) + " at row " +
                              std::to_string(index / std::size_t(hidden_size)) + ", element " +
                              std::to_string(index % std::size_t(hidden_size)) + "; a vector's values must be finite numbers");
}

std::string exact_number_text(double value) {
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%.9g", value);
    return buffer;
}

}  // namespace persona
