#include "persona/judge.h"

#include "persona/errors.h"
#include "persona/model.h"
#include "persona/tokenizer.h"
#include "persona/trait.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>

namespace persona {

namespace {

struct TrieNode {
    std::vector<std::int32_t> path;
    int number = -1;  // the integer this path spells, if any
    std::map<std::int32_t, std::size_t> children;
};

class LocalJudge : public Judge {
public:
    // `owned` is set when the judge is a second model rather than the one being studied.
    LocalJudge(Model& m, bool reuse_prompt_prefix, std::unique_ptr<Model> owned = {})
        : owned_(std::move(owned)), model(m), spellings(spell_judge_numbers(m.tokenizer())),
          digit_leading(digit_leading_tokens(m.tokenizer())), letters(pick_tokens(m.tokenizer())),
          reuse_prompt_prefix_(reuse_prompt_prefix) {}

    // docs/method.md: the rubric as a user message, chat template and generation prompt, then the
    // next-token distribution, no sampling. The last prompt of each rubric is kept: the next one
    // runs only from where the two differ (the question, or the answer when the question repeats).
    JudgeScore score(const std::string& rubric, const std::string& question, const std::string& answer,
                     const CancelFn& cancelled) override {
        check_cancelled(cancelled);
        const auto state = prefill(rubric, model.encode_chat({{"user", render_rubric(rubric, question, answer)}}, true), cancelled);
        JudgeScore score = score_judge_distribution(
            spellings, digit_leading,
            [&](const std::vector<std::int32_t>& path) { return model.next_token_probabilities(*state, path, cancelled); },
            kJudgePruneBelow,
            [&](const std::vector<std::vector<std::int32_t>>& paths) {
                return model.next_token_probabilities_batch(*state, paths, cancelled);
            });
        score.reused_prompt_tokens = Model::reused_tokens(*state);
        return score;
    }

    JudgePick pick(const std::string& prompt, const CancelFn& cancelled) override {
        check_cancelled(cancelled);
        const auto state = prefill(kPairwise, model.encode_chat({{"user", prompt}}, true), cancelled);
        return pick_from_distribution(model.next_token_probabilities(*state, {}, cancelled).front(), letters);
    }

private:
    static constexpr const char* kPairwise = "";  // pick()'s prompts, kept apart from every rubric
    static constexpr std::size_t kKeptRubrics = 4;

    // The prompt run from where it differs from the last one of the same kind, which it replaces.
    std::shared_ptr<Model::PromptState> prefill(const std::string& kind, const std::vector<std::int32_t>& prompt,
                                                const CancelFn& cancelled) {
        if (!reuse_prompt_prefix_) return model.prefill(prompt, cancelled);
        std::shared_ptr<Model::PromptState>& last = last_prompt_[kind];
        auto state = model.prefill(prompt, cancelled, last.get());
        last = state;
        // A trait and a coherence rubric alternate in an extraction; a few more may come.
        if (last_prompt_.size() > kKeptRubrics) last_prompt_ = {{kind, state}};
        return state;
    }

    std::unique_ptr<Model> owned_;
    Model& model;
    std::vector<NumberSpelling> spellings;
    std::vector<std::int32_t> digit_leading;
    PickTokens letters;
    bool reuse_prompt_prefix_;
    std::map<std::string, std::shared_ptr<Model::PromptState>> last_prompt_;  // by rubric
};

// Asks an OpenAI-compatible endpoint for the first token's top logprobs, one request per
// rubric and answer; the endpoint's own retries and errors apply.
class HttpJudge : public Judge {
public:
    explicit HttpJudge(const ChatEndpoint& endpoint) : endpoint_(endpoint), client_(endpoint) {}

    JudgeScore score(const std::string& rubric, const std::string& question, const std::string& answer,
                     const CancelFn& cancelled) override {
        const ChatCompletion completion = client_.complete(http_judge_request(rubric, question, answer), cancelled);
        try {
            return score_top_logprobs(completion.top_logprobs.front());  // complete() saw one token at least
        } catch (const Error& e) {
            throw Error("judge " + endpoint_.model + " at " + endpoint_.base_url + ": " + e.what());
        }
    }

