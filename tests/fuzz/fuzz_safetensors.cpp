// Any bytes given as a safetensors file (vector files, Hugging Face checkpoints): parsed tensors
// that read back as floats, or a persona::Error.
#include "formats/safetensors.h"
#include "memory_file.h"
#include "persona/errors.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const MemoryFile file(data, size);
    try {
        const auto safetensors = persona::SafetensorsFile::open(file.path());
        for (const auto& tensor : safetensors->tensors()) {
            try {
                (void)safetensors->read_floats(tensor);
            } catch (const persona::Error&) {  // a dtype we do not widen: the next tensor
            }
        }
    } catch (const persona::Error&) {
    }
    return 0;
}
