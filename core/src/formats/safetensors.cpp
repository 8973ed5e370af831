#include "formats/safetensors.h"

#include "formats/dequantize.h"
#include "io/atomic_file.h"
#include "io/json_file.h"
#include "persona/errors.h"
#include "io/shape_text.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <sstream>
#include <unordered_set>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian and is read and written here without byte swapping"
#endif

namespace persona {

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

// The reference implementation's limit: a larger header means a damaged length, not a model.
constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;
// Real headers nest three deep; the limit keeps hostile nesting from building a deep tree.
constexpr int kMaxJsonDepth = 16;
constexpr std::size_t kHeaderAlignment = 8;

// Product of the extents; nullopt when it does not fit in 64 bits.
std::optional<std::uint64_t> checked_element_count(const std::vector<std::int64_t>& shape) {
    std::uint64_t count = 1;
    for (const auto extent : shape) {
        if (extent == 0) return 0;  // an empty tensor, whatever the other extents are
    }
    for (const auto extent : shape) {
        const auto e = static_cast<std::uint64_t>(extent);
        if (count > std::numeric_limits<std::uint64_t>::max() / e) return std::nullopt;
        count *= e;
    }
    return count;
}

std::optional<std::uint64_t> checked_byte_size(const std::vector<std::int64_t>& shape, std::size_t element_bytes) {
    const auto count = checked_element_count(shape);
    if (!count || *count > std::numeric_limits<std::uint64_t>::max() / element_bytes) return std::nullopt;
    return *count * element_bytes;
}

// Records the first duplicate key and any nesting past kMaxJsonDepth while nlohmann parses:
// its DOM keeps only the last of duplicate keys, which would hide a duplicated tensor name.
struct HeaderScan {
    // Keys seen in the open object at each depth; hashed, as a header may hold 100,000 tensors.
    std::vector<std::unordered_set<std::string>> keys_by_depth;
    std::string duplicate_key;
    int duplicate_depth = 0;
    bool too_deep = false;

    bool on_event(int depth, Json::parse_event_t event, const Json& parsed) {
        const auto level = static_cast<std::size_t>(depth);
        if (event == Json::parse_event_t::object_start || event == Json::parse_event_t::array_start) {
            if (depth >= kMaxJsonDepth) {
                too_deep = true;
                return false;  // discard the subtree instead of building it
            }
            if (keys_by_depth.size() < level + 2) keys_by_depth.resize(level + 2);
            keys_by_depth[level + 1].clear();
        } else if (event == Json::parse_event_t::key && level < keys_by_depth.size()) {
            const auto& key = parsed.get_ref<const std::string&>();
            if (!keys_by_depth[level].insert(key).second && duplicate_key.empty()) {
                duplicate_key = key;
                duplicate_depth = depth;
            }
        }
        return true;
    }
};

void require_float_dtype(const SafetensorsTensorInfo& tensor) {
    if (tensor.dtype != "F32" && tensor.dtype != "F16" && tensor.dtype != "BF16")
        throw Error("tensor '" + tensor.name + "' has dtype " + tensor.dtype +
                    "; only F32, F16 and BF16 tensors convert to float");
}

// A non-negative JSON integer that fits in int64, or nullopt.
std::optional<std::int64_t> as_size(const Json& value) {
    if (!value.is_number_unsigned()) return std::nullopt;
    const auto v = value.get<std::uint64_t>();
    if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return std::nullopt;
    return static_cast<std::int64_t>(v);
}

}  // namespace

std::optional<std::size_t> safetensors_dtype_size(const std::string& dtype) {
    static const std::map<std::string, std::size_t> sizes = {
        {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1},
        {"U64", 8}, {"U32", 4}, {"U16", 2}, {"U8", 1}, {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
    };
    const auto it = sizes.find(dtype);
    if (it == sizes.end()) return std::nullopt;
    return it->second;
}

std::uint64_t SafetensorsTensorInfo::element_count() const { return checked_element_count(shape).value_or(0); }

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
    std::unique_ptr<SafetensorsFile> file(new SafetensorsFile(std::make_unique<MappedFile>(path)));
    file->parse();
    return file;
}

