// Hugging Face's BPE over Metaspace-marked text, as the tokenizer.json files of Llama 2,
// TinyLlama and Mistral spell a SentencePiece BPE model: spaces become U+2581, a U+2581 goes in
// front (of every fragment, or only of the text's start, per the file), the text starts as single
// characters, adjacent pairs merge by rank from the merges list, and characters the vocabulary
// lacks become <0xNN> byte pieces (byte_fallback) or the unknown token.
// It differs from tokenizer_spm.cpp, which merges by piece score as llama.cpp does for GGUF
// vocabularies: here the merges list decides, exactly as the `tokenizers` library does.
#include "persona/errors.h"
#include "tokenizer/tokenizer_internal.h"

#include <array>
#include <cstdio>
#include <string>

namespace persona {
namespace detail {
namespace {


// Where the U+2581 prefix goes, read from the vocabulary's pre name (hf_tokenizer.cpp writes it).
enum class Prepend {
    EveryFragment,       // the legacy Prepend normalizer: every fragment, even one that starts with a space
    EveryFragmentOnce,   // Metaspace "always": every fragment that does not already start with one
    TextStartOnce,       // Metaspace "first": only the fragment at the start of the text
    Never,
};

struct MetaspaceScheme {
    Prepend prepend = Prepend::Never;
    bool split = false;  // Metaspace split: each U+2581 starts a word of its own, merged apart
};

MetaspaceScheme parse_scheme(const std::string& pre, const std::string& source) {
    std::string name = pre;
    MetaspaceScheme scheme;
    static constexpr std::string_view kSplit = "-split";
    if (name.size() > kSplit.size() && name.compare(name.size() - kSplit.size(), kSplit.size(), kSplit) == 0) {
        scheme.split = true;
        name.resize(name.size() - kSplit.size());
    }
    if (name == "metaspace-legacy") scheme.prepend = Prepend::EveryFragment;
    else if (name == "metaspace-always") scheme.prepend = Prepend::EveryFragmentOnce;
    else if (name == "metaspace-first") scheme.prepend = Prepend::TextStartOnce;
    else if (name == "metaspace-never") scheme.prepend = Prepend::Never;
    else
        throw FileError(source, "pre-tokenizer '" + pre + "' is not a Metaspace scheme (metaspace-legacy, -always, "
                                "-first or -never, optionally with -split)");
    return scheme;
}

class MetaspaceBpe final : public FragmentEncoder {
public:
    MetaspaceBpe(const TokenizerVocabulary& vocabulary, const TokenIndex& index, const std::string& source)
        : vocabulary_(vocabulary), index_(index), scheme_(parse_scheme(vocabulary.pre, source)),
          merges_(vocabulary.merges, index, source, "merges entry") {
        byte_piece_.fill(-1);
        for (std::size_t id = 0; id < vocabulary.tokens.size(); ++id) {
            if (vocabulary.types[id] != TokenType::Byte) continue;
            const std::string& text = vocabulary.tokens[id];
            unsigned value = 0;
            char trailing = 0;
            if (text.size() != 6 || std::sscanf(text.c_str(), "<0x%2X>%c", &value, &trailing) != 1)
                throw FileError(source, "byte token " + std::to_string(id) + " '" + text + "' is not spelled <0xNN>");
            byte_piece_[value] = static_cast<std::int32_t>(id);
        }
        unknown_id_ = vocabulary.unknown_id.value_or(-1);
    }

    void encode(std::string_view fragment, bool, bool at_text_start, std::vector<std::int32_t>& out) const override {
        std::string text;
        text.reserve(fragment.size() + 8);
        const bool starts_with_space = !fragment.empty() && fragment.front() == ' ';
        switch (scheme_.prepend) {
            case Prepend::EveryFragment: text += kSpaceSymbol; break;
            case Prepend::EveryFragmentOnce: if (!starts_with_space) text += kSpaceSymbol; break;
            case Prepend::TextStartOnce: if (at_text_start && !starts_with_space) text += kSpaceSymbol; break;
            case Prepend::Never: break;
        }
        for (const char c : fragment) {
            if (c == ' ') text += kSpaceSymbol;
            else text += c;
        }
        if (!scheme_.split) return merge_word(text, out);
        // Each U+2581 starts a new word (Hugging Face's MergedWithNext).
        std::size_t start = 0;
        for (std::size_t at = text.find(kSpaceSymbol, 1); at != std::string::npos; at = text.find(kSpaceSymbol, at + 1)) {
            merge_word(std::string_view(text).substr(start, at - start), out);
            start = at;
        }
        merge_word(std::string_view(text).substr(start), out);
    }

    std::string token_bytes(std::int32_t id) const override { return sentencepiece_token_bytes(vocabulary_, id); }

private:
    // Symbols of one character each: its piece, else its bytes' pieces, else the unknown token
    // (consecutive unknowns fused into one, as Llama's fuse_unk asks).
    void initial_symbols(std::string_view word, std::vector<std::int32_t>& ids) const {
        bool previous_unknown = false;
        for (std::size_t position = 0; position < word.size();) {
            const std::size_t length = valid_utf8_length(word, position);
            const std::string_view character = word.substr(position, length);
            position += length;
            if (const auto it = index_.find(character);
                it != index_.end() && vocabulary_.types[static_cast<std::size_t>(it->second)] != TokenType::Byte) {
                ids.push_back(it->second);
                previous_unknown = false;
                continue;
            }
            bool all_bytes = true;
            for (const char c : character) all_bytes = all_bytes && byte_piece_[static_cast<unsigned char>(c)] >= 0;
            if (all_bytes) {
                for (const char c : character) ids.push_back(byte_piece_[static_cast<unsigned char>(c)]);
                previous_unknown = false;
            } else if (unknown_id_ >= 0) {
                if (!previous_unknown) ids.push_back(unknown_id_);
                previous_unknown = true;
            } else {
                throw Error("cannot encode '" + std::string(character) +
                            "': the vocabulary has neither byte pieces nor an unknown token");
            }
        }
    }

    void merge_word(std::string_view word, std::vector<std::int32_t>& out) const {
        if (word.empty()) return;
        std::vector<std::int32_t> ids;
        initial_symbols(word, ids);
        merges_.merge(ids, out);
    }

    const TokenizerVocabulary& vocabulary_;
    const TokenIndex& index_;
    MetaspaceScheme scheme_;
    std::array<std::int32_t, 256> byte_piece_{};
    std::int32_t unknown_id_ = -1;
    RankedMerges merges_;
};

}  // namespace

std::unique_ptr<FragmentEncoder> make_metaspace_bpe(const TokenizerVocabulary& vocabulary, const TokenIndex& index,
                                                    const std::string& source) {
    return std::make_unique<MetaspaceBpe>(vocabulary, index, source);
}

}  // namespace detail
}  // namespace persona
