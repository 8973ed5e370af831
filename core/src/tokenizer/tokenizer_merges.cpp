// What the BPE encoders share: the merge table by rank, the merge loop over a word's symbols,
// and the bytes of SentencePiece-spelled tokens.
#include "persona/errors.h"
#include "tokenizer/tokenizer_internal.h"

#include <functional>
#include <queue>

namespace persona::detail {

namespace {

std::uint64_t pair_key(std::int32_t left, std::int32_t right) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) | static_cast<std::uint32_t>(right);
}

}  // namespace

RankedMerges::RankedMerges(const std::vector<std::string>& merges, const TokenIndex& index, const std::string& source,
                           const std::string& entry_name) {
    merges_.reserve(merges.size() * 2);
    for (std::size_t rank = 0; rank < merges.size(); ++rank) {
        const std::string& merge = merges[rank];
        // The left part is never empty, so a space at position 0 belongs to it.
        const std::size_t space = merge.find(' ', 1);
        const auto bad = [&](const std::string& why) {
            throw FileError(source, entry_name + " " + std::to_string(rank) + " '" + merge + "' " + why);
        };
        if (space == std::string::npos) bad("is not two tokens separated by a space");
        const std::string_view left(merge.data(), space);
        const std::string_view right(merge.data() + space + 1, merge.size() - space - 1);
        const std::string joined = std::string(left) + std::string(right);
        const auto left_it = index.find(left), right_it = index.find(right), joined_it = index.find(joined);
        if (left_it == index.end() || right_it == index.end() || joined_it == index.end())
            bad("names a token that is not in the vocabulary");
        // An earlier entry for the same pair wins, as it would in the merge order.
        merges_.emplace(pair_key(left_it->second, right_it->second), Merge{static_cast<std::int32_t>(rank), joined_it->second});
    }
}

void RankedMerges::merge(const std::vector<std::int32_t>& ids, std::vector<std::int32_t>& out) const {
    struct Symbol {
        std::int32_t id, previous, next;
    };
    std::vector<Symbol> symbols(ids.size());
    for (std::size_t i = 0; i < ids.size(); ++i)
        symbols[i] = {ids[i], static_cast<std::int32_t>(i) - 1, i + 1 < ids.size() ? static_cast<std::int32_t>(i + 1) : -1};

    struct Candidate {
        std::int32_t rank, left, left_id, right_id, result;
        // Lowest rank first; among equal ranks the leftmost, as Hugging Face does.
        bool operator>(const Candidate& other) const { return rank != other.rank ? rank > other.rank : left > other.left; }
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

std::string sentencepiece_token_bytes(const TokenizerVocabulary& vocabulary, std::int32_t id) {
    const std::string& text = vocabulary.tokens[static_cast<std::size_t>(id)];
    if (vocabulary.types[static_cast<std::size_t>(id)] == TokenType::Byte)  // "<0xNN>", checked when built
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

}  // namespace persona::detail
