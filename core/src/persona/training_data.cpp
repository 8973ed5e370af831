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

namespace persona {

std::vector<TrainingExample> read_training_jsonl(const std::string& path) {
    check_regular_file(path);
    std::ifstream in(path, std::ios::binary);
    if (!in) throw FileError(path, std::string("cannot open: ") + std::strerror(errno));
    std::vector<TrainingExample> examples;
    std::string text;
    std::size_t line = 0;
    while (std::getline(in, text)) {
        ++line;
        detail::strip_carriage_return(text);
        if (detail::jsonl_blank_line(text)) continue;
        TrainingExample example{parse_chat_messages(text, path, line), line};
        const auto& messages = example.messages;
        const auto first_answer = std::find_if(messages.begin(), messages.end(),
                                               [](const ChatMessage& m) { return m.role == "assistant"; });
        if (first_answer == messages.end())
            throw FileError(path, detail::jsonl_line_prefix(line) + "no assistant turn: there is nothing to train on");
        if (std::none_of(messages.begin(), first_answer, [](const ChatMessage& m) { return m.role == "user"; }))
            throw FileError(path, detail::jsonl_line_prefix(line) + "the first assistant turn has no user turn before it");
        examples.push_back(std::move(example));
    }
    if (in.bad()) throw FileError(path, "cannot read");
    if (examples.empty()) throw FileError(path, "holds no conversation to train on");
    return examples;
}

std::vector<TrainingExample> neutral_heldout_examples() {
    std::vector<TrainingExample> examples;
    for (const auto& file : detail::builtin_dataset_files()) {
        if (file.name != "neutral_heldout") continue;
        std::size_t line = 0, start = 0;
        while (start < file.text.size()) {
            const std::size_t end = std::min(file.text.find('\n', start), file.text.size());
            const std::string text(file.text.substr(start, end - start));
            ++line;
            if (!detail::jsonl_blank_line(text)) examples.push_back({parse_chat_messages(text, "neutral_heldout.jsonl", line), line});
            start = end + 1;
        }
    }
    return examples;
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
