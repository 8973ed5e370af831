// Hugging Face checkpoint directories as a model: config.json gives the config, safetensors
// (one file or shards) the weights under Hugging Face's names, tokenizer.json or tokenizer.model
// the tokenizer, and tokenizer_config.json the special tokens and chat template.
#include "model/model_files.h"

#include "persona/errors.h"
#include "formats/hf_config.h"
#include "formats/safetensors.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <map>

namespace persona::model {

namespace {

namespace fs = std::filesystem;

constexpr const char* kConfigFile = "config.json";
constexpr const char* kTokenizerJson = "tokenizer.json";
constexpr const char* kTokenizerModel = "tokenizer.model";
constexpr const char* kTokenizerConfig = "tokenizer_config.json";
constexpr const char* kGenerationConfig = "generation_config.json";

bool is_file(const fs::path& path) {
    std::error_code error;
    return fs::is_regular_file(path, error);
}

// Our architecture names (GGUF's), from config.json's model_type.
std::string architecture_of(const HfConfig& hf, const std::string& config_path) {
    for (const char* same : {"llama", "mistral", "qwen2", "qwen3", "phi3"})
        if (hf.model_type == same) return hf.model_type;
    if (hf.model_type == "gemma3_text") return "gemma3";
    throw FileError(config_path, "model_type '" + hf.model_type +
                                     "' is not supported (supported: llama, mistral, qwen2, qwen3, phi3, gemma3_text)");
}

constexpr double kPi = 3.14159265358979323846;

// Transformers' Llama 3 RoPE scaling, as per-frequency divisors (llama.cpp's rope_freqs).
std::vector<float> llama3_rope_factors(const nlohmann::json& scaling, int head_dim, double base, const std::string& path) {
    const auto number = [&](const char* key) {
        const auto it = scaling.find(key);
        if (it == scaling.end() || !it->is_number())
            throw FileError(path, std::string("rope_scaling of type llama3 needs a number '") + key + "'");
        return it->get<double>();
    };
    const double factor = number("factor"), low = number("low_freq_factor"), high = number("high_freq_factor");
    const double old_context = number("original_max_position_embeddings");
    if (factor <= 0 || low <= 0 || high <= low || old_context <= 0)
        throw FileError(path, "rope_scaling of type llama3 has implausible values: " + scaling.dump());
    const double low_wavelength = old_context / low, high_wavelength = old_context / high;
    std::vector<float> factors;
    for (int i = 0; i < head_dim; i += 2) {
        const double wavelength = 2 * kPi * std::pow(base, static_cast<double>(i) / head_dim);
        if (wavelength < high_wavelength) {
            factors.push_back(1.0f);
        } else if (wavelength > low_wavelength) {
            factors.push_back(static_cast<float>(factor));
        } else {
            const double smooth = (old_context / wavelength - low) / (high - low);
            factors.push_back(static_cast<float>(1.0 / ((1 - smooth) / factor + smooth)));
        }
    }
    return factors;
}

// Phi-3's "longrope": per-frequency divisors, the short ones while a sequence fits the original
// context and the long ones beyond it, and a factor on cos and sin. transformers switches to the
// long divisors mid-sequence, which leaves the keys already cached rotated by the short ones;
// rather than reproduce that, the usable context stops at the original one (4096 for Phi-3.5 and
// Phi-4-mini), which is far more than extraction and steering prompts use.
void apply_longrope(const nlohmann::json& scaling, const HfConfig& hf, TransformerConfig& c, const std::string& path) {
    std::optional<std::int64_t> original = hf.original_max_position_embeddings;
    if (const auto it = scaling.find("original_max_position_embeddings"); it != scaling.end() && it->is_number_integer())
        original = it->get<std::int64_t>();
    if (!original || *original <= 0)
        throw FileError(path, "rope_scaling of type longrope needs a positive original_max_position_embeddings");
    const auto short_factor = scaling.find("short_factor");
    if (short_factor == scaling.end() || !short_factor->is_array() ||
        short_factor->size() != static_cast<std::size_t>(c.head_dim / 2))
        throw FileError(path, "rope_scaling of type longrope needs a short_factor list of " +
                                  std::to_string(c.head_dim / 2) + " numbers (half the head size)");
    for (const auto& value : *short_factor) {
        if (!value.is_number()) throw FileError(path, "rope_scaling short_factor holds a non-number: " + value.dump());
        c.rope_freq_factors.push_back(value.get<float>());
    }
    const double factor = static_cast<double>(c.context) / static_cast<double>(*original);
    const auto attention_factor = scaling.find("attention_factor");
    if (attention_factor != scaling.end() && attention_factor->is_number())
        c.rope_attention_factor = attention_factor->get<double>();
    else if (factor > 1)
        c.rope_attention_factor = std::sqrt(1 + std::log(factor) / std::log(static_cast<double>(*original)));
    c.context = static_cast<int>(std::min<std::int64_t>(c.context, *original));
}

TransformerConfig read_transformer_config(const HfConfig& hf, const std::string& path) {
    TransformerConfig c;
    c.architecture = architecture_of(hf, path);
    const bool gemma3 = c.architecture == "gemma3";
    const auto size = [&](std::int64_t value, const char* key) {
        if (value <= 0 || value > (1 << 24))
            throw FileError(path, std::string("key '") + key + "' has implausible value " + std::to_string(value));
        return static_cast<int>(value);
    };
    c.layers = size(hf.num_hidden_layers, "num_hidden_layers");
    c.hidden = size(hf.hidden_size, "hidden_size");
    c.heads = size(hf.num_attention_heads, "num_attention_heads");
    c.kv_heads = size(hf.num_key_value_heads, "num_key_value_heads");
    if (hf.head_dim) {
        c.head_dim = size(*hf.head_dim, "head_dim");
    } else {
        if (c.hidden % c.heads != 0)
            throw FileError(path, "hidden_size " + std::to_string(c.hidden) + " does not split into " +
                                      std::to_string(c.heads) + " heads and there is no head_dim");
        c.head_dim = c.hidden / c.heads;
    }
    if (c.head_dim % 2 != 0) throw FileError(path, "head dimension " + std::to_string(c.head_dim) + " is odd");
    c.feed_forward = size(hf.intermediate_size, "intermediate_size");
    c.vocabulary = size(hf.vocab_size, "vocab_size");
    c.context = hf.max_position_embeddings ? size(*hf.max_position_embeddings, "max_position_embeddings") : 2048;
    c.rms_eps = hf.rms_norm_eps.value_or(1e-6);
    // Gemma scales queries by query_pre_attn_scalar^-1/2, which is not always head_dim's.
    const double query_scalar = gemma3 ? hf.query_pre_attn_scalar.value_or(c.head_dim) : c.head_dim;
    if (query_scalar <= 0) throw FileError(path, "key 'query_pre_attn_scalar' is not positive");
    c.attention_scale = 1.0 / std::sqrt(query_scalar);
    c.rope_base = hf.rope_theta.value_or(gemma3 ? 1e6 : 10000.0);
    c.sliding_layer.assign(static_cast<std::size_t>(c.layers), false);

    const std::string activation = gemma3 ? "gelu_pytorch_tanh" : "silu";
    if (hf.hidden_act && *hf.hidden_act != activation)
        throw FileError(path, "hidden activation '" + *hf.hidden_act + "' is not supported for " + hf.model_type +
                                  " (expected '" + activation + "')");

    if (gemma3) {
        c.sliding_window = hf.sliding_window ? size(*hf.sliding_window, "sliding_window") : 0;
        c.local_rope_base = hf.rope_local_base_freq.value_or(10000.0);
        if (!hf.layer_types.empty()) {
            if (hf.layer_types.size() != static_cast<std::size_t>(c.layers))
                throw FileError(path, "layer_types lists " + std::to_string(hf.layer_types.size()) + " layers, not " +
                                          std::to_string(c.layers));
            for (std::size_t i = 0; i < hf.layer_types.size(); ++i) {
                const std::string& type = hf.layer_types[i];
                if (type != "sliding_attention" && type != "full_attention")
                    throw FileError(path, "layer_types holds unknown type '" + type + "'");
                c.sliding_layer[i] = c.sliding_window > 0 && type == "sliding_attention";
            }
        } else {
            const std::int64_t pattern = hf.sliding_window_pattern.value_or(6);
            if (pattern <= 0) throw FileError(path, "key 'sliding_window_pattern' is not positive");
            for (int i = 0; i < c.layers; ++i)
                c.sliding_layer[static_cast<std::size_t>(i)] = c.sliding_window > 0 && (i + 1) % pattern != 0;
        }
    } else if (hf.model_type == "mistral" || hf.model_type == "phi3") {
        // Mistral 7B v0.1 attends to the last 4096 positions in every block (later versions set
        // null), Phi-3-mini-4k to the last 2047. llama.cpp ignores it; it changes nothing until a
        // sequence outgrows the window.
        c.sliding_window = hf.sliding_window ? size(*hf.sliding_window, "sliding_window") : 0;
        c.sliding_layer.assign(static_cast<std::size_t>(c.layers), c.sliding_window > 0);
    } else if (hf.use_sliding_window.value_or(false)) {
        throw FileError(path, "use_sliding_window is set, which this version does not support for " + hf.model_type);
    }

    if (hf.partial_rotary_factor && *hf.partial_rotary_factor != 1.0)
        throw FileError(path, "partial_rotary_factor " + std::to_string(*hf.partial_rotary_factor) +
                                  " (RoPE on part of each head, as in Phi-4-mini) is not supported yet");
    if (!hf.rope_scaling_json.empty()) {
        const auto scaling = nlohmann::json::parse(hf.rope_scaling_json);
        std::string type = scaling.value("rope_type", std::string());
        if (type.empty()) type = scaling.value("type", std::string());
        if (type == "linear") {
            const auto factor = scaling.find("factor");
            if (factor == scaling.end() || !factor->is_number() || factor->get<double>() <= 0)
                throw FileError(path, "rope_scaling of type linear needs a positive 'factor'");
            c.rope_linear_factor = factor->get<double>();
        } else if (type == "llama3") {
            c.rope_freq_factors = llama3_rope_factors(scaling, c.head_dim, c.rope_base, path);
        } else if (type == "longrope") {
            apply_longrope(scaling, hf, c, path);
        } else if (!type.empty() && type != "default") {
            throw FileError(path, "rope_scaling type '" + type + "' is not supported (supported: linear, llama3, longrope)");
        }
    }
    return c;
}

// Hugging Face's name for a tensor the architecture files ask for by its GGUF name.
std::string hf_tensor_name(const std::string& gguf_name, const std::string& architecture) {
    static const std::map<std::string, std::string> kGlobal = {
        {"token_embd.weight", "model.embed_tokens.weight"},
        {"output.weight", "lm_head.weight"},
        {"output_norm.weight", "model.norm.weight"},
    };
    if (const auto it = kGlobal.find(gguf_name); it != kGlobal.end()) return it->second;
    // blk.N.part.kind
    const std::size_t index_start = 4, index_end = gguf_name.find('.', index_start);
    const std::size_t kind_start = gguf_name.rfind('.');
    if (gguf_name.rfind("blk.", 0) != 0 || index_end == std::string::npos || kind_start <= index_end)
        throw Error("internal: no Hugging Face name for tensor '" + gguf_name + "'");
    const std::string layer = gguf_name.substr(index_start, index_end - index_start);
    const std::string part = gguf_name.substr(index_end + 1, kind_start - index_end - 1);
    const std::string kind = gguf_name.substr(kind_start + 1);  // weight or bias
    const bool gemma3 = architecture == "gemma3";
    static const std::map<std::string, std::string> kParts = {
        {"attn_norm", "input_layernorm"},
        {"attn_q", "self_attn.q_proj"},
        {"attn_k", "self_attn.k_proj"},
        {"attn_v", "self_attn.v_proj"},
        {"attn_qkv", "self_attn.qkv_proj"},
        {"attn_output", "self_attn.o_proj"},
        {"attn_q_norm", "self_attn.q_norm"},
        {"attn_k_norm", "self_attn.k_norm"},
        {"ffn_gate", "mlp.gate_proj"},
        {"ffn_up", "mlp.up_proj"},
        {"ffn_down", "mlp.down_proj"},
        {"post_attention_norm", "post_attention_layernorm"},
        {"post_ffw_norm", "post_feedforward_layernorm"},
    };
    std::string hf_part;
    if (part == "ffn_norm")  // the norm before the feed-forward: Gemma has one after attention too
        hf_part = gemma3 ? "pre_feedforward_layernorm" : "post_attention_layernorm";
    else if (part == "ffn_up" && architecture == "phi3")  // gate and up in one matrix, as in GGUF
        hf_part = "mlp.gate_up_proj";
    else if (const auto it = kParts.find(part); it != kParts.end())
        hf_part = it->second;
    else
        throw Error("internal: no Hugging Face name for tensor '" + gguf_name + "'");
    return "model.layers." + layer + "." + hf_part + "." + kind;
}

class SafetensorsWeights final : public WeightSource {
public:
    SafetensorsWeights(std::unique_ptr<SafetensorsCheckpoint> checkpoint, TransformerConfig config, bool tied_embeddings,
                       std::string config_path)
        : checkpoint_(std::move(checkpoint)), config_(std::move(config)), tied_embeddings_(tied_embeddings),
          config_path_(std::move(config_path)) {}

