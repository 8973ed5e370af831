// Hugging Face's BPE over Metaspace-marked text, as the tokenizer.json files of Llama 2,
// TinyLlama and Mistral spell a SentencePiece BPE model: spaces become U+2581, a U+2581 goes in
// front (of every fragment, or only of the text's start, per the file), the text starts as single
// characters, adjacent pairs merge by rank from the merges list, and characters the vocabulary
// lacks become <0xNN> byte pieces (byte_fallback) or the unknown token.
// It differs from tokenizer_spm.cpp, which merges by piece score as llama.cpp does for GGUF
// vocabularies: here the merges list decides, exactly as the `tokenizers` library does.
#include "persona/errors.h"
#include "tokenizer_internal.h"

#include <array>
#include <cstdio>
#include <queue>
#include <string>

namespace persona {
namespace detail {
namespace {

constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK

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
        : vocabulary_(vocabulary), index_(index), scheme_(parse_scheme(vocabulary.pre, source)) {
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

        merges_.reserve(vocabulary.merges.size() * 2);
        for (std::size_t rank = 0; rank < vocabulary.merges.size(); ++rank) {
            const std::string& merge = vocabulary.merges[rank];
            const std::size_t space = merge.find(' ', 1);
            const auto bad = [&](const std::string& why) {
                throw FileError(source, "merges entry " + std::to_string(rank) + " '" + merge + "' " + why);
            };
            if (space == std::string::npos) bad("is not two tokens separated by a space");
            const std::string_view left(merge.data(), space);
            const std::string_view right(merge.data() + space + 1, merge.size() - space - 1);
            const std::string joined = std::string(left) + std::string(right);
            const auto left_it = index.find(left), right_it = index.find(right), joined_it = index.find(joined);
            if (left_it == index.end() || right_it == index.end() || joined_it == index.end())
                bad("names a token that is not in the vocabulary");
            merges_.emplace(pair_key(left_it->second, right_it->second),
                            Merge{static_cast<std::int32_t>(rank), joined_it->second});
        }
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

    std::string token_bytes(std::int32_t id) const override {
        const std::string& text = vocabulary_.tokens[static_cast<std::size_t>(id)];
        if (vocabulary_.types[static_cast<std::size_t>(id)] == TokenType::Byte)  // "<0xNN>", checked when built
            return std::string(1, static_cast<char>(std::stoi(text.substr(3, 2), nullptr, 16)));
        std::string bytes;
        bytes.reserve(text.size());
        for (std::size_t position = 0; position < text.size();) {
            if (text.compare(position, kSpaceSymbol.size(), kSpaceSymbol) == 0) {
                bytes += ' ';
                position += kSpaceSymbol.size();
            } else {
                bytes += text[position++];
            }
        }
        return bytes;
    }

private:
    struct Merge {
        std::int32_t rank;
        std::int32_t result;
    };

    static std::uint64_t pair_key(std::int32_t left, std::int32_t right) {
        return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) | static_cast<std::uint32_t>(right);
    }

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
        struct Symbol {
            std::int32_t id, previous, next;
        };
        std::vector<Symbol> symbols(ids.size());
        for (std::size_t i = 0; i < ids.size(); ++i)
            symbols[i] = {ids[i], static_cast<std::int32_t>(i) - 1,
                          i + 1 < ids.size() ? static_cast<std::int32_t>(i + 1) : -1};

        struct Candidate {
            std::int32_t rank, left, left_id, right_id, result;
            // Lowest rank first; among equal ranks the leftmost, as Hugging Face does.
            bool operator>(const Candidate& other) const {
                return rank != other.rank ? rank > other.rank : left > other.left;
            }
        };
        std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
        const auto consider = [&](std::int32_t left) {
            if (left < 0) return;
            const std::int32_t right = symbols[static_cast<std::size_t>(left)].next;
            if (right < 0) return;
            const std::int32_t left_id = symbols[static_cast<std::size_t>(left)].id;
            const std::int32_t right_id = symbols[static_cast<std::size_t>(right)].id;
            const auto it = merges_.find(pair_key(left_id, right_id));
            if (it != merges_.end()) queue.push({it->second.rank, left, left_id, right_id, it->second.result});
        };
        for (std::size_t i = 0; i + 1 < symbols.size(); ++i) consider(static_cast<std::int32_t>(i));

        while (!queue.empty()) {
            const Candidate top = queue.top();
            queue.pop();
            Symbol& left = symbols[static_cast<std::size_t>(top.left)];
            // A candidate is stale once either side has merged with something else.
            if (left.id != top.left_id || left.next < 0) continue;
            Symbol& right = symbols[static_cast<std::size_t>(left.next)];
            if (right.id != top.right_id) continue;
            left.id = top.result;
            right.id = -1;
            left.next = right.next;
            if (right.next >= 0) symbols[static_cast<std::size_t>(right.next)].previous = top.left;
            consider(left.previous);
            consider(top.left);
        }
        for (std::int32_t i = symbols.empty() ? -1 : 0; i >= 0; i = symbols[static_cast<std::size_t>(i)].next)
            out.push_back(symbols[static_cast<std::size_t>(i)].id);
    }

    const TokenizerVocabulary& vocabulary_;
    const TokenIndex& index_;
    MetaspaceScheme scheme_;
    std::array<std::int32_t, 256> byte_piece_{};
    std::int32_t unknown_id_ = -1;
    std::unordered_map<std::uint64_t, Merge> merges_;
};

}  // namespace

std::unique_ptr<FragmentEncoder> make_metaspace_bpe(const TokenizerVocabulary& vocabulary, const TokenIndex& index,
                                                    const std::string& source) {
    return std::make_unique<MetaspaceBpe>(vocabulary, index, source);
}

}  // namespace detail
}  // namespace persona
