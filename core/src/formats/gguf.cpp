#include "formats/gguf.h"

#include "persona/errors.h"
#include "formats/ggml_types.h"

#include <cstring>
#include <limits>
#include <sstream>

namespace persona {

namespace {

constexpr std::uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as little-endian uint32
constexpr std::uint64_t kMaxDims = 4;               // GGML_MAX_DIMS
constexpr std::uint64_t kMaxNestingDepth = 8;
// Gemma 3's 262,144-token vocabulary with scores and types takes about 20 MiB.
constexpr std::uint64_t kMaxMetadataMemory = std::uint64_t{1} << 30;

// Reads little-endian values from the mapped file and refuses to step past its end.
class Cursor {
public:
    Cursor(const std::string& path, const std::uint8_t* data, std::size_t size)
        : path_(path), data_(data), size_(size) {}

    std::size_t position() const { return pos_; }
    std::size_t remaining() const { return size_ - pos_; }

    [[noreturn]] void fail(const std::string& problem) const {
        std::ostringstream message;
        message << problem << " (at byte " << pos_ << " of " << size_ << ")";
        throw FileError(path_, message.str());
    }

    void need(std::uint64_t bytes, const char* what) const {
        if (bytes > remaining()) {
            std::ostringstream message;
            message << "truncated: " << what << " needs " << bytes << " bytes but only "
                    << remaining() << " remain";
            fail(message.str());
        }
    }

    template <typename T>
    T read(const char* what) {
        need(sizeof(T), what);
        T value;
        std::memcpy(&value, data_ + pos_, sizeof(T));
        pos_ += sizeof(T);
        return value;
    }

    std::string read_string(const char* what) {
        const auto length = read<std::uint64_t>(what);
        need(length, what);
        std::string text(reinterpret_cast<const char*>(data_ + pos_), static_cast<std::size_t>(length));
        pos_ += static_cast<std::size_t>(length);
        return text;
    }

