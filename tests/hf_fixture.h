#pragma once
// Writes a Hugging Face checkpoint directory FROM the real SmolLM2 GGUF, with our own code and
// no Python: every tensor dequantized to f32 under its Hugging Face name, the Q/K rows of the
// llama blocks put back into Hugging Face's order, config.json, tokenizer.json and
// tokenizer_config.json written from the GGUF's metadata. Shared by the suites that need a
// checkpoint folder (test_hf_checkpoint, test_model_panel).
#include "formats/dequantize.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"

#include <QString>
#include <QtGlobal>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

namespace hf_fixture {

using nlohmann::json;
using persona::GgufFile;

struct Tensor {
    std::string name;
    std::vector<std::int64_t> shape;
    std::vector<float> values;
};

inline void write_text(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary);
    out << text;
    if (!out) qFatal("cannot write %s", path.c_str());
}

inline void write_json(const std::string& path, const json& value) { write_text(path, value.dump(1)); }

inline std::vector<persona::SafetensorsFloatTensor> as_float_tensors(const std::vector<const Tensor*>& tensors) {
    std::vector<persona::SafetensorsFloatTensor> out;
    for (const Tensor* t : tensors) out.push_back({t->name, t->shape, t->values.data(), t->values.size()});
    return out;
}

// One file, or shards (tensors dealt out in turn) plus the index that transformers writes.
inline void write_weights(const std::string& directory, const std::vector<Tensor>& tensors, int shards) {
    if (shards == 1) {
        std::vector<const Tensor*> all;
        for (const auto& t : tensors) all.push_back(&t);
        persona::write_safetensors(directory + "/model.safetensors", as_float_tensors(all));
        return;
    }
    json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", json::object()}};
    std::uint64_t total = 0;
    for (int shard = 0; shard < shards; ++shard) {
        char name[64];
        std::snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", shard + 1, shards);
        std::vector<const Tensor*> mine;
        for (std::size_t i = static_cast<std::size_t>(shard); i < tensors.size(); i += static_cast<std::size_t>(shards)) {
            mine.push_back(&tensors[i]);
            index["weight_map"][tensors[i].name] = name;
            total += tensors[i].values.size() * sizeof(float);
        }
        persona::write_safetensors(directory + "/" + name, as_float_tensors(mine));
    }
    index["metadata"]["total_size"] = total;
    write_json(directory + "/model.safetensors.index.json", index);
}

inline std::vector<float> dequantized(const GgufFile& file, const std::string& name) {
    const auto* info = file.find_tensor(name);
    if (!info) qFatal("the GGUF has no tensor %s", name.c_str());
    return persona::dequantize_tensor(file, *info, 1);
}

// GGUF stores a llama model's Q/K rows permuted per head so that llama.cpp's interleaved RoPE
// matches rotate-half: within each head, row 2b+a of the GGUF is row a*half+b of Hugging Face's
// (llama.cpp convert_hf_to_gguf.py, LlamaModel.permute). Written here from that description,
// independently of arch/llama.cpp.
inline std::vector<float> to_hf_row_order(const std::vector<float>& gguf, std::int64_t rows, std::int64_t cols, int heads) {
    std::vector<float> hf(gguf.size());
    const std::int64_t per_head = rows / heads, half = per_head / 2;
    for (std::int64_t h = 0; h < heads; ++h)
        for (std::int64_t a = 0; a < 2; ++a)
            for (std::int64_t b = 0; b < half; ++b) {
                const std::int64_t from = h * per_head + 2 * b + a, to = h * per_head + a * half + b;
                std::copy_n(gguf.begin() + from * cols, cols, hf.begin() + to * cols);
            }
    return hf;
}

// The GGUF's dimensions and metadata, read as plain values.
struct GgufFacts {
    int layers, hidden, heads, kv_heads, head_dim, feed_forward, vocabulary, context;
    double rms_eps, rope_base;
};

