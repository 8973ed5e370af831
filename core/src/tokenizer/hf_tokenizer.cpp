// Hugging Face tokenizer.json: byte-level BPE vocabularies (SmolLM2, Llama 3, Qwen2, GPT-2), and
// SentencePiece BPE models spelled with Metaspace (Llama 2, TinyLlama, Mistral), turned into the
// same TokenizerVocabulary a GGUF gives, so one encoder serves both formats.
// The pre-tokenizer is recognised from its configuration and named as llama.cpp names it; a
// pipeline we do not recognise is refused, because a wrong split still gives plausible ids.
#include "io/json_file.h"
#include "persona/errors.h"
#include "formats/hf_config.h"
#include "tokenizer/tokenizer_internal.h"

#include <cctype>
#include <map>

namespace persona {

namespace {

using Json = nlohmann::json;

// Ids below the highest that no vocabulary entry or added token names (docs/formats.md, limits).
constexpr std::size_t kMaxUnnamedTokenIds = std::size_t(1) << 20;

// Short JSON text of a configuration for error messages.
std::string brief(const Json& value) {
    std::string text = value.dump();
    if (text.size() > 300) text = text.substr(0, 300) + "...";
    return text;
}

std::string type_of(const Json& step) {
    if (!step.is_object()) return {};
    const auto it = step.find("type");
    return it != step.end() && it->is_string() ? it->get<std::string>() : std::string();
}

bool flag(const Json& step, const char* key, bool fallback) {
    const auto it = step.find(key);
    return it != step.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

// The pre-tokenizer's name, or an empty string with `why` saying what is not recognised.
std::string recognise_pre_tokenizer(const Json& pre_tokenizer, std::string& why) {
    if (pre_tokenizer.is_null()) {
        why = "it has no pre_tokenizer, so it is not a byte-level BPE";
        return {};
    }
    std::vector<Json> steps;
    if (type_of(pre_tokenizer) == "Sequence") {
        const auto it = pre_tokenizer.find("pretokenizers");
        if (it == pre_tokenizer.end() || !it->is_array()) {
            why = "its Sequence pre_tokenizer has no 'pretokenizers' list";
            return {};
        }
        steps.assign(it->begin(), it->end());
    } else {
        steps.push_back(pre_tokenizer);
    }
    const auto unknown = [&] {
        why = "its pre_tokenizer is not one this version recognises (byte-level BPE as in GPT-2, SmolLM, Llama 3 "
              "or Qwen2): " + brief(pre_tokenizer);
        return std::string();
    };
    if (steps.empty() || type_of(steps.back()) != "ByteLevel") {
        why = "its pre_tokenizer does not end in ByteLevel, so it is not a byte-level BPE: " + brief(pre_tokenizer);
        return {};
    }
    const Json& byte_level = steps.back();
    if (flag(byte_level, "add_prefix_space", false)) {
        why = "its ByteLevel pre-tokenizer adds a prefix space, which this version does not do";
        return {};
    }
    const bool byte_level_regex = flag(byte_level, "use_regex", true);
    steps.pop_back();
    if (steps.empty()) return byte_level_regex ? "gpt2" : unknown();
    if (steps.size() != 1) return unknown();
    const Json& first = steps.front();
    if (type_of(first) == "Digits" && flag(first, "individual_digits", false) && byte_level_regex) return "smollm";
    if (type_of(first) != "Split" || byte_level_regex) return unknown();
    const auto pattern = first.find("pattern");
    const auto behavior = first.find("behavior");
    if (pattern == first.end() || !pattern->is_object() || !pattern->contains("Regex") ||
        !(*pattern)["Regex"].is_string() || behavior == first.end() || *behavior != "Isolated" ||
        flag(first, "invert", false))
        return unknown();
    const std::string regex = (*pattern)["Regex"].get<std::string>();
    for (const char* name : {"llama-bpe", "qwen2", "gpt2"})
        if (regex == detail::byte_level_split_regex(name)) return name;
    return unknown();
}

constexpr const char* kMetaspace = "\u2581";

bool is_string_value(const Json& step, const char* key, const std::string& value) {
    const auto it = step.find(key);
    return it != step.end() && it->is_string() && it->get<std::string>() == value;
}

// The Metaspace scheme of a SentencePiece-style tokenizer.json, as the pre name the Metaspace
// encoder reads ("metaspace-first", "metaspace-legacy-split", ...). Empty when the file does not
// mark spaces with U+2581 at all; empty with `why` set when it does in a way not recognised.
//   normalizer Sequence[Prepend("▁"), Replace(" ", "▁")], no pre_tokenizer
//       (Llama 2, TinyLlama, Mistral on the Hub)                        -> "metaspace-legacy"
//   no normalizer, pre_tokenizer Metaspace("▁", prepend_scheme, split)
//       (transformers' newer conversions)                               -> "metaspace-<scheme>[-split]"
std::string recognise_metaspace(const Json& normalizer, const Json& pre_tokenizer, std::string& why) {
    const auto is_prepend = [](const Json& step) {
        return type_of(step) == "Prepend" && is_string_value(step, "prepend", kMetaspace);
    };
    const auto is_replace_space = [](const Json& step) {
        if (type_of(step) != "Replace" || !is_string_value(step, "content", kMetaspace)) return false;
        const auto pattern = step.find("pattern");
        return pattern != step.end() && pattern->is_object() && is_string_value(*pattern, "String", " ");
    };
    if (type_of(normalizer) == "Sequence") {
        const auto steps = normalizer.find("normalizers");
        if (steps == normalizer.end() || !steps->is_array()) return {};
        bool prepend = false, replace = false, other = false;
        for (const auto& step : *steps) {
            if (is_prepend(step)) prepend = true;
            else if (is_replace_space(step)) replace = true;
            else other = true;
        }
        if (!prepend && !replace) return {};
        if (other || !prepend || !replace || steps->size() != 2) {
            why = "its normalizer marks spaces with U+2581 in a way this version does not recognise (expected "
                  "Prepend and Replace, as Llama 2's tokenizer.json): " + brief(normalizer);
            return {};
        }
        if (!pre_tokenizer.is_null()) {
            why = "its normalizer marks spaces with U+2581 but it also has a pre_tokenizer: " + brief(pre_tokenizer);
            return {};
        }
        return "metaspace-legacy";
    }
    const Json* metaspace = &pre_tokenizer;
    if (type_of(pre_tokenizer) == "Sequence") {
        const auto steps = pre_tokenizer.find("pretokenizers");
        if (steps == pre_tokenizer.end() || !steps->is_array() || steps->size() != 1) return {};
        metaspace = &(*steps)[0];
    }
    if (type_of(*metaspace) != "Metaspace") return {};
    if (!is_string_value(*metaspace, "replacement", kMetaspace)) {
        why = "its Metaspace pre-tokenizer replaces spaces with something other than U+2581: " + brief(*metaspace);
        return {};
    }
    if (!normalizer.is_null()) {
        why = "its Metaspace pre-tokenizer comes with a normalizer this version does not apply: " + brief(normalizer);
        return {};
    }
    // tokenizers >= 0.14 writes prepend_scheme; older files only add_prefix_space (true: always).
    std::string scheme = flag(*metaspace, "add_prefix_space", true) ? "always" : "never";
    if (const auto it = metaspace->find("prepend_scheme"); it != metaspace->end() && it->is_string()) scheme = it->get<std::string>();
    if (scheme != "first" && scheme != "always" && scheme != "never") {
        why = "its Metaspace pre-tokenizer has prepend_scheme '" + scheme + "' (known: first, always, never)";
        return {};
    }
    // Before tokenizers 0.19 Metaspace always split at each U+2581; the key came with 0.19.
    return "metaspace-" + scheme + (flag(*metaspace, "split", true) ? "-split" : "");
}

// Where a merges entry is "left right" (older files) or ["left", "right"] (tokenizers >= 0.20).
std::string merge_text(const Json& entry) {
    if (entry.is_string()) return entry.get<std::string>();
    if (entry.is_array() && entry.size() == 2 && entry[0].is_string() && entry[1].is_string())
        return entry[0].get<std::string>() + " " + entry[1].get<std::string>();
    return {};
}

// True when the post-processor's single-sequence template starts (or ends) with `token`.
bool template_adds(const Json& post_processor, const std::string& token, bool at_start) {
    if (type_of(post_processor) == "Sequence") {
        const auto it = post_processor.find("processors");
        if (it != post_processor.end() && it->is_array())
            for (const auto& step : *it)
                if (template_adds(step, token, at_start)) return true;
        return false;
    }
    if (type_of(post_processor) != "TemplateProcessing") return false;
    const auto single = post_processor.find("single");
    if (single == post_processor.end() || !single->is_array() || single->empty()) return false;
    const Json& piece = at_start ? single->front() : single->back();
    const auto special = piece.find("SpecialToken");
    return special != piece.end() && special->is_object() && special->value("id", std::string()) == token;
}

}  // namespace

HfTokenizerJson read_hf_tokenizer_json(const std::string& path, const HfTokenizerConfig& config) {
    const Json json = detail::read_json_file(path, 200'000'000);
    if (!json.is_object()) throw FileError(path, "is not a JSON object");
    HfTokenizerJson result;

    // Added tokens first: every kind of tokenizer has them.
    if (const auto added = json.find("added_tokens"); added != json.end() && !added->is_null()) {
        if (!added->is_array()) throw FileError(path, "'added_tokens' is not a list");
        for (const auto& entry : *added) {
            const auto id = entry.is_object() ? entry.find("id") : entry.end();
            const auto content = entry.is_object() ? entry.find("content") : entry.end();
            if (id == entry.end() || !id->is_number_integer() || content == entry.end() || !content->is_string())
                throw FileError(path, "an entry of 'added_tokens' lacks an integer 'id' or a string 'content': " +
                                          brief(entry));
            const auto value = id->get<std::int64_t>();
            if (value < 0 || value > INT32_MAX)
                throw FileError(path, "added token '" + content->get<std::string>() + "' has id " + std::to_string(value));
            result.added_tokens.push_back(
                {static_cast<std::int32_t>(value), content->get<std::string>(), flag(entry, "special", false)});
        }
    }

    const auto model = json.find("model");
    if (model == json.end() || !model->is_object()) throw FileError(path, "has no 'model' object");
    result.model_type = type_of(*model);
    if (result.model_type != "BPE") {
        result.unsupported = "its model is '" + result.model_type + "', not a byte-level BPE";
        return result;
    }
    const bool byte_fallback = flag(*model, "byte_fallback", false);
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
        const auto it = model->find(key);
        if (it != model->end() && !it->is_null() && !(it->is_string() && it->get<std::string>().empty())) {
            result.unsupported = std::string("its BPE model uses a ") + key + ", which byte-level BPE does not";
            return result;
        }
    }
    const Json normalizer = json.value("normalizer", Json());
    std::string why;
    std::string pre = recognise_metaspace(normalizer, json.value("pre_tokenizer", Json()), why);
    const bool sentencepiece_style = !pre.empty();
    if (!sentencepiece_style) {
        if (!why.empty()) {
            result.unsupported = why;
            return result;
        }
        if (byte_fallback) {
            result.unsupported = "its BPE model uses byte fallback (SentencePiece-style) but spaces are not marked "
                                 "with a Metaspace pre-tokenizer or Llama 2's normalizer";
            return result;
        }
        // NFC is accepted without being applied, as llama.cpp does: text that is already NFC
        // (nearly all text) tokenizes the same.
        if (!normalizer.is_null() && type_of(normalizer) != "NFC") {
            result.unsupported = "its normalizer is not supported: " + brief(normalizer);
            return result;
        }
        pre = recognise_pre_tokenizer(json.value("pre_tokenizer", Json()), why);
        if (pre.empty()) {
            result.unsupported = why;
            return result;
        }
    }

