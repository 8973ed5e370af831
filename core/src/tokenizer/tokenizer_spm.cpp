// SentencePiece's BPE encoding (what Llama 2 and Gemma use): spaces become U+2581, the text
// starts as single characters, and the adjacent pair whose concatenation is the highest-scoring
// vocabulary piece merges first. Characters the vocabulary lacks become <0xNN> byte pieces.
#include "persona/errors.h"
#include "tokenizer/tokenizer_internal.h"

#include <array>
#include <cstdio>
#include <queue>
#include <string>

namespace persona {
namespace detail {
namespace {


class SentencePieceBpe final : public FragmentEncoder {
public:
    SentencePieceBpe(const TokenizerVocabulary& vocabulary, const std::string& source) : vocabulary_(vocabulary) {
        byte_piece_.fill(-1);
        const std::size_t size = vocabulary.tokens.size();
        pieces_.reserve(size);
        for (std::size_t id = 0; id < size; ++id) {
            const TokenType type = vocabulary.types[id];
            const std::string& text = vocabulary.tokens[id];
            const auto token = static_cast<std::int32_t>(id);
            if (type == TokenType::Byte) {
                unsigned value = 0;
                char trailing = 0;
                if (text.size() != 6 || std::sscanf(text.c_str(), "<0x%2X>%c", &value, &trailing) != 1)
                    throw FileError(source, "byte token " + std::to_string(id) + " '" + text + "' is not spelled <0xNN>");
                byte_piece_[value] = token;
            } else if (type == TokenType::Normal || type == TokenType::UserDefined || type == TokenType::Unused ||
                       type == TokenType::Undefined) {
                // Only these can be merge results, as in SentencePiece; control and byte pieces
                // never come out of merging.
                pieces_.emplace(text, token);
            }
        }
        unknown_id_ = vocabulary.unknown_id.value_or(-1);
    }

    void encode(std::string_view fragment, bool follows_special, bool, std::vector<std::int32_t>& out) const override {
        std::string text;
        text.reserve(fragment.size() + 8);
        if (vocabulary_.add_space_prefix && follows_special) text += kSpaceSymbol;
        for (const char c : fragment) {
            if (c == ' ') text += kSpaceSymbol;
            else text += c;
        }

        struct Symbol {
            std::size_t start, length;
            std::int32_t previous, next;
        };
        std::vector<Symbol> symbols;
        symbols.reserve(text.size());
        for (std::size_t position = 0; position < text.size();) {
            const std::size_t length = valid_utf8_length(text, position);  // invalid bytes go one by one
            const auto index = static_cast<std::int32_t>(symbols.size());
            symbols.push_back({position, length, index - 1, -1});
            if (index > 0) symbols[static_cast<std::size_t>(index) - 1].next = index;
            position += length;
        }

        struct Candidate {
            float score;
            std::int32_t left, right;
            std::size_t length;
            // Highest score first; among equal scores the leftmost, as SentencePiece does.
            bool operator<(const Candidate& other) const {
                return score != other.score ? score < other.score : left > other.left;
            }
        };
        std::priority_queue<Candidate> queue;
        // SentencePiece re-splits merges that pass through an Unused piece, by string.
        std::unordered_map<std::string, std::pair<std::string, std::string>> unused_splits;
        const auto piece_of = [&](std::int32_t index) {
            const Symbol& s = symbols[static_cast<std::size_t>(index)];
            return std::string_view(text).substr(s.start, s.length);
        };
        const auto consider = [&](std::int32_t left, std::int32_t right) {
            if (left < 0 || right < 0) return;
            const Symbol& l = symbols[static_cast<std::size_t>(left)];
            const Symbol& r = symbols[static_cast<std::size_t>(right)];
            const std::string_view joined = std::string_view(text).substr(l.start, l.length + r.length);
            const auto it = pieces_.find(joined);
            if (it == pieces_.end()) return;
            queue.push({vocabulary_.scores[static_cast<std::size_t>(it->second)], left, right, joined.size()});
            if (vocabulary_.types[static_cast<std::size_t>(it->second)] == TokenType::Unused)
                unused_splits[std::string(joined)] = {std::string(piece_of(left)), std::string(piece_of(right))};
        };
        for (std::size_t i = 1; i < symbols.size(); ++i)
            consider(static_cast<std::int32_t>(i - 1), static_cast<std::int32_t>(i));

        while (!queue.empty()) {
            const Candidate top = queue.top();
            queue.pop();
            Symbol& left = symbols[static_cast<std::size_t>(top.left)];
            Symbol& right = symbols[static_cast<std::size_t>(top.right)];
            // Stale when either side has merged since: its length no longer adds up.
            if (left.length == 0 || right.length == 0 || left.next != top.right ||
                left.length + right.length != top.length)
                continue;
            left.length += right.length;
            right.length = 0;
            left.next = right.next;
            if (right.next >= 0) symbols[static_cast<std::size_t>(right.next)].previous = top.left;
            consider(left.previous, top.left);
            consider(top.left, left.next);
        }

        for (std::int32_t i = symbols.empty() ? -1 : 0; i >= 0; i = symbols[static_cast<std::size_t>(i)].next)
            emit(piece_of(i), unused_splits, out);
    }

    std::string token_bytes(std::int32_t id) const override { return sentencepiece_token_bytes(vocabulary_, id); }

private:
    void emit(std::string_view piece,
              const std::unordered_map<std::string, std::pair<std::string, std::string>>& unused_splits,
              std::vector<std::int32_t>& out) const {
        const auto it = pieces_.find(piece);
        if (it != pieces_.end()) {
            if (vocabulary_.types[static_cast<std::size_t>(it->second)] == TokenType::Unused) {
                const auto split = unused_splits.find(std::string(piece));
                if (split != unused_splits.end()) {
                    emit(split->second.first, unused_splits, out);
                    emit(split->second.second, unused_splits, out);
                    return;
                }
            }
            out.push_back(it->second);
            return;
        }
        // Only single characters can be missing: every merge result is in the vocabulary.
        for (const char c : piece) {
            const std::int32_t byte = byte_piece_[static_cast<unsigned char>(c)];
            if (byte >= 0) {
                out.push_back(byte);
            } else if (unknown_id_ >= 0) {
                out.push_back(unknown_id_);
                return;  // one <unk> for the whole character
            } else {
                throw Error("cannot encode '" + std::string(piece) +
                            "': the vocabulary has neither byte pieces nor an unknown token");
            }
        }
    }

    const TokenizerVocabulary& vocabulary_;
    TokenIndex pieces_;
    std::array<std::int32_t, 256> byte_piece_{};
    std::int32_t unknown_id_ = -1;
};

}  // namespace

std::unique_ptr<FragmentEncoder> make_sentencepiece(const TokenizerVocabulary& vocabulary, const TokenIndex&,
                                                    const std::string& source) {
    return std::make_unique<SentencePieceBpe>(vocabulary, source);
}

}  // namespace detail
}  // namespace persona
