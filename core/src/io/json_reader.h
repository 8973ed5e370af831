#pragma once
// Reading hand-edited JSON (projects, trait files, Hugging Face configs) so that every error
// names the file and the field path ("runs[2].counts.pairs.kept must be a whole number, not a
// string") and a misspelt key is caught instead of silently ignored.
#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace persona::detail {

// "an array", "a string", "null": how the messages name a JSON value's type.
std::string json_type_phrase(const nlohmann::json& value);

// "questions[2]".
std::string indexed(const std::string& field, std::size_t index);

// The candidate a typo could have meant, if one is close enough to suggest.
std::optional<std::string> nearest_name(const std::string& word, const std::vector<std::string>& candidates);

// What a null value means. transformers writes null for unset optional fields (sliding_window,
// head_dim), so configs read nulls as absent; our own files never write null where a value
// belongs, so there it is a wrong type.
enum class JsonNull { IsValue, IsAbsent };

// Typed look-ups in one JSON object. Every error is a FileError(source, problem) whose problem
// names the field: `where` is this object's path ("" at the top level), so nested readers give
// "settings.steering.layer". The reader refers to the object; it must outlive the reader.
class JsonObjectReader {
public:
    // `shape` says what the object should be in the error when it is not one: "an object
    // {\"pos\", \"neg\"}" tells a hand-editor more than "an object".
    JsonObjectReader(const nlohmann::json& object, std::string where, std::string source,
                     JsonNull null = JsonNull::IsValue, const char* shape = "an object");
    // The reader keeps a reference: a temporary would be gone before the first look-up.
    JsonObjectReader(nlohmann::json&&, std::string, std::string, JsonNull = JsonNull::IsValue,
                     const char* = "an object") = delete;

    // Every look-up records its key as known, for finish().
    bool has(const std::string& key);
    // The value, or nullptr when the key is absent.
    const nlohmann::json* find(const std::string& key);
    const nlohmann::json& required(const std::string& key);

    std::string string(const std::string& key);
    bool boolean(const std::string& key);
    double number(const std::string& key);
    // A number in [low, high]; the message names the range.
    double number(const std::string& key, double low, double high);
    // JSON has no NaN or infinity: diagnostics write them as null (NaN) or "Infinity" / "-Infinity".
    double number_or_special(const std::string& key);
    long long integer(const std::string& key, long long low, long long high);
    std::uint64_t unsigned_integer(const std::string& key);
    // A size the caller divides and allocates by: a whole number of at least 1.
    long long positive_size(const std::string& key);
    // `of_what` names the expected list in the error: "a list of prompts".
    const nlohmann::json& array(const std::string& key, const char* of_what);
    std::vector<std::string> strings(const std::string& key);
    std::vector<long long> integers(const std::string& key, long long low, long long high);
    // A reader for the object under `key`, with this reader's source and null rule.
    JsonObjectReader object(const std::string& key, const char* shape = "an object");

    std::optional<std::string> optional_string(const std::string& key);
    std::optional<bool> optional_boolean(const std::string& key);
    std::optional<double> optional_number(const std::string& key);
    std::optional<long long> optional_integer(const std::string& key,
                                              long long low = std::numeric_limits<long long>::min(),
                                              long long high = std::numeric_limits<long long>::max());

    // Rejects the keys no look-up asked for: in a hand-edited file those are misspelt ones.
    // Called once every key was read. `hint` ends the message, saying why a key may be unknown.
    void finish(const std::string& hint = "") const;
    // Rejects every key outside `keys` before any is read: then a misspelt key is reported as
    // unknown, not as the required key it was meant to be.
    template <typename Keys>
    void expect_only(const Keys& keys, const std::string& hint) {
        for (const auto& key : keys) note(key);
        reject_keys_outside(std::vector<std::string>(std::begin(keys), std::end(keys)), hint);
    }

    // "where.key", or `where` itself (or "the top level") for an empty key.
    std::string field(const std::string& key) const;
    const std::string& source() const { return source_; }
    [[noreturn]] void fail(const std::string& problem) const;
    [[noreturn]] void wrong_type(const std::string& key, const char* wanted, const nlohmann::json& value) const;

private:
    [[noreturn]] void wrong(const std::string& name, const char* wanted, const nlohmann::json& value) const;
    void note(const std::string& key);
    void reject_keys_outside(const std::vector<std::string>& known, const std::string& hint) const;
    double number_value(const nlohmann::json& value, const std::string& name) const;
    long long integer_value(const nlohmann::json& value, const std::string& name, long long low, long long high) const;

    const nlohmann::json& object_;
    std::string where_;
    std::string source_;
    JsonNull null_;
    std::vector<std::string> asked_;  // in the order asked: of two equally near keys, the first is suggested
};

}  // namespace persona::detail
