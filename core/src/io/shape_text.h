#pragma once
// Shapes in error messages, written one way everywhere: "[576, 49152]".
#include <cstdint>
#include <string>
#include <vector>

namespace persona {

inline std::string shape_text(const std::vector<std::int64_t>& shape) {
    std::string text;
    for (auto extent : shape) text += (text.empty() ? "" : ", ") + std::to_string(extent);
    return "[" + text + "]";
}

}  // namespace persona
