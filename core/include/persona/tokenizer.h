#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace persona {

class GgufFile;
class Tokenizer;
namespace detail {
struct TokenizerBuilder;
}

// Token kinds as GGUF numbers them (tokenizer.ggml.token_type), which are SentencePiece's.
enum class TokenType : std::int32_t {
    Undefined = 0,
    Normal = 1,
    Unknown = 2,
    Control = 3,      // <|im_start|>, <bos>: structure, no text of their own
    UserDefined = 4,  // always matched whole in input text (Gemma's "\n\n", "<b>")
    Unused = 5,
    Byte = 6,         // SentencePiece byte fallback pieces, "<0xE2>"
};

// Everything a tokenizer is built from, as plain data: from_gguf fills it from the file's
// tokenizer.ggml.* metadata, and tests build small ones by hand.
struct TokenizerVocabulary {
    std::string model;                   // "gpt2" (byte-level BPE) or "llama" (SentencePiece-style)
    std::string pre;                     // byte-level BPE pre-tokenizer, e.g. "smollm", "llama-bpe"
    std::vector<std::string> tokens;
    std::vector<TokenType> types;        // empty means every token is Normal
    std::vector<float> scores;           // "llama" only: higher merges first
    // "left right", highest priority first: "gpt2", and "llama" from a tokenizer.json, whose `pre`
    // names its Metaspace scheme ("metaspace-first", ...): merged by rank then, not by score
    std::vector<std::string> merges;
    std::optional<std::int32_t> bos_id, eos_id, unknown_id, padding_id, end_of_turn_id;
    bool add_bos = false;
    bool add_eos = false;
    bool add_space_prefix = false;       // "llama" only: a space goes in front of the text
};

// A token a Hugging Face tokenizer adds on top of its model's vocabulary (tokenizer.json's
// "added_tokens"): special ones become Control tokens, the others UserDefined.
struct AddedToken {
    std::int32_t id = 0;
    std::string text;
    bool special = true;
};

// How a SentencePiece model file is turned into a tokenizer; everything is optional.
struct SentencePieceOptions {
    std::optional<bool> add_bos;        // default: when the model has a BOS piece (as llama.cpp does)
    std::optional<bool> add_eos;        // default: no
    std::optional<std::string> bos_text, eos_text, padding_text;  // override the model's own ids
    std::vector<AddedToken> added_tokens;  // ids past the model's pieces extend the vocabulary
    std::size_t vocabulary_size = 0;    // pad with Unused tokens up to this many ids (embedding rows)
};

// Splits text (UTF-8) into a model's tokens and back. Built once per model, then safe to use
// from several threads at once.
//
// Byte-level BPE ("gpt2" models) understands the pre-tokenizers "gpt2", "smollm" (and its
// StarCoder relatives "starcoder", "refact"), "llama-bpe"/"llama3" and "qwen2"; a file without a
// pre-tokenizer name, or with "default", gets the GPT-2 split, as llama.cpp does. Any other name
// is refused with a FileError rather than guessed, because a wrong split still produces
// plausible-looking ids the model was never trained on.
//
// SentencePiece-style ("llama" models with scores) merges the pair whose merged piece scores
// highest, then falls back to <0xNN> byte pieces for text the vocabulary lacks.
class Tokenizer {
public:
    // Throws FileError naming the file and the missing or inconsistent tokenizer.ggml.* key.
    static std::unique_ptr<Tokenizer> from_gguf(const GgufFile& file);
    // `source` names where the vocabulary came from, for error messages.
    static std::unique_ptr<Tokenizer> from_vocabulary(TokenizerVocabulary vocabulary, const std::string& source);
    // A SentencePiece model file (tokenizer.model). Text is encoded by the sentencepiece library
    // itself, so unigram and BPE models, their normalizers and byte fallback all behave exactly as
    // the model's authors' tooling; control tokens, decoding and streaming are ours, as for GGUF
    // vocabularies (model_name() is "llama"). The library is reached through
    // libpersona_sentencepiece, loaded at run time (see sentencepiece_library_path()).
    // Throws FileError naming the file, or naming where the library was looked for.
    static std::unique_ptr<Tokenizer> from_sentencepiece(const std::string& model_path,
                                                         const SentencePieceOptions& options = {});
    ~Tokenizer();
    Tokenizer(const Tokenizer&) = delete;
    Tokenizer& operator=(const Tokenizer&) = delete;