    // Metadata takes more memory than file bytes (an integer array 8 bytes per element, a string
    // its object besides its text), so a bound on counts by file size is not a bound on memory:
    // every array element is charged here before it is stored.
    void charge_memory(std::uint64_t bytes, const char* what) {
        if (bytes > kMaxMetadataMemory - metadata_memory_)
            fail(std::string(what) + " would take the metadata past " + std::to_string(kMaxMetadataMemory >> 20) +
                 " MiB of memory; no model's metadata is that large");
        metadata_memory_ += bytes;
    }

private:
    std::uint64_t metadata_memory_ = 0;
    const std::string& path_;
    const std::uint8_t* data_;
    std::size_t size_;
    std::size_t pos_ = 0;
};

std::size_t fixed_size(GgufValueType type) {
    switch (type) {
        case GgufValueType::UInt8: case GgufValueType::Int8: case GgufValueType::Bool: return 1;
        case GgufValueType::UInt16: case GgufValueType::Int16: return 2;
        case GgufValueType::UInt32: case GgufValueType::Int32: case GgufValueType::Float32: return 4;
        case GgufValueType::UInt64: case GgufValueType::Int64: case GgufValueType::Float64: return 8;
        case GgufValueType::String: return 8;  // at least its length field
        case GgufValueType::Array: return 12;  // at least element type + count
    }
    return 0;
}

bool valid_value_type(std::uint32_t raw) { return raw <= static_cast<std::uint32_t>(GgufValueType::Float64); }

bool is_integer_type(GgufValueType t) {
    switch (t) {
        case GgufValueType::UInt8: case GgufValueType::Int8: case GgufValueType::UInt16:
        case GgufValueType::Int16: case GgufValueType::UInt32: case GgufValueType::Int32:
        case GgufValueType::UInt64: case GgufValueType::Int64: return true;
        default: return false;
    }
}

std::int64_t read_integer(Cursor& in, GgufValueType type, const char* what) {
    switch (type) {
        case GgufValueType::UInt8: return in.read<std::uint8_t>(what);
        case GgufValueType::Int8: return in.read<std::int8_t>(what);
        case GgufValueType::UInt16: return in.read<std::uint16_t>(what);
        case GgufValueType::Int16: return in.read<std::int16_t>(what);
        case GgufValueType::UInt32: return in.read<std::uint32_t>(what);
        case GgufValueType::Int32: return in.read<std::int32_t>(what);
        case GgufValueType::Int64: return in.read<std::int64_t>(what);
        case GgufValueType::UInt64: {
            const auto v = in.read<std::uint64_t>(what);
            return static_cast<std::int64_t>(v);  // bit pattern kept; as_int() range-checks scalars
        }
        default: in.fail("internal: not an integer type");
    }
}

double read_float(Cursor& in, GgufValueType type, const char* what) {
    if (type == GgufValueType::Float32) return in.read<float>(what);
    return in.read<double>(what);
}

GgufValue read_value(Cursor& in, GgufValueType type, std::uint64_t depth);

GgufValue read_array(Cursor& in, std::uint64_t depth) {
    if (depth > kMaxNestingDepth) in.fail("arrays nested too deeply");
    const auto raw_element = in.read<std::uint32_t>("array element type");
    if (!valid_value_type(raw_element)) in.fail("unknown array element type " + std::to_string(raw_element));
    const auto element = static_cast<GgufValueType>(raw_element);
    const auto count = in.read<std::uint64_t>("array length");
    // Each element takes at least fixed_size bytes, so a count that cannot fit is rejected
    // before anything is allocated.
    if (count > in.remaining() / fixed_size(element))
        in.fail("array of " + std::to_string(count) + " " + gguf_value_type_name(element) +
                " elements does not fit in the file");
    const auto n = static_cast<std::size_t>(count);
    const std::uint64_t element_memory = element == GgufValueType::Bool     ? 1
                                         : element == GgufValueType::String ? sizeof(std::string)
                                         : element == GgufValueType::Array  ? sizeof(GgufValue)
                                                                            : 8;
    in.charge_memory(count * element_memory, "an array of that many elements");
    if (is_integer_type(element)) {
        std::vector<std::int64_t> values(n);
        for (auto& v : values) v = read_integer(in, element, "array element");
        return GgufValue(GgufValueType::Array, std::move(values), element);
    }
    switch (element) {
        case GgufValueType::Float32: case GgufValueType::Float64: {
            std::vector<double> values(n);
            for (auto& v : values) v = read_float(in, element, "array element");
            return GgufValue(GgufValueType::Array, std::move(values), element);
        }
        case GgufValueType::Bool: {
            std::vector<bool> values(n);
            for (std::size_t i = 0; i < n; ++i) values[i] = in.read<std::uint8_t>("array element") != 0;
            return GgufValue(GgufValueType::Array, std::move(values), element);
        }
        case GgufValueType::String: {
            std::vector<std::string> values(n);
            for (auto& v : values) {
                v = in.read_string("array string");
                in.charge_memory(v.size(), "the array's strings");
            }
            return GgufValue(GgufValueType::Array, std::move(values), element);
        }
        case GgufValueType::Array: {
            GgufValue::Array values;
            values.reserve(n);
            for (std::size_t i = 0; i < n; ++i) values.push_back(read_array(in, depth + 1));
            return GgufValue(GgufValueType::Array, std::move(values), element);
        }
        default: in.fail("internal: unhandled array element type");
    }
}

GgufValue read_value(Cursor& in, GgufValueType type, std::uint64_t depth) {
    if (is_integer_type(type)) {
        if (type == GgufValueType::UInt64) return GgufValue(type, in.read<std::uint64_t>("value"));
        return GgufValue(type, read_integer(in, type, "value"));
    }
    switch (type) {
        case GgufValueType::Float32: case GgufValueType::Float64:
            return GgufValue(type, read_float(in, type, "value"));
        case GgufValueType::Bool: {
            const auto byte = in.read<std::uint8_t>("bool value");
            if (byte > 1) in.fail("bool value is " + std::to_string(byte) + ", not 0 or 1");
            return GgufValue(type, byte != 0);
        }
        case GgufValueType::String: return GgufValue(type, in.read_string("string value"));
        case GgufValueType::Array: return read_array(in, depth);
        default: in.fail("internal: unhandled value type");
    }
}

[[noreturn]] void wrong_type(const char* wanted, GgufValueType actual) {
    throw Error(std::string("metadata value is ") + gguf_value_type_name(actual) + ", not " + wanted);
}

}  // namespace

const char* gguf_value_type_name(GgufValueType type) {
    switch (type) {
        case GgufValueType::UInt8: return "uint8";
        case GgufValueType::Int8: return "int8";
        case GgufValueType::UInt16: return "uint16";
        case GgufValueType::Int16: return "int16";
        case GgufValueType::UInt32: return "uint32";
        case GgufValueType::Int32: return "int32";
        case GgufValueType::Float32: return "float32";
        case GgufValueType::Bool: return "bool";
        case GgufValueType::String: return "string";
        case GgufValueType::Array: return "array";
        case GgufValueType::UInt64: return "uint64";
        case GgufValueType::Int64: return "int64";
        case GgufValueType::Float64: return "float64";
    }
    return "unknown";
}

bool GgufValue::is_integer() const { return is_integer_type(type_); }

std::int64_t GgufValue::as_int() const {
    if (type_ == GgufValueType::UInt64) {
        const auto v = std::get<std::uint64_t>(value_);
        if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
            throw Error("metadata value " + std::to_string(v) + " is out of range");
        return static_cast<std::int64_t>(v);
    }
    if (!is_integer()) wrong_type("an integer", type_);
    return std::get<std::int64_t>(value_);
}

double GgufValue::as_float() const {
    if (is_float()) return std::get<double>(value_);
    if (is_integer()) return static_cast<double>(as_int());
    wrong_type("a number", type_);
}

bool GgufValue::as_bool() const {
    if (type_ != GgufValueType::Bool) wrong_type("a bool", type_);
    return std::get<bool>(value_);
}

const std::string& GgufValue::as_string() const {
    if (type_ != GgufValueType::String) wrong_type("a string", type_);
    return std::get<std::string>(value_);
}

std::size_t GgufValue::array_size() const {
    if (!is_array()) wrong_type("an array", type_);
    return std::visit(
        [](const auto& v) -> std::size_t {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, std::vector<std::int64_t>> || std::is_same_v<T, std::vector<double>> ||
                          std::is_same_v<T, std::vector<bool>> || std::is_same_v<T, std::vector<std::string>> ||
                          std::is_same_v<T, Array>)
                return v.size();
            else
                return 0;
        },
        value_);
}

