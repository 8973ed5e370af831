#include "persona/chat_jsonl.h"

#include "io/json_file.h"
#include "persona/errors.h"

#include <algorithm>

namespace persona {

std::vector<ChatMessage> parse_chat_messages(const std::string& text, const std::string& path, std::size_t line) {
    const std::string at = detail::jsonl_line_prefix(line);
    nlohmann::json json;
    try {
        json = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        // parse_error, and out_of_range for a number no double holds (1e400): both are a bad line.
        throw FileError(path, at + "not JSON: " + detail::json_error_text(e));
    }
    if (!json.is_object() || !json.contains("messages") || !json["messages"].is_array())
        throw FileError(path, at + "no \"messages\" array (expected {\"messages\":[{\"role\":..,\"content\":..},...]})");
    std::vector<ChatMessage> messages;
    std::size_t index = 0;
    for (const auto& message : json["messages"]) {
        ++index;
        const std::string which = at + "message " + std::to_string(index) + " ";
        if (!message.is_object() || !message.contains("role") || !message["role"].is_string())
            throw FileError(path, which + "has no \"role\" string");
        const std::string role = message["role"].get<std::string>();
        if (role != "system" && role != "user" && role != "assistant")
            throw FileError(path, which + "has the unknown role '" + role + "' (system, user or assistant)");
        if (!message.contains("content") || !message["content"].is_string())
            throw FileError(path, which + "has no \"content\" string");
        messages.push_back({role, message["content"].get<std::string>()});
    }
    return messages;
}

ChatSample parse_chat_line(const std::string& text, const std::string& path, std::size_t line) {
    const std::string at = detail::jsonl_line_prefix(line);
    std::vector<ChatMessage> messages = parse_chat_messages(text, path, line);
    if (messages.empty()) throw FileError(path, at + "the \"messages\" array is empty");
    if (std::none_of(messages.begin(), messages.end(), [](const ChatMessage& m) { return m.role == "assistant"; }))
        throw FileError(path, at + "no assistant turn: there is no answer to flag");
    if (messages.back().role != "assistant")
        throw FileError(path, at + "the last message is the " + messages.back().role +
                                  "'s; it must be the assistant's answer to flag");
    ChatSample sample;
    sample.line = line;
    sample.answer = messages.back().content;
    messages.pop_back();
    if (std::none_of(messages.begin(), messages.end(), [](const ChatMessage& m) { return m.role == "user"; }))
        throw FileError(path, at + "no user turn before the assistant's answer");
    sample.prompt = std::move(messages);
    return sample;
}

}  // namespace persona
