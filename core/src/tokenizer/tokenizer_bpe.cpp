// Byte-level BPE as GPT-2 introduced it and SmolLM2, Llama 3 and Qwen2 use it: the text is cut
// into words by the model's pre-tokenizer regexes, every byte of a word becomes a token, and
// adjacent pairs are merged by rank (earliest merge first) until no listed merge applies.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "persona/errors.h"
#include "tokenizer/tokenizer_internal.h"

#include <array>
#include <mutex>

namespace persona {
namespace detail {
namespace {

// The regexes are the ones in each model's tokenizer.json (llama.cpp uses the same ones).
constexpr const char* kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr const char* kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Hugging Face's Digits(individual_digits=True): every numeric character is a word of its own.
constexpr const char* kSingleDigitRegex = R"(\p{N})";

// Regexes applied one after another, each to the pieces the previous one left. Matches and the
// text between them both become pieces (Hugging Face's "isolated" split behaviour).
class PreTokenizer {
public:
    PreTokenizer(const std::string& pre_name, const std::string& source) {
        std::vector<const char*> patterns;
        if (pre_name.empty() || pre_name == "default" || pre_name == "gpt2" || pre_name == "gpt-2")
            patterns = {kGpt2Regex};
        else if (pre_name == "smollm" || pre_name == "starcoder" || pre_name == "refact")
            patterns = {kSingleDigitRegex, kGpt2Regex};
        else if (pre_name == "llama-bpe" || pre_name == "llama3")
            patterns = {kLlama3Regex};
        else if (pre_name == "qwen2")
            patterns = {kQwen2Regex};
        else
            throw FileError(source, "tokenizer.ggml.pre '" + pre_name +
                                        "' is not a supported pre-tokenizer (supported: gpt2, default, smollm, "
                                        "starcoder, refact, llama-bpe, llama3, qwen2)");
        for (const char* pattern : patterns) {
            int error_code = 0;
            PCRE2_SIZE error_offset = 0;
            // MATCH_INVALID_UTF lets invalid bytes through as unmatched gaps instead of failing
            // the whole match, so any byte string can be encoded.
            pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED,
                                             PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error_code,
                                             &error_offset, nullptr);
            if (!code) {
                PCRE2_UCHAR message[256];
                pcre2_get_error_message(error_code, message, sizeof message);
                throw Error("internal: pre-tokenizer regex does not compile: " +
                            std::string(reinterpret_cast<const char*>(message)));
            }
            pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter without JIT
            regexes_.emplace_back(code);
        }
    }

    template <typename Visitor>
    void split(std::string_view text, Visitor&& visit) const {
        std::vector<std::string_view> pieces{text};
        std::vector<std::string_view> next;
        for (const auto& regex : regexes_) {
            MatchData match(pcre2_match_data_create_from_pattern(regex.get(), nullptr));
            next.clear();
            for (const auto piece : pieces) split_one(regex.get(), match.get(), piece, next);
            pieces.swap(next);
        }
        for (const auto piece : pieces) visit(piece);
    }

private:
    struct CodeFree {
        void operator()(pcre2_code* code) const { pcre2_code_free(code); }
    };
    struct MatchDataFree {
        void operator()(pcre2_match_data* data) const { pcre2_match_data_free(data); }
    };
    using MatchData = std::unique_ptr<pcre2_match_data, MatchDataFree>;

    static void split_one(const pcre2_code* regex, pcre2_match_data* match, std::string_view piece,
                          std::vector<std::string_view>& out) {
        const auto* subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
        std::size_t gap_start = 0;
        std::size_t offset = 0;
        while (offset < piece.size()) {
            const int found = pcre2_match(regex, subject, piece.size(), offset, 0, match, nullptr);
            if (found < 0) break;  // no match, or an error: the rest stays one piece
            const PCRE2_SIZE* range = pcre2_get_ovector_pointer(match);
            const std::size_t start = range[0], end = range[1];
            if (end == start) {  // none of the regexes can match nothing; step on regardless
                offset = start + 1;
                continue;
            }
            if (start > gap_start) out.push_back(piece.substr(gap_start, start - gap_start));
            out.push_back(piece.substr(start, end - start));
            gap_start = offset = end;
        }
        if (gap_start < piece.size()) out.push_back(piece.substr(gap_start));
    }

