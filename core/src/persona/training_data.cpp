// Fine-tuning datasets: chat JSONL in, chat JSONL out.
#include "persona/builtin_traits.h"
#include "persona/chat_jsonl.h"
#include "persona/errors.h"
#include "persona/files.h"
#include "persona/finetune.h"

#include "io/atomic_file.h"
#include "io/json_file.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace persona {

namespace {

// The conversations of a chat JSONL stream; `source` names it in errors.
std::vector<TrainingExample> read_examples(std::istream& in, const std::string& source) {
    std::vector<TrainingExample> examples;
    const bool read = detail::for_each_jsonl_line(in, [&](const std::string& text, std::size_t line) {
        TrainingExample example{parse_chat_messages(text, source, line), line};
        const auto& messages = example.messages;
        const auto first_answer = std::find_if(messages.begin(), messages.end(),
                                               [](const ChatMessage& m) { return m.role == "assistant"; });
        if (first_answer == messages.end())
            throw FileError(source, detail::jsonl_line_prefix(line) + "no assistant turn: there is nothing to train on");
        if (std::none_of(messages.begin(), first_answer, [](const ChatMessage& m) { return m.role == "user"; }))
            throw FileError(source, detail::jsonl_line_prefix(line) + "the first assistant turn has no user turn before it");
        examples.push_back(std::move(example));
    });
    if (!read) throw FileError(source, "cannot read");
    if (examples.empty()) throw FileError(source, "holds no conversation to train on");
    return examples;
}

}  // namespace

std::vector<TrainingExample> read_training_jsonl(const std::string& path) {
    check_regular_file(path);
    std::ifstream in(path, std::ios::binary);
    if (!in) throw FileError(path, std::string("cannot open: ") + std::strerror(errno));
    return read_examples(in, path);
}

std::vector<TrainingExample> neutral_heldout_examples() {
    for (const auto& file : detail::builtin_dataset_files())
        if (file.name == "neutral_heldout") {
            std::istringstream in{std::string(file.text)};
            return read_examples(in, "neutral_heldout.jsonl");
        }
    return {};
}

void write_training_jsonl(const std::string& path, const std::vector<TrainingExample>& examples) {
    std::string text;
    for (const auto& example : examples) {
        nlohmann::json messages = nlohmann::json::array();
        for (const auto& m : example.messages) messages.push_back({{"role", m.role}, {"content", m.content}});
        text += nlohmann::json{{"messages", messages}}.dump() + "\n";
    }
    detail::write_file_atomically(path, text);
}

}  // namespace persona
