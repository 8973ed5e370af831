#include "tokenizer/chat_template.h"

#include "persona/errors.h"
#include "formats/gguf.h"
#include "persona/tokenizer.h"

#include <optional>

namespace persona {

namespace {

constexpr std::string_view kImStart = "<|im_start|>";
constexpr std::string_view kImEnd = "<|im_end|>";
// Llama 3.1 and 3.2 open every prompt with a system turn holding these. 3.2's template dates it
// today when the renderer offers strftime_now (transformers does); a fixed date keeps prompts,
// and so vectors and monitoring scores, the same from one day to the next, and is what the
// template itself writes without one.
constexpr const char* kLlama3KnowledgeDates = "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n";

// Code point at `position` and its length, or nullopt for bytes that are not UTF-8.
std::optional<std::pair<std::uint32_t, std::size_t>> code_point_at(std::string_view text, std::size_t position) {
    const auto lead = static_cast<unsigned char>(text[position]);
    if (lead < 0x80) return std::make_pair(std::uint32_t{lead}, std::size_t{1});
    std::size_t length = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 0;
    if (length == 0 || position + length > text.size()) return std::nullopt;
    std::uint32_t value = lead & (0x7F >> length);
    for (std::size_t i = 1; i < length; ++i) {
        const auto byte = static_cast<unsigned char>(text[position + i]);
        if ((byte & 0xC0) != 0x80) return std::nullopt;
        value = (value << 6) | (byte & 0x3F);
    }
    return std::make_pair(value, length);
}

// What Python's str.isspace() accepts, since the templates trim with Python's strip().
bool is_python_whitespace(std::uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

std::string trim(std::string_view text) {
    std::size_t begin = 0;
    while (begin < text.size()) {
        const auto point = code_point_at(text, begin);
        if (!point || !is_python_whitespace(point->first)) break;
        begin += point->second;
    }
    std::size_t end = text.size();
    while (end > begin) {
        // Step back to the start of the last character.
        std::size_t start = end - 1;
        while (start > begin && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
        const auto point = code_point_at(text, start);
        if (!point || start + point->second != end || !is_python_whitespace(point->first)) break;
        end = start;
    }
    return std::string(text.substr(begin, end - begin));
}

// Finds the system turn a ChatML template writes as a literal of its own, i.e. the text of
// '<|im_start|>system\n....<|im_end|>' inside a Jinja string with no expression spliced in.
std::string literal_default_system_prompt(const std::string& template_text) {
    const std::string opening = std::string(kImStart) + "system";
    for (std::size_t found = template_text.find(opening); found != std::string::npos;
         found = template_text.find(opening, found + 1)) {
        std::size_t position = found + opening.size();
        // The newline is either in the template text itself or written as \n in the literal.
        if (template_text.compare(position, 1, "\n") == 0) position += 1;
        else if (template_text.compare(position, 2, "\\n") == 0) position += 2;
        else continue;
        std::string prompt;
        bool complete = false;
        while (position < template_text.size()) {
            if (template_text.compare(position, kImEnd.size(), kImEnd) == 0) {
                complete = true;
                break;
            }
            const char c = template_text[position];
            if (c == '\'' || c == '"' || c == '{' || c == '}') break;  // the literal ends or an expression starts
            if (c == '\\' && position + 1 < template_text.size()) {
                const char escaped = template_text[position + 1];
                prompt += escaped == 'n' ? '\n' : escaped == 't' ? '\t' : escaped;
                position += 2;
                continue;
            }
            prompt += c;
            ++position;
        }
        if (complete && !prompt.empty()) return prompt;
    }
    return {};
}

// Llama 2 and Gemma templates refuse conversations whose turns do not go user, assistant, ...
void require_alternating_turns(const std::vector<ChatMessage>& messages, std::size_t first, const char* family) {
    for (std::size_t i = first; i < messages.size(); ++i) {
        const bool should_be_user = (i - first) % 2 == 0;
        if ((messages[i].role == "user") != should_be_user)
            throw Error(std::string(family) + " chat: conversation roles must alternate user/assistant/user/... "
                        "(message " + std::to_string(i) + " is '" + messages[i].role + "')");
    }
}

std::string strip_newlines(std::string_view text, bool left, bool right) {
    std::size_t begin = 0, end = text.size();
    while (left && begin < end && text[begin] == '\n') ++begin;
    while (right && end > begin && text[end - 1] == '\n') --end;
    return std::string(text.substr(begin, end - begin));
}

// Qwen3's template, minus tools: answers after the last user turn carry their reasoning in a
// <think> block (an empty one for the final answer), earlier answers lose theirs.
std::string render_qwen3(const std::vector<ChatMessage>& messages, bool add_generation_prompt, bool thinking) {
    std::size_t last_query = messages.empty() ? 0 : messages.size() - 1;
    for (std::size_t i = messages.size(); i-- > 0;)
        if (messages[i].role == "user") {
            last_query = i;
            break;
        }
    std::string prompt;
    for (std::size_t i = 0; i < messages.size(); ++i) {
        const ChatMessage& message = messages[i];
        if (message.role == "user" || message.role == "system") {
            prompt += std::string(kImStart) + message.role + "\n" + message.content + std::string(kImEnd) + "\n";
        } else if (message.role == "assistant") {
            std::string content = message.content, reasoning;
            if (const std::size_t close = content.rfind("</think>"); close != std::string::npos) {
                std::string before = strip_newlines(content.substr(0, content.find("</think>")), false, true);
                if (const std::size_t open = before.rfind("<think>"); open != std::string::npos)
                    before = before.substr(open + 7);
                reasoning = strip_newlines(before, true, false);
                content = strip_newlines(std::string_view(content).substr(close + 8), true, false);
            }
            prompt += std::string(kImStart) + "assistant\n";
            if (i > last_query && (i + 1 == messages.size() || !reasoning.empty()))
                prompt += "<think>\n" + strip_newlines(reasoning, true, true) + "\n</think>\n\n" +
                          strip_newlines(content, true, false);
            else
                prompt += content;
            prompt += std::string(kImEnd) + "\n";
        } else {
            throw Error("Qwen3 chat: role '" + message.role + "' is not supported (system, user, assistant)");
        }
    }
    if (add_generation_prompt) {
        prompt += std::string(kImStart) + "assistant\n";
        if (!thinking) prompt += "<think>\n\n</think>\n\n";
    }
    return prompt;
}

}  // namespace

const char* chat_family_name(ChatFamily family) {
    switch (family) {
        case ChatFamily::ChatML: return "ChatML";
        case ChatFamily::Qwen3: return "Qwen3 (ChatML with thinking)";
        case ChatFamily::Llama3: return "Llama 3";
        case ChatFamily::Llama2: return "Llama 2";
        case ChatFamily::Gemma: return "Gemma";
        case ChatFamily::Phi3: return "Phi-3";
    }
    return "unknown";
}

ChatTemplate ChatTemplate::detect(const std::string& template_text, const std::string& architecture,
                                  const std::string& bos_text, const std::string& eos_text, const std::string& source) {
    ChatTemplate chat;
    if (template_text.find(kImStart) != std::string::npos && template_text.find("enable_thinking") != std::string::npos) {
        chat.family_ = ChatFamily::Qwen3;
    } else if (template_text.find(kImStart) != std::string::npos) {
        chat.family_ = ChatFamily::ChatML;
        chat.default_system_prompt_ = literal_default_system_prompt(template_text);
    } else if (template_text.find("<|start_header_id|>") != std::string::npos) {
        chat.family_ = ChatFamily::Llama3;
        chat.dated_system_turn_ = template_text.find("Cutting Knowledge Date") != std::string::npos;
    } else if (template_text.find("<start_of_turn>") != std::string::npos) {
        chat.family_ = ChatFamily::Gemma;
    } else if (template_text.find("<|system|>") != std::string::npos && template_text.find("<|user|>") != std::string::npos &&
               template_text.find("<|end|>") != std::string::npos) {
        // The first Phi-3-mini revisions wrote no system turn and BOS first; only the later form is rendered.
        chat.family_ = ChatFamily::Phi3;
    } else if (template_text.find("[INST]") != std::string::npos) {
        chat.family_ = ChatFamily::Llama2;
    } else if (template_text.empty() && architecture.rfind("gemma", 0) == 0) {
        chat.family_ = ChatFamily::Gemma;
    } else if (template_text.empty()) {
        throw FileError(source, "has no chat template (tokenizer.chat_template) and architecture '" + architecture +
                                    "' has no built-in one; supported: ChatML, Llama 3, Llama 2 [INST], Gemma, Phi-3");
    } else {
        throw FileError(source, "chat template is not one of the supported families (ChatML, Llama 3, "
                                "Llama 2 [INST], Gemma, Phi-3); it begins: " + template_text.substr(0, 120));
    }
    const auto or_default = [](const std::string& text, const char* fallback) {
        return text.empty() ? std::string(fallback) : text;
    };
    switch (chat.family_) {
        case ChatFamily::ChatML:
        case ChatFamily::Qwen3: break;
        case ChatFamily::Llama3: chat.bos_text_ = or_default(bos_text, "<|begin_of_text|>"); break;
        case ChatFamily::Llama2:
            chat.bos_text_ = or_default(bos_text, "<s>");
            chat.eos_text_ = or_default(eos_text, "</s>");
            break;
        case ChatFamily::Gemma: chat.bos_text_ = or_default(bos_text, "<bos>"); break;
        case ChatFamily::Phi3: chat.eos_text_ = or_default(eos_text, "<|endoftext|>"); break;
    }
    return chat;
}

ChatTemplate ChatTemplate::from_gguf(const GgufFile& file) {
    const std::string template_text = file.find_string("tokenizer.chat_template").value_or("");
    const std::string architecture = file.find_string("general.architecture").value_or("");
    std::string bos_text, eos_text;
    if (const GgufValue* tokens = file.find("tokenizer.ggml.tokens");
        tokens && tokens->is_array() && tokens->element_type() == GgufValueType::String) {
        const auto& texts = tokens->strings();
        const auto text_of = [&](const char* key) {
            const auto id = file.find_int(key);
            return id && *id >= 0 && static_cast<std::size_t>(*id) < texts.size() ? texts[static_cast<std::size_t>(*id)]
                                                                                   : std::string();
        };
        bos_text = text_of("tokenizer.ggml.bos_token_id");
        eos_text = text_of("tokenizer.ggml.eos_token_id");
    }
    return detect(template_text, architecture, bos_text, eos_text, file.path());
}

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
    std::string prompt;
    const bool starts_with_system = !messages.empty() && messages.front().role == "system";
    switch (family_) {
        case ChatFamily::ChatML: {
            if (!messages.empty() && !starts_with_system && !default_system_prompt_.empty())
                prompt += std::string(kImStart) + "system\n" + default_system_prompt_ + std::string(kImEnd) + "\n";
            for (const auto& message : messages)
                prompt += std::string(kImStart) + message.role + "\n" + message.content + std::string(kImEnd) + "\n";
            if (add_generation_prompt) prompt += std::string(kImStart) + "assistant\n";
            break;
        }
        case ChatFamily::Qwen3: prompt = render_qwen3(messages, add_generation_prompt, thinking_); break;
        case ChatFamily::Llama3: {
            std::size_t first = 0;
            if (dated_system_turn_) {
                prompt += bos_text_ + "<|start_header_id|>system<|end_header_id|>\n\n" + kLlama3KnowledgeDates;
                if (starts_with_system) prompt += trim(messages[first++].content);
                prompt += "<|eot_id|>";
            }
            for (std::size_t i = first; i < messages.size(); ++i) {
                if (i == 0 && !dated_system_turn_) prompt += bos_text_;
                prompt += "<|start_header_id|>" + messages[i].role + "<|end_header_id|>\n\n" +
                          trim(messages[i].content) + "<|eot_id|>";
            }
            if (add_generation_prompt) prompt += "<|start_header_id|>assistant<|end_header_id|>\n\n";
            break;
        }
        case ChatFamily::Llama2: {
            const std::size_t first = starts_with_system ? 1 : 0;
            require_alternating_turns(messages, first, "Llama 2");
            for (std::size_t i = first; i < messages.size(); ++i) {
                std::string content = messages[i].content;
                if (i == first && starts_with_system)
                    content = "<<SYS>>\n" + messages.front().content + "\n<</SYS>>\n\n" + content;
                if (messages[i].role == "user")
                    prompt += bos_text_ + "[INST] " + trim(content) + " [/INST]";
                else if (messages[i].role == "assistant")  // appended: " " + ... trips GCC 12's -Wrestrict in C++20
                    prompt.append(" ").append(trim(content)).append(" ").append(eos_text_);
            }
            break;
        }
        case ChatFamily::Gemma: {
            // Gemma has no system role: the system text opens the first user turn.
            const std::size_t first = starts_with_system ? 1 : 0;
            require_alternating_turns(messages, first, "Gemma");
            prompt += bos_text_;
            for (std::size_t i = first; i < messages.size(); ++i) {
                const std::string& role = messages[i].role == "assistant" ? std::string("model") : messages[i].role;
                prompt += "<start_of_turn>" + role + "\n";
                if (i == first && starts_with_system) prompt += messages.front().content + "\n\n";
                prompt += trim(messages[i].content) + "<end_of_turn>\n";
            }
            if (add_generation_prompt) prompt += "<start_of_turn>model\n";
            break;
        }
        case ChatFamily::Phi3: {
            for (const auto& message : messages) {
                if (message.role == "system" && message.content.empty()) continue;
                if (message.role == "system" || message.role == "user" || message.role == "assistant")
                    prompt += "<|" + message.role + "|>\n" + message.content + "<|end|>\n";
            }
            // Without a generation prompt the template closes the conversation with EOS.
            prompt += add_generation_prompt ? std::string("<|assistant|>\n") : eos_text_;
            break;
        }
    }
    return prompt;
}

std::vector<std::int32_t> ChatTemplate::encode(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                                               bool add_generation_prompt) const {
    return tokenizer.encode(render(messages, add_generation_prompt), /*add_special=*/false, /*parse_special=*/true);
}

}  // namespace persona
