// core embeds resources/traits at build time (core/cmake/EmbedTextFiles.cmake); the trait and
// project readers under test never look at them, so their targets link this empty list instead.
#include "persona/builtin_traits.h"

const std::vector<persona::detail::EmbeddedTextFile>& persona::detail::builtin_trait_files() {
    static const std::vector<EmbeddedTextFile> none;
    return none;
}
