#pragma once
// Chat JSONL, one chat per line: {"messages":[{"role":"system"|"user"|"assistant","content":"..."},
// ...]} (other keys are ignored). What flagging and monitoring read; kept apart from their model
// work so that a line's parsing can be tested and fuzzed on its own.
#include "persona/generation.h"

#include <cstddef>
#include <string>
#include <vector>

namespace persona {

// One line of a dataset to flag: the prompt and the dataset's answer.
struct ChatSample {
    std::size_t line = 0;  // 1-based
    std::vector<ChatMessage> prompt;
    std::string answer;
};

// Parses one line into its messages (also what persona-cli monitor --input reads).
// Throws FileError naming `path` and the line for text that is not JSON, no "messages" array, a
// message without string role and content, or an unknown role.
std::vector<ChatMessage> parse_chat_messages(const std::string& text, const std::string& path, std::size_t line);

// Parses one line of a dataset to flag. Throws FileError naming `path` and the line for text
// that is not JSON, no "messages" array, a message without string role and content, an unknown
// role, no assistant turn, a last message that is not the assistant's, or no user turn before it.
ChatSample parse_chat_line(const std::string& text, const std::string& path, std::size_t line);

}  // namespace persona