    const std::string& path() const override { return checkpoint_->directory(); }
    const TransformerConfig& config() const override { return config_; }

    bool has(const std::string& name) const override {
        // Tied embeddings mean the embedding is the output projection, whatever else is stored;
        // untied ones must be there, so reading them reports their absence.
        if (name == "output.weight") return !tied_embeddings_;
        return checkpoint_->find_tensor(hf_tensor_name(name, config_.architecture)).has_value();
    }

    torch::Tensor read(const std::string& name, const std::vector<std::int64_t>& shape) const override {
        const std::string hf_name = hf_tensor_name(name, config_.architecture);
        const SafetensorsCheckpoint::Tensor tensor = checkpoint_->tensor(hf_name);
        if (tensor.info->shape != shape)
            throw FileError(tensor.file->path(), "tensor '" + hf_name + "' has shape " + shape_text(tensor.info->shape) +
                                                     ", expected " + shape_text(shape) + " from " + config_path_);
        torch::Tensor out = torch::empty(shape, torch::kFloat32);
        try {
            convert_to_float(*tensor.info, tensor.data(), out.data_ptr<float>());
        } catch (const FileError&) {
            throw;
        } catch (const Error& e) {
            throw FileError(tensor.file->path(), e.what());
        }
        return out;
    }

    std::size_t tensor_count() const override { return checkpoint_->tensors().size(); }
    bool llama_qk_rows_permuted() const override { return false; }
    bool gemma_norms_include_one() const override { return false; }

private:
    std::unique_ptr<SafetensorsCheckpoint> checkpoint_;
    TransformerConfig config_;
    bool tied_embeddings_;
    std::string config_path_;
};

// tokenizer.json when it is a byte-level BPE, or a SentencePiece BPE spelled with Metaspace and no
// tokenizer.model beside it; otherwise tokenizer.model through the sentencepiece library (exact by
// construction), taking over tokenizer.json's added tokens. Either way padded to the embedding's rows.
std::unique_ptr<Tokenizer> open_tokenizer(const fs::path& directory, const HfTokenizerConfig& config, int vocabulary) {
    const fs::path json_path = directory / kTokenizerJson;
    const fs::path model_path = directory / kTokenizerModel;
    std::vector<AddedToken> added_tokens;
    if (is_file(json_path)) {
        HfTokenizerJson parsed = read_hf_tokenizer_json(json_path.string(), config);
        const bool sentencepiece_style = parsed.unsupported.empty() && parsed.vocabulary.model == "llama";
        if (parsed.unsupported.empty() && !(sentencepiece_style && is_file(model_path))) {
            TokenizerVocabulary& v = parsed.vocabulary;
            if (v.tokens.size() > static_cast<std::size_t>(vocabulary))
                throw FileError(json_path.string(), "has " + std::to_string(v.tokens.size()) +
                                                        " tokens but config.json's vocab_size is " +
                                                        std::to_string(vocabulary));
            while (v.tokens.size() < static_cast<std::size_t>(vocabulary)) {
                v.tokens.push_back("[PAD" + std::to_string(v.tokens.size()) + "]");
                v.types.push_back(TokenType::Unused);
            }
            return Tokenizer::from_vocabulary(std::move(v), json_path.string());
        }
        if (!is_file(model_path))
            throw FileError(json_path.string(), "cannot be used: " + parsed.unsupported + "; and there is no " +
                                                    kTokenizerModel + " beside it");
        added_tokens = std::move(parsed.added_tokens);
    } else if (!is_file(model_path)) {
        throw FileError(directory.string(), std::string("has no tokenizer: neither ") + kTokenizerJson + " nor " +
                                                kTokenizerModel + " is there");
    }
    SentencePieceOptions options;
    options.add_bos = config.add_bos_token;
    options.add_eos = config.add_eos_token;
    options.bos_text = config.bos_token;
    options.eos_text = config.eos_token;
    options.padding_text = config.pad_token;
    options.added_tokens = std::move(added_tokens);
    options.vocabulary_size = static_cast<std::size_t>(vocabulary);
    return Tokenizer::from_sentencepiece(model_path.string(), options);
}

ModelFacts read_facts(const fs::path& directory, const TransformerConfig& c,
                      const SafetensorsCheckpoint& checkpoint, const Tokenizer& tokenizer, bool has_chat_template) {
    ModelFacts facts;
    facts.path = directory.string();
    facts.name = fs::path(directory).lexically_normal().filename().string();
    if (facts.name.empty()) facts.name = fs::path(directory).lexically_normal().parent_path().filename().string();
    facts.architecture = c.architecture;
    facts.layers = c.layers;
    facts.hidden_size = c.hidden;
    facts.feed_forward_size = c.feed_forward;
    facts.attention_heads = c.heads;
    facts.kv_heads = c.kv_heads;
    facts.head_dim = c.head_dim;
    facts.vocabulary_size = c.vocabulary;
    facts.context_length = c.context;
    std::map<std::string, std::uint64_t> bytes_by_type;
    for (const auto& [name, tensor] : checkpoint.tensors()) {
        facts.parameters += tensor.info->element_count();
        facts.tensor_types[tensor.info->dtype] += 1;
        bytes_by_type[tensor.info->dtype] += tensor.info->byte_size;
    }
    for (const auto& shard : checkpoint.shards()) facts.file_bytes += shard->file_size();
    std::uint64_t most = 0;
    for (const auto& [type, bytes] : bytes_by_type) {
        if (bytes > most) {
            most = bytes;
            facts.file_type = type;
        }
    }
    facts.tokenizer_model = tokenizer.model_name();
    facts.has_chat_template = has_chat_template;
    return facts;
}

}  // namespace

ModelFiles open_hf_checkpoint(const std::string& directory) {
    const fs::path dir(directory);
    const fs::path config_path = dir / kConfigFile;
    if (!is_file(config_path))
        throw FileError(directory, std::string("is a directory without ") + kConfigFile +
                                       ": a model is a .gguf file or a Hugging Face checkpoint directory (" +
                                       kConfigFile + ", model.safetensors, tokenizer files)");
    const HfConfig hf = read_hf_config(config_path.string());
    TransformerConfig config = read_transformer_config(hf, config_path.string());

    HfTokenizerConfig tokenizer_config;
    const fs::path tokenizer_config_path = dir / kTokenizerConfig;
    if (is_file(tokenizer_config_path)) tokenizer_config = read_hf_tokenizer_config(tokenizer_config_path.string());

    ModelFiles files;
    files.tokenizer = open_tokenizer(dir, tokenizer_config, config.vocabulary);
    // Models whose turns end in a token other than the tokenizer's EOS (Llama 3's <|eot_id|>,
    // Qwen2's <|im_end|>) say so in generation_config.json.
    if (const fs::path generation_path = dir / kGenerationConfig; is_file(generation_path)) {
        const HfGenerationConfig generation = read_hf_generation_config(generation_path.string());
        for (const auto id : generation.eos_token_ids)
            if (id >= config.vocabulary)
                throw FileError(generation_path.string(), "eos_token_id " + std::to_string(id) +
                                                              " is outside the vocabulary of " +
                                                              std::to_string(config.vocabulary) + " tokens");
        files.tokenizer->add_end_of_generation_ids(generation.eos_token_ids);
    }
    auto checkpoint = SafetensorsCheckpoint::open_directory(directory);

    // A model whose chat format we do not know still loads (as for GGUF files).
    try {
        const auto text_of = [&](const std::optional<std::int32_t>& id) {
            return id ? files.tokenizer->token_text(*id) : std::string();
        };
        files.chat = ChatTemplate::detect(tokenizer_config.chat_template.value_or(""), config.architecture,
                                          text_of(files.tokenizer->bos_id()), text_of(files.tokenizer->eos_id()),
                                          is_file(tokenizer_config_path) ? tokenizer_config_path.string() : directory);
    } catch (const Error& e) {
        files.chat_error = e.what();
    }
    files.facts = read_facts(dir, config, *checkpoint, *files.tokenizer, tokenizer_config.chat_template.has_value());
    // Gemma ties its embeddings unless told otherwise; Llama, Mistral and Qwen2 do not.
    const bool tied = hf.tie_word_embeddings.value_or(config.architecture == "gemma3");
    files.weights =
        std::make_unique<SafetensorsWeights>(std::move(checkpoint), std::move(config), tied, config_path.string());
    return files;
}

}  // namespace persona::model