void SafetensorsFile::parse() {
    const std::string& file_path = map_->path();
    const std::uint64_t file_size = map_->size();
    const auto fail = [&](const std::string& problem) { throw FileError(file_path, problem); };

    if (file_size < 8)
        fail("too small to be a safetensors file (" + std::to_string(file_size) +
             " bytes; the header length alone takes 8)");
    std::uint64_t header_length;
    std::memcpy(&header_length, map_->data(), sizeof header_length);
    if (header_length > kMaxHeaderBytes)
        fail("header length " + std::to_string(header_length) +
             " exceeds the 100 MB limit (damaged, or not a safetensors file)");
    if (header_length > file_size - 8)
        fail("truncated: the header of " + std::to_string(header_length) + " bytes runs past the end of the file (" +
             std::to_string(file_size) + " bytes)");
    const char* header_begin = reinterpret_cast<const char*>(map_->data() + 8);
    if (header_length == 0 || header_begin[0] != '{')
        fail("header does not begin with '{' (damaged, or not a safetensors file)");
    // nlohmann takes a NUL byte for the end of input and would ignore whatever follows it;
    // JSON allows none outside strings (and strings escape it), so any NUL means damage.
    if (const void* nul = std::memchr(header_begin, '\0', header_length))
        fail("header is not valid JSON: it holds a NUL byte at header byte " +
             std::to_string(static_cast<const char*>(nul) - header_begin));
    data_offset_ = 8 + header_length;
    const std::uint64_t buffer_size = file_size - data_offset_;

    HeaderScan scan;
    Json header;
    try {
        header = Json::parse(header_begin, header_begin + header_length,
                             [&scan](int depth, Json::parse_event_t event, Json& parsed) {
                                 return scan.on_event(depth, event, parsed);
                             });
    } catch (const Json::exception& e) {
        fail("header is not valid JSON: " + detail::json_error_text(e));
    }
    if (scan.too_deep) fail("header JSON is nested more than " + std::to_string(kMaxJsonDepth) + " levels deep");
    if (!scan.duplicate_key.empty()) {
        if (scan.duplicate_depth == 1) fail("tensor '" + scan.duplicate_key + "' appears twice in the header");
        fail("header has the key '" + scan.duplicate_key + "' twice in one object");
    }
    if (!header.is_object()) fail("header is not a JSON object");

    for (const auto& [name, entry] : header.items()) {
        if (name == "__metadata__") {
            if (entry.is_null()) continue;
            if (!entry.is_object()) fail("__metadata__ is not a JSON object");
            for (const auto& [key, value] : entry.items()) {
                if (!value.is_string()) fail("__metadata__ value for '" + key + "' is not a string");
                metadata_.emplace(key, value.get<std::string>());
            }
            continue;
        }
        const std::string what = "tensor '" + name + "'";
        if (!entry.is_object()) fail(what + " is not a JSON object");

        SafetensorsTensorInfo tensor;
        tensor.name = name;
        const auto dtype = entry.find("dtype");
        if (dtype == entry.end() || !dtype->is_string()) fail(what + " has no dtype string");
        tensor.dtype = dtype->get<std::string>();
        const auto element_bytes = safetensors_dtype_size(tensor.dtype);
        if (!element_bytes) fail(what + " has unknown or unsupported dtype '" + tensor.dtype + "'");

        const auto shape = entry.find("shape");
        if (shape == entry.end() || !shape->is_array()) fail(what + " has no shape array");
        for (const auto& extent : *shape) {
            const auto size = as_size(extent);
            if (!size) fail(what + " has a shape entry " + extent.dump() + " that is not a non-negative integer");
            tensor.shape.push_back(*size);
        }

        const auto offsets = entry.find("data_offsets");
        if (offsets == entry.end() || !offsets->is_array() || offsets->size() != 2)
            fail(what + " has no data_offsets pair [begin, end]");
        const auto begin = as_size((*offsets)[0]);
        const auto end = as_size((*offsets)[1]);
        if (!begin || !end || *begin > *end)
            fail(what + " has data_offsets " + offsets->dump() + ", not integers with begin <= end");
        const auto ubegin = static_cast<std::uint64_t>(*begin);
        const auto uend = static_cast<std::uint64_t>(*end);
        if (uend > buffer_size)
            fail("truncated: " + what + " data_offsets " + offsets->dump() + " run past the end of the data (" +
                 std::to_string(buffer_size) + " bytes after the header)");

        const auto expected = checked_byte_size(tensor.shape, *element_bytes);
        if (!expected) fail(what + " shape " + shape_text(tensor.shape) + " is too large");
        if (*expected != uend - ubegin)
            fail(what + " (" + tensor.dtype + " " + shape_text(tensor.shape) + ") needs " + std::to_string(*expected) +
                 " bytes but its data_offsets " + offsets->dump() + " hold " + std::to_string(uend - ubegin));
        tensor.offset = data_offset_ + ubegin;
        tensor.byte_size = uend - ubegin;
        tensors_.push_back(std::move(tensor));
    }

    // Gaps between tensors are allowed, though the reference reader refuses them: unused bytes
    // cannot make a read go wrong, and overlap, which can, is refused below.
    std::sort(tensors_.begin(), tensors_.end(), [](const auto& a, const auto& b) {
        return a.offset != b.offset ? a.offset < b.offset : a.byte_size < b.byte_size;
    });
    // Empty tensors own no bytes, so they cannot overlap anything.
    const SafetensorsTensorInfo* furthest = nullptr;
    for (const auto& tensor : tensors_) {
        if (tensor.byte_size == 0) continue;
        if (furthest && tensor.offset < furthest->offset + furthest->byte_size)
            fail("tensors '" + furthest->name + "' and '" + tensor.name + "' overlap in the data");
        if (!furthest || tensor.offset + tensor.byte_size > furthest->offset + furthest->byte_size) furthest = &tensor;
    }
    for (std::size_t i = 0; i < tensors_.size(); ++i) tensor_index_.emplace(tensors_[i].name, i);
}

