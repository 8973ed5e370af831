#pragma once
#include "persona/tokenizer.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace persona {

// The parts of a Hugging Face config.json that decoder models need. Keys marked optional are
// absent from some architectures, and their defaults differ between them (tie_word_embeddings
// defaults to true for Gemma and false for Llama), so the model code, not this reader, decides.
struct HfConfig {
    std::string model_type;
    std::vector<std::string> architectures;  // empty when absent
    std::int64_t hidden_size = 0;
    std::int64_t num_hidden_layers = 0;
    std::int64_t num_attention_heads = 0;
    std::int64_t num_key_value_heads = 0;  // num_attention_heads when absent, as in transformers
    std::optional<std::int64_t> head_dim;  // hidden_size / num_attention_heads when absent
    std::int64_t intermediate_size = 0;
    std::int64_t vocab_size = 0;
    std::optional<std::int64_t> max_position_embeddings;
    std::optional<double> rms_norm_eps;
    std::optional<double> rope_theta;
    std::optional<bool> tie_word_embeddings;
    std::optional<std::int64_t> sliding_window;
    std::optional<double> query_pre_attn_scalar;
    std::optional<std::string> torch_dtype;  // "dtype" in newer transformers
    std::string rope_scaling_json;            // the rope_scaling object as JSON text; empty when absent
    std::optional<std::string> hidden_act;    // "hidden_activation" in Gemma configs
    std::optional<double> rope_local_base_freq;          // Gemma 3: RoPE base of sliding-window layers
    std::optional<std::int64_t> sliding_window_pattern;  // Gemma 3 (older configs): every Nth layer is global
    std::vector<std::string> layer_types;                // "sliding_attention" / "full_attention" per layer
    std::optional<bool> use_sliding_window;              // Qwen2: false means sliding_window is unused
    std::optional<std::int64_t> original_max_position_embeddings;  // Phi-3: the context longrope extends
    std::optional<double> partial_rotary_factor;         // Phi-4-mini: RoPE on part of each head
};

// Throws FileError naming the file and the key when a required key is missing or any key has
// the wrong type.
HfConfig read_hf_config(const std::string& path);

// generation_config.json, as far as generation needs it: eos_token_id is one id or a list
// (Llama 3 lists <|end_of_text|>, <|eom_id|> and <|eot_id|>); every one of them ends generation.
struct HfGenerationConfig {
    std::vector<std::int32_t> eos_token_ids;  // empty when absent or null
};

// Throws FileError naming the file and the key when eos_token_id is neither an id nor a list
// of ids.
HfGenerationConfig read_hf_generation_config(const std::string& path);

struct HfTokenizerConfig {
    std::optional<std::string> chat_template;
    std::optional<std::string> bos_token;
    std::optional<std::string> eos_token;
    std::optional<std::string> pad_token;
    std::optional<std::string> unk_token;
    std::optional<bool> add_bos_token;
    std::optional<bool> add_eos_token;
};

// Reads tokenizer_config.json. chat_template may be a string or a list of {name, template}
// (the "default" one is taken); without one there, a chat_template.jinja beside the file is
// used, as newer transformers save it that way. Tokens may be strings or {"content": ...}.
HfTokenizerConfig read_hf_tokenizer_config(const std::string& path);

// A Hugging Face tokenizer.json, as far as we use it: a byte-level BPE ("gpt2" in GGUF terms) or
// a Metaspace-spelled SentencePiece BPE ("llama") becomes a vocabulary for Tokenizer::from_vocabulary; any tokenizer's added tokens are read so
// that a tokenizer.model beside it can take them over.
struct HfTokenizerJson {
    std::string model_type;                // "BPE", "Unigram", "WordPiece", ...
    std::string unsupported;               // why it is not a byte-level BPE we can run; empty when it is
    TokenizerVocabulary vocabulary;        // when supported: model "gpt2" and the recognised pre-tokenizer
    std::vector<AddedToken> added_tokens;  // "special" ones become Control tokens, the others UserDefined
};

// The pre-tokenizer is recognised from its configuration, never guessed:
//   ByteLevel(use_regex)                                  -> "gpt2"
//   Sequence[Digits(individual_digits), ByteLevel(use_regex)]  -> "smollm" (SmolLM, StarCoder)
//   Sequence[Split(Llama 3's regex), ByteLevel]           -> "llama-bpe"
//   Sequence[Split(Qwen2's regex), ByteLevel]             -> "qwen2"
//   Sequence[Split(GPT-2's regex), ByteLevel]             -> "gpt2"
// and SentencePiece BPE models (model "llama", merged by rank, <0xNN> byte pieces as Byte tokens):
//   normalizer Sequence[Prepend(U+2581), Replace(" ", U+2581)]  -> "metaspace-legacy" (Llama 2)
//   pre_tokenizer Metaspace(U+2581, prepend_scheme, split)      -> "metaspace-first[-split]", ...
// Anything else leaves `unsupported` saying what was found. Special tokens (BOS, EOS, padding,
// unknown) and add_bos/add_eos come from `config` (tokenizer_config.json), add_bos otherwise from
// the post-processor. Throws FileError naming the file for JSON that is broken or inconsistent
// (duplicate ids, merges of unknown tokens, a bos_token that is not a token).
HfTokenizerJson read_hf_tokenizer_json(const std::string& path, const HfTokenizerConfig& config);

}  // namespace persona
