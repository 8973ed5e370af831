// Any bytes given as a GGUF model or control vector: a parsed file whose every tensor lies
// inside it, or a persona::Error.
#include "formats/gguf.h"
#include "memory_file.h"
#include "persona/errors.h"

#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const MemoryFile file(data, size);
    try {
        const auto gguf = persona::GgufFile::open(file.path());
        for (const auto& key : gguf->metadata_keys_in_file_order())
            if (!gguf->find(key)) std::abort();
        for (const auto& tensor : gguf->tensors())
            if (tensor.offset > gguf->file_size() || tensor.byte_size > gguf->file_size() - tensor.offset) std::abort();
    } catch (const persona::Error&) {
    }
    return 0;
}
