#pragma once
// Pieces shared by tokenizer.cpp and the two merge algorithms; not part of core's API.
#include "persona/tokenizer.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace persona::detail {

using TokenIndex = std::unordered_map<std::string_view, std::int32_t>;

// Encodes text that holds no special tokens (those are split out before) for one model type.
class FragmentEncoder {
public:
    virtual ~FragmentEncoder() = default;
    // follows_special: the fragment starts the text or comes right after a special token,
    // where SentencePiece models with add_space_prefix put their leading space. at_text_start:
    // it starts the text (Metaspace's prepend_scheme "first" marks only that one).
    virtual void encode(std::string_view fragment, bool follows_special, bool at_text_start,
                        std::vector<std::int32_t>& out) const = 0;
    // Bytes of a Normal or Byte token in decoded text.
    virtual std::string token_bytes(std::int32_t id) const = 0;
};

// The vocabulary and index outlive the encoder: they belong to the same Tokenizer.
// Both throw FileError(source, ...) for a vocabulary the algorithm cannot use.
std::unique_ptr<FragmentEncoder> make_byte_level_bpe(const TokenizerVocabulary& vocabulary, const TokenIndex& index,
                                                     const std::string& source);
std::unique_ptr<FragmentEncoder> make_sentencepiece(const TokenizerVocabulary& vocabulary, const TokenIndex& index,
                                                    const std::string& source);
// "llama" vocabularies from a tokenizer.json, whose `pre` names the Metaspace scheme
// ("metaspace-first", ...): merges by rank from the merges list, as Hugging Face does.
std::unique_ptr<FragmentEncoder> make_metaspace_bpe(const TokenizerVocabulary& vocabulary, const TokenIndex& index,
                                                    const std::string& source);

// SentencePiece's word-boundary marker, U+2581 LOWER ONE EIGHTH BLOCK, in place of a space.
constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";

// BPE merges by rank from "left right" entries, shared by the byte-level and Metaspace encoders.
// Throws FileError(source, "<entry_name> N '...' ...") for an entry that is not two known tokens.
class RankedMerges {
public:
    RankedMerges(const std::vector<std::string>& merges, const TokenIndex& index, const std::string& source,
                 const std::string& entry_name);
    // Merges a word's initial symbols, lowest rank first and the leftmost among equal ranks (as
    // Hugging Face does), appending the result to `out`.
    void merge(const std::vector<std::int32_t>& symbols, std::vector<std::int32_t>& out) const;

private:
    struct Merge {
        std::int32_t rank;
        std::int32_t result;
    };
    std::unordered_map<std::uint64_t, Merge> merges_;
};

// Bytes of a SentencePiece-spelled token in decoded text: a "<0xNN>" byte piece as its byte,
// U+2581 as a space.
std::string sentencepiece_token_bytes(const TokenizerVocabulary& vocabulary, std::int32_t id);

// Builds every Tokenizer. `encoder_factory`, when given, replaces the merge algorithm the
// vocabulary's model names; it receives the vocabulary and index the tokenizer keeps. User-defined
// tokens with ids below `user_defined_left_to_encoder` are not split out of the text beforehand,
// because that encoder matches them itself (sentencepiece does).
struct TokenizerBuilder {
    using EncoderFactory =
        std::function<std::unique_ptr<FragmentEncoder>(const TokenizerVocabulary&, const TokenIndex&)>;
    static std::unique_ptr<Tokenizer> build(TokenizerVocabulary vocabulary, const std::string& source,
                                            const EncoderFactory& encoder_factory,
                                            std::int32_t user_defined_left_to_encoder);
};

// The single split regex of a byte-level pre-tokenizer ("gpt2", "llama-bpe", "qwen2"), as the
// models' tokenizer.json files spell it; nullptr for names whose split is not one regex.
const char* byte_level_split_regex(std::string_view pre_name);

// Length of the UTF-8 sequence a lead byte announces; 1 for bytes that cannot lead one, so
// that walking a string by this never stalls.
inline std::size_t utf8_sequence_length(unsigned char lead) {
    if (lead < 0xC2) return 1;
    if (lead < 0xE0) return 2;
    if (lead < 0xF0) return 3;
    if (lead < 0xF5) return 4;
    return 1;
}

// Length of the well-formed UTF-8 character at `position`, or 1 when the bytes there are not
// one (so that invalid input is taken a byte at a time).
std::size_t valid_utf8_length(std::string_view text, std::size_t position);

void append_utf8(std::string& out, std::uint32_t codepoint);

// Appends the valid UTF-8 of `bytes` to `out`, maximal invalid subparts as U+FFFD, and returns
// how many bytes it used. Unless `final`, it stops before a trailing character that is still
// incomplete, so that the rest can be passed again once more bytes arrive.
std::size_t append_sanitized_utf8(std::string_view bytes, bool final, std::string& out);

}  // namespace persona::detail
