#include "formats/gguf_writer.h"

#include "io/atomic_file.h"
#include "persona/errors.h"
#include "formats/ggml_types.h"
#include "formats/gguf.h"

#include <filesystem>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "GGUF is little-endian and is written here without byte swapping"
#endif

namespace persona {

namespace {

constexpr std::uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as little-endian uint32
constexpr std::size_t kMaxDimensions = 4;

// Serialises into memory: the header of a control vector is a few kilobytes.
class ByteBuffer {
public:
    template <typename T>
    void put(T value) {
        const auto* at = reinterpret_cast<const std::uint8_t*>(&value);
        bytes.insert(bytes.end(), at, at + sizeof(T));
    }
    void put_string(const std::string& text) {
        put<std::uint64_t>(text.size());
        bytes.insert(bytes.end(), text.begin(), text.end());
    }
    std::vector<std::uint8_t> bytes;
};

std::uint64_t padding_to(std::uint64_t size, std::uint64_t alignment) {
    return (alignment - size % alignment) % alignment;
}

}  // namespace

void GgufWriter::add_value(const std::string& key, Value value) {
    if (key.empty()) throw Error("GGUF metadata key is empty");
    for (const auto& entry : metadata_)
        if (entry.key == key) throw Error("GGUF metadata key '" + key + "' is set twice");
    metadata_.push_back({key, std::move(value)});
}

void GgufWriter::add_string(const std::string& key, const std::string& value) { add_value(key, value); }
void GgufWriter::add_uint32(const std::string& key, std::uint32_t value) { add_value(key, value); }
void GgufWriter::add_float32(const std::string& key, float value) { add_value(key, value); }

void GgufWriter::add_f32_tensor(const std::string& name, const std::vector<std::uint64_t>& shape,
                                std::vector<float> values) {
    if (name.empty()) throw Error("GGUF tensor name is empty");
    for (const auto& tensor : tensors_)
        if (tensor.name == name) throw Error("GGUF tensor '" + name + "' is added twice");
    if (shape.empty() || shape.size() > kMaxDimensions)
        throw Error("GGUF tensor '" + name + "' has " + std::to_string(shape.size()) + " dimensions (1 to 4 allowed)");
    std::uint64_t elements = 1;
    for (const auto extent : shape) {
        if (extent == 0) throw Error("GGUF tensor '" + name + "' has an empty dimension");
        elements *= extent;
    }
    if (elements != values.size())
        throw Error("GGUF tensor '" + name + "' has " + std::to_string(values.size()) + " values for " +
                    std::to_string(elements) + " elements");
    tensors_.push_back({name, shape, std::move(values)});
}

void GgufWriter::write(const std::string& path) const {
    namespace fs = std::filesystem;
    if (path.empty() || fs::path(path).filename().empty()) throw FileError(path, "cannot write: not a file path");
    std::error_code error;
    if (fs::is_directory(path, error)) throw FileError(path, "cannot write: it is a directory");

    ByteBuffer header;
    header.put<std::uint32_t>(kGgufMagic);
    header.put<std::uint32_t>(kVersion);
    header.put<std::uint64_t>(tensors_.size());
    header.put<std::uint64_t>(metadata_.size());
    for (const auto& entry : metadata_) {
        header.put_string(entry.key);
        if (const auto* text = std::get_if<std::string>(&entry.value)) {
            header.put(static_cast<std::uint32_t>(GgufValueType::String));
            header.put_string(*text);
        } else if (const auto* count = std::get_if<std::uint32_t>(&entry.value)) {
            header.put(static_cast<std::uint32_t>(GgufValueType::UInt32));
            header.put(*count);
        } else {
            header.put(static_cast<std::uint32_t>(GgufValueType::Float32));
            header.put(std::get<float>(entry.value));
        }
    }
    std::uint64_t data_offset = 0;  // relative to the start of the data section
    for (const auto& tensor : tensors_) {
        header.put_string(tensor.name);
        header.put<std::uint32_t>(static_cast<std::uint32_t>(tensor.shape.size()));
        for (const auto extent : tensor.shape) header.put(extent);
        header.put(static_cast<std::uint32_t>(GgmlType::F32));
        header.put(data_offset);
        const std::uint64_t bytes = tensor.values.size() * sizeof(float);
        data_offset += bytes + padding_to(bytes, kAlignment);
    }

    detail::PendingFile out(path);
    out.write(header.bytes.data(), header.bytes.size());
    out.write_zeros(padding_to(header.bytes.size(), kAlignment));
    for (const auto& tensor : tensors_) {
        const std::uint64_t bytes = tensor.values.size() * sizeof(float);
        out.write(tensor.values.data(), bytes);
        out.write_zeros(padding_to(bytes, kAlignment));
    }
    out.commit();
}

}  // namespace persona