    TokenizerVocabulary& v = result.vocabulary;
    v.model = sentencepiece_style ? "llama" : "gpt2";
    v.pre = pre;
    const auto vocab = model->find("vocab");
    if (vocab == model->end() || !vocab->is_object()) throw FileError(path, "its BPE model has no 'vocab' object");
    std::map<std::int32_t, std::string> by_id;
    for (const auto& [text, id] : vocab->items()) {
        if (!id.is_number_integer() || id.get<std::int64_t>() < 0 || id.get<std::int64_t>() > INT32_MAX)
            throw FileError(path, "vocabulary entry '" + text + "' has no valid id");
        const auto [it, inserted] = by_id.emplace(id.get<std::int32_t>(), text);
        if (!inserted)
            throw FileError(path, "vocabulary id " + std::to_string(it->first) + " is given to both '" + it->second +
                                      "' and '" + text + "'");
    }
    std::map<std::int32_t, const AddedToken*> added;
    for (const auto& token : result.added_tokens) added[token.id] = &token;
    std::int32_t last = by_id.empty() ? -1 : by_id.rbegin()->first;
    if (!added.empty()) last = std::max(last, added.rbegin()->first);
    if (last < 0) throw FileError(path, "its vocabulary is empty");
    // Every unnamed id below the highest becomes a padding token: a few bytes of file naming id
    // 2,000,000,000 would otherwise ask for gigabytes. Real vocabularies leave a few hundred gaps.
    std::size_t named = by_id.size();
    for (const auto& [id, token] : added) named += by_id.count(id) == 0 ? 1 : 0;
    if (std::size_t(last) + 1 - named > kMaxUnnamedTokenIds)
        throw FileError(path, "token id " + std::to_string(last) + " leaves " + std::to_string(std::size_t(last) + 1 - named) +
                                  " ids below it unnamed (at most " + std::to_string(kMaxUnnamedTokenIds) +
                                  "); a vocabulary numbers its tokens 0..N-1 with few gaps");
    // Ids nothing names become unused padding, as llama.cpp's converter does.
    v.tokens.resize(static_cast<std::size_t>(last) + 1);
    v.types.assign(v.tokens.size(), TokenType::Unused);
    for (std::size_t id = 0; id < v.tokens.size(); ++id) v.tokens[id] = "[PAD" + std::to_string(id) + "]";
    for (const auto& [id, text] : by_id) {
        v.tokens[static_cast<std::size_t>(id)] = text;
        // SentencePiece's byte pieces, which only byte fallback produces and decoding turns back
        // into the byte.
        const bool byte_piece = byte_fallback && text.size() == 6 && text.compare(0, 3, "<0x") == 0 && text[5] == '>' &&
                                std::isxdigit(static_cast<unsigned char>(text[3])) &&
                                std::isxdigit(static_cast<unsigned char>(text[4]));
        v.types[static_cast<std::size_t>(id)] = byte_piece ? TokenType::Byte : TokenType::Normal;
    }
    for (const auto& [id, token] : added) {
        const auto index = static_cast<std::size_t>(id);
        if (v.types[index] != TokenType::Unused && v.tokens[index] != token->text)
            throw FileError(path, "added token " + std::to_string(id) + " '" + token->text + "' is '" + v.tokens[index] +
                                      "' in the vocabulary");
        v.tokens[index] = token->text;
        v.types[index] = token->special ? TokenType::Control : TokenType::UserDefined;
    }

