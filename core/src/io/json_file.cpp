#include "io/json_file.h"

#include "persona/errors.h"
#include "persona/files.h"

#include <algorithm>
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

bool jsonl_blank_line(const std::string& text) {
    return std::all_of(text.begin(), text.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; });
}

void strip_carriage_return(std::string& text) {
    if (!text.empty() && text.back() == '\r') text.pop_back();
}

bool for_each_jsonl_line(std::istream& in, const std::function<void(const std::string& text, std::size_t line)>& visit) {
    std::string text;
    std::size_t line = 0;
    while (std::getline(in, text)) {
        ++line;
        strip_carriage_return(text);
        if (!jsonl_blank_line(text)) visit(text, line);
    }
    return !in.bad();
}

std::string jsonl_line_prefix(std::size_t line) { return "line " + std::to_string(line) + ": "; }

nlohmann::json read_json_file(const std::string& path, std::uint64_t max_bytes) {
    const std::string text = read_file_bytes(path, max_bytes);
    try {
        return nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        // parse_error, and out_of_range for a number no double holds (1e400).
        throw FileError(path, "not valid JSON: " + json_error_text(e));
    }
}

}  // namespace persona::detail
