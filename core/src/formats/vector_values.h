#pragma once
// Checks and texts shared by the readers of vector files (ours, .pt, control vectors).
#include <string>
#include <vector>

namespace persona {

// A NaN or infinity in a direction turns every steered or projected activation into NaN, far
// from the file that caused it: throws FileError naming `path` and the first such value's row
// and element.
void check_finite_vector_values(const std::string& path, const std::vector<float>& values, int hidden_size);

// A float as text that reads back to the same float ("%.9g").
std::string exact_number_text(double value);

}  // namespace persona
