#pragma once
// PyTorch's .pt archives (torch.save) holding one float tensor: the persona_vectors
// repository's vector files. Read without executing their pickle (formats/torch_pickle.h).
#include <cstdint>
#include <string>
#include <vector>

namespace persona {

struct TorchFloatTensor {
    std::vector<std::int64_t> shape;
    std::vector<float> values;  // row-major; BFloat16, Half and Double storages converted
    std::string storage_type;   // as the file stores it: "FloatStorage", "BFloat16Storage", ...
};

// Throws FileError naming the file for a file that is not a PyTorch zip archive, a pickle
// holding anything but one tensor of a float storage type (formats/torch_pickle.h), a storage
// record missing or of the wrong size, or a view that reaches outside its storage.
TorchFloatTensor read_torch_tensor(const std::string& path);

// Writes the archive torch.save writes for a contiguous float32 tensor, atomically, so that
// torch.load(path, weights_only=True) returns the same values bit for bit.
void write_torch_tensor(const std::string& path, const std::vector<std::int64_t>& shape, const float* values);

}  // namespace persona
