#include "formats/hf_config.h"

#include "io/json_file.h"
#include "persona/errors.h"

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>

namespace persona {

namespace {

using Json = nlohmann::json;

std::string type_text(const Json& value) {
    if (value.is_number_float()) return "a fractional number";
    if (value.is_number()) return "an integer";
    if (value.is_string()) return "a string";
    if (value.is_boolean()) return "a boolean";
    if (value.is_array()) return "an array";
    if (value.is_object()) return "an object";
    return "null";
}

// Typed look-ups in one JSON object whose errors name the file and the key. A key set to null
// counts as absent: transformers writes null for unset optional fields (sliding_window, head_dim).
class KeyReader {
public:
    KeyReader(const std::string& path, const Json& object) : path_(path), object_(object) {
        if (!object_.is_object()) throw FileError(path_, "is not a JSON object");
    }

    const Json* find(const std::string& key) const {
        const auto it = object_.find(key);
        return it == object_.end() || it->is_null() ? nullptr : &*it;
    }

    [[noreturn]] void wrong_type(const std::string& key, const char* wanted, const Json& value) const {
        throw FileError(path_, "key '" + key + "' must be " + wanted + ", not " + type_text(value));
    }

    std::optional<std::int64_t> optional_int(const std::string& key) const {
        const Json* value = find(key);
        if (!value) return std::nullopt;
        if (value->is_number_unsigned()) {
            const auto v = value->get<std::uint64_t>();
            if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
                throw FileError(path_, "key '" + key + "' is out of range");
            return static_cast<std::int64_t>(v);
        }
        if (!value->is_number_integer()) wrong_type(key, "an integer", *value);
        return value->get<std::int64_t>();
    }

    // Sizes the model math divides and allocates by: present and positive.
    std::int64_t required_size(const std::string& key) const {
        const auto value = optional_int(key);
        if (!value) missing(key);
        if (*value <= 0) throw FileError(path_, "key '" + key + "' is " + std::to_string(*value) + ", not positive");
        return *value;
    }

    std::optional<double> optional_number(const std::string& key) const {
        const Json* value = find(key);
        if (!value) return std::nullopt;
        if (!value->is_number()) wrong_type(key, "a number", *value);
        return value->get<double>();
    }

    std::optional<bool> optional_bool(const std::string& key) const {
        const Json* value = find(key);
        if (!value) return std::nullopt;
        if (!value->is_boolean()) wrong_type(key, "true or false", *value);
        return value->get<bool>();
    }

    std::optional<std::string> optional_string(const std::string& key) const {
        const Json* value = find(key);
        if (!value) return std::nullopt;
        if (!value->is_string()) wrong_type(key, "a string", *value);
        return value->get<std::string>();
    }

    std::string required_string(const std::string& key) const {
        auto value = optional_string(key);
        if (!value) missing(key);
        return *value;
    }

    [[noreturn]] void missing(const std::string& key) const {
        throw FileError(path_, "required key '" + key + "' is missing");
    }

    const std::string& path() const { return path_; }

private:
    const std::string& path_;
    const Json& object_;
};

// Special tokens are plain strings or AddedToken objects: {"content": "<s>", "lstrip": false, ...}.
std::optional<std::string> read_token(const KeyReader& keys, const std::string& key) {
    const Json* value = keys.find(key);
    if (!value) return std::nullopt;
    if (value->is_string()) return value->get<std::string>();
    if (value->is_object()) {
        const auto content = value->find("content");
        if (content != value->end() && content->is_string()) return content->get<std::string>();
    }
    keys.wrong_type(key, "a string or an object with a \"content\" string", *value);
}

std::optional<std::string> read_chat_template(const KeyReader& keys) {
    const Json* value = keys.find("chat_template");
    if (!value) return std::nullopt;
    if (value->is_string()) return value->get<std::string>();
    if (!value->is_array()) keys.wrong_type("chat_template", "a string or a list of {name, template}", *value);
    std::string names;
    for (const auto& entry : *value) {
        const auto name = entry.is_object() ? entry.find("name") : entry.end();
        const auto text = entry.is_object() ? entry.find("template") : entry.end();
        if (name == entry.end() || !name->is_string() || text == entry.end() || !text->is_string())
            throw FileError(keys.path(), "key 'chat_template' lists an entry that is not {\"name\": string, "
                                         "\"template\": string}");
        if (name->get<std::string>() == "default") return text->get<std::string>();
        names += (names.empty() ? "" : ", ") + name->get<std::string>();
    }
    throw FileError(keys.path(), "key 'chat_template' has no \"default\" template (it has: " + names + ")");
}

std::string read_text_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw FileError(path, "cannot open");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) throw FileError(path, "cannot read");
    return text;
}

}  // namespace

