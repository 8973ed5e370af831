#include "io/json_file.h"

#include "persona/errors.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace persona::detail {

std::string json_error_text(const nlohmann::json::exception& error) {
    std::string text = error.what();
    if (!text.empty() && text.front() == '[') {
        const auto end = text.find("] ");
        if (end != std::string::npos) text.erase(0, end + 2);
    }
    // The message quotes the bytes it read last, which may be the invalid UTF-8 it rejected.
    for (char& c : text)
        if (static_cast<unsigned char>(c) >= 0x80 || static_cast<unsigned char>(c) < 0x20) c = '?';
    return text;
}

nlohmann::json read_json_file(const std::string& path, std::uint64_t max_bytes) {
    std::error_code error;
    const auto status = std::filesystem::status(path, error);
    if (!std::filesystem::exists(status)) throw FileError(path, "no such file");
    if (!std::filesystem::is_regular_file(status)) throw FileError(path, "not a regular file");
    const auto size = std::filesystem::file_size(path, error);
    if (error) throw FileError(path, "cannot read its size: " + error.message());
    if (size > max_bytes)
        throw FileError(path, "is " + std::to_string(size) + " bytes, too large for a JSON file of this kind (limit " +
                                  std::to_string(max_bytes) + ")");

    std::ifstream in(path, std::ios::binary);
    if (!in) throw FileError(path, std::string("cannot open: ") + std::strerror(errno));
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) throw FileError(path, "cannot read");
    try {
        return nlohmann::json::parse(text);
    } catch (const nlohmann::json::parse_error& e) {
        throw FileError(path, "not valid JSON: " + json_error_text(e));
    }
}

}  // namespace persona::detail