inline GgufFacts gguf_facts(const GgufFile& file) {
    const std::string a = file.get_string("general.architecture");
    GgufFacts f{};
    f.layers = int(file.get_int(a + ".block_count"));
    f.hidden = int(file.get_int(a + ".embedding_length"));
    f.heads = int(file.get_int(a + ".attention.head_count"));
    f.kv_heads = int(file.get_int(a + ".attention.head_count_kv"));
    f.head_dim = int(file.find_int(a + ".attention.key_length").value_or(f.hidden / f.heads));
    f.feed_forward = int(file.get_int(a + ".feed_forward_length"));
    f.vocabulary = int(file.find("tokenizer.ggml.tokens")->array_size());
    f.context = int(file.get_int(a + ".context_length"));
    f.rms_eps = file.find_float(a + ".attention.layer_norm_rms_epsilon").value();
    f.rope_base = file.find_float(a + ".rope.freq_base").value();
    return f;
}

// SmolLM2's weights under Hugging Face's names, Q/K rows in Hugging Face's order.
inline std::vector<Tensor> smollm_tensors(const GgufFile& file) {
    const GgufFacts f = gguf_facts(file);
    const std::int64_t q_rows = std::int64_t{f.heads} * f.head_dim, kv_rows = std::int64_t{f.kv_heads} * f.head_dim;
    std::vector<Tensor> out;
    out.push_back({"model.embed_tokens.weight", {f.vocabulary, f.hidden}, dequantized(file, "token_embd.weight")});
    out.push_back({"model.norm.weight", {f.hidden}, dequantized(file, "output_norm.weight")});
    for (int i = 0; i < f.layers; ++i) {
        const std::string g = "blk." + std::to_string(i) + ".", h = "model.layers." + std::to_string(i) + ".";
        out.push_back({h + "input_layernorm.weight", {f.hidden}, dequantized(file, g + "attn_norm.weight")});
        out.push_back({h + "self_attn.q_proj.weight", {q_rows, f.hidden},
                       to_hf_row_order(dequantized(file, g + "attn_q.weight"), q_rows, f.hidden, f.heads)});
        out.push_back({h + "self_attn.k_proj.weight", {kv_rows, f.hidden},
                       to_hf_row_order(dequantized(file, g + "attn_k.weight"), kv_rows, f.hidden, f.kv_heads)});
        out.push_back({h + "self_attn.v_proj.weight", {kv_rows, f.hidden}, dequantized(file, g + "attn_v.weight")});
        out.push_back({h + "self_attn.o_proj.weight", {f.hidden, q_rows}, dequantized(file, g + "attn_output.weight")});
        out.push_back({h + "post_attention_layernorm.weight", {f.hidden}, dequantized(file, g + "ffn_norm.weight")});
        out.push_back({h + "mlp.gate_proj.weight", {f.feed_forward, f.hidden}, dequantized(file, g + "ffn_gate.weight")});
        out.push_back({h + "mlp.up_proj.weight", {f.feed_forward, f.hidden}, dequantized(file, g + "ffn_up.weight")});
        out.push_back({h + "mlp.down_proj.weight", {f.hidden, f.feed_forward}, dequantized(file, g + "ffn_down.weight")});
    }
    return out;
}

inline json smollm_config(const GgufFile& file) {
    const GgufFacts f = gguf_facts(file);
    return {{"architectures", {"LlamaForCausalLM"}},
            {"model_type", "llama"},
            {"hidden_size", f.hidden},
            {"intermediate_size", f.feed_forward},
            {"num_hidden_layers", f.layers},
            {"num_attention_heads", f.heads},
            {"num_key_value_heads", f.kv_heads},
            {"max_position_embeddings", f.context},
            {"rms_norm_eps", f.rms_eps},
            {"rope_theta", f.rope_base},
            {"rope_scaling", nullptr},
            {"hidden_act", "silu"},
            {"tie_word_embeddings", true},
            {"vocab_size", f.vocabulary},
            {"torch_dtype", "float32"}};
}