const SafetensorsTensorInfo* SafetensorsFile::find_tensor(const std::string& name) const {
    const auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::vector<float> SafetensorsFile::read_floats(const SafetensorsTensorInfo& tensor) const {
    try {
        return convert_to_float(tensor, tensor_data(tensor));
    } catch (const FileError&) {
        throw;
    } catch (const Error& e) {
        throw FileError(path(), e.what());
    }
}

void convert_to_float(const SafetensorsTensorInfo& tensor, const std::uint8_t* data, float* out) {
    require_float_dtype(tensor);
    const std::uint64_t count = tensor.element_count();
    if (tensor.dtype == "F32") {
        if (count) std::memcpy(out, data, count * sizeof(float));
        return;
    }
    const bool is_half = tensor.dtype == "F16";
    for (std::uint64_t i = 0; i < count; ++i) {
        std::uint16_t bits;
        std::memcpy(&bits, data + 2 * i, sizeof bits);
        out[i] = is_half ? half_to_float(bits) : bfloat16_to_float(bits);
    }
}

std::vector<float> convert_to_float(const SafetensorsTensorInfo& tensor, const std::uint8_t* data) {
    require_float_dtype(tensor);
    std::vector<float> values(static_cast<std::size_t>(tensor.element_count()));
    convert_to_float(tensor, data, values.data());
    return values;
}

// --- Sharded checkpoints ---------------------------------------------------------------------

std::unique_ptr<SafetensorsCheckpoint> SafetensorsCheckpoint::open_directory(const std::string& directory) {
    std::error_code error;
    const auto status = fs::status(directory, error);
    if (!fs::exists(status)) throw FileError(directory, "no such directory");
    if (!fs::is_directory(status)) throw FileError(directory, "not a directory");

    std::unique_ptr<SafetensorsCheckpoint> checkpoint(new SafetensorsCheckpoint(directory));
    // The single file wins when both exist, as in transformers.
    const fs::path single = fs::path(directory) / kSingleFileName;
    const fs::path index = fs::path(directory) / kIndexFileName;
    if (fs::exists(single, error)) {
        checkpoint->add_whole_file(SafetensorsFile::open(single.string()));
    } else if (fs::exists(index, error)) {
        checkpoint->open_shards(index.string());
    } else {
        throw FileError(directory, std::string("holds neither ") + kSingleFileName + " nor " + kIndexFileName);
    }
    return checkpoint;
}

void SafetensorsCheckpoint::add_whole_file(std::unique_ptr<SafetensorsFile> file) {
    for (const auto& info : file->tensors()) tensors_.emplace(info.name, Tensor{file.get(), &info});
    shards_.push_back(std::move(file));
}

void SafetensorsCheckpoint::open_shards(const std::string& index_path) {
    const Json index = detail::read_json_file(index_path);
    const auto fail = [&](const std::string& problem) { throw FileError(index_path, problem); };
    if (!index.is_object()) fail("is not a JSON object");
    const auto weight_map = index.find("weight_map");
    if (weight_map == index.end() || !weight_map->is_object()) fail("has no weight_map object");
    if (weight_map->empty()) fail("weight_map is empty");

    std::map<std::string, std::vector<std::string>> names_by_shard;
    for (const auto& [name, shard] : weight_map->items()) {
        if (!shard.is_string()) fail("weight_map entry for tensor '" + name + "' is not a file name");
        const auto shard_name = shard.get<std::string>();
        // Shards live beside the index; a path elsewhere is a damaged or hostile index.
        if (shard_name.empty() || shard_name == "." || shard_name == ".." ||
            shard_name.find('/') != std::string::npos)
            fail("weight_map puts tensor '" + name + "' in '" + shard_name +
                 "', which is not a file name in the same directory");
        names_by_shard[shard_name].push_back(name);
    }

    for (const auto& [shard_name, names] : names_by_shard) {
        const fs::path shard_path = fs::path(directory_) / shard_name;
        std::error_code error;
        if (!fs::exists(shard_path, error))
            fail("shard '" + shard_name + "' (holding tensor '" + names.front() + "'" +
                 (names.size() > 1 ? " and " + std::to_string(names.size() - 1) + " more" : std::string()) +
                 ") is missing from " + directory_);
        auto file = SafetensorsFile::open(shard_path.string());
        for (const auto& name : names) {
            const auto* info = file->find_tensor(name);
            if (!info) fail("weight_map puts tensor '" + name + "' in shard '" + shard_name + "', which has no such tensor");
            tensors_.emplace(name, Tensor{file.get(), info});
        }
        shards_.push_back(std::move(file));
    }
}

std::optional<SafetensorsCheckpoint::Tensor> SafetensorsCheckpoint::find_tensor(const std::string& name) const {
    const auto it = tensors_.find(name);
    if (it == tensors_.end()) return std::nullopt;
    return it->second;
}

SafetensorsCheckpoint::Tensor SafetensorsCheckpoint::tensor(const std::string& name) const {
    const auto found = find_tensor(name);
    if (!found) throw FileError(directory_, "checkpoint has no tensor '" + name + "'");
    return *found;
}

std::vector<float> SafetensorsCheckpoint::read_floats(const std::string& name) const {
    const Tensor found = tensor(name);
    return found.file->read_floats(*found.info);
}

// --- Writer ----------------------------------------------------------------------------------

void write_safetensors(const std::string& path, const std::vector<SafetensorsFloatTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
    const auto fail = [&](const std::string& problem) { throw FileError(path, "cannot write: " + problem); };
    if (path.empty() || fs::path(path).filename().empty()) fail("not a file path");
    std::error_code error;
    if (fs::is_directory(path, error)) fail("it is a directory");

    Json header = Json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    std::uint64_t offset = 0;
    for (const auto& tensor : tensors) {
        const std::string what = "tensor '" + tensor.name + "'";
        if (tensor.name.empty()) fail("a tensor has an empty name");
        if (tensor.name == "__metadata__") fail("a tensor cannot be called __metadata__");
        if (header.contains(tensor.name)) fail(what + " appears twice");
        for (const auto extent : tensor.shape)
            if (extent < 0) fail(what + " has a negative extent in shape " + shape_text(tensor.shape));
        const auto count = checked_element_count(tensor.shape);
        if (!count || *count != tensor.value_count)
            fail(what + " has shape " + shape_text(tensor.shape) + " but " + std::to_string(tensor.value_count) +
                 " values");
        if (tensor.value_count > 0 && !tensor.values) fail(what + " has no values");
        const std::uint64_t bytes = *count * sizeof(float);
        header[tensor.name] = {{"dtype", "F32"}, {"shape", tensor.shape}, {"data_offsets", {offset, offset + bytes}}};
        offset += bytes;
    }

    std::string header_text;
    try {
        header_text = header.dump();
    } catch (const Json::type_error& e) {
        fail("a tensor name or metadata text is not valid UTF-8 (" + detail::json_error_text(e) + ")");
    }
    // Spaces are JSON whitespace; padding makes the data start 8-byte aligned as the format recommends.
    header_text.append((kHeaderAlignment - header_text.size() % kHeaderAlignment) % kHeaderAlignment, ' ');
    const std::uint64_t header_length = header_text.size();

    detail::PendingFile out(path);
    out.write(&header_length, sizeof header_length);
    out.write(header_text.data(), header_text.size());
    for (const auto& tensor : tensors) out.write(tensor.values, tensor.value_count * sizeof(float));
    out.commit();
}

}  // namespace persona
