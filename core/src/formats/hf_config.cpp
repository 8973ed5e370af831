#include "formats/hf_config.h"

#include "io/json_file.h"
#include "io/json_reader.h"
#include "persona/errors.h"
#include "persona/files.h"

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>

namespace persona {

namespace {

using Json = nlohmann::json;
using detail::indexed;
using detail::JsonObjectReader;

// A key set to null counts as absent: transformers writes null for unset optional fields
// (sliding_window, head_dim).
JsonObjectReader config_reader(const Json& json, const std::string& path) {
    return JsonObjectReader(json, "", path, detail::JsonNull::IsAbsent);
}

// Special tokens are plain strings or AddedToken objects: {"content": "<s>", "lstrip": false, ...}.
std::optional<std::string> read_token(JsonObjectReader& keys, const std::string& key) {
    const Json* value = keys.find(key);
    if (!value) return std::nullopt;
    if (value->is_string()) return value->get<std::string>();
    if (value->is_object()) {
        const auto content = value->find("content");
        if (content != value->end() && content->is_string()) return content->get<std::string>();
    }
    keys.wrong_type(key, "a string or an object with a \"content\" string", *value);
}

std::optional<std::string> read_chat_template(JsonObjectReader& keys) {
    const Json* value = keys.find("chat_template");
    if (!value) return std::nullopt;
    if (value->is_string()) return value->get<std::string>();
    const Json& list = keys.array("chat_template", "a string or a list of {\"name\", \"template\"}");
    std::string names;
    for (std::size_t i = 0; i < list.size(); ++i) {
        JsonObjectReader entry(list[i], keys.field(indexed("chat_template", i)), keys.source(),
                               detail::JsonNull::IsAbsent, "an object {\"name\", \"template\"}");
        const std::string name = entry.string("name");
        const std::string text = entry.string("template");
        if (name == "default") return text;
        names += (names.empty() ? "" : ", ") + name;
    }
    keys.fail("chat_template has no \"default\" template (it has: " + names + ")");
}

// A chat template file is text a person wrote; anything this large is the wrong file.
std::string read_text_file(const std::string& path) { return read_file_bytes(path, 10'000'000); }

}  // namespace

HfConfig read_hf_config(const std::string& path) {
    const Json json = detail::read_json_file(path);
    JsonObjectReader keys = config_reader(json, path);
    HfConfig config;
    config.model_type = keys.string("model_type");
    // Multimodal checkpoints (Gemma3ForConditionalGeneration, ...) nest the language model's
    // keys; say so rather than report them missing one by one.
    if (keys.has("text_config") && !keys.has("hidden_size"))
        keys.fail("model_type \"" + config.model_type +
                  "\" nests its language model in \"text_config\": a multimodal checkpoint, which this version "
                  "cannot load (use the text-only model)");
    if (keys.has("architectures")) config.architectures = keys.strings("architectures");
    config.hidden_size = keys.positive_size("hidden_size");
    config.num_hidden_layers = keys.positive_size("num_hidden_layers");
    config.num_attention_heads = keys.positive_size("num_attention_heads");
    config.num_key_value_heads = keys.optional_integer("num_key_value_heads").value_or(config.num_attention_heads);
    if (config.num_key_value_heads <= 0 || config.num_attention_heads % config.num_key_value_heads != 0)
        keys.fail("num_key_value_heads is " + std::to_string(config.num_key_value_heads) +
                  ", which does not divide num_attention_heads " + std::to_string(config.num_attention_heads));
    config.head_dim = keys.optional_integer("head_dim");
    config.intermediate_size = keys.positive_size("intermediate_size");
    config.vocab_size = keys.positive_size("vocab_size");
    config.max_position_embeddings = keys.optional_integer("max_position_embeddings");
    config.rms_norm_eps = keys.optional_number("rms_norm_eps");
    config.rope_theta = keys.optional_number("rope_theta");
    config.tie_word_embeddings = keys.optional_boolean("tie_word_embeddings");
    config.sliding_window = keys.optional_integer("sliding_window");
    config.query_pre_attn_scalar = keys.optional_number("query_pre_attn_scalar");
    config.torch_dtype = keys.optional_string("torch_dtype");
    if (!config.torch_dtype) config.torch_dtype = keys.optional_string("dtype");
    if (const Json* rope_scaling = keys.find("rope_scaling")) {
        if (!rope_scaling->is_object()) keys.wrong_type("rope_scaling", "an object", *rope_scaling);
        config.rope_scaling_json = rope_scaling->dump();
    }
    config.hidden_act = keys.optional_string("hidden_act");
    if (!config.hidden_act) config.hidden_act = keys.optional_string("hidden_activation");
    config.rope_local_base_freq = keys.optional_number("rope_local_base_freq");
    config.sliding_window_pattern = keys.optional_integer("sliding_window_pattern");
    if (keys.has("layer_types")) config.layer_types = keys.strings("layer_types");
    config.use_sliding_window = keys.optional_boolean("use_sliding_window");
    config.original_max_position_embeddings = keys.optional_integer("original_max_position_embeddings");
    config.partial_rotary_factor = keys.optional_number("partial_rotary_factor");
    return config;
}

HfGenerationConfig read_hf_generation_config(const std::string& path) {
    const Json json = detail::read_json_file(path);
    JsonObjectReader keys = config_reader(json, path);
    HfGenerationConfig config;
    const Json* eos = keys.find("eos_token_id");
    if (!eos) return config;
    constexpr long long kMaxTokenId = std::numeric_limits<std::int32_t>::max();
    if (eos->is_array()) {
        for (const long long id : keys.integers("eos_token_id", 0, kMaxTokenId))
            config.eos_token_ids.push_back(static_cast<std::int32_t>(id));
    } else {
        if (!eos->is_number_integer()) keys.wrong_type("eos_token_id", "a token id or a list of token ids", *eos);
        config.eos_token_ids.push_back(static_cast<std::int32_t>(keys.integer("eos_token_id", 0, kMaxTokenId)));
    }
    return config;
}

HfTokenizerConfig read_hf_tokenizer_config(const std::string& path) {
    const Json json = detail::read_json_file(path);
    JsonObjectReader keys = config_reader(json, path);
    HfTokenizerConfig config;
    config.chat_template = read_chat_template(keys);
    if (!config.chat_template) {
        const auto beside = std::filesystem::path(path).parent_path() / "chat_template.jinja";
        std::error_code error;
        if (std::filesystem::is_regular_file(beside, error)) config.chat_template = read_text_file(beside.string());
    }
    config.bos_token = read_token(keys, "bos_token");
    config.eos_token = read_token(keys, "eos_token");
    config.pad_token = read_token(keys, "pad_token");
    config.unk_token = read_token(keys, "unk_token");
    config.add_bos_token = keys.optional_boolean("add_bos_token");
    config.add_eos_token = keys.optional_boolean("add_eos_token");
    return config;
}

}  // namespace persona
