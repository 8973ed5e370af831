#pragma once
// Files that users hand the workbench (models, vectors, datasets, summaries): what every reader
// checks before it opens one.
#include <cstdint>
#include <string>

namespace persona {

// Throws FileError naming the path unless it is an existing regular file (a symlink to one is
// fine): a FIFO or a device given as a file would block the reader forever, a directory means
// nothing to it.
void check_regular_file(const std::string& path);

// The whole file, after check_regular_file; FileError when it is larger than max_bytes (likely the
// wrong file) or cannot be read.
std::string read_file_bytes(const std::string& path, std::uint64_t max_bytes);

}  // namespace persona
