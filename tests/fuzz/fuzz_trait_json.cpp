// Any bytes as a trait file: a trait that validates and writes back to JSON that reads as the
// same trait, or a persona::Error.
#include "persona/errors.h"
#include "persona/trait.h"

#include <nlohmann/json.hpp>

#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto json = nlohmann::json::parse(data, data + size, nullptr, false);
    if (json.is_discarded()) return 0;
    try {
        const persona::Trait trait = persona::trait_from_json(json, "fuzz.json");
        (void)persona::validate(trait);
        const nlohmann::json written = persona::to_json(trait);
        if (persona::to_json(persona::trait_from_json(written, "written")) != written) std::abort();
    } catch (const persona::Error&) {
    }
    return 0;
}
