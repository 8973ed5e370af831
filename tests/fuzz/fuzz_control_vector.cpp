// Any bytes given to `persona-cli import --control-vector`: the first byte is the hidden size the
// model expects, the second its block count (0: the file says), the rest is the file. Each input
// must give a vector of the model's width whose embedding row is zero and whose values are all
// finite, or a persona::Error.
#include "memory_file.h"
#include "persona/errors.h"
#include "persona/vector_files.h"

#include <cmath>
#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    const int hidden = data[0], blocks = data[1];
    const MemoryFile file(data + 2, size - 2);
    persona::PersonaVector vector;
    try {
        vector = persona::import_control_vector(file.path(), hidden, blocks);
    } catch (const persona::Error&) {
        return 0;
    }
    if (vector.hidden_size != hidden || vector.layer_count < 2 || (blocks > 0 && vector.layer_count != blocks + 1) ||
        vector.values.size() != std::size_t(vector.layer_count) * std::size_t(hidden))
        std::abort();
    for (std::size_t i = 0; i < vector.values.size(); ++i)
        if (!std::isfinite(vector.values[i]) || (i < std::size_t(hidden) && vector.values[i] != 0.0f)) std::abort();
    return 0;
}
