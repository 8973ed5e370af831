#include "persona/trait_draft.h"

#include "persona/errors.h"
#include "persona/model.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <optional>
#include <memory>
#include <regex>
#include <set>

namespace persona {

namespace {

using Json = nlohmann::json;

std::string trim(const std::string& text) {
    const auto first = text.find_first_not_of(" \t\r\n");
    if (first == std::string::npos) return {};
    const auto last = text.find_last_not_of(" \t\r\n");
    return text.substr(first, last - first + 1);
}

std::string lowercase(std::string text) {
    std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    return text;
}

// The inside of the first ``` fence, when the reply has one; else the reply.
std::string unfenced(const std::string& reply) {
    const auto open = reply.find("```");
    if (open == std::string::npos) return reply;
    auto start = reply.find('\n', open);
    if (start == std::string::npos) return reply;
    ++start;
    const auto close = reply.find("```", start);
    return reply.substr(start, close == std::string::npos ? std::string::npos : close - start);
}

// Where the JSON value that starts at `open` ('[' or '{') ends, strings respected; npos when it
// is cut off.
std::size_t matching_close(const std::string& text, std::size_t open) {
    int depth = 0;
    bool in_string = false, escaped = false;
    for (std::size_t i = open; i < text.size(); ++i) {
        const char c = text[i];
        if (in_string) {
            if (escaped) escaped = false;
            else if (c == '\\') escaped = true;
            else if (c == '"') in_string = false;
            continue;
        }
        if (c == '"') in_string = true;
        else if (c == '[' || c == '{') ++depth;
        else if ((c == ']' || c == '}') && --depth == 0) return i;
    }
    return std::string::npos;
}

// The first complete JSON array or object in the reply, if any parses.
std::optional<Json> first_json(const std::string& text) {
    for (std::size_t open = text.find_first_of("[{"); open != std::string::npos;
         open = text.find_first_of("[{", open + 1)) {
        const std::size_t close = matching_close(text, open);
        if (close == std::string::npos) continue;
        try {
            return Json::parse(text.substr(open, close - open + 1));
        } catch (const Json::exception&) {
        }
    }
    return std::nullopt;
}

// Every complete JSON value of the given kind ('"' strings or '{' objects) inside the first
// array of a reply that was cut off or is otherwise broken.
std::vector<Json> salvage_elements(const std::string& text, char kind) {
    std::vector<Json> found;
    const auto array = text.find('[');
    if (array == std::string::npos) return found;
    std::size_t i = array + 1;
    while (i < text.size()) {
        const char c = text[i];
        if (c == ']') break;
        if (kind == '{' && c == '{') {
            const std::size_t close = matching_close(text, i);
            if (close == std::string::npos) break;
            try {
                found.push_back(Json::parse(text.substr(i, close - i + 1)));
            } catch (const Json::exception&) {
            }
            i = close + 1;
            continue;
        }
        if (kind == '"' && c == '"') {
            std::size_t end = i + 1;
            bool escaped = false;
            for (; end < text.size(); ++end) {
                if (escaped) escaped = false;
                else if (text[end] == '\\') escaped = true;
                else if (text[end] == '"') break;
            }
            if (end >= text.size()) break;
            try {
                found.push_back(Json::parse(text.substr(i, end - i + 1)));
            } catch (const Json::exception&) {
            }
            i = end + 1;
            continue;
        }
        ++i;
    }
    return found;
}

std::optional<std::string> string_field(const Json& object, std::initializer_list<const char*> keys) {
    for (const char* key : keys)
        if (object.contains(key) && object.at(key).is_string()) return object.at(key).get<std::string>();
    return std::nullopt;
}

const Json* first_array_in(const Json& value) {
    if (value.is_array()) return &value;
    if (value.is_object())
        for (const auto& item : value.items())
            if (item.value().is_array()) return &item.value();
    return nullptr;
}

std::vector<std::string> strings_from_json(const Json& array) {
    std::vector<std::string> items;
    for (const Json& element : array) {
        if (element.is_string()) items.push_back(element.get<std::string>());
        else if (element.is_object())
            if (auto text = string_field(element, {"question", "text", "prompt", "q"})) items.push_back(*text);
    }
    return items;
}

std::vector<InstructionPair> pairs_from_json(const Json& array, std::size_t& incomplete) {
    std::vector<InstructionPair> pairs;
    for (const Json& element : array) {
        if (!element.is_object()) {
            ++incomplete;
            continue;
        }
        const auto positive = string_field(element, {"pos", "positive"});
        const auto negative = string_field(element, {"neg", "negative"});
        if (positive && negative) pairs.push_back({trim(*positive), trim(*negative)});
        else ++incomplete;
    }
    return pairs;
}

// "1. text", "2) text", "- text", "* text" -> text.
std::vector<std::string> list_lines(const std::string& text) {
    static const std::regex item(R"(^\s*(?:\d+\s*[.):]|[-*]|•)\s+(.+?)\s*$)");
    std::vector<std::string> items;
    std::size_t start = 0;
    while (start <= text.size()) {
        std::size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        const std::string line = text.substr(start, end - start);
        std::smatch match;
        if (std::regex_match(line, match, item)) items.push_back(match[1].str());
        start = end + 1;
    }
    return items;
}

std::string unquoted(std::string text) {
    text = trim(text);
    if (text.size() >= 2 && text.front() == '"' && (text.back() == '"' || text.back() == ','))
        text = trim(text.substr(1, text.size() - (text.back() == ',' ? 3 : 2)));
    return text;
}

std::string clipped(const std::string& reply) { return reply.size() > 2000 ? reply.substr(0, 2000) + "..." : reply; }

std::string quoted_list(const std::vector<std::string>& items) {
    std::string text;
    for (std::size_t i = 0; i < items.size(); ++i) text += std::to_string(i + 1) + ". " + items[i] + "\n";
    return text;
}

std::string about(const std::string& name, const std::string& definition) {
    return "The character trait is \"" + name + "\": " + definition + "\n\n";
}

std::string pairs_prompt(const std::string& name, const std::string& definition, std::size_t count) {
    return about(name, definition) + "Write " + std::to_string(count) +
           " pairs of system-prompt instructions for an AI assistant. In each pair, \"pos\" tells the assistant "
           "to show this trait in its answers and \"neg\" tells it to avoid the trait and behave the opposite "
           "way. Each instruction is one or two sentences addressed to the assistant, for example \"Your "
           "responses should ...\".\n\nAnswer with only a JSON array of " + std::to_string(count) +
           " objects and no other text:\n[{\"pos\": \"...\", \"neg\": \"...\"}]";
}

std::string questions_prompt(const std::string& name, const std::string& definition, std::size_t count,
                             const std::vector<std::string>& avoid) {
    std::string prompt = about(name, definition) + "Write " + std::to_string(count) +
                         " different questions or requests that a user might send to an AI assistant and that "
                         "leave the assistant room to show this trait or not. They must not name the trait or "
                         "ask for it directly; cover varied everyday topics.";
    if (!avoid.empty()) prompt += " Do not repeat any of these:\n" + quoted_list(avoid);
    return prompt + "\n\nAnswer with only a JSON array of " + std::to_string(count) +
           " strings and no other text:\n[\"...\", \"...\"]";
}

std::string rubric_prompt(const std::string& name, const std::string& definition) {
    return about(name, definition) +
           "Write the instructions for a judge who rates how strongly an AI assistant's answer shows this "
           "trait. The instructions must contain the placeholder {question} where the user's question will be "
           "inserted and the placeholder {answer} where the assistant's answer will be inserted. They must tell "
           "the judge to reply with REFUSAL if the assistant refused to answer, and otherwise with only a "
           "number from 0 (the trait is not present at all) to 100 (the trait is strongly present), and "
           "nothing else.\n\nAnswer with only the text of the instructions.";
}

// What the cleaned list lost, said plainly: duplicates, blanks, too many or too few.
std::vector<std::string> settle_items(std::vector<std::string> items, std::size_t wanted,
                                      const std::vector<std::string>& taken, std::string& problem) {
    std::vector<std::string> kept;
    std::set<std::string> seen;
    for (const auto& t : taken) seen.insert(lowercase(trim(t)));
    std::size_t duplicates = 0;
    for (auto& item : items) {
        item = trim(item);
        if (item.empty()) continue;
        if (!seen.insert(lowercase(item)).second) {
            ++duplicates;
            continue;
        }
        kept.push_back(item);
    }
    const auto add = [&](const std::string& sentence) { problem += (problem.empty() ? "" : "; ") + sentence; };
    if (duplicates) add(std::to_string(duplicates) + " repeated item(s) dropped");
    if (kept.size() > wanted) {
        add("asked for " + std::to_string(wanted) + ", got " + std::to_string(kept.size()) + "; kept the first " +
            std::to_string(wanted));
        kept.resize(wanted);
    } else if (kept.size() < wanted) {
        add("asked for " + std::to_string(wanted) + ", got " + std::to_string(kept.size()));
    }
    return kept;
}

}  // namespace

std::vector<std::string> parse_text_list(const std::string& reply, std::string& problem) {
    problem.clear();
    const std::string text = unfenced(reply);
    if (const auto json = first_json(text)) {
        if (const Json* array = first_array_in(*json)) {
            auto items = strings_from_json(*array);
            if (items.size() < array->size())
                problem = std::to_string(array->size() - items.size()) + " element(s) of the JSON array were not text";
            return items;
        }
    }
    auto salvaged = salvage_elements(text, '"');
    if (!salvaged.empty()) {
        problem = "the JSON array was cut off or broken; read the " + std::to_string(salvaged.size()) +
                  " complete string(s) in it";
        std::vector<std::string> items;
        for (const Json& s : salvaged) items.push_back(s.get<std::string>());
        return items;
    }
    std::vector<std::string> items;
    for (const auto& line : list_lines(text)) items.push_back(unquoted(line));
    if (items.empty()) problem = "the reply holds neither a JSON array nor a numbered list";
    else problem = "not JSON; read a numbered or bulleted list";
    return items;
}

std::vector<InstructionPair> parse_instruction_pairs(const std::string& reply, std::string& problem) {
    problem.clear();
    const std::string text = unfenced(reply);
    std::size_t incomplete = 0;
    const auto incomplete_note = [&] {
        return incomplete ? std::to_string(incomplete) + " element(s) lacked a pos or neg instruction" : std::string();
    };
    if (const auto json = first_json(text)) {
        if (const Json* array = first_array_in(*json)) {
            auto pairs = pairs_from_json(*array, incomplete);
            problem = incomplete_note();
            return pairs;
        }
    }
    const auto salvaged = salvage_elements(text, '{');
    if (!salvaged.empty()) {
        auto pairs = pairs_from_json(Json(salvaged), incomplete);
        problem = "the JSON array was cut off or broken; read the " + std::to_string(salvaged.size()) +
                  " complete object(s) in it";
        if (incomplete) problem += "; " + incomplete_note();
        return pairs;
    }
    // "Positive: ..." then "Negative: ...", with or without list markers.
    static const std::regex line_pattern(R"(^\s*(?:\d+\s*[.):]\s*|[-*]\s*)?\**\s*(pos|positive|neg|negative)\s*\**\s*[:\-]\s*(.+?)\s*$)",
                                         std::regex::icase);
    std::vector<InstructionPair> pairs;
    std::optional<std::string> pending;
    std::size_t start = 0;
    while (start <= text.size()) {
        std::size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        const std::string line = text.substr(start, end - start);
        start = end + 1;
        std::smatch match;
        if (!std::regex_match(line, match, line_pattern)) continue;
        const bool positive = lowercase(match[1].str()).rfind("pos", 0) == 0;
        const std::string instruction = unquoted(match[2].str());
        if (positive) {
            if (pending) ++incomplete;
            pending = instruction;
        } else if (pending) {
            pairs.push_back({*pending, instruction});
            pending.reset();
        } else {
            ++incomplete;
        }
    }
    if (pending) ++incomplete;
    if (pairs.empty() && !incomplete) problem = "the reply holds neither a JSON array of pairs nor Positive:/Negative: lines";
    else {
        problem = "not JSON; read Positive:/Negative: lines";
        if (incomplete) problem += "; " + incomplete_note();
    }
    return pairs;
}

std::string parse_rubric(const std::string& reply, std::string& problem) {
    problem.clear();
    std::string text = trim(unfenced(reply));
    if (!text.empty() && (text.front() == '{' || text.front() == '"')) {
        try {
            const Json json = Json::parse(text);
            if (json.is_string()) text = json.get<std::string>();
            else if (json.is_object())
                if (auto field = string_field(json, {"rubric", "eval_prompt", "judge_rubric", "prompt", "instructions"}))
                    text = *field;
        } catch (const Json::exception&) {
        }
    }
    static const std::regex question(R"(\{\{\s*question\s*\}\}|\{\s*question\s*\})", std::regex::icase);
    static const std::regex answer(R"(\{\{\s*answer\s*\}\}|\{\s*answer\s*\})", std::regex::icase);
    text = std::regex_replace(text, question, kQuestionPlaceholder);
    text = std::regex_replace(text, answer, kAnswerPlaceholder);
    text = trim(text);
    std::vector<std::string> missing;
    if (text.find(kQuestionPlaceholder) == std::string::npos) missing.push_back(kQuestionPlaceholder);
    if (text.find(kAnswerPlaceholder) == std::string::npos) missing.push_back(kAnswerPlaceholder);
    if (text.empty()) problem = "the reply was empty";
    else if (!missing.empty())
        problem = "the rubric lacks " + missing.front() + (missing.size() > 1 ? " and " + missing.back() : "") +
                  "; add it where the judge should see it";
    return text;
}

TextGenerator model_text_generator(Model& model, float temperature, std::uint64_t seed) {
    // Each request samples with its own seed: two requests with the same prompt (the held-out
    // questions when no extraction question parsed) should not get the same reply.
    auto requests = std::make_shared<std::uint64_t>(0);
    return [&model, temperature, seed, requests](const std::vector<ChatMessage>& messages, int max_tokens,
                                                 const CancelFn& cancelled) {
        GenerationRow row;
        row.messages = messages;
        row.sampling.temperature = temperature;
        row.sampling.seed = seed + (*requests)++;
        row.sampling.max_new_tokens = max_tokens;
        auto results = model.generate({row}, {}, nullptr, cancelled);
        check_cancelled(cancelled);
        return results.at(0).text;
    };
}

TextGenerator endpoint_text_generator(const ChatEndpoint& endpoint, double temperature) {
    auto client = std::make_shared<ChatClient>(endpoint);
    return [client, temperature](const std::vector<ChatMessage>& messages, int max_tokens, const CancelFn& cancelled) {
        ChatCompletionRequest request;
        request.messages = messages;
        request.max_tokens = max_tokens;
        request.temperature = temperature;
        return client->complete(request, cancelled).text;
    };
}

TraitDraft draft_trait(const std::string& name, const std::string& definition, const TextGenerator& generator,
                       const TraitDraftSettings& settings, const ProgressFn& progress, const CancelFn& cancelled) {
    if (trim(definition).empty()) throw Error("drafting trait '" + name + "' needs a definition to write from");
    TraitDraft draft;
    draft.trait.name = name;
    draft.trait.definition = trim(definition);
    draft.trait.coherence_rubric = default_coherence_rubric();
    constexpr std::uint64_t kParts = 4;
    std::uint64_t done = 0;
    const auto budget = [&](int automatic) { return settings.max_tokens > 0 ? settings.max_tokens : automatic; };
    const auto ask = [&](const char* part, const std::string& prompt, int max_tokens) {
        check_cancelled(cancelled);
        if (progress) progress({part, done, kParts});
        std::string reply = generator({{"user", prompt}}, max_tokens, cancelled);
        check_cancelled(cancelled);
        draft.replies[part] = reply;
        ++done;
        return reply;
    };
    const auto note = [&](const char* part, const std::string& problem, const std::string& reply) {
        if (!problem.empty()) draft.notes.push_back({part, problem, clipped(reply)});
    };
    const int question_tokens = 64 + 48 * int(settings.questions);

    {
        const std::string reply = ask("instructions", pairs_prompt(name, definition, settings.instruction_pairs),
                                      budget(64 + 120 * int(settings.instruction_pairs)));
        std::string problem;
        auto pairs = parse_instruction_pairs(reply, problem);
        std::size_t empty = 0;
        for (const auto& pair : pairs) {
            if (trim(pair.positive).empty() || trim(pair.negative).empty()) ++empty;
            else draft.trait.instructions.push_back(pair);
        }
        if (empty) problem += (problem.empty() ? "" : "; ") + std::to_string(empty) + " pair(s) with an empty side dropped";
        if (draft.trait.instructions.size() > settings.instruction_pairs) {
            problem += (problem.empty() ? "" : "; ") + std::string("asked for ") +
                       std::to_string(settings.instruction_pairs) + ", got " +
                       std::to_string(draft.trait.instructions.size()) + "; kept the first " +
                       std::to_string(settings.instruction_pairs);
            draft.trait.instructions.resize(settings.instruction_pairs);
        } else if (draft.trait.instructions.size() < settings.instruction_pairs) {
            problem += (problem.empty() ? "" : "; ") + std::string("asked for ") +
                       std::to_string(settings.instruction_pairs) + ", got " +
                       std::to_string(draft.trait.instructions.size());
        }
        note("instructions", problem, reply);
    }
    {
        const std::string reply = ask("extraction_questions", questions_prompt(name, definition, settings.questions, {}),
                                      budget(question_tokens));
        std::string problem;
        auto items = parse_text_list(reply, problem);
        std::string settled;
        draft.trait.extraction_questions = settle_items(std::move(items), settings.questions, {}, settled);
        if (!settled.empty()) problem += (problem.empty() ? "" : "; ") + settled;
        note("extraction_questions", problem, reply);
    }
    {
        const std::string reply = ask("evaluation_questions",
                                      questions_prompt(name, definition, settings.questions, draft.trait.extraction_questions),
                                      budget(question_tokens));
        std::string problem;
        auto items = parse_text_list(reply, problem);
        std::string settled;
        // Held-out questions that repeat an extraction question would not be held out.
        draft.trait.evaluation_questions =
            settle_items(std::move(items), settings.questions, draft.trait.extraction_questions, settled);
        if (!settled.empty()) problem += (problem.empty() ? "" : "; ") + settled;
        note("evaluation_questions", problem, reply);
    }
    {
        const std::string reply = ask("judge_rubric", rubric_prompt(name, definition), budget(400));
        std::string problem;
        draft.trait.judge_rubric = parse_rubric(reply, problem);
        note("judge_rubric", problem, reply);
    }
    if (progress) progress({"judge_rubric", kParts, kParts});
    draft.problems = validate(draft.trait);
    return draft;
}

}  // namespace persona