    const auto merges = model->find("merges");
    if (merges == model->end() || !merges->is_array()) throw FileError(path, "its BPE model has no 'merges' list");
    v.merges.reserve(merges->size());
    for (const auto& entry : *merges) {
        std::string text = merge_text(entry);
        if (text.empty()) throw FileError(path, "a merges entry is neither \"a b\" nor [\"a\", \"b\"]: " + brief(entry));
        v.merges.push_back(std::move(text));
    }

    std::map<std::string, std::int32_t> index;
    for (std::size_t id = 0; id < v.tokens.size(); ++id) index.emplace(v.tokens[id], static_cast<std::int32_t>(id));
    const auto token_id = [&](const std::optional<std::string>& text, const char* what) -> std::optional<std::int32_t> {
        if (!text) return std::nullopt;
        const auto it = index.find(*text);
        if (it == index.end())
            throw FileError(path, std::string("tokenizer_config.json's ") + what + " '" + *text +
                                      "' is not a token of this tokenizer");
        return it->second;
    };
    v.bos_id = token_id(config.bos_token, "bos_token");
    v.eos_id = token_id(config.eos_token, "eos_token");
    v.padding_id = token_id(config.pad_token, "pad_token");
    std::optional<std::string> unknown = config.unk_token;
    if (const auto unk = model->find("unk_token"); unk != model->end() && unk->is_string()) unknown = unk->get<std::string>();
    v.unknown_id = token_id(unknown, "unk_token");

    const Json post_processor = json.value("post_processor", Json());
    v.add_bos = config.add_bos_token.value_or(config.bos_token && template_adds(post_processor, *config.bos_token, true));
    v.add_eos = config.add_eos_token.value_or(config.eos_token && template_adds(post_processor, *config.eos_token, false));
    if (v.add_bos && !v.bos_id) throw FileError(path, "it adds a BOS token but tokenizer_config.json names none");
    if (v.add_eos && !v.eos_id) throw FileError(path, "it adds an EOS token but tokenizer_config.json names none");
    // The decoder takes the prefix space off the first piece again (Strip or Metaspace decoder).
    v.add_space_prefix = sentencepiece_style && pre.rfind("metaspace-never", 0) != 0;
    return result;
}

}  // namespace persona
