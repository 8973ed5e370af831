#include "persona/files.h"

#include "persona/errors.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace persona {

void check_regular_file(const std::string& path) {
    namespace fs = std::filesystem;
    std::error_code error;
    const fs::file_status status = fs::status(path, error);
    if (!fs::exists(status)) throw FileError(path, "no such file");
    if (fs::is_regular_file(status)) return;
    const char* kind = fs::is_directory(status) ? "a directory"
                       : fs::is_fifo(status)    ? "a FIFO (named pipe)"
                       : fs::is_socket(status)  ? "a socket"
                       : fs::is_character_file(status) || fs::is_block_file(status) ? "a device"
                                                                                     : "not a regular file";
    throw FileError(path, std::string("is ") + kind + ", not a regular file");
}

std::string read_file_bytes(const std::string& path, std::uint64_t max_bytes) {
    check_regular_file(path);
    std::error_code error;
    const auto size = std::filesystem::file_size(path, error);
    if (error) throw FileError(path, "cannot read its size: " + error.message());
    if (size > max_bytes)
        throw FileError(path, "is " + std::to_string(size) + " bytes, too large for a file of this kind (limit " +
                                  std::to_string(max_bytes) + ")");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw FileError(path, std::string("cannot open: ") + std::strerror(errno));
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) throw FileError(path, "cannot read");
    return text;
}

}  // namespace persona
