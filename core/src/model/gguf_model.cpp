// GGUF files as a model: the config from {arch}.* metadata keys, tensors dequantized by their
// own names, tokenizer and chat template from tokenizer.* keys.
#include "model/model_files.h"

#include "formats/dequantize.h"
#include "persona/errors.h"
#include "formats/ggml_types.h"
#include "formats/gguf.h"
#include "formats/packed_blocks.h"

#include <cmath>
#include <sstream>

namespace persona::model {

namespace {

// Gemma 3 as llama.cpp runs it: the file says neither which blocks slide nor their RoPE base.
constexpr int kGemma3SlidingPattern = 6;  // every 6th block attends globally
constexpr double kGemma3LocalRopeBase = 10000.0;

void check_shape(const GgufFile& file, const GgufTensorInfo& info, const std::vector<std::int64_t>& torch_shape) {
    // ggml lists dimensions innermost first; torch outermost first.
    const std::vector<std::int64_t> actual(info.shape.rbegin(), info.shape.rend());
    if (actual != torch_shape)
        throw FileError(file.path(), "tensor '" + info.name + "' has shape " + shape_text(actual) + ", expected " +
                                         shape_text(torch_shape) + " from the model's metadata");
}

torch::Tensor dequantized(const GgufFile& file, const GgufTensorInfo& info, const std::vector<std::int64_t>& torch_shape) {
    check_shape(file, info, torch_shape);
    if (!can_dequantize(info.type))
        throw FileError(file.path(), "tensor '" + info.name + "' uses quantization type " + ggml_type_name(info.type) +
                                         ", which this version cannot read");
    torch::Tensor out = torch::empty(torch_shape, torch::kFloat32);
    // One thread: decoding runs near memory bandwidth, and a second thread only adds start-up
    // cost and contention on a shared 2-core machine (measured when dequantize.cpp was written).
    dequantize_tensor(file, info, out.data_ptr<float>(), 1);
    file.release(info);
    return out;
}

TransformerConfig read_gguf_config(const GgufFile& file) {
    // The sizes come from the one reader of GGUF hyper-parameters, so `info` and the model agree.
    const ModelFacts facts = read_model_facts(file);
    TransformerConfig c;
    c.architecture = facts.architecture;
    const std::string& a = c.architecture;
    c.layers = facts.layers;
    c.hidden = facts.hidden_size;
    c.heads = facts.attention_heads;
    c.kv_heads = facts.kv_heads;
    c.head_dim = facts.head_dim;
    c.feed_forward = facts.feed_forward_size;
    if (c.feed_forward <= 0) throw FileError(file.path(), "metadata key '" + a + ".feed_forward_length' is missing");
    c.context = facts.context_length;
    c.rms_eps = file.find_float(a + ".attention.layer_norm_rms_epsilon").value_or(1e-5);
    if (c.heads % c.kv_heads != 0)
        throw FileError(file.path(), std::to_string(c.heads) + " attention heads do not split into " +
                                         std::to_string(c.kv_heads) + " KV heads");
    if (c.head_dim % 2 != 0) throw FileError(file.path(), "head dimension " + std::to_string(c.head_dim) + " is odd");
    const GgufValue* tokens = file.find("tokenizer.ggml.tokens");
    if (!tokens || !tokens->is_array()) throw FileError(file.path(), "tokenizer.ggml.tokens is missing");
    c.vocabulary = facts.vocabulary_size;
    c.attention_scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim));
    c.sliding_layer.assign(static_cast<std::size_t>(c.layers), false);

