#pragma once
// 64-bit FNV-1a: stable names for run settings and checkpoints (which run wrote this file?),
// not a security measure. One definition for extraction, sweeps and flagging.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

namespace persona::detail {

struct Fnv1a {
    std::uint64_t hash = 0xcbf29ce484222325ULL;
    void add(const void* bytes, std::size_t size) {
        const auto* p = static_cast<const unsigned char*>(bytes);
        for (std::size_t i = 0; i < size; ++i) hash = (hash ^ p[i]) * 0x100000001b3ULL;
    }
    // A string and a terminator, so "ab" + "c" and "a" + "bc" differ.
    void add(const std::string& text) {
        add(text.data(), text.size());
        add("\0", 1);
    }
    std::string hex() const {
        char text[17];
        std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(hash));
        return text;
    }
};

// The hash of one string's bytes (no terminator), as 16 hex digits.
inline std::string fnv1a_hex(const std::string& text) {
    Fnv1a f;
    f.add(text.data(), text.size());
    return f.hex();
}

}  // namespace persona::detail