// SmolLM2's tokenizer.json pipeline (BPE; Digits + ByteLevel pre-tokenizer; ByteLevel decoder),
// vocabulary and merges from the GGUF, its control tokens as special added tokens.
inline json smollm_tokenizer_json(const GgufFile& file, bool merges_as_pairs) {
    const auto& tokens = file.find("tokenizer.ggml.tokens")->strings();
    const auto& types = file.find("tokenizer.ggml.token_type")->ints();
    json vocab = json::object();
    json added = json::array();
    for (std::size_t id = 0; id < tokens.size(); ++id) {
        vocab[tokens[id]] = id;
        if (types[id] == 3)
            added.push_back({{"id", id}, {"content", tokens[id]}, {"single_word", false}, {"lstrip", false},
                             {"rstrip", false}, {"normalized", false}, {"special", true}});
    }
    json merges = json::array();
    for (const auto& merge : file.find("tokenizer.ggml.merges")->strings()) {
        if (!merges_as_pairs) {
            merges.push_back(merge);
            continue;
        }
        const auto space = merge.find(' ', 1);
        merges.push_back({merge.substr(0, space), merge.substr(space + 1)});
    }
    return {{"version", "1.0"},
            {"truncation", nullptr},
            {"padding", nullptr},
            {"added_tokens", added},
            {"normalizer", nullptr},
            {"pre_tokenizer",
             {{"type", "Sequence"},
              {"pretokenizers",
               {{{"type", "Digits"}, {"individual_digits", true}},
                {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}}}}},
            {"post_processor", nullptr},
            {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
            {"model",
             {{"type", "BPE"},
              {"dropout", nullptr},
              {"unk_token", nullptr},
              {"continuing_subword_prefix", nullptr},
              {"end_of_word_suffix", nullptr},
              {"fuse_unk", false},
              {"byte_fallback", false},
              {"ignore_merges", false},
              {"vocab", vocab},
              {"merges", merges}}}};
}

inline json smollm_tokenizer_config(const GgufFile& file) {
    const auto& tokens = file.find("tokenizer.ggml.tokens")->strings();
    const auto text = [&](const char* key) { return tokens[static_cast<std::size_t>(file.get_int(key))]; };
    return {{"bos_token", text("tokenizer.ggml.bos_token_id")},
            {"eos_token", text("tokenizer.ggml.eos_token_id")},
            {"unk_token", text("tokenizer.ggml.unknown_token_id")},
            {"pad_token", text("tokenizer.ggml.padding_token_id")},
            {"chat_template", file.get_string("tokenizer.chat_template")},
            {"model_max_length", 8192}};
}

// SmolLM2 as a checkpoint folder: one model.safetensors (or `shards` of them with an index),
// merges spelt as "a b" strings or as pairs. With `layers` > 0 only the first `layers` blocks
// are kept (config.json says so too): a smaller model that loads and runs like any other.
inline void write_smollm_checkpoint(const GgufFile& file, const std::string& dir, int shards = 1,
                                    bool merges_as_pairs = false, int layers = 0) {
    std::vector<Tensor> tensors = smollm_tensors(file);
    json config = smollm_config(file);
    if (layers > 0) {
        tensors.erase(std::remove_if(tensors.begin(), tensors.end(),
                                     [&](const Tensor& t) {
                                         const std::string prefix = "model.layers.";
                                         if (t.name.rfind(prefix, 0) != 0) return false;
                                         return std::stoi(t.name.substr(prefix.size())) >= layers;
                                     }),
                      tensors.end());
        config["num_hidden_layers"] = layers;
    }
    write_weights(dir, tensors, shards);
    write_json(dir + "/config.json", config);
    write_json(dir + "/tokenizer.json", smollm_tokenizer_json(file, merges_as_pairs));
    write_json(dir + "/tokenizer_config.json", smollm_tokenizer_config(file));
}

}  // namespace hf_fixture
