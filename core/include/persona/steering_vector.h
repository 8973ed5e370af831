#pragma once
#include "persona/generation.h"

#include <string>
#include <vector>

namespace persona {

// read_layer_vector (one layer's direction from a vector file) is in vector_files.h.

// "FILE:LAYER:ALPHA" (as persona-cli --steer takes it) -> an Add steering of the response.
Steering parse_steering_spec(const std::string& spec, int layer_count, int hidden_size);

}  // namespace persona
