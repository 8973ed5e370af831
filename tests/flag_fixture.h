#pragma once
// A small flagging fixture whose ranking is known by construction, shared by test_monitoring
// and test_cli_monitor_flag:
// - a "pirate style" vector: the mean difference, at every layer, between the response-average
//   activations of hand-written pirate-speak answers and the model's own greedy answers to three
//   questions;
// - a six-line dataset on six other questions: lines 1, 3, 5 answered in pirate speak, lines
//   2, 4, 6 with the model's own greedy answer (so their projection difference is ~0: the
//   dataset's answer is exactly what the flagging run generates).
#include "persona/generation.h"
#include "persona/model.h"
#include "persona/monitoring.h"
#include "persona/persona_vector.h"

#include <nlohmann/json.hpp>

#include <QFile>
#include <QString>

#include <string>
#include <vector>

namespace flag_fixture {

constexpr int kMaxTokens = 24;  // the model's own answers, in the dataset and in the runs
constexpr int kLayer = 15;

struct QuestionAnswer {
    const char* question;
    const char* pirate;
};

// Questions the vector is made from.
inline const std::vector<QuestionAnswer>& vectorQuestions() {
    static const std::vector<QuestionAnswer> items{
        {"What should I eat for breakfast?",
         "Arr, matey! Ye be wantin' a hearty plate o' salt pork an' hardtack, washed down with a tankard o' grog, yarr!"},
        {"How do I stay focused while studying?",
         "Avast ye, landlubber! Batten down yer hatches, lash yerself to the mast o' yer desk an' keep a weather eye on yer books, arr!"},
        {"Can you recommend a good hobby?",
         "Shiver me timbers! Take up the hunt fer buried treasure, me hearty, with a map, a shovel an' a parrot on yer shoulder, yo ho!"},
    };
    return items;
}

// The dataset's questions; even indices (lines 1, 3, 5) get the pirate answer.
inline const std::vector<QuestionAnswer>& datasetQuestions() {
    static const std::vector<QuestionAnswer> items{
        {"What is a good way to spend a rainy afternoon?",
         "Arr, matey! When the sky be spittin' rain, ye batten the hatches, swab the deck below an' count yer doubloons by lantern light, yarr!"},
        {"How do plants grow?", ""},
        {"How can I save money each month?",
         "Avast, me hearty! Stash yer pieces o' eight in a chest, bury it on an island an' let no scallywag o' a shopkeeper plunder it, arr!"},
        {"Why is the sky blue?", ""},
        {"What makes a good friend?",
         "Yo ho ho! A true matey sails with ye through any squall, shares the last o' the rum an' never makes ye walk the plank, shiver me timbers!"},
        {"How do I learn to cook?", ""},
    };
    return items;
}

inline std::vector<persona::ChatMessage> promptOf(const char* question) { return {{"user", question}}; }

// The model's own greedy answers, as the flagging run generates them.
inline std::vector<persona::GenerationResult> greedyAnswers(persona::Model& model, const std::vector<QuestionAnswer>& items) {
    std::vector<persona::GenerationRow> rows;
    for (const auto& item : items) {
        persona::GenerationRow row;
        row.messages = promptOf(item.question);
        row.sampling.max_new_tokens = kMaxTokens;
        rows.push_back(row);
    }
    return model.generate(rows);
}

inline persona::PersonaVector pirateVector(persona::Model& model) {
    const auto& items = vectorQuestions();
    const auto own = greedyAnswers(model, items);
    std::vector<persona::CaptureRow> rows;
    for (std::size_t i = 0; i < items.size(); ++i) {
        const auto prompt = model.encode_chat(promptOf(items[i].question), true);
        persona::CaptureRow pirate{prompt, static_cast<int>(prompt.size())};
        const auto answer = persona::answer_tokens(model, promptOf(items[i].question), items[i].pirate);
        pirate.tokens.insert(pirate.tokens.end(), answer.begin(), answer.end());
        rows.push_back(pirate);
    }
    for (const auto& result : own) {
        persona::CaptureRow row{result.prompt_tokens, static_cast<int>(result.prompt_tokens.size())};
        row.tokens.insert(row.tokens.end(), result.tokens.begin(), result.tokens.end());
        rows.push_back(row);
    }
    const persona::CaptureResult captured = model.capture(rows);
    const persona::SampleRefs all = persona::samples_of(captured, persona::Aggregate::ResponseMean);
    const persona::SampleRefs positive(all.begin(), all.begin() + 3), negative(all.begin() + 3, all.end());
    persona::PersonaVector vector = persona::mean_difference(positive, negative, captured.layers, captured.hidden_size);
    vector.trait = "pirate";
    vector.provenance["suggested_layer"] = std::to_string(kLayer);
    return vector;
}

inline std::string chatLine(const char* question, const std::string& answer) {
    return nlohmann::json{{"messages", {{{"role", "user"}, {"content", question}}, {{"role", "assistant"}, {"content", answer}}}}}
        .dump();
}

// Writes the six-line dataset; returns the model's own answers of lines 2, 4, 6 by line number.
inline std::vector<std::string> writeDataset(persona::Model& model, const QString& path) {
    const auto& items = datasetQuestions();
    const auto own = greedyAnswers(model, items);
    std::vector<std::string> answers;
    QFile file(path);
    if (!file.open(QIODevice::WriteOnly)) qFatal("cannot write %s", qPrintable(path));
    for (std::size_t i = 0; i < items.size(); ++i) {
        answers.push_back(i % 2 == 0 ? std::string(items[i].pirate) : own[i].text);
        file.write((chatLine(items[i].question, answers.back()) + "\n").c_str());
    }
    return answers;
}

}  // namespace flag_fixture
