// The pickle of a .pt file is the part of it an attacker writes freely: any bytes must give a
// parsed tensor or a persona::Error, nothing else. A tensor that parses must also survive being
// written again and parsed back unchanged.
#include "formats/torch_pickle.h"
#include "persona/errors.h"

#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    persona::TorchTensorPickle parsed;
    try {
        parsed = persona::read_tensor_pickle(data, size);
    } catch (const persona::Error&) {
        return 0;
    }
    std::uint64_t elements = 1;
    for (std::int64_t extent : parsed.shape) {
        if (extent > 1 << 20) return 0;  // only what write_tensor_pickle's numel can hold
        elements *= std::uint64_t(extent);
        if (elements > (std::uint64_t(1) << 40)) return 0;
    }
    const std::string again = persona::write_tensor_pickle(parsed.storage_type, parsed.storage_key, parsed.shape);
    const persona::TorchTensorPickle back =
        persona::read_tensor_pickle(reinterpret_cast<const std::uint8_t*>(again.data()), again.size());
    if (back.shape != parsed.shape || back.storage_type != parsed.storage_type || back.storage_key != parsed.storage_key)
        std::abort();
    return 0;
}
