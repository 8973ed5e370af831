#include "persona/model_facts.h"

#include "persona/errors.h"
#include "formats/ggml_types.h"
#include "formats/gguf.h"

#include "model/model_files.h"

#include <cstdio>
#include <filesystem>

namespace persona {

namespace {

// Far above any real model's sizes, and small enough that layers + 1 or a product of two sizes
// cannot overflow an int.
constexpr std::int64_t kLargestSize = std::int64_t{1} << 24;

int positive_int(const GgufFile& file, const std::string& key) {
    const auto value = file.get_int(key);
    if (value <= 0 || value > kLargestSize)
        throw FileError(file.path(), "metadata key '" + key + "' has implausible value " + std::to_string(value));
    return static_cast<int>(value);
}

}  // namespace

ModelFacts read_model_facts(const GgufFile& file) {
    ModelFacts facts;
    facts.path = file.path();
    facts.file_bytes = file.file_size();
    facts.architecture = file.get_string("general.architecture");
    facts.name = file.find_string("general.name").value_or(facts.architecture);
    const std::string& arch = facts.architecture;

    facts.layers = positive_int(file, arch + ".block_count");
    facts.hidden_size = positive_int(file, arch + ".embedding_length");
    facts.attention_heads = positive_int(file, arch + ".attention.head_count");
    facts.kv_heads = file.find_int(arch + ".attention.head_count_kv")
                         ? positive_int(file, arch + ".attention.head_count_kv")
                         : facts.attention_heads;
    facts.head_dim = file.find_int(arch + ".attention.key_length")
                         ? positive_int(file, arch + ".attention.key_length")
                         : facts.hidden_size / facts.attention_heads;
    if (file.find_int(arch + ".feed_forward_length"))
        facts.feed_forward_size = positive_int(file, arch + ".feed_forward_length");
    facts.context_length = file.find_int(arch + ".context_length") ? positive_int(file, arch + ".context_length")
                                                                   : kAssumedContextLength;

    if (const GgufValue* tokens = file.find("tokenizer.ggml.tokens"); tokens && tokens->is_array()) {
        if (tokens->array_size() > static_cast<std::uint64_t>(kLargestSize))
            throw FileError(file.path(), "tokenizer.ggml.tokens has an implausible " + std::to_string(tokens->array_size()) + " entries");
        facts.vocabulary_size = static_cast<int>(tokens->array_size());
    }
    else if (file.find_int(arch + ".vocab_size"))
        facts.vocabulary_size = positive_int(file, arch + ".vocab_size");
    facts.tokenizer_model = file.find_string("tokenizer.ggml.model").value_or("");
    facts.has_chat_template = file.find("tokenizer.chat_template") != nullptr;

    std::map<std::string, std::uint64_t> bytes_by_type;
    for (const auto& tensor : file.tensors()) {
        facts.parameters += tensor.element_count();
        const std::string type = ggml_type_name(tensor.type);
        facts.tensor_types[type] += 1;
        bytes_by_type[type] += tensor.byte_size;
    }
    // The type holding the most bytes is what people call the model's quantization.
    std::uint64_t most = 0;
    for (const auto& [type, bytes] : bytes_by_type) {
        if (bytes > most) {
            most = bytes;
            facts.file_type = type;
        }
    }
    return facts;
}

ModelFacts inspect_model(const std::string& path) {
    std::error_code not_a_directory;
    if (std::filesystem::is_directory(path, not_a_directory)) return model::open_hf_checkpoint(path).facts;
    return read_model_facts(*GgufFile::open(path));
}

nlohmann::json to_json(const ModelFacts& f) {
    return nlohmann::json{
        {"path", f.path},
        {"name", f.name},
        {"architecture", f.architecture},
        {"layers", f.layers},
        {"hidden_size", f.hidden_size},
        {"feed_forward_size", f.feed_forward_size},
        {"attention_heads", f.attention_heads},
        {"kv_heads", f.kv_heads},
        {"head_dim", f.head_dim},
        {"vocabulary_size", f.vocabulary_size},
        {"context_length", f.context_length},
        {"parameters", f.parameters},
        {"file_bytes", f.file_bytes},
        {"fingerprint", f.fingerprint},
        {"adapter", f.adapter},
        {"file_type", f.file_type},
        {"tensor_types", f.tensor_types},
        {"tokenizer_model", f.tokenizer_model},
        {"has_chat_template", f.has_chat_template},
        {"chat_format", f.chat_format},
        {"device", f.device},
        {"dtype", f.dtype},
        {"weight_bytes", f.weight_bytes},
        {"process_rss_bytes", f.process_rss_bytes},
        {"typical_residual_norms", f.typical_residual_norms},
    };
}

ModelFacts model_facts_from_json(const nlohmann::json& j, const std::string& source) {
    if (!j.is_object()) throw Error(source + ": the model's facts are not a JSON object");
    try {
        ModelFacts f;
        f.path = j.value("path", f.path);
        f.name = j.value("name", f.name);
        f.architecture = j.value("architecture", f.architecture);
        f.layers = j.value("layers", f.layers);
        f.hidden_size = j.value("hidden_size", f.hidden_size);
        f.feed_forward_size = j.value("feed_forward_size", f.feed_forward_size);
        f.attention_heads = j.value("attention_heads", f.attention_heads);
        f.kv_heads = j.value("kv_heads", f.kv_heads);
        f.head_dim = j.value("head_dim", f.head_dim);
        f.vocabulary_size = j.value("vocabulary_size", f.vocabulary_size);
        f.context_length = j.value("context_length", f.context_length);
        f.parameters = j.value("parameters", f.parameters);
        f.file_bytes = j.value("file_bytes", f.file_bytes);
        f.fingerprint = j.value("fingerprint", f.fingerprint);
        f.adapter = j.value("adapter", f.adapter);
        f.file_type = j.value("file_type", f.file_type);
        f.tensor_types = j.value("tensor_types", f.tensor_types);
        f.tokenizer_model = j.value("tokenizer_model", f.tokenizer_model);
        f.has_chat_template = j.value("has_chat_template", f.has_chat_template);
        f.chat_format = j.value("chat_format", f.chat_format);
        f.device = j.value("device", f.device);
        f.dtype = j.value("dtype", f.dtype);
        f.weight_bytes = j.value("weight_bytes", f.weight_bytes);
        f.process_rss_bytes = j.value("process_rss_bytes", f.process_rss_bytes);
        f.typical_residual_norms = j.value("typical_residual_norms", f.typical_residual_norms);
        return f;
    } catch (const nlohmann::json::exception& e) {
        throw Error(source + ": the model's facts have a field of the wrong type (" + e.what() + ")");
    }
}

std::string human_bytes(std::uint64_t bytes) {
    const char* units[] = {"B", "KB", "MB", "GB", "TB"};
    double value = static_cast<double>(bytes);
    int unit = 0;
    while (value >= 1000.0 && unit < 4) {
        value /= 1000.0;
        ++unit;
    }
    char text[32];
    std::snprintf(text, sizeof text, unit == 0 ? "%.0f %s" : "%.1f %s", value, units[unit]);
    return text;
}

std::string human_count(std::uint64_t count) {
    char text[32];
    if (count >= 1000000000ULL)
        std::snprintf(text, sizeof text, "%.2f B", static_cast<double>(count) / 1e9);
    else if (count >= 1000000ULL)
        std::snprintf(text, sizeof text, "%.1f M", static_cast<double>(count) / 1e6);
    else if (count >= 1000ULL)
        std::snprintf(text, sizeof text, "%.1f K", static_cast<double>(count) / 1e3);
    else
        std::snprintf(text, sizeof text, "%llu", static_cast<unsigned long long>(count));
    return text;
}

}  // namespace persona