    std::vector<std::unique_ptr<pcre2_code, CodeFree>> regexes_;
};

// GPT-2 spells every byte as a printable character so that vocabulary entries are text:
// printable Latin-1 bytes stand for themselves, the others for U+0100 upwards in byte order.
std::array<std::uint32_t, 256> byte_to_codepoint_table() {
    std::array<std::uint32_t, 256> table{};
    std::uint32_t next_unprintable = 256;
    for (std::uint32_t byte = 0; byte < 256; ++byte) {
        const bool printable = (byte >= 0x21 && byte <= 0x7E) || (byte >= 0xA1 && byte <= 0xAC) || byte >= 0xAE;
        table[byte] = printable ? byte : next_unprintable++;
    }
    return table;
}

class ByteLevelBpe final : public FragmentEncoder {
public:
    ByteLevelBpe(const TokenizerVocabulary& vocabulary, const TokenIndex& index, const std::string& source)
        : vocabulary_(vocabulary), pre_tokenizer_(vocabulary.pre, source),
          merges_(vocabulary.merges, index, source, "tokenizer.ggml.merges entry") {
        const auto byte_codepoints = byte_to_codepoint_table();
        codepoint_to_byte_.fill(-1);
        for (std::size_t byte = 0; byte < 256; ++byte) {
            codepoint_to_byte_[byte_codepoints[byte]] = static_cast<std::int16_t>(byte);
            std::string spelling;
            append_utf8(spelling, byte_codepoints[byte]);
            // Vocabularies may leave out bytes that UTF-8 text never holds (SmolLM2 lacks 0xFF,
            // 0x04 and others); such bytes are dropped from the input, as Hugging Face and
            // llama.cpp both do.
            const auto it = index.find(spelling);
            byte_token_[byte] = it == index.end() ? -1 : it->second;
        }
    }

    void encode(std::string_view fragment, bool, bool, std::vector<std::int32_t>& out) const override {
        pre_tokenizer_.split(fragment, [&](std::string_view word) { encode_word(word, out); });
    }

    std::string token_bytes(std::int32_t id) const override {
        const std::string& text = vocabulary_.tokens[static_cast<std::size_t>(id)];
        std::string bytes;
        bytes.reserve(text.size());
        std::size_t position = 0;
        while (position < text.size()) {
            const auto lead = static_cast<unsigned char>(text[position]);
            const std::size_t length = valid_utf8_length(text, position);
            std::uint32_t codepoint = lead;
            if (length > 1) {
                codepoint = lead & (0xFF >> (length + 1));
                for (std::size_t i = 1; i < length; ++i)
                    codepoint = (codepoint << 6) | (static_cast<unsigned char>(text[position + i]) & 0x3F);
            }
            if (codepoint < codepoint_to_byte_.size() && codepoint_to_byte_[codepoint] >= 0)
                bytes += static_cast<char>(codepoint_to_byte_[codepoint]);
            else
                bytes.append(text, position, length);  // not a byte spelling: keep the text as it is
            position += length;
        }
        return bytes;
    }

private:
    void encode_word(std::string_view word, std::vector<std::int32_t>& out) const {
        // Text repeats its words, so each word's ids are remembered. Long words are rare and
        // would make the cache large, so they are not.
        constexpr std::size_t kLongestCachedWord = 64;
        constexpr std::size_t kMostCachedWords = 1 << 16;
        const bool cacheable = word.size() <= kLongestCachedWord;
        if (cacheable) {
            std::lock_guard<std::mutex> lock(cache_mutex_);
            const auto it = cache_.find(std::string(word));
            if (it != cache_.end()) {
                out.insert(out.end(), it->second.begin(), it->second.end());
                return;
            }
        }
        const std::size_t first_new = out.size();
        merge_word(word, out);
        if (cacheable) {
            std::lock_guard<std::mutex> lock(cache_mutex_);
            if (cache_.size() >= kMostCachedWords) cache_.clear();
            cache_.emplace(std::string(word), std::vector<std::int32_t>(out.begin() + first_new, out.end()));
        }
    }

    void merge_word(std::string_view word, std::vector<std::int32_t>& out) const {
        std::vector<std::int32_t> ids;
        ids.reserve(word.size());
        for (const char c : word)
            if (const std::int32_t id = byte_token_[static_cast<unsigned char>(c)]; id >= 0) ids.push_back(id);
        merges_.merge(ids, out);
    }

    const TokenizerVocabulary& vocabulary_;
    PreTokenizer pre_tokenizer_;
    std::array<std::int32_t, 256> byte_token_{};
    std::array<std::int16_t, 512> codepoint_to_byte_{};
    RankedMerges merges_;
    mutable std::mutex cache_mutex_;
    mutable std::unordered_map<std::string, std::vector<std::int32_t>> cache_;
};

}  // namespace

const char* byte_level_split_regex(std::string_view pre_name) {
    if (pre_name == "gpt2") return kGpt2Regex;
    if (pre_name == "llama-bpe") return kLlama3Regex;
    if (pre_name == "qwen2") return kQwen2Regex;
    return nullptr;
}

std::unique_ptr<FragmentEncoder> make_byte_level_bpe(const TokenizerVocabulary& vocabulary, const TokenIndex& index,
                                                     const std::string& source) {
    return std::make_unique<ByteLevelBpe>(vocabulary, index, source);
}

}  // namespace detail

std::vector<std::string> byte_level_pretokenize(std::string_view text, const std::string& pre_name) {
    const detail::PreTokenizer pre_tokenizer(pre_name, "pre-tokenizer");
    std::vector<std::string> pieces;
    pre_tokenizer.split(text, [&](std::string_view piece) { pieces.emplace_back(piece); });
    return pieces;
}

}  // namespace persona
