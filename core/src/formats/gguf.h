#pragma once
#include "io/mapped_file.h"

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace persona {

// Value types of GGUF metadata, numbered as in the file.
enum class GgufValueType : std::uint32_t {
    UInt8 = 0, Int8 = 1, UInt16 = 2, Int16 = 3, UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7,
    String = 8, Array = 9, UInt64 = 10, Int64 = 11, Float64 = 12,
};
const char* gguf_value_type_name(GgufValueType type);

// One metadata value. Arrays keep a typed vector (tokenizer vocabularies hold 262k strings,
// so a vector of generic values per element would cost tens of MB for nothing).
class GgufValue {
public:
    using Array = std::vector<GgufValue>;
    using Storage = std::variant<std::uint64_t, std::int64_t, double, bool, std::string,
                                 std::vector<std::int64_t>, std::vector<double>, std::vector<bool>,
                                 std::vector<std::string>, Array>;

    GgufValue(GgufValueType type, Storage value, GgufValueType element_type = GgufValueType::UInt8)
        : type_(type), element_type_(element_type), value_(std::move(value)) {}

    GgufValueType type() const { return type_; }
    bool is_array() const { return type_ == GgufValueType::Array; }
    GgufValueType element_type() const { return element_type_; }  // arrays only

    bool is_integer() const;
    bool is_float() const { return type_ == GgufValueType::Float32 || type_ == GgufValueType::Float64; }

    // Scalar accessors throw persona::Error when the value has another type.
    std::int64_t as_int() const;  // any integer type (uint64 above INT64_MAX throws)
    double as_float() const;      // any integer or float type
    bool as_bool() const;
    const std::string& as_string() const;

    std::size_t array_size() const;
    const std::vector<std::string>& strings() const;  // string arrays
    const std::vector<std::int64_t>& ints() const;    // integer arrays
    const std::vector<double>& floats() const;        // float arrays
    const std::vector<bool>& bools() const;
    const Array& arrays() const;                      // nested arrays

    // Short human-readable form: arrays summarised by type and length.
    std::string summary(std::size_t max_chars = 80) const;

private:
    GgufValueType type_;
    GgufValueType element_type_;
    Storage value_;
};

struct GgufTensorInfo {
    std::string name;
    std::vector<std::uint64_t> shape;  // ggml order: shape[0] is the contiguous dimension
    std::uint32_t type = 0;            // GgmlType number
    std::uint64_t offset = 0;          // absolute offset in the file
    std::uint64_t byte_size = 0;
    std::uint64_t element_count() const;
};

// A parsed GGUF file (versions 2 and 3). Every length, count and offset read from the file is
// checked against the file's size before use, so a truncated or hostile file gives a FileError
// naming the file and what is wrong, never a crash.
class GgufFile {
public:
    static std::unique_ptr<GgufFile> open(const std::string& path);  // throws FileError

    const std::string& path() const { return map_->path(); }
    std::uint32_t version() const { return version_; }
    std::size_t alignment() const { return alignment_; }
    std::uint64_t data_offset() const { return data_offset_; }
    std::uint64_t file_size() const { return map_->size(); }

    const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
    const std::vector<std::string>& metadata_keys_in_file_order() const { return key_order_; }
    const GgufValue* find(const std::string& key) const;
    // Typed look-ups that throw a FileError naming the key when it is missing or mistyped.
    std::int64_t get_int(const std::string& key) const;
    std::string get_string(const std::string& key) const;
    std::optional<std::int64_t> find_int(const std::string& key) const;
    std::optional<double> find_float(const std::string& key) const;
    std::optional<std::string> find_string(const std::string& key) const;

    const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
    const GgufTensorInfo* find_tensor(const std::string& name) const;
    const std::uint8_t* tensor_data(const GgufTensorInfo& tensor) const { return map_->data() + tensor.offset; }
    // Gives back the memory of a tensor's mapped pages once its data has been copied out.
    void release(const GgufTensorInfo& tensor) const { map_->release(tensor.offset, tensor.byte_size); }

private:
    explicit GgufFile(std::unique_ptr<MappedFile> map) : map_(std::move(map)) {}
    void parse();

    std::unique_ptr<MappedFile> map_;
    std::uint32_t version_ = 0;
    std::size_t alignment_ = 32;
    std::uint64_t data_offset_ = 0;
    std::map<std::string, GgufValue> metadata_;
    std::vector<std::string> key_order_;
    std::vector<GgufTensorInfo> tensors_;
    std::map<std::string, std::size_t> tensor_index_;
};

}  // namespace persona
