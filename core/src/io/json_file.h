#pragma once
// JSON files and JSON error text for core's format readers (safetensors headers, HF configs).
#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <istream>
#include <string>

namespace persona::detail {

// The library's message without its "[json.exception.parse_error.101] " prefix, which means
// nothing to a user.
std::string json_error_text(const nlohmann::json::exception& error);

// "line N: ", how errors in a JSON Lines file say where (N is 1-based).
std::string jsonl_line_prefix(std::size_t line);
// A JSON Lines file may hold blank lines (skipped) and Windows line ends.
bool jsonl_blank_line(const std::string& text);
void strip_carriage_return(std::string& text);
// Calls visit(text, line) for each non-blank line of `in` (line 1-based, "\r" removed); false
// when the stream failed while reading.
bool for_each_jsonl_line(std::istream& in, const std::function<void(const std::string& text, std::size_t line)>& visit);

// Reads and parses a whole JSON file. Throws FileError naming the file when it cannot be read,
// is larger than max_bytes (likely the wrong file) or is not valid JSON.
nlohmann::json read_json_file(const std::string& path, std::uint64_t max_bytes = 100'000'000);

}  // namespace persona::detail
