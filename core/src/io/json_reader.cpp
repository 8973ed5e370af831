#include "io/json_reader.h"

#include "persona/errors.h"

#include <sstream>
#include <algorithm>
#include <cstring>
#include <utility>

namespace persona::detail {

using Json = nlohmann::json;

std::string json_type_phrase(const Json& value) {
    if (value.is_null()) return "null";
    const std::string name = value.type_name();
    const bool vowel = !name.empty() && std::strchr("aeiou", name.front()) != nullptr;
    return std::string(vowel ? "an " : "a ") + name;
}

std::string indexed(const std::string& field, std::size_t index) { return field + "[" + std::to_string(index) + "]"; }

namespace {

std::size_t edit_distance(const std::string& a, const std::string& b) {
    std::vector<std::size_t> previous(b.size() + 1), current(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) previous[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        current[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j)
            current[j] = std::min({previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
        std::swap(previous, current);
    }
    return previous[b.size()];
}

bool contains(const std::vector<std::string>& names, const std::string& name) {
    return std::find(names.begin(), names.end(), name) != names.end();
}

}  // namespace

std::optional<std::string> nearest_name(const std::string& word, const std::vector<std::string>& candidates) {
    std::optional<std::string> best;
    // Short words are a typo or two apart from everything; a third of a long word is still a typo.
    std::size_t best_distance = std::max<std::size_t>(2, word.size() / 3) + 1;
    for (const std::string& candidate : candidates) {
        const std::size_t distance = edit_distance(word, candidate);
        if (distance < best_distance) {
            best_distance = distance;
            best = candidate;
        }
    }
    return best;
}

JsonObjectReader::JsonObjectReader(const Json& object, std::string where, std::string source, JsonNull null,
                                   const char* shape)
    : object_(object), where_(std::move(where)), source_(std::move(source)), null_(null) {
    if (!object_.is_object()) fail(field("") + " must be " + shape + ", not " + json_type_phrase(object_));
}

bool JsonObjectReader::has(const std::string& key) { return find(key) != nullptr; }

const Json* JsonObjectReader::find(const std::string& key) {
    note(key);
    const auto found = object_.find(key);
    if (found == object_.end() || (null_ == JsonNull::IsAbsent && found->is_null())) return nullptr;
    return &*found;
}

const Json& JsonObjectReader::required(const std::string& key) {
    const Json* value = find(key);
    if (!value) fail((where_.empty() ? std::string("missing key \"") : where_ + " has no key \"") + key + "\"");
    return *value;
}

std::string JsonObjectReader::string(const std::string& key) {
    const Json& value = required(key);
    if (!value.is_string()) wrong_type(key, "a string", value);
    return value.get<std::string>();
}

bool JsonObjectReader::boolean(const std::string& key) {
    const Json& value = required(key);
    if (!value.is_boolean()) wrong_type(key, "true or false", value);
    return value.get<bool>();
}

double JsonObjectReader::number(const std::string& key) { return number_value(required(key), field(key)); }

double JsonObjectReader::number(const std::string& key, double low, double high) {
    const double value = number(key);
    if (!(value >= low && value <= high)) {
        std::ostringstream range;
        range << low << ".." << high;
        fail(field(key) + " is " + required(key).dump() + ", outside " + range.str());
    }
    return value;
}

double JsonObjectReader::number_or_special(const std::string& key) {
    const Json& value = required(key);
    if (value.is_null()) return std::numeric_limits<double>::quiet_NaN();
    if (value.is_string()) {
        const std::string text = value.get<std::string>();
        if (text == "Infinity") return std::numeric_limits<double>::infinity();
        if (text == "-Infinity") return -std::numeric_limits<double>::infinity();
        if (text == "NaN") return std::numeric_limits<double>::quiet_NaN();
    }
    return number_value(value, field(key));
}

long long JsonObjectReader::integer(const std::string& key, long long low, long long high) {
    return integer_value(required(key), field(key), low, high);
}

std::uint64_t JsonObjectReader::unsigned_integer(const std::string& key) {
    const Json& value = required(key);
    if (!value.is_number_unsigned()) {
        if (value.is_number_integer()) fail(field(key) + " is " + value.dump() + ", below 0");
        wrong_type(key, "a whole number", value);
    }
    return value.get<std::uint64_t>();
}

long long JsonObjectReader::positive_size(const std::string& key) {
    return integer(key, 1, std::numeric_limits<long long>::max());
}

const Json& JsonObjectReader::array(const std::string& key, const char* of_what) {
    const Json& value = required(key);
    if (!value.is_array()) wrong_type(key, of_what, value);
    return value;
}

std::vector<std::string> JsonObjectReader::strings(const std::string& key) {
    const Json& list = array(key, "a list of strings");
    std::vector<std::string> result;
    result.reserve(list.size());
    for (std::size_t i = 0; i < list.size(); ++i) {
        if (!list[i].is_string()) wrong(indexed(field(key), i), "a string", list[i]);
        result.push_back(list[i].get<std::string>());
    }
    return result;
}

std::vector<long long> JsonObjectReader::integers(const std::string& key, long long low, long long high) {
    const Json& list = array(key, "a list of whole numbers");
    std::vector<long long> result;
    result.reserve(list.size());
    for (std::size_t i = 0; i < list.size(); ++i) result.push_back(integer_value(list[i], indexed(field(key), i), low, high));
    return result;
}

JsonObjectReader JsonObjectReader::object(const std::string& key, const char* shape) {
    return JsonObjectReader(required(key), field(key), source_, null_, shape);
}

std::optional<std::string> JsonObjectReader::optional_string(const std::string& key) {
    if (!has(key)) return std::nullopt;
    return string(key);
}

std::optional<bool> JsonObjectReader::optional_boolean(const std::string& key) {
    if (!has(key)) return std::nullopt;
    return boolean(key);
}

std::optional<double> JsonObjectReader::optional_number(const std::string& key) {
    if (!has(key)) return std::nullopt;
    return number(key);
}

std::optional<long long> JsonObjectReader::optional_integer(const std::string& key, long long low, long long high) {
    if (!has(key)) return std::nullopt;
    return integer(key, low, high);
}

void JsonObjectReader::finish(const std::string& hint) const { reject_keys_outside(asked_, hint); }

std::string JsonObjectReader::field(const std::string& key) const {
    if (key.empty()) return where_.empty() ? "the top level" : where_;
    return where_.empty() ? key : where_ + "." + key;
}

void JsonObjectReader::fail(const std::string& problem) const { throw FileError(source_, problem); }

void JsonObjectReader::wrong_type(const std::string& key, const char* wanted, const Json& value) const {
    wrong(field(key), wanted, value);
}

void JsonObjectReader::wrong(const std::string& name, const char* wanted, const Json& value) const {
    fail(name + " must be " + wanted + ", not " + json_type_phrase(value));
}

void JsonObjectReader::note(const std::string& key) {
    if (!contains(asked_, key)) asked_.push_back(key);
}

void JsonObjectReader::reject_keys_outside(const std::vector<std::string>& known, const std::string& hint) const {
    std::string unknown;
    for (const auto& item : object_.items()) {
        if (contains(known, item.key())) continue;
        unknown += unknown.empty() ? "\"" : ", \"";
        unknown += item.key() + "\"";
        if (const auto meant = nearest_name(item.key(), known)) unknown += " (did you mean \"" + *meant + "\"?)";
    }
    if (!unknown.empty())
        fail((where_.empty() ? std::string("unknown key ") : where_ + " has an unknown key ") + unknown + hint);
}

double JsonObjectReader::number_value(const Json& value, const std::string& name) const {
    if (!value.is_number()) wrong(name, "a number", value);
    return value.get<double>();
}

long long JsonObjectReader::integer_value(const Json& value, const std::string& name, long long low,
                                          long long high) const {
    if (!value.is_number_integer()) wrong(name, "a whole number", value);
    if (value.is_number_unsigned() && (high < 0 || value.get<std::uint64_t>() > std::uint64_t(high)))
        fail(name + " is " + value.dump() + ", above " + std::to_string(high));
    const long long result = value.is_number_unsigned() ? (long long)value.get<std::uint64_t>() : value.get<long long>();
    if (result >= low && result <= high) return result;
    // An open end is no range to quote: "is 0, below 1", not "outside 1..9223372036854775807".
    if (high == std::numeric_limits<long long>::max()) fail(name + " is " + value.dump() + ", below " + std::to_string(low));
    if (low == std::numeric_limits<long long>::min()) fail(name + " is " + value.dump() + ", above " + std::to_string(high));
    fail(name + " is " + value.dump() + ", outside " + std::to_string(low) + ".." + std::to_string(high));
}

}  // namespace persona::detail
