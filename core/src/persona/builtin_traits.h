#pragma once
// The trait files of resources/traits and the datasets of resources/datasets, compiled in by
// core/cmake/EmbedTextFiles.cmake.
#include <string_view>
#include <vector>

namespace persona::detail {

struct EmbeddedTextFile {
    std::string_view name;  // the file name without its extension: a trait's name
    std::string_view text;
};

// In the order core/CMakeLists.txt lists them.
const std::vector<EmbeddedTextFile>& builtin_trait_files();
const std::vector<EmbeddedTextFile>& builtin_dataset_files();

}  // namespace persona::detail
