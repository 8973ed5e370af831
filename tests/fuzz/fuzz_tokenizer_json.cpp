// Any bytes as a tokenizer.json, then text through the tokenizer it describes. The input is the
// file, a NUL, and the text; without a NUL a fixed text with special tokens and broken UTF-8 is
// used. Each input must give a tokenizer whose encode and decode return, or a persona::Error.
#include "formats/hf_config.h"
#include "memory_file.h"
#include "persona/errors.h"
#include "persona/tokenizer.h"

#include <cstring>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto* end = static_cast<const std::uint8_t*>(std::memchr(data, 0, size));
    const std::size_t file_size = end ? std::size_t(end - data) : size;
    const std::string text = end ? std::string(reinterpret_cast<const char*>(end + 1), size - file_size - 1)
                                 : std::string("<|im_start|>user\n héllo wörld 123 \xff\xfe<think></think>\n\n<|im_end|>");
    const MemoryFile file(data, file_size);
    try {
        persona::HfTokenizerJson parsed = persona::read_hf_tokenizer_json(file.path(), persona::HfTokenizerConfig{});
        if (!parsed.unsupported.empty()) return 0;
        const auto tokenizer = persona::Tokenizer::from_vocabulary(std::move(parsed.vocabulary), file.path());
        for (const bool parse_special : {false, true}) {
            const auto ids = tokenizer->encode(text, true, parse_special);
            for (const bool render_special : {false, true}) (void)tokenizer->decode(ids, render_special);
        }
    } catch (const persona::Error&) {
    }
    return 0;
}