HfConfig read_hf_config(const std::string& path) {
    const Json json = detail::read_json_file(path);
    const KeyReader keys(path, json);
    HfConfig config;
    config.model_type = keys.required_string("model_type");
    // Multimodal checkpoints (Gemma3ForConditionalGeneration, ...) nest the language model's
    // keys; say so rather than report them missing one by one.
    if (const Json* text_config = keys.find("text_config"); text_config && !keys.find("hidden_size"))
        throw FileError(path, "model_type '" + config.model_type +
                                  "' nests its language model in 'text_config': a multimodal checkpoint, which "
                                  "this version cannot load (use the text-only model)");
    if (const Json* architectures = keys.find("architectures")) {
        if (!architectures->is_array()) keys.wrong_type("architectures", "a list of strings", *architectures);
        for (const auto& name : *architectures) {
            if (!name.is_string()) keys.wrong_type("architectures", "a list of strings", name);
            config.architectures.push_back(name.get<std::string>());
        }
    }
    config.hidden_size = keys.required_size("hidden_size");
    config.num_hidden_layers = keys.required_size("num_hidden_layers");
    config.num_attention_heads = keys.required_size("num_attention_heads");
    config.num_key_value_heads = keys.optional_int("num_key_value_heads").value_or(config.num_attention_heads);
    if (config.num_key_value_heads <= 0 || config.num_attention_heads % config.num_key_value_heads != 0)
        throw FileError(path, "key 'num_key_value_heads' is " + std::to_string(config.num_key_value_heads) +
                                  ", which does not divide num_attention_heads " +
                                  std::to_string(config.num_attention_heads));
    config.head_dim = keys.optional_int("head_dim");
    config.intermediate_size = keys.required_size("intermediate_size");
    config.vocab_size = keys.required_size("vocab_size");
    config.max_position_embeddings = keys.optional_int("max_position_embeddings");
    config.rms_norm_eps = keys.optional_number("rms_norm_eps");
    config.rope_theta = keys.optional_number("rope_theta");
    config.tie_word_embeddings = keys.optional_bool("tie_word_embeddings");
    config.sliding_window = keys.optional_int("sliding_window");
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
    config.sliding_window_pattern = keys.optional_int("sliding_window_pattern");
    if (const Json* layer_types = keys.find("layer_types")) {
        if (!layer_types->is_array()) keys.wrong_type("layer_types", "a list of strings", *layer_types);
        for (const auto& type : *layer_types) {
            if (!type.is_string()) keys.wrong_type("layer_types", "a list of strings", type);
            config.layer_types.push_back(type.get<std::string>());
        }
    }
    config.use_sliding_window = keys.optional_bool("use_sliding_window");
    return config;
}

HfGenerationConfig read_hf_generation_config(const std::string& path) {
    const Json json = detail::read_json_file(path);
    const KeyReader keys(path, json);
    HfGenerationConfig config;
    const Json* eos = keys.find("eos_token_id");
    if (!eos) return config;
    const auto add = [&](const Json& id) {
        if (!id.is_number_integer()) keys.wrong_type("eos_token_id", "a token id or a list of token ids", id);
        if (id.get<std::int64_t>() < 0 || id.get<std::int64_t>() > INT32_MAX)
            throw FileError(path, "key 'eos_token_id' holds " + id.dump() + ", which is not a token id");
        config.eos_token_ids.push_back(id.get<std::int32_t>());
    };
    if (eos->is_array()) {
        for (const auto& id : *eos) add(id);
    } else {
        add(*eos);
    }
    return config;
}

HfTokenizerConfig read_hf_tokenizer_config(const std::string& path) {
    const Json json = detail::read_json_file(path);
    const KeyReader keys(path, json);
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
    config.add_bos_token = keys.optional_bool("add_bos_token");
    config.add_eos_token = keys.optional_bool("add_eos_token");
    return config;
}

}  // namespace persona
