// Any bytes as one line of chat JSONL (the datasets flag and monitor read): messages, or a
// persona::Error naming the line.
#include "persona/chat_jsonl.h"
#include "persona/errors.h"

#include <cstdlib>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    try {
        const auto messages = persona::parse_chat_messages(text, "fuzz.jsonl", 7);
        try {
            const auto sample = persona::parse_chat_line(text, "fuzz.jsonl", 7);
            // A dataset line is a conversation whose last turn, the answer, was taken off.
            if (sample.prompt.size() + 1 != messages.size() || sample.answer != messages.back().content) std::abort();
        } catch (const persona::Error&) {
        }
    } catch (const persona::Error&) {
    }
    return 0;
}
