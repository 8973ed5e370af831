#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace persona {

class GgufFile;

// What a GGUF file without {arch}.context_length is taken to hold, as llama.cpp's converters
// wrote for older Llama files.
constexpr int kAssumedContextLength = 2048;

// What a user wants to know about a model before using it. Plain data so the UI and the CLI
// show the same facts.
struct ModelFacts {
    std::string path;
    std::string name;
    std::string architecture;
    int layers = 0;
    int hidden_size = 0;
    int feed_forward_size = 0;
    int attention_heads = 0;
    int kv_heads = 0;
    int head_dim = 0;
    int vocabulary_size = 0;
    int context_length = 0;
    std::uint64_t parameters = 0;
    std::uint64_t file_bytes = 0;
    std::string fingerprint;                        // persona::model_fingerprint (with the adapter's files), set by Model::load
    std::string adapter;                            // the LoRA adapter folder merged at load; empty: none
    std::string file_type;                          // dominant quantization, e.g. "Q4_1"
    std::map<std::string, int> tensor_types;       // quantization type -> number of tensors
    std::string tokenizer_model;                   // GGUF tokenizer.ggml.model, e.g. "gpt2"
    bool has_chat_template = false;
    std::string chat_format;                       // the family Model::load renders, e.g. "Llama 3"; empty: none
    std::string device;                            // where the weights live, e.g. "cpu"
    std::string dtype;                             // compute dtype, e.g. "bf16"
    std::uint64_t weight_bytes = 0;                // bytes of weights held by the engine
    std::uint64_t process_rss_bytes = 0;           // resident memory of the whole process
    // persona::typical_residual_norms, l = 0..L: measured by the Engine when it loads a model
    // (empty from read_model_facts and Model::load), the Steering slider's unit.
    std::vector<double> typical_residual_norms;
};

// Facts read from a GGUF's metadata and tensor table; device, dtype and memory are left for
// the engine to fill in once it has loaded the weights. Throws FileError for a file that is
// missing the keys every supported model has.
ModelFacts read_model_facts(const GgufFile& file);

// The facts of a model a command names, a GGUF file or a Hugging Face checkpoint folder, read
// from its metadata without loading the weights (no fingerprint, device or dtype). Throws
// FileError as Model::load would for a file it cannot use.
ModelFacts inspect_model(const std::string& path);

nlohmann::json to_json(const ModelFacts& facts);
// The facts to_json wrote (a served model's, from GET /v1/models); absent fields keep their
// defaults, unknown ones are ignored. Throws Error naming `source` for a field of the wrong type.
ModelFacts model_facts_from_json(const nlohmann::json& json, const std::string& source);

// "1.2 GB", "135.0 M" style figures for people.
std::string human_bytes(std::uint64_t bytes);
std::string human_count(std::uint64_t count);

}  // namespace persona
