#include "persona/tokenizer.h"

#include "persona/errors.h"
#include "formats/gguf.h"
#include "tokenizer/tokenizer_internal.h"

#include <algorithm>
#include <array>
#include <unordered_set>

namespace persona {

namespace detail {

void append_utf8(std::string& out, std::uint32_t codepoint) {
    if (codepoint < 0x80) {
        out += static_cast<char>(codepoint);
    } else if (codepoint < 0x800) {
        out += static_cast<char>(0xC0 | (codepoint >> 6));
        out += static_cast<char>(0x80 | (codepoint & 0x3F));
    } else if (codepoint < 0x10000) {
        out += static_cast<char>(0xE0 | (codepoint >> 12));
        out += static_cast<char>(0x80 | ((codepoint >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (codepoint & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (codepoint >> 18));
        out += static_cast<char>(0x80 | ((codepoint >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((codepoint >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (codepoint & 0x3F));
    }
}

namespace {

// The second byte's range depends on the lead (Unicode table 3-7): this is what rules out
// overlong forms, surrogates and code points above U+10FFFF.
std::pair<unsigned char, unsigned char> second_byte_range(unsigned char lead) {
    if (lead == 0xE0) return {0xA0, 0xBF};
    if (lead == 0xED) return {0x80, 0x9F};
    if (lead == 0xF0) return {0x90, 0xBF};
    if (lead == 0xF4) return {0x80, 0x8F};
    return {0x80, 0xBF};
}

// How many bytes from `position` on belong to a correct start of the character there.
std::size_t well_formed_prefix(std::string_view bytes, std::size_t position, std::size_t length) {
    const auto [second_low, second_high] = second_byte_range(static_cast<unsigned char>(bytes[position]));
    std::size_t valid = 1;
    while (valid < length && position + valid < bytes.size()) {
        const auto byte = static_cast<unsigned char>(bytes[position + valid]);
        const bool in_range = valid == 1 ? (byte >= second_low && byte <= second_high) : (byte >= 0x80 && byte <= 0xBF);
        if (!in_range) break;
        ++valid;
    }
    return valid;
}

}  // namespace

std::size_t valid_utf8_length(std::string_view text, std::size_t position) {
    const std::size_t length = utf8_sequence_length(static_cast<unsigned char>(text[position]));
    if (length == 1) return 1;
    return well_formed_prefix(text, position, length) == length ? length : 1;
}

std::size_t append_sanitized_utf8(std::string_view bytes, bool final, std::string& out) {
    static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
    std::size_t position = 0;
    while (position < bytes.size()) {
        const auto lead = static_cast<unsigned char>(bytes[position]);
        if (lead < 0x80) {
            out += static_cast<char>(lead);
            ++position;
            continue;
        }
        const std::size_t length = utf8_sequence_length(lead);
        if (length == 1) {  // a stray continuation byte, C0, C1 or F5..FF
            out += kReplacement;
            ++position;
            continue;
        }
        const std::size_t valid = well_formed_prefix(bytes, position, length);
        if (valid == length) {
            out.append(bytes.data() + position, length);
            position += length;
        } else if (position + valid == bytes.size() && !final) {
            break;  // could still complete when more bytes come
        } else {
            out += kReplacement;  // one replacement for the maximal valid prefix
            position += valid;
        }
    }
    return position;
}

namespace {

// Longest-match lookup of special tokens in raw text. Control tokens are matched only when the
// caller asks for special parsing; user-defined ones always.
class SpecialTokenMatcher {
public:
    SpecialTokenMatcher() : nodes_(1) {}

    void insert(std::string_view text, std::int32_t id, bool needs_special_parsing) {
        if (text.empty()) return;
        std::size_t node = 0;
        for (const char c : text) {
            const auto byte = static_cast<unsigned char>(c);
            std::int32_t next = -1;
            for (const auto& [edge, child] : nodes_[node].children)
                if (edge == byte) next = child;
            if (next < 0) {
                next = static_cast<std::int32_t>(nodes_.size());
                nodes_[node].children.emplace_back(byte, next);
                nodes_.emplace_back();
            }
            node = static_cast<std::size_t>(next);
        }
        if (nodes_[node].token >= 0) return;  // a duplicate text keeps the first id
        nodes_[node].token = id;
        nodes_[node].needs_special_parsing = needs_special_parsing;
        const auto first = static_cast<unsigned char>(text.front());
        (needs_special_parsing ? first_bytes_when_parsing_ : first_bytes_always_)[first] = true;
    }

    struct Match {
        std::size_t length = 0;
        std::int32_t id = -1;
    };

    Match longest_at(std::string_view text, std::size_t position, bool parse_special) const {
        const auto first = static_cast<unsigned char>(text[position]);
        if (!first_bytes_always_[first] && !(parse_special && first_bytes_when_parsing_[first])) return {};
        Match best;
        std::size_t node = 0;
        for (std::size_t i = position; i < text.size(); ++i) {
            const auto byte = static_cast<unsigned char>(text[i]);
            std::int32_t next = -1;
            for (const auto& [edge, child] : nodes_[node].children)
                if (edge == byte) {
                    next = child;
                    break;
                }
            if (next < 0) break;
            node = static_cast<std::size_t>(next);
            const Node& here = nodes_[node];
            if (here.token >= 0 && (parse_special || !here.needs_special_parsing))
                best = {i + 1 - position, here.token};
        }
        return best;
    }

private:
    struct Node {
        std::vector<std::pair<unsigned char, std::int32_t>> children;
        std::int32_t token = -1;
        bool needs_special_parsing = false;
    };
    std::vector<Node> nodes_;
    std::array<bool, 256> first_bytes_always_{};
    std::array<bool, 256> first_bytes_when_parsing_{};
};

}  // namespace
}  // namespace detail

struct Tokenizer::Impl {
    std::string source;
    TokenizerVocabulary vocabulary;
    detail::TokenIndex index;
    detail::SpecialTokenMatcher specials;
    std::unique_ptr<detail::FragmentEncoder> encoder;
    std::vector<std::int32_t> end_of_generation;

    void check_id(std::int32_t id) const {
        if (id < 0 || static_cast<std::size_t>(id) >= vocabulary.tokens.size())
            throw Error("token id " + std::to_string(id) + " is outside the vocabulary of " + source + " (" +
                        std::to_string(vocabulary.tokens.size()) + " tokens)");
    }
    TokenType type(std::int32_t id) const { return vocabulary.types[static_cast<std::size_t>(id)]; }
};

namespace {

std::optional<std::int32_t> optional_token_id(const GgufFile& file, const std::string& key) {
    // find_int names the file for a non-integer or one above INT64_MAX.
    const std::optional<std::int64_t> found = file.find_int(key);
    if (!found) return std::nullopt;
    const std::int64_t id = *found;
    // Some converters write -1 or 0xFFFFFFFF for "no such token".
    if (id < 0 || id == 0xFFFFFFFFLL) return std::nullopt;
    if (id > INT32_MAX) throw FileError(file.path(), "metadata key '" + key + "' is out of range");
    return static_cast<std::int32_t>(id);
}

std::optional<bool> optional_flag(const GgufFile& file, const std::string& key) {
    const GgufValue* value = file.find(key);
    if (!value) return std::nullopt;
    if (value->type() == GgufValueType::Bool) return value->as_bool();
    if (value->is_integer()) return *file.find_int(key) != 0;
    throw FileError(file.path(), "metadata key '" + key + "' is not a bool");
}

const GgufValue& required_array(const GgufFile& file, const std::string& key, const std::string& why) {
    const GgufValue* value = file.find(key);
    if (!value) throw FileError(file.path(), "metadata key '" + key + "' is missing (" + why + ")");
    if (!value->is_array()) throw FileError(file.path(), "metadata key '" + key + "' is not an array");
    return *value;
}

template <typename Accessor>
decltype(auto) typed_array(const GgufFile& file, const std::string& key, const GgufValue& value, const char* wanted,
                           Accessor accessor) {
    try {
        return accessor(value);
    } catch (const Error&) {
        throw FileError(file.path(), "metadata key '" + key + "' is not an array of " + wanted);
    }
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const GgufFile& file) {
    TokenizerVocabulary vocabulary;
    const auto model = file.find_string("tokenizer.ggml.model");
    if (!model) throw FileError(file.path(), "metadata key 'tokenizer.ggml.model' is missing: the file has no tokenizer");
    vocabulary.model = *model;
    vocabulary.pre = file.find_string("tokenizer.ggml.pre").value_or("");

    const GgufValue& tokens = required_array(file, "tokenizer.ggml.tokens", "the vocabulary");
    vocabulary.tokens = typed_array(file, "tokenizer.ggml.tokens", tokens, "strings",
                                    [](const GgufValue& v) -> const std::vector<std::string>& { return v.strings(); });
    if (const GgufValue* types = file.find("tokenizer.ggml.token_type")) {
        const auto& raw = typed_array(file, "tokenizer.ggml.token_type", *types, "integers",
                                      [](const GgufValue& v) -> const std::vector<std::int64_t>& { return v.ints(); });
        vocabulary.types.reserve(raw.size());
        for (const auto type : raw) {
            if (type < 0 || type > static_cast<std::int64_t>(TokenType::Byte))
                throw FileError(file.path(), "tokenizer.ggml.token_type holds unknown type " + std::to_string(type));
            vocabulary.types.push_back(static_cast<TokenType>(type));
        }
    }
    if (vocabulary.model == "llama") {
        const GgufValue& scores = required_array(file, "tokenizer.ggml.scores", "SentencePiece-style merges need scores");
        const auto& raw = typed_array(file, "tokenizer.ggml.scores", scores, "floats",
                                      [](const GgufValue& v) -> const std::vector<double>& { return v.floats(); });
        vocabulary.scores.assign(raw.begin(), raw.end());
    } else if (vocabulary.model == "gpt2") {
        const GgufValue& merges = required_array(file, "tokenizer.ggml.merges", "byte-level BPE needs its merge list");
        vocabulary.merges = typed_array(file, "tokenizer.ggml.merges", merges, "strings",
                                        [](const GgufValue& v) -> const std::vector<std::string>& { return v.strings(); });
    }
    vocabulary.bos_id = optional_token_id(file, "tokenizer.ggml.bos_token_id");
    vocabulary.eos_id = optional_token_id(file, "tokenizer.ggml.eos_token_id");
    vocabulary.unknown_id = optional_token_id(file, "tokenizer.ggml.unknown_token_id");
    vocabulary.padding_id = optional_token_id(file, "tokenizer.ggml.padding_token_id");
    vocabulary.end_of_turn_id = optional_token_id(file, "tokenizer.ggml.eot_token_id");
    // Defaults where the keys are absent follow llama.cpp: SentencePiece models start with BOS
    // and a space, byte-level BPE models with neither.
    const bool is_sentencepiece = vocabulary.model == "llama";
    vocabulary.add_bos = optional_flag(file, "tokenizer.ggml.add_bos_token").value_or(is_sentencepiece);
    vocabulary.add_eos = optional_flag(file, "tokenizer.ggml.add_eos_token").value_or(false);
    vocabulary.add_space_prefix = optional_flag(file, "tokenizer.ggml.add_space_prefix").value_or(is_sentencepiece);
    return from_vocabulary(std::move(vocabulary), file.path());
}

std::unique_ptr<Tokenizer> Tokenizer::from_vocabulary(TokenizerVocabulary vocabulary, const std::string& source) {
    return detail::TokenizerBuilder::build(std::move(vocabulary), source, {}, 0);
}

std::unique_ptr<Tokenizer> detail::TokenizerBuilder::build(TokenizerVocabulary vocabulary, const std::string& source,
                                                           const EncoderFactory& encoder_factory,
                                                           std::int32_t user_defined_left_to_encoder) {
    using Impl = Tokenizer::Impl;
    auto impl = std::make_unique<Impl>();
    impl->source = source;
    impl->vocabulary = std::move(vocabulary);
    TokenizerVocabulary& v = impl->vocabulary;
    const std::size_t size = v.tokens.size();
    if (size == 0) throw FileError(source, "tokenizer.ggml.tokens is empty");
    if (size > static_cast<std::size_t>(INT32_MAX)) throw FileError(source, "tokenizer.ggml.tokens is too large");
    if (v.types.empty()) v.types.assign(size, TokenType::Normal);
    if (v.types.size() != size)
        throw FileError(source, "tokenizer.ggml.token_type has " + std::to_string(v.types.size()) + " entries but " +
                                    "tokenizer.ggml.tokens has " + std::to_string(size));
    // A tokenizer.json's SentencePiece BPE ranks its merges instead of scoring its pieces.
    const bool ranked_merges = v.model == "llama" && v.pre.rfind("metaspace-", 0) == 0;
    if (v.model == "llama" && !ranked_merges && v.scores.size() != size)
        throw FileError(source, "tokenizer.ggml.scores has " + std::to_string(v.scores.size()) + " entries but " +
                                    "tokenizer.ggml.tokens has " + std::to_string(size));
    const auto check_special_id = [&](const std::optional<std::int32_t>& id, const char* key) {
        if (id && static_cast<std::size_t>(*id) >= size)
            throw FileError(source, std::string("tokenizer.ggml.") + key + " " + std::to_string(*id) +
                                        " is outside the vocabulary of " + std::to_string(size) + " tokens");
    };
    check_special_id(v.bos_id, "bos_token_id");
    check_special_id(v.eos_id, "eos_token_id");
    check_special_id(v.unknown_id, "unknown_token_id");
    check_special_id(v.padding_id, "padding_token_id");
    check_special_id(v.end_of_turn_id, "eot_token_id");
    if (v.add_bos && !v.bos_id) throw FileError(source, "tokenizer.ggml.add_bos_token is set but there is no bos_token_id");
    if (v.add_eos && !v.eos_id) throw FileError(source, "tokenizer.ggml.add_eos_token is set but there is no eos_token_id");

    impl->index.reserve(size);
    for (std::size_t id = 0; id < size; ++id)
        impl->index.emplace(v.tokens[id], static_cast<std::int32_t>(id));  // a duplicate keeps the first id

    for (std::size_t id = 0; id < size; ++id) {
        const TokenType type = v.types[id];
        if (type == TokenType::UserDefined) {
            if (static_cast<std::int32_t>(id) >= user_defined_left_to_encoder)
                impl->specials.insert(v.tokens[id], static_cast<std::int32_t>(id), false);
        }
        else if (type == TokenType::Control || type == TokenType::Unknown)
            impl->specials.insert(v.tokens[id], static_cast<std::int32_t>(id), true);
    }

    if (encoder_factory)
        impl->encoder = encoder_factory(v, impl->index);
    else if (v.model == "gpt2")
        impl->encoder = detail::make_byte_level_bpe(v, impl->index, source);
    else if (ranked_merges)
        impl->encoder = detail::make_metaspace_bpe(v, impl->index, source);
    else if (v.model == "llama")
        impl->encoder = detail::make_sentencepiece(v, impl->index, source);
    else
        throw FileError(source, "tokenizer.ggml.model '" + v.model +
                                    "' is not supported (supported: 'gpt2' byte-level BPE, 'llama' SentencePiece-style)");

    std::vector<std::int32_t>& stops = impl->end_of_generation;
    if (v.eos_id) stops.push_back(*v.eos_id);
    if (v.end_of_turn_id) stops.push_back(*v.end_of_turn_id);
    static const char* const kTurnEnders[] = {"<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|eom_id|>", "<|end|>",
                                              "<|endoftext|>"};
    for (const char* text : kTurnEnders) {
        const auto it = impl->index.find(text);
        if (it != impl->index.end() && v.types[static_cast<std::size_t>(it->second)] == TokenType::Control)
            stops.push_back(it->second);
    }
    std::sort(stops.begin(), stops.end());
    stops.erase(std::unique(stops.begin(), stops.end()), stops.end());

    return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

std::vector<std::int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
    const TokenizerVocabulary& v = impl_->vocabulary;
    std::vector<std::int32_t> ids;
    ids.reserve(text.size() / 3 + 4);
    if (add_special && v.add_bos) ids.push_back(*v.bos_id);
    bool follows_special = true;
    std::size_t fragment_start = 0;
    std::size_t position = 0;
    while (position < text.size()) {
        const auto match = impl_->specials.longest_at(text, position, parse_special);
        if (match.length == 0) {
            ++position;
            continue;
        }
        if (position > fragment_start)
            impl_->encoder->encode(text.substr(fragment_start, position - fragment_start), follows_special,
                                   fragment_start == 0, ids);
        ids.push_back(match.id);
        follows_special = true;
        position += match.length;
        fragment_start = position;
    }
    if (fragment_start < text.size())
        impl_->encoder->encode(text.substr(fragment_start), follows_special, fragment_start == 0, ids);
    if (add_special && v.add_eos) ids.push_back(*v.eos_id);
    return ids;
}

std::string Tokenizer::token_bytes(std::int32_t id, bool render_special_tokens) const {
    impl_->check_id(id);
    switch (impl_->type(id)) {
        case TokenType::Normal: case TokenType::Byte: case TokenType::Undefined:
            return impl_->encoder->token_bytes(id);
        case TokenType::UserDefined:
            return impl_->vocabulary.tokens[static_cast<std::size_t>(id)];
        case TokenType::Control: case TokenType::Unknown: case TokenType::Unused:
            return render_special_tokens ? impl_->vocabulary.tokens[static_cast<std::size_t>(id)] : std::string();
    }
    return {};
}

std::string Tokenizer::decode(const std::vector<std::int32_t>& ids, bool render_special_tokens) const {
    StreamingDecoder decoder(*this, render_special_tokens);
    std::string text;
    for (const auto id : ids) text += decoder.push(id);
    text += decoder.finish();
    return text;
}

const std::string& Tokenizer::token_text(std::int32_t id) const {
    impl_->check_id(id);
    return impl_->vocabulary.tokens[static_cast<std::size_t>(id)];
}

std::optional<std::int32_t> Tokenizer::find_token(std::string_view text) const {
    const auto it = impl_->index.find(text);
    if (it == impl_->index.end()) return std::nullopt;
    return it->second;
}

TokenType Tokenizer::token_type(std::int32_t id) const {
    impl_->check_id(id);
    return impl_->type(id);
}

bool Tokenizer::is_special(std::int32_t id) const {
    const TokenType type = token_type(id);
    return type == TokenType::Control || type == TokenType::UserDefined || type == TokenType::Unknown ||
           type == TokenType::Unused;
}

const std::vector<std::int32_t>& Tokenizer::end_of_generation_ids() const { return impl_->end_of_generation; }
bool Tokenizer::is_end_of_generation(std::int32_t id) const {
    return std::binary_search(impl_->end_of_generation.begin(), impl_->end_of_generation.end(), id);
}
void Tokenizer::add_end_of_generation_ids(const std::vector<std::int32_t>& ids) {
    std::vector<std::int32_t>& stops = impl_->end_of_generation;
    for (const auto id : ids) {
        impl_->check_id(id);
        stops.push_back(id);
    }
    std::sort(stops.begin(), stops.end());
    stops.erase(std::unique(stops.begin(), stops.end()), stops.end());
}

std::optional<std::int32_t> Tokenizer::bos_id() const { return impl_->vocabulary.bos_id; }
std::optional<std::int32_t> Tokenizer::eos_id() const { return impl_->vocabulary.eos_id; }
bool Tokenizer::adds_bos() const { return impl_->vocabulary.add_bos; }
std::size_t Tokenizer::vocab_size() const { return impl_->vocabulary.tokens.size(); }
const std::string& Tokenizer::model_name() const { return impl_->vocabulary.model; }
const std::string& Tokenizer::pre_name() const { return impl_->vocabulary.pre; }
bool Tokenizer::strips_leading_space() const {
    return impl_->vocabulary.model == "llama" && impl_->vocabulary.add_space_prefix;
}

StreamingDecoder::StreamingDecoder(const Tokenizer& tokenizer, bool render_special_tokens)
    : tokenizer_(tokenizer), render_special_tokens_(render_special_tokens) {}

std::string StreamingDecoder::push(std::int32_t id) {
    std::string bytes = tokenizer_.token_bytes(id, render_special_tokens_);
    // The space a SentencePiece model put in front of the text is not part of it: one space, even
    // when the first piece is a bare U+2581 (text that began with spaces keeps the rest). Tokens
    // that decode to nothing (a skipped BOS) do not count as the start.
    if (at_start_ && tokenizer_.strips_leading_space() && tokenizer_.token_type(id) == TokenType::Normal &&
        !bytes.empty() && bytes.front() == ' ') {
        bytes.erase(0, 1);
        at_start_ = false;
    }
    if (!bytes.empty()) at_start_ = false;
    pending_ += bytes;
    std::string text;
    pending_.erase(0, detail::append_sanitized_utf8(pending_, false, text));
    return text;
}

std::string StreamingDecoder::finish() {
    std::string text;
    detail::append_sanitized_utf8(pending_, true, text);
    reset();
    return text;
}

void StreamingDecoder::reset() {
    pending_.clear();
    at_start_ = true;
}

std::string sanitize_utf8(std::string_view bytes) {
    std::string text;
    detail::append_sanitized_utf8(bytes, true, text);
    return text;
}

}  // namespace persona