const std::vector<std::string>& GgufValue::strings() const {
    if (!is_array() || element_type_ != GgufValueType::String) wrong_type("an array of strings", type_);
    return std::get<std::vector<std::string>>(value_);
}
const std::vector<std::int64_t>& GgufValue::ints() const {
    if (!is_array() || !is_integer_type(element_type_)) wrong_type("an array of integers", type_);
    return std::get<std::vector<std::int64_t>>(value_);
}
const std::vector<double>& GgufValue::floats() const {
    if (!is_array() || (element_type_ != GgufValueType::Float32 && element_type_ != GgufValueType::Float64))
        wrong_type("an array of floats", type_);
    return std::get<std::vector<double>>(value_);
}
const std::vector<bool>& GgufValue::bools() const {
    if (!is_array() || element_type_ != GgufValueType::Bool) wrong_type("an array of bools", type_);
    return std::get<std::vector<bool>>(value_);
}
const GgufValue::Array& GgufValue::arrays() const {
    if (!is_array() || element_type_ != GgufValueType::Array) wrong_type("an array of arrays", type_);
    return std::get<Array>(value_);
}

std::string GgufValue::summary(std::size_t max_chars) const {
    std::ostringstream out;
    if (is_array()) {
        out << "[" << array_size() << " x " << gguf_value_type_name(element_type_) << "]";
    } else if (type_ == GgufValueType::String) {
        const auto& s = as_string();
        out << (s.size() > max_chars ? s.substr(0, max_chars) + "..." : s);
    } else if (type_ == GgufValueType::Bool) {
        out << (as_bool() ? "true" : "false");
    } else if (is_float()) {
        out << as_float();
    } else if (type_ == GgufValueType::UInt64) {
        out << std::get<std::uint64_t>(value_);
    } else {
        out << as_int();
    }
    return out.str();
}