    // add_special: BOS/EOS where the model's metadata asks for them.
    // parse_special: control tokens written in the text ("<|im_start|>") become those tokens;
    // when off they are encoded as ordinary text, which is what untrusted user text needs.
    // User-defined tokens are always matched, as both llama.cpp and the models' own tokenizers do.
    // Invalid UTF-8 in the text is encoded byte by byte rather than rejected.
    std::vector<std::int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;

    // Text of the ids. With render_special_tokens, control tokens appear as their text
    // ("<|im_end|>"); without, they vanish. Bytes that do not form UTF-8 become U+FFFD.
    std::string decode(const std::vector<std::int32_t>& ids, bool render_special_tokens = true) const;

    // The vocabulary entry as stored ("Ġworld", "▁world", "<0x0A>").
    const std::string& token_text(std::int32_t id) const;
    // The bytes the token stands for in decoded text (" world", "\n"); may be part of a
    // UTF-8 character.
    std::string token_bytes(std::int32_t id, bool render_special_tokens = true) const;
    std::optional<std::int32_t> find_token(std::string_view text) const;

    TokenType token_type(std::int32_t id) const;
    bool is_control(std::int32_t id) const { return token_type(id) == TokenType::Control; }
    // Control, user-defined, unknown and unused tokens: the ones matched or emitted whole
    // rather than produced by the merge algorithm.
    bool is_special(std::int32_t id) const;
    // Tokens after which generation stops: EOS, end-of-turn, and the control tokens the chat
    // families close a turn with (<|im_end|>, <end_of_turn>, <|eot_id|>).
    const std::vector<std::int32_t>& end_of_generation_ids() const;
    bool is_end_of_generation(std::int32_t id) const;
    // More ids that end generation (a checkpoint's generation_config.json lists them). For the
    // loader, before the tokenizer is shared; throws Error for an id outside the vocabulary.
    void add_end_of_generation_ids(const std::vector<std::int32_t>& ids);

    std::optional<std::int32_t> bos_id() const;
    std::optional<std::int32_t> eos_id() const;
    bool adds_bos() const;
    std::size_t vocab_size() const;
    const std::string& model_name() const;  // "gpt2" or "llama"
    const std::string& pre_name() const;
    // SentencePiece models with add_space_prefix put a space in front of the text when
    // encoding; decoding takes it off the first piece again.
    bool strips_leading_space() const;

private:
    friend struct detail::TokenizerBuilder;
    struct Impl;
    explicit Tokenizer(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// Decodes generated tokens one at a time, for showing text as it is produced. Each push returns
// only whole UTF-8 characters: the bytes of a character split over several tokens (byte-level
// BPE, or SentencePiece <0xE2><0x9C><0x85>) are held back until it is complete, so every
// returned piece is valid UTF-8 and the pieces concatenated (with finish()) equal decode()
// with the same render_special_tokens.
class StreamingDecoder {
public:
    explicit StreamingDecoder(const Tokenizer& tokenizer, bool render_special_tokens = false);
    std::string push(std::int32_t id);
    // Whatever is still held back, an incomplete character as U+FFFD; then starts afresh.
    std::string finish();
    void reset();

private:
    const Tokenizer& tokenizer_;
    bool render_special_tokens_;
    bool at_start_ = true;
    std::string pending_;
};

// Splits text the way a byte-level BPE pre-tokenizer ("smollm", "llama3", ...) does before
// merging, as raw UTF-8 pieces. Exposed for tests and for showing users where words break.
std::vector<std::string> byte_level_pretokenize(std::string_view text, const std::string& pre_name);

// Where libpersona_sentencepiece was loaded from, loading it now if it is not yet; throws
// persona::Error listing every place it looked. Searched in order: $PERSONA_SENTENCEPIECE_LIBRARY
// (when set, only there); the installed layout relative to the executable
// (<bindir>/../lib/.../persona-workbench/); the executable's own directory; the build tree.
std::string sentencepiece_library_path();

// Replaces bytes that are not UTF-8 with U+FFFD, each maximal invalid stretch per character
// position as Python's "replace" error handler does.
std::string sanitize_utf8(std::string_view bytes);

}  // namespace persona