    JudgePick pick(const std::string& prompt, const CancelFn& cancelled) override {
        ChatCompletionRequest request;
        request.messages = {{"user", prompt}};
        request.max_tokens = 1;
        request.temperature = 0;
        request.top_logprobs = 20;
        return pick_from_top_logprobs(client_.complete(request, cancelled).top_logprobs.front());
    }

private:
    ChatEndpoint endpoint_;
    ChatClient client_;
};

// The text between surrounding whitespace.
std::string trimmed(const std::string& text) {
    const auto first = text.find_first_not_of(" \t\n\r");
    if (first == std::string::npos) return {};
    return text.substr(first, text.find_last_not_of(" \t\n\r") - first + 1);
}

JudgePick pick_from_masses(double a, double b) {
    JudgePick result;
    result.letter_mass = a + b;
    result.refusal = result.letter_mass < kRefusalNumericMass;
    if (!result.refusal) result.a_wins = a / result.letter_mass;
    return result;
}

// An integer 0..100 written plainly, perhaps with whitespace around it ("42", " 7"); nothing else.
std::optional<int> judge_number(const std::string& token) {
    const std::string digits = trimmed(token);
    if (digits.empty() || digits.size() > 3) return std::nullopt;
    for (char c : digits)
        if (c < '0' || c > '9') return std::nullopt;
    const int value = std::stoi(digits);
    if (value > 100) return std::nullopt;
    return value;
}

}  // namespace

std::string judge_label(const JudgeSettings& settings) {
    if (settings.kind == JudgeKind::None) return "none";
    if (settings.kind == JudgeKind::Http) return "http:" + settings.endpoint.base_url + "#" + settings.endpoint.model;
    if (settings.model_path.empty()) return "local";
    return "local:" + std::filesystem::path(settings.model_path).filename().string();
}

std::unique_ptr<Judge> make_judge(Model& studied, const JudgeSettings& settings, const ProgressFn& progress,
                                  const CancelFn& cancelled) {
    if (settings.kind == JudgeKind::None) return nullptr;
    if (settings.kind == JudgeKind::Http) return make_http_judge(settings.endpoint);
    if (settings.model_path.empty()) return std::make_unique<LocalJudge>(studied, settings.reuse_prompt_prefix);
    // The judge shares the studied model's device and dtype: one engine, one device.
    ModelLoadOptions options;
    options.device = studied.device();
    options.dtype = studied.dtype();
    auto judge_model = Model::load(settings.model_path, options, progress, cancelled);
    Model& judge_ref = *judge_model;
    return std::make_unique<LocalJudge>(judge_ref, settings.reuse_prompt_prefix, std::move(judge_model));
}

std::unique_ptr<Judge> make_http_judge(const ChatEndpoint& endpoint) {
    if (endpoint.base_url.empty()) throw Error("the HTTP judge needs an endpoint URL (--judge-url)");
    if (endpoint.model.empty())
        throw Error("the HTTP judge at " + endpoint.base_url + " needs a model name (--judge-model-name)");
    return std::make_unique<HttpJudge>(endpoint);
}

std::string pairwise_judge_prompt(const std::string& trait, const std::string& definition, const std::string& question,
                                  const std::string& answer_a, const std::string& answer_b) {
    std::string name = trait;
    std::replace(name.begin(), name.end(), '_', ' ');
    std::string prompt = "You are comparing two answers to the same question for one trait: " + name + ".\n";
    if (!definition.empty()) prompt += "Definition of " + name + ": " + definition + "\n";
    prompt += "\nQuestion:\n" + question + "\n\nAnswer A:\n" + answer_a + "\n\nAnswer B:\n" + answer_b +
              "\n\nWhich answer shows the trait \"" + name + "\" more strongly? Judge only the trait, not how "
              "helpful, correct or well written the answers are. Reply with one letter: A or B.";
    return prompt;
}

JudgePick judge_pair(Judge& judge, const std::string& trait, const std::string& definition, const std::string& question,
                     const std::string& positive, const std::string& negative, const CancelFn& cancelled) {
    const JudgePick first = judge.pick(pairwise_judge_prompt(trait, definition, question, positive, negative), cancelled);
    const JudgePick second = judge.pick(pairwise_judge_prompt(trait, definition, question, negative, positive), cancelled);
    JudgePick result;
    result.letter_mass = std::min(first.letter_mass, second.letter_mass);
    result.refusal = first.refusal || second.refusal;
    if (!result.refusal) result.a_wins = (*first.a_wins + (1.0 - *second.a_wins)) / 2;
    return result;
}

PickTokens pick_tokens(const Tokenizer& tokenizer) {
    const auto single_tokens = [&](const std::string& letter) {
        std::vector<std::int32_t> ids;
        for (const std::string& spelling : {letter, " " + letter}) {
            const auto encoded = tokenizer.encode(spelling, false, false);
            if (encoded.size() == 1) ids.push_back(encoded.front());
        }
        return ids;
    };
    const PickTokens tokens{single_tokens("A"), single_tokens("B")};
    if (tokens.a.empty() || tokens.b.empty()) throw Error("the judge's vocabulary has no single token for A or B");
    return tokens;
}

JudgePick pick_from_distribution(const std::vector<float>& probabilities, const PickTokens& tokens) {
    const auto mass = [&](const std::vector<std::int32_t>& ids) {
        double total = 0;
        for (std::int32_t id : ids)
            if (id >= 0 && std::size_t(id) < probabilities.size()) total += probabilities[std::size_t(id)];
        return total;
    };
    return pick_from_masses(mass(tokens.a), mass(tokens.b));
}

std::vector<NumberSpelling> spell_judge_numbers(const Tokenizer& tokenizer) {
    std::vector<NumberSpelling> spellings;
    for (int n = 0; n <= 100; ++n)
        spellings.push_back({n, tokenizer.encode(std::to_string(n), /*add_special=*/false, /*parse_special=*/false)});
    return spellings;
}

std::vector<std::int32_t> digit_leading_tokens(const Tokenizer& tokenizer) {
    std::vector<std::int32_t> ids;
    for (std::size_t id = 0; id < tokenizer.vocab_size(); ++id) {
        const auto token = static_cast<std::int32_t>(id);
        if (tokenizer.is_special(token)) continue;
        const std::string bytes = tokenizer.token_bytes(token, false);
        if (!bytes.empty() && bytes.front() >= '0' && bytes.front() <= '9') ids.push_back(token);
    }
    return ids;
}

JudgeScore score_judge_distribution(const std::vector<NumberSpelling>& spellings,
                                    const std::vector<std::int32_t>& digit_leading,
                                    const NextTokenDistributions& distributions, double prune_below,
                                    const NextTokenDistributionsBatch& batch) {
    std::vector<TrieNode> trie(1);
    for (const NumberSpelling& spelling : spellings) {
        if (spelling.tokens.empty()) continue;
        std::size_t node = 0;
        for (std::int32_t token : spelling.tokens) {
            auto found = trie[node].children.find(token);
            if (found == trie[node].children.end()) {
                TrieNode child;
                child.path = trie[node].path;
                child.path.push_back(token);
                trie.push_back(std::move(child));
                found = trie[node].children.emplace(token, trie.size() - 1).first;
            }
            node = found->second;
        }
        trie[node].number = spelling.value;
    }

    JudgeScore result;
    std::map<std::vector<std::int32_t>, std::vector<float>> cache;
    // One forward pass yields the distribution after every prefix of its path, so each pass
    // runs on along the first chain of nodes that will need expanding too ("1" then "10" in a
    // digit-per-token vocabulary): 100 costs no pass of its own.
    const auto chain_from = [&](std::size_t node) -> const std::vector<std::int32_t>& {
        std::size_t deepest = node;
        for (;;) {
            std::size_t next = 0;
            for (const auto& [token, child] : trie[deepest].children)
                if (!trie[child].children.empty()) {
                    next = child;
                    break;
                }
            if (next == 0) break;
            deepest = next;
        }
        return trie[deepest].path;
    };
    const auto keep = [&](const std::vector<std::int32_t>& path, std::vector<std::vector<float>> rows) {
        if (rows.size() != path.size() + 1) throw Error("judge: expected one distribution per prefix of the number");
        for (std::size_t k = 0; k < rows.size(); ++k)
            cache[std::vector<std::int32_t>(path.begin(), path.begin() + std::ptrdiff_t(k))] = std::move(rows[k]);
    };
    const auto distribution_at = [&](std::size_t node) -> const std::vector<float>& {
        const auto cached = cache.find(trie[node].path);
        if (cached != cache.end()) return cached->second;
        const std::vector<std::int32_t>& path = chain_from(node);
        keep(path, distributions(path));
        ++result.forward_passes;
        return cache.at(trie[node].path);
    };
    const auto probability = [](const std::vector<float>& p, std::int32_t token) {
        return token >= 0 && std::size_t(token) < p.size() ? double(p[std::size_t(token)]) : 0.0;
    };

    // The first distribution alone decides a refusal; a refused answer costs no further passes.
    {
        const std::vector<float>& first = distribution_at(0);
        for (const auto& [token, child] : trie[0].children) result.numeric_mass += probability(first, token);
        if (result.numeric_mass < kRefusalNumericMass) {
            result.refusal = true;
            return result;
        }
        result.numeric_mass = 0;  // summed again below, child by child
        if (batch) {
            std::vector<std::vector<std::int32_t>> paths;
            for (const auto& [token, child] : trie[0].children) {
                if (trie[child].children.empty() || probability(first, token) < prune_below) continue;
                const std::vector<std::int32_t>& chain = chain_from(child);
                if (!cache.count(chain)) paths.push_back(chain);
            }
            if (!paths.empty()) {
                auto rows = batch(paths);
                ++result.forward_passes;
                if (rows.size() != paths.size()) throw Error("judge: expected one result per path of the batch");
                for (std::size_t i = 0; i < paths.size(); ++i) keep(paths[i], std::move(rows[i]));
            }
        }
    }
    double weighted = 0, resolved = 0;
    std::vector<std::pair<std::size_t, double>> frontier{{0, 1.0}};
    while (!frontier.empty()) {
        const auto [node, mass] = frontier.back();
        frontier.pop_back();
        if (trie[node].children.empty()) {
            if (trie[node].number >= 0) {
                weighted += mass * trie[node].number;
                resolved += mass;
            }
            continue;
        }
        if (node != 0 && mass < prune_below) continue;  // numeric, but of unknown value
        const std::vector<float>& p = distribution_at(node);
        for (const auto& [token, child] : trie[node].children) {
            const double child_mass = mass * probability(p, token);
            if (node == 0) result.numeric_mass += child_mass;
            frontier.emplace_back(child, child_mass);
        }
        if (trie[node].number >= 0) {
            double continuing = 0;
            for (std::int32_t token : digit_leading) continuing += probability(p, token);
            const double ends_here = mass * std::max(0.0, 1.0 - continuing);
            weighted += ends_here * trie[node].number;
            resolved += ends_here;
        }
    }
    result.refusal = result.numeric_mass < kRefusalNumericMass || resolved <= 0;
    if (!result.refusal) result.score = weighted / resolved;
    return result;
}

ChatCompletionRequest http_judge_request(const std::string& rubric, const std::string& question,
                                         const std::string& answer) {
    ChatCompletionRequest request;
    request.messages = {{"user", render_rubric(rubric, question, answer)}};
    request.max_tokens = 1;
    request.temperature = 0;
    request.top_logprobs = 20;
    return request;
}

JudgeScore score_top_logprobs(const std::vector<TopLogprob>& alternatives) {
    JudgeScore result;
    double weighted = 0;
    std::set<int> values;
    bool only_digits = true;
    for (const TopLogprob& alternative : alternatives) {
        const auto number = judge_number(alternative.token);
        if (!number) continue;
        const double probability = std::exp(alternative.logprob);
        result.numeric_mass += probability;
        weighted += probability * *number;
        values.insert(*number);
        only_digits = only_digits && trimmed(alternative.token).size() == 1;
    }
    result.refusal = result.numeric_mass < kRefusalNumericMass;
    // A tokenizer that writes numbers digit by digit (Qwen2.5, SmolLM2) lists several digits
    // and nothing above 9: "8" may begin 8 or 85, and the mean would be on a 0-9 scale.
    if (!result.refusal && only_digits && values.size() >= kDigitSplitEvidence)
        throw Error("the judge's first-token alternatives are single digits only (" + std::to_string(values.size()) +
                    " of them, nothing above 9): its tokenizer writes numbers digit by digit, so one token cannot "
                    "tell 8 from 85 and no 0-100 score can be read; judge with a local model (it reads whole "
                    "spellings) or use the pairwise judge mode");
    if (!result.refusal) result.score = weighted / result.numeric_mass;
    return result;
}

JudgePick pick_from_top_logprobs(const std::vector<TopLogprob>& alternatives) {
    double a = 0, b = 0;
    for (const TopLogprob& alternative : alternatives) {
        const std::string letter = trimmed(alternative.token);
        if (letter == "A") a += std::exp(alternative.logprob);
        if (letter == "B") b += std::exp(alternative.logprob);
    }
    return pick_from_masses(a, b);
}

}  // namespace persona