std::uint64_t GgufTensorInfo::element_count() const {
    std::uint64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
}

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
    std::unique_ptr<GgufFile> file(new GgufFile(std::make_unique<MappedFile>(path)));
    file->parse();
    return file;
}

void GgufFile::parse() {
    const std::string& file_path = map_->path();
    Cursor in(file_path, map_->data(), map_->size());
    if (map_->size() < 4) throw FileError(file_path, "too small to be a GGUF file (" + std::to_string(map_->size()) + " bytes)");
    const auto magic = in.read<std::uint32_t>("magic");
    if (magic != kGgufMagic) throw FileError(file_path, "not a GGUF file (magic bytes are not \"GGUF\")");
    version_ = in.read<std::uint32_t>("version");
    if (version_ < 2 || version_ > 3)
        throw FileError(file_path, "unsupported GGUF version " + std::to_string(version_) + " (supported: 2 and 3)");
    const auto tensor_count = in.read<std::uint64_t>("tensor count");
    const auto kv_count = in.read<std::uint64_t>("metadata count");
    // Smallest key/value: 8-byte key length + 4-byte type + 1-byte value.
    if (kv_count > in.remaining() / 13)
        in.fail("metadata count " + std::to_string(kv_count) + " does not fit in the file");

    for (std::uint64_t i = 0; i < kv_count; ++i) {
        std::string key = in.read_string("metadata key");
        if (key.empty()) in.fail("metadata key " + std::to_string(i) + " is empty");
        const auto raw_type = in.read<std::uint32_t>("metadata value type");
        if (!valid_value_type(raw_type))
            in.fail("metadata key '" + key + "' has unknown value type " + std::to_string(raw_type));
        GgufValue value = read_value(in, static_cast<GgufValueType>(raw_type), 0);
        if (metadata_.count(key)) in.fail("metadata key '" + key + "' appears twice");
        key_order_.push_back(key);
        metadata_.emplace(std::move(key), std::move(value));
    }

    if (const GgufValue* align = find("general.alignment")) {
        if (!align->is_integer()) throw FileError(file_path, "general.alignment is not an integer");
        const auto a = align->as_int();
        if (a <= 0 || a > (1 << 20) || (a & (a - 1)) != 0)
            throw FileError(file_path, "general.alignment " + std::to_string(a) + " is not a power of two");
        alignment_ = static_cast<std::size_t>(a);
    }

    // Smallest tensor info: 8 name length + 4 dims + 4 type + 8 offset.
    if (tensor_count > in.remaining() / 24)
        in.fail("tensor count " + std::to_string(tensor_count) + " does not fit in the file");
    tensors_.reserve(static_cast<std::size_t>(tensor_count));
    for (std::uint64_t i = 0; i < tensor_count; ++i) {
        GgufTensorInfo tensor;
        tensor.name = in.read_string("tensor name");
        const auto dims = in.read<std::uint32_t>("tensor dimension count");
        if (dims == 0 || dims > kMaxDims)
            in.fail("tensor '" + tensor.name + "' has " + std::to_string(dims) + " dimensions (1 to 4 allowed)");
        std::uint64_t elements = 1;
        for (std::uint32_t d = 0; d < dims; ++d) {
            const auto extent = in.read<std::uint64_t>("tensor dimension");
            if (extent == 0 || extent > (std::uint64_t{1} << 40) ||
                elements > std::numeric_limits<std::uint64_t>::max() / extent)
                in.fail("tensor '" + tensor.name + "' has an invalid dimension " + std::to_string(extent));
            elements *= extent;
            tensor.shape.push_back(extent);
        }
        tensor.type = in.read<std::uint32_t>("tensor type");
        const auto traits = ggml_type_traits(tensor.type);
        if (!traits)
            in.fail("tensor '" + tensor.name + "' has unknown quantization type " + std::to_string(tensor.type));
        if (tensor.shape[0] % traits->block_elements != 0)
            in.fail("tensor '" + tensor.name + "' row of " + std::to_string(tensor.shape[0]) +
                    " elements is not a whole number of " + traits->name + " blocks");
        const std::uint64_t blocks = elements / traits->block_elements;
        if (blocks > std::numeric_limits<std::uint64_t>::max() / traits->block_bytes)
            in.fail("tensor '" + tensor.name + "' is too large");
        tensor.byte_size = blocks * traits->block_bytes;
        tensor.offset = in.read<std::uint64_t>("tensor offset");  // relative for now
        if (tensor.offset % alignment_ != 0)
            in.fail("tensor '" + tensor.name + "' offset " + std::to_string(tensor.offset) + " is not aligned to " +
                    std::to_string(alignment_));
        if (tensor_index_.count(tensor.name)) in.fail("tensor '" + tensor.name + "' appears twice");
        tensor_index_.emplace(tensor.name, tensors_.size());
        tensors_.push_back(std::move(tensor));
    }

    data_offset_ = (in.position() + alignment_ - 1) / alignment_ * alignment_;
    const std::uint64_t file_size = map_->size();
    if (data_offset_ > file_size && !tensors_.empty())
        throw FileError(file_path, "truncated: the file ends before its tensor data begins");
    for (auto& tensor : tensors_) {
        const std::uint64_t available = file_size > data_offset_ ? file_size - data_offset_ : 0;
        if (tensor.offset > available || tensor.byte_size > available - tensor.offset) {
            std::ostringstream message;
            message << "truncated: tensor '" << tensor.name << "' (" << ggml_type_name(tensor.type) << ", "
                    << tensor.byte_size << " bytes at data offset " << tensor.offset
                    << ") runs past the end of the file (" << file_size << " bytes)";
            throw FileError(file_path, message.str());
        }
        tensor.offset += data_offset_;
    }
}

