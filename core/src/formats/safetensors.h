#pragma once
#include "io/mapped_file.h"

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace persona {

struct SafetensorsTensorInfo {
    std::string name;
    std::string dtype;                // as spelled in the file: "F32", "BF16", "I64", ...
    std::vector<std::int64_t> shape;  // row-major, outermost first; empty for a scalar
    std::uint64_t offset = 0;         // absolute offset in the file
    std::uint64_t byte_size = 0;
    std::uint64_t element_count() const;
};

// Bytes per element of a dtype this reader accepts; nullopt for any other name.
std::optional<std::size_t> safetensors_dtype_size(const std::string& dtype);

// A memory-mapped .safetensors file: 8-byte little-endian header length, JSON header, data.
// Every offset, shape and dtype in the header is checked against the file before use, so a
// damaged or hostile file gives a FileError naming the file and the problem, never a crash.
class SafetensorsFile {
public:
    static std::unique_ptr<SafetensorsFile> open(const std::string& path);  // throws FileError

    const std::string& path() const { return map_->path(); }
    std::uint64_t file_size() const { return map_->size(); }
    std::uint64_t data_offset() const { return data_offset_; }  // where the data buffer begins

    // In the order their data lies in the file.
    const std::vector<SafetensorsTensorInfo>& tensors() const { return tensors_; }
    const SafetensorsTensorInfo* find_tensor(const std::string& name) const;
    // `tensor` must come from this file. The data is not aligned: read it with memcpy.
    const std::uint8_t* tensor_data(const SafetensorsTensorInfo& tensor) const { return map_->data() + tensor.offset; }
    // The tensor widened to float; throws FileError for dtypes other than F32, F16 and BF16.
    std::vector<float> read_floats(const SafetensorsTensorInfo& tensor) const;

    // The header's "__metadata__": free-form text the writer chose to keep.
    const std::map<std::string, std::string>& metadata() const { return metadata_; }

private:
    explicit SafetensorsFile(std::unique_ptr<MappedFile> map) : map_(std::move(map)) {}
    void parse();

    std::unique_ptr<MappedFile> map_;
    std::uint64_t data_offset_ = 0;
    std::vector<SafetensorsTensorInfo> tensors_;
    std::map<std::string, std::size_t> tensor_index_;
    std::map<std::string, std::string> metadata_;
};

// Widens F32, F16 or BF16 elements to float. `out` holds tensor.element_count() floats.
// Throws persona::Error naming the tensor for any other dtype.
void convert_to_float(const SafetensorsTensorInfo& tensor, const std::uint8_t* data, float* out);
std::vector<float> convert_to_float(const SafetensorsTensorInfo& tensor, const std::uint8_t* data);

// A Hugging Face model directory: a single model.safetensors, or shards listed by
// model.safetensors.index.json. Tensors are looked up by name whichever shard holds them.
class SafetensorsCheckpoint {
public:
    struct Tensor {
        const SafetensorsFile* file;
        const SafetensorsTensorInfo* info;
        const std::uint8_t* data() const { return file->tensor_data(*info); }
    };

    static constexpr const char* kSingleFileName = "model.safetensors";
    static constexpr const char* kIndexFileName = "model.safetensors.index.json";

    static std::unique_ptr<SafetensorsCheckpoint> open_directory(const std::string& directory);  // throws FileError

    const std::string& directory() const { return directory_; }
    const std::vector<std::unique_ptr<SafetensorsFile>>& shards() const { return shards_; }
    // Sorted by name.
    const std::map<std::string, Tensor>& tensors() const { return tensors_; }
    std::optional<Tensor> find_tensor(const std::string& name) const;
    Tensor tensor(const std::string& name) const;  // throws FileError naming the directory and tensor
    std::vector<float> read_floats(const std::string& name) const;

private:
    explicit SafetensorsCheckpoint(std::string directory) : directory_(std::move(directory)) {}
    void add_whole_file(std::unique_ptr<SafetensorsFile> file);
    void open_shards(const std::string& index_path);

    std::string directory_;
    std::vector<std::unique_ptr<SafetensorsFile>> shards_;
    std::map<std::string, Tensor> tensors_;
};

struct SafetensorsFloatTensor {
    std::string name;
    std::vector<std::int64_t> shape;
    const float* values = nullptr;  // borrowed for the call
    std::size_t value_count = 0;    // must equal the product of shape
};

// Writes float32 tensors in the order given, readable by the reference `safetensors` package.
// The file appears atomically: it is written to a temporary file in the same directory,
// flushed to disk and renamed over `path`, so a failure leaves any previous file untouched.
// Throws FileError naming `path` on bad arguments or any I/O failure.
void write_safetensors(const std::string& path, const std::vector<SafetensorsFloatTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace persona
