#include "formats/torch_file.h"

#include "formats/dequantize.h"
#include "formats/torch_pickle.h"
#include "io/atomic_file.h"
#include "io/mapped_file.h"
#include "io/shape_text.h"
#include "persona/errors.h"

#include <caffe2/serialize/inline_container.h>
#include <caffe2/serialize/read_adapter_interface.h>

#include <cstring>
#include <algorithm>
#include <limits>
#include <memory>
#include <optional>

namespace persona {
namespace {

class MappedReadAdapter final : public caffe2::serialize::ReadAdapterInterface {
public:
    explicit MappedReadAdapter(const MappedFile& file) : file_(file) {}
    size_t size() const override { return file_.size(); }
    size_t read(uint64_t pos, void* buf, size_t n, const char* /*what*/) const override {
        if (pos >= file_.size()) return 0;
        const size_t count = std::min<uint64_t>(n, file_.size() - pos);
        std::memcpy(buf, file_.data() + pos, count);
        return count;
    }

private:
    const MappedFile& file_;
};

// The flat storage index of a view's last element, or nullopt when it overflows.
std::optional<std::int64_t> last_index(const TorchTensorPickle& t) {
    std::int64_t index = t.storage_offset;
    for (std::size_t d = 0; d < t.shape.size(); ++d) {
        if (t.shape[d] == 0) return t.storage_offset;
        const std::int64_t steps = t.shape[d] - 1;
        if (t.stride[d] != 0 && steps > (std::numeric_limits<std::int64_t>::max() - index) / t.stride[d]) return std::nullopt;
        index += steps * t.stride[d];
    }
    return index;
}

float element(const std::uint8_t* storage, const std::string& type, std::int64_t index) {
    const std::size_t size = torch_storage_element_size(type);
    const std::uint8_t* at = storage + std::size_t(index) * size;
    if (size == 4) {
        float value;
        std::memcpy(&value, at, sizeof value);
        return value;
    }
    if (size == 8) {
        double value;
        std::memcpy(&value, at, sizeof value);
        return float(value);
    }
    std::uint16_t bits;
    std::memcpy(&bits, at, sizeof bits);
    return type == "HalfStorage" ? half_to_float(bits) : bfloat16_to_float(bits);
}

TorchFloatTensor read_archive(const std::string& path, const MappedFile& file) {
    caffe2::serialize::PyTorchStreamReader reader(std::make_shared<MappedReadAdapter>(file));
    if (reader.hasRecord("byteorder")) {
        const auto [bytes, size] = reader.getRecord("byteorder");
        if (std::string(static_cast<const char*>(bytes.get()), size) != "little")
            throw FileError(path, "stores its tensor big-endian");
    }
    if (!reader.hasRecord("data.pkl")) throw FileError(path, "is a zip archive without data.pkl: not a torch.save file");
    const auto [pickle_bytes, pickle_size] = reader.getRecord("data.pkl");
    TorchTensorPickle t;
    try {
        t = read_tensor_pickle(static_cast<const std::uint8_t*>(pickle_bytes.get()), pickle_size);
    } catch (const Error& e) {
        throw FileError(path, std::string("data.pkl: ") + e.what());
    }

    const std::string record = "data/" + t.storage_key;
    if (t.storage_key.empty() || t.storage_key.find('/') != std::string::npos || !reader.hasRecord(record))
        throw FileError(path, "has no storage record '" + record + "'");
    const std::size_t element_size = torch_storage_element_size(t.storage_type);
    const auto [storage, storage_bytes] = reader.getRecord(record);
    if (t.storage_numel > std::int64_t(std::numeric_limits<std::int64_t>::max() / std::int64_t(element_size)) ||
        std::uint64_t(t.storage_numel) * element_size != storage_bytes)
        throw FileError(path, record + " holds " + std::to_string(storage_bytes) + " bytes; its " + t.storage_type +
                                  " of " + std::to_string(t.storage_numel) + " elements needs " +
                                  std::to_string(std::uint64_t(t.storage_numel) * element_size));
    std::uint64_t count = 1;
    for (std::int64_t extent : t.shape) {
        if (extent != 0 && count > std::uint64_t(t.storage_numel) / std::uint64_t(extent))
            throw FileError(path, "tensor of shape " + shape_text(t.shape) + " is larger than its storage");
        count *= std::uint64_t(extent);
    }
    const auto last = last_index(t);
    if (count > 0 && (!last || *last >= t.storage_numel))
        throw FileError(path, "tensor of shape " + shape_text(t.shape) + " reaches outside its storage of " +
                                  std::to_string(t.storage_numel) + " elements");

    TorchFloatTensor tensor;
    tensor.shape = t.shape;
    tensor.storage_type = t.storage_type;
    tensor.values.resize(std::size_t(count));
    const auto* data = static_cast<const std::uint8_t*>(storage.get());
    // Row-major walk over the view, whatever its strides.
    std::vector<std::int64_t> position(t.shape.size(), 0);
    for (std::uint64_t i = 0; i < count; ++i) {
        std::int64_t index = t.storage_offset;
        for (std::size_t d = 0; d < position.size(); ++d) index += position[d] * t.stride[d];
        tensor.values[std::size_t(i)] = element(data, t.storage_type, index);
        for (std::size_t d = position.size(); d-- > 0;) {
            if (++position[d] < t.shape[d]) break;
            position[d] = 0;
        }
    }
    return tensor;
}

}  // namespace

TorchFloatTensor read_torch_tensor(const std::string& path) {
    const MappedFile file(path);
    // torch.save before PyTorch 1.6, or with _use_new_zipfile_serialization=False, writes bare
    // pickles (protocol 2: 0x80 0x02) instead of a zip archive.
    if (file.size() >= 2 && file.data()[0] == 0x80 && file.data()[1] <= 5)
        throw FileError(path, "is in PyTorch's legacy format (torch.save before 1.6, or "
                              "_use_new_zipfile_serialization=False), which is not read; load it in Python and "
                              "torch.save it again");
    try {
        return read_archive(path, file);
    } catch (const FileError&) {
        throw;
    } catch (const std::exception& e) {
        // libtorch's archive reader: a damaged or foreign zip. Its messages end in a C++ backtrace.
        std::string problem = e.what();
        problem = problem.substr(0, problem.find('\n'));
        throw FileError(path, "is not a readable PyTorch archive (" + problem + ")");
    }
}

void write_torch_tensor(const std::string& path, const std::vector<std::int64_t>& shape, const float* values) {
    std::uint64_t count = 1;
    for (std::int64_t extent : shape) count *= std::uint64_t(extent);
    std::string archive;
    try {
        caffe2::serialize::PyTorchStreamWriter writer([&archive](const void* bytes, size_t size) {
            archive.append(static_cast<const char*>(bytes), size);
            return size;
        });
        const std::string pickle = write_tensor_pickle("FloatStorage", "0", shape);
        writer.writeRecord("data.pkl", pickle.data(), pickle.size());
        writer.writeRecord("byteorder", "little", 6);
        writer.writeRecord("data/0", values, count * sizeof(float));
        writer.writeEndOfFile();
    } catch (const std::exception& e) {
        std::string problem = e.what();
        throw FileError(path, "cannot write: " + problem.substr(0, problem.find('\n')));
    }
    detail::write_file_atomically(path, archive);
}

}  // namespace persona