const GgufValue* GgufFile::find(const std::string& key) const {
    const auto it = metadata_.find(key);
    return it == metadata_.end() ? nullptr : &it->second;
}

std::int64_t GgufFile::get_int(const std::string& key) const {
    const auto value = find_int(key);
    if (!value) throw FileError(path(), "metadata key '" + key + "' is missing");
    return *value;
}

std::string GgufFile::get_string(const std::string& key) const {
    const auto value = find_string(key);
    if (!value) throw FileError(path(), "metadata key '" + key + "' is missing");
    return *value;
}

std::optional<std::int64_t> GgufFile::find_int(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_integer())
        throw FileError(path(), "metadata key '" + key + "' is " + gguf_value_type_name(v->type()) + ", not an integer");
    try {
        return v->as_int();
    } catch (const Error& e) {
        throw FileError(path(), "metadata key '" + key + "': " + e.what());
    }
}

std::optional<double> GgufFile::find_float(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_float() && !v->is_integer())
        throw FileError(path(), "metadata key '" + key + "' is " + gguf_value_type_name(v->type()) + ", not a number");
    return v->as_float();
}

std::optional<std::string> GgufFile::find_string(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (v->type() != GgufValueType::String)
        throw FileError(path(), "metadata key '" + key + "' is " + gguf_value_type_name(v->type()) + ", not a string");
    return v->as_string();
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
    const auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace persona
