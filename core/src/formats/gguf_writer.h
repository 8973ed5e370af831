#pragma once
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace persona {

// Builds a small GGUF file (version 3, default alignment of 32 bytes) holding string, uint32
// and float32 metadata and float32 tensors: enough for control vectors, which llama.cpp reads
// with its own GGUF loader. Metadata and tensors are written in the order they were added.
class GgufWriter {
public:
    using Value = std::variant<std::string, std::uint32_t, float>;

    // Each throws persona::Error for an empty or repeated key or tensor name, or a tensor whose
    // shape does not match its values.
    void add_string(const std::string& key, const std::string& value);
    void add_uint32(const std::string& key, std::uint32_t value);
    void add_float32(const std::string& key, float value);
    // `shape` in ggml order: shape[0] is the contiguous dimension (1 to 4 dimensions).
    void add_f32_tensor(const std::string& name, const std::vector<std::uint64_t>& shape, std::vector<float> values);

    // Written to a temporary file in the same directory, flushed and renamed over `path`, so a
    // failure leaves any previous file untouched. Throws FileError naming `path`.
    void write(const std::string& path) const;

    static constexpr std::uint32_t kVersion = 3;
    static constexpr std::uint64_t kAlignment = 32;

private:
    struct Entry {
        std::string key;
        Value value;
    };
    struct Tensor {
        std::string name;
        std::vector<std::uint64_t> shape;
        std::vector<float> values;
    };
    void add_value(const std::string& key, Value value);

    std::vector<Entry> metadata_;
    std::vector<Tensor> tensors_;
};

}  // namespace persona
