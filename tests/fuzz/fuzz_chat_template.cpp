// Any template text and conversation through chat-format recognition and rendering. The input
// is NUL-separated fields: template, architecture, BOS text, EOS text, then role and content
// pairs. Each input must render (thinking off and on, with and without the generation prompt)
// or give a persona::Error.
#include "persona/errors.h"
#include "tokenizer/chat_template.h"

#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::vector<std::string> fields(1);
    for (std::size_t i = 0; i < size; ++i) {
        if (data[i] == 0) fields.emplace_back();
        else fields.back() += static_cast<char>(data[i]);
    }
    fields.resize(std::max<std::size_t>(fields.size(), 4));
    std::vector<persona::ChatMessage> messages;
    for (std::size_t i = 4; i + 1 < fields.size(); i += 2) messages.push_back({fields[i], fields[i + 1]});
    try {
        persona::ChatTemplate chat = persona::ChatTemplate::detect(fields[0], fields[1], fields[2], fields[3], "fuzz");
        for (const bool thinking : {false, true}) {
            chat.set_thinking(thinking);
            for (const bool generation_prompt : {false, true}) (void)chat.render(messages, generation_prompt);
        }
    } catch (const persona::Error&) {
    }
    return 0;
}
