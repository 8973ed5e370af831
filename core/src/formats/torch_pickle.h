#pragma once
// The pickle inside a PyTorch .pt archive that holds one tensor (torch.save(tensor, path)), read
// without executing it, and written as torch.save writes it.
//
// The reader is a pickle machine that knows only the opcodes and globals such a pickle uses:
// torch._utils._rebuild_tensor_v2, the float storage classes (torch.FloatStorage, ...),
// collections.OrderedDict, tuples, strings, integers, booleans, None and the persistent id
// that names the storage record. Any other opcode or global (os.system, builtins.eval, ...)
// is refused before anything it names could matter; nothing is ever looked up or called.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace persona {

// What _rebuild_tensor_v2 was called with: the storage (a record "data/<storage_key>" in the
// archive, storage_numel elements of storage_type) and the view into it.
struct TorchTensorPickle {
    std::string storage_type;  // "FloatStorage", "BFloat16Storage", "HalfStorage", "DoubleStorage"
    std::string storage_key;
    std::int64_t storage_numel = 0;
    std::int64_t storage_offset = 0;
    std::vector<std::int64_t> shape;
    std::vector<std::int64_t> stride;
};

// Bytes per element of a storage type the reader accepts; 0 for any other name.
std::size_t torch_storage_element_size(const std::string& storage_type);

// Throws persona::Error saying which opcode, global or value was not what a saved tensor holds.
TorchTensorPickle read_tensor_pickle(const std::uint8_t* data, std::size_t size);

// A contiguous tensor of `shape` over storage record "data/<storage_key>", pickled with
// protocol 2 as torch.save pickles it.
std::string write_tensor_pickle(const std::string& storage_type, const std::string& storage_key,
                                const std::vector<std::int64_t>& shape);

}  // namespace persona