    // Phi-4-mini (and Phi-2, StableLM) rotate only part of each head; every architecture here
    // rotates all of it, so a file saying otherwise would run with the wrong positions.
    if (const auto rotated = file.find_int(a + ".rope.dimension_count"); rotated && *rotated != c.head_dim)
        throw FileError(file.path(), "RoPE on " + std::to_string(*rotated) + " of each head's " +
                                         std::to_string(c.head_dim) + " dimensions (" + a +
                                         ".rope.dimension_count; Phi-4-mini's partial rotary embedding) is not supported yet");
    const bool gemma3 = a == "gemma3";
    c.rope_base = file.find_float(a + ".rope.freq_base").value_or(gemma3 ? 1e6 : 10000.0);
    const auto scaling_type = file.find_string(a + ".rope.scaling.type");
    if (const auto factor = file.find_float(a + ".rope.scaling.factor");
        factor && *factor > 0 && (!scaling_type || *scaling_type == "linear"))
        c.rope_linear_factor = *factor;  // Gemma 3 4B and up scale their global blocks linearly
    if (gemma3) {
        c.sliding_window = static_cast<int>(file.find_int("gemma3.attention.sliding_window").value_or(0));
        for (int i = 0; i < c.layers; ++i)
            c.sliding_layer[static_cast<std::size_t>(i)] = c.sliding_window > 0 && (i + 1) % kGemma3SlidingPattern != 0;
        c.local_rope_base = kGemma3LocalRopeBase;
    } else if (a == "phi3") {  // Phi-3-mini-4k: every block attends to the last 2047 positions
        c.sliding_window = static_cast<int>(file.find_int("phi3.attention.sliding_window").value_or(0));
        c.sliding_layer.assign(static_cast<std::size_t>(c.layers), c.sliding_window > 0);
    }
    if (const GgufTensorInfo* factors = file.find_tensor("rope_freqs.weight")) {  // Llama 3.1 long context
        const torch::Tensor values = dequantized(file, *factors, {c.head_dim / 2});
        c.rope_freq_factors.assign(values.data_ptr<float>(), values.data_ptr<float>() + values.numel());
    }
    // Phi-3 longrope: the short divisors while a sequence fits the original context, to which the
    // usable context is limited (as for Hugging Face checkpoints, hf_model.cpp says why).
    if (const GgufTensorInfo* factors = file.find_tensor("rope_factors_short.weight")) {
        const torch::Tensor values = dequantized(file, *factors, {c.head_dim / 2});
        c.rope_freq_factors.assign(values.data_ptr<float>(), values.data_ptr<float>() + values.numel());
        if (const auto original = file.find_int(a + ".rope.scaling.original_context_length"); original && *original > 0)
            c.context = static_cast<int>(std::min<std::int64_t>(c.context, *original));
    }
    c.rope_attention_factor = file.find_float(a + ".rope.scaling.attn_factor").value_or(1.0);
    return c;
}

class GgufWeights final : public WeightSource {
public:
    explicit GgufWeights(std::unique_ptr<GgufFile> file) : file_(std::move(file)), config_(read_gguf_config(*file_)) {}

    const std::string& path() const override { return file_->path(); }
    const TransformerConfig& config() const override { return config_; }
    bool has(const std::string& name) const override { return file_->find_tensor(name) != nullptr; }
    torch::Tensor read(const std::string& name, const std::vector<std::int64_t>& shape) const override {
        const GgufTensorInfo* info = file_->find_tensor(name);
        if (!info) throw FileError(file_->path(), "tensor '" + name + "' is missing");
        return dequantized(*file_, *info, shape);
    }
    bool stores_quantized(const std::string& name) const override {
        const GgufTensorInfo* info = file_->find_tensor(name);
        return info && packed::packed_kind(info->type).has_value();
    }
    QuantizedMatrix read_quantized(const std::string& name, std::int64_t rows, std::int64_t cols) const override {
        const GgufTensorInfo* info = file_->find_tensor(name);
        if (!info) throw FileError(file_->path(), "tensor '" + name + "' is missing");
        check_shape(*file_, *info, {rows, cols});
        try {
            QuantizedMatrix matrix = QuantizedMatrix::from_gguf(info->type, file_->tensor_data(*info), rows, cols);
            file_->release(*info);
            return matrix;
        } catch (const Error& e) {  // a row that is not whole blocks: say which file and tensor
            throw FileError(file_->path(), "tensor '" + name + "': " + e.what());
        }
    }
    std::size_t tensor_count() const override { return file_->tensors().size(); }
    bool llama_qk_rows_permuted() const override { return true; }
    bool gemma_norms_include_one() const override { return true; }

    const GgufFile& file() const { return *file_; }

private:
    std::unique_ptr<GgufFile> file_;
    TransformerConfig config_;
};

}  // namespace

ModelFiles open_gguf_model(const std::string& path) {
    auto weights = std::make_unique<GgufWeights>(GgufFile::open(path));
    const GgufFile& file = weights->file();
    ModelFiles files;
    files.facts = read_model_facts(file);
    files.tokenizer = Tokenizer::from_gguf(file);
    // A model whose chat format we do not know still loads: raw prompts, capture and traces
    // work; only chat prompts report why they cannot be built.
    try {
        files.chat = ChatTemplate::from_gguf(file);
    } catch (const Error& e) {
        files.chat_error = e.what();
    }
    files.weights = std::move(weights);
    return files;
}

}  // namespace persona::model
