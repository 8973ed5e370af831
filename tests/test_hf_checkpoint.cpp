// Hugging Face checkpoint directories. The suite writes them itself FROM the real GGUF models,
// with our own code and no Python: every tensor dequantized, renamed to its Hugging Face name,
// Q/K rows of llama models put back into Hugging Face's order (GGUF stores them permuted), Gemma's
// norms stored as w rather than GGUF's 1 + w, config.json and a tokenizer.json written from the
// GGUF's metadata. Loading such a directory must then give the GGUF model's tokenizer and, with
// the same weights, its logits.
#include "formats/dequantize.h"
#include "persona/errors.h"
#include "persona/project.h"
#include "persona/vector_files.h"
#include "persona/extraction.h"
#include "persona/fingerprint.h"
#include "persona/trait.h"
#include "formats/gguf.h"
#include "formats/hf_config.h"
#include "persona/model.h"
#include "formats/safetensors.h"
#include "persona/tokenizer.h"
#include "hf_fixture.h"
#include "cli_runner.h"
#include "test_support.h"

#include <QDir>
#include <QTemporaryDir>
#include <QtTest>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

using nlohmann::json;
using persona::GgufFile;
using persona::Model;
using persona::Tokenizer;
using Ids = std::vector<std::int32_t>;
using namespace hf_fixture;

namespace {

json read_json(const std::string& path) {
    std::ifstream in(path);
    if (!in) qFatal("cannot read %s", path.c_str());
    return json::parse(in);
}

// Gemma 3's weights: GGUF norms hold 1 + w, Hugging Face's hold w. Q/K are not permuted.
std::vector<Tensor> gemma_tensors(const GgufFile& file) {
    const GgufFacts f = gguf_facts(file);
    const std::int64_t q_rows = std::int64_t{f.heads} * f.head_dim, kv_rows = std::int64_t{f.kv_heads} * f.head_dim;
    const auto norm = [&](const std::string& name) {
        std::vector<float> w = dequantized(file, name);
        for (auto& x : w) x -= 1.0f;
        return w;
    };
    std::vector<Tensor> out;
    out.push_back({"model.embed_tokens.weight", {f.vocabulary, f.hidden}, dequantized(file, "token_embd.weight")});
    out.push_back({"model.norm.weight", {f.hidden}, norm("output_norm.weight")});
    for (int i = 0; i < f.layers; ++i) {
        const std::string g = "blk." + std::to_string(i) + ".", h = "model.layers." + std::to_string(i) + ".";
        out.push_back({h + "input_layernorm.weight", {f.hidden}, norm(g + "attn_norm.weight")});
        out.push_back({h + "self_attn.q_proj.weight", {q_rows, f.hidden}, dequantized(file, g + "attn_q.weight")});
        out.push_back({h + "self_attn.k_proj.weight", {kv_rows, f.hidden}, dequantized(file, g + "attn_k.weight")});
        out.push_back({h + "self_attn.v_proj.weight", {kv_rows, f.hidden}, dequantized(file, g + "attn_v.weight")});
        out.push_back({h + "self_attn.q_norm.weight", {f.head_dim}, norm(g + "attn_q_norm.weight")});
        out.push_back({h + "self_attn.k_norm.weight", {f.head_dim}, norm(g + "attn_k_norm.weight")});
        out.push_back({h + "self_attn.o_proj.weight", {f.hidden, q_rows}, dequantized(file, g + "attn_output.weight")});
        out.push_back({h + "post_attention_layernorm.weight", {f.hidden}, norm(g + "post_attention_norm.weight")});
        out.push_back({h + "pre_feedforward_layernorm.weight", {f.hidden}, norm(g + "ffn_norm.weight")});
        out.push_back({h + "mlp.gate_proj.weight", {f.feed_forward, f.hidden}, dequantized(file, g + "ffn_gate.weight")});
        out.push_back({h + "mlp.up_proj.weight", {f.feed_forward, f.hidden}, dequantized(file, g + "ffn_up.weight")});
        out.push_back({h + "mlp.down_proj.weight", {f.hidden, f.feed_forward}, dequantized(file, g + "ffn_down.weight")});
        out.push_back({h + "post_feedforward_layernorm.weight", {f.hidden}, norm(g + "post_ffw_norm.weight")});
    }
    return out;
}

json gemma_config(const GgufFile& file) {
    const GgufFacts f = gguf_facts(file);
    json layer_types = json::array();
    for (int i = 0; i < f.layers; ++i) layer_types.push_back((i + 1) % 6 == 0 ? "full_attention" : "sliding_attention");
    return {{"architectures", {"Gemma3ForCausalLM"}},
            {"model_type", "gemma3_text"},
            {"hidden_size", f.hidden},
            {"intermediate_size", f.feed_forward},
            {"num_hidden_layers", f.layers},
            {"num_attention_heads", f.heads},
            {"num_key_value_heads", f.kv_heads},
            {"head_dim", f.head_dim},
            {"max_position_embeddings", f.context},
            {"rms_norm_eps", f.rms_eps},
            {"rope_theta", f.rope_base},
            {"rope_local_base_freq", 10000.0},
            {"sliding_window", file.get_int("gemma3.attention.sliding_window")},
            {"layer_types", layer_types},
            {"query_pre_attn_scalar", f.head_dim},
            {"hidden_activation", "gelu_pytorch_tanh"},
            {"vocab_size", f.vocabulary},
            {"torch_dtype", "float32"}};
}

double max_abs_difference(const std::vector<float>& a, const std::vector<float>& b) {
    if (a.size() != b.size()) return INFINITY;
    double worst = 0;
    for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(double(a[i]) - double(b[i])));
    return worst;
}

// GPT-2's printable spelling of a byte (tokenizer.json stores byte-level tokens this way).
std::string byte_spelling(int byte) {
    int codepoint = byte;
    if (!((byte >= 0x21 && byte <= 0x7E) || (byte >= 0xA1 && byte <= 0xAC) || byte >= 0xAE)) {
        int unprintable = 0;
        for (int b = 0; b < byte; ++b)
            if (!((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)) ++unprintable;
        codepoint = 256 + unprintable;
    }
    return QString(QChar(codepoint)).toStdString();
}

// The call must throw a persona::FileError naming `path` whose message holds every one of
// `needles`; returns "" when it does, else what went wrong.
template <typename Call>
QString expect_file_error(const std::string& path, const QStringList& needles, Call call) {
    try {
        call();
    } catch (const persona::FileError& e) {
        if (e.path() != path) return QString("error names %1, not %2: %3").arg(e.path().c_str(), path.c_str(), e.what());
        for (const auto& needle : needles)
            if (!QString(e.what()).contains(needle)) return QString("'%1' is not in: %2").arg(needle, e.what());
        return {};
    } catch (const std::exception& e) {
        return QString("wrong exception type: ") + e.what();
    }
    return "no error";
}

}  // namespace

class TestHfCheckpoint : public QObject {
    Q_OBJECT

    std::unique_ptr<GgufFile> smollm_file_;
    std::unique_ptr<Model> smollm_gguf_;
    QTemporaryDir root_;
    std::string single_, sharded_;  // SmolLM2 as one file, and as two shards with pair-style merges
    json goldens_;

    std::string make_dir(const QString& name) {
        QDir(root_.path()).mkpath(name);
        return root_.filePath(name).toStdString();
    }

    std::string write_smollm(const QString& name, const std::vector<Tensor>& tensors, int shards, bool merges_as_pairs) {
        const std::string dir = make_dir(name);
        write_weights(dir, tensors, shards);
        write_json(dir + "/config.json", smollm_config(*smollm_file_));
        write_json(dir + "/tokenizer.json", smollm_tokenizer_json(*smollm_file_, merges_as_pairs));
        write_json(dir + "/tokenizer_config.json", smollm_tokenizer_config(*smollm_file_));
        return dir;
    }

    // A copy of a directory whose files are links to the original's, so variants cost nothing.
    std::string link_copy(const std::string& from, const QString& name) {
        const std::string dir = make_dir(name);
        for (const auto& entry : std::filesystem::directory_iterator(from))
            std::filesystem::create_symlink(entry.path(), std::filesystem::path(dir) / entry.path().filename());
        return dir;
    }
    void replace_json(const std::string& path, const json& value) {
        std::filesystem::remove(path);
        write_json(path, value);
    }

    // Logits of a chat prompt from the HF directory and from the GGUF, both f32 on the CPU.
    void compare_logits_with_gguf(Model& hf) {
        const Ids prompt = smollm_gguf_->encode_chat({{"user", "What is the capital of France?"}}, true);
        QCOMPARE(hf.encode_chat({{"user", "What is the capital of France?"}}, true), prompt);
        const auto expected = smollm_gguf_->trace(prompt);
        const auto actual = hf.trace(prompt);
        const double difference = max_abs_difference(actual.logits, expected.logits);
        qInfo("largest logit difference to the GGUF model: %.3g", difference);
        QVERIFY2(difference < 1e-4, qPrintable(QString::number(difference)));
        QVERIFY(max_abs_difference(actual.hidden_states, expected.hidden_states) < 1e-4);
    }

    // A tiny random llama checkpoint with a byte-level tokenizer, for the error cases.
    std::string write_tiny(const QString& name, int rows = 260, unsigned seed = 7) {
        const std::string dir = make_dir(name);
        json vocab = json::object();
        for (int byte = 0; byte < 256; ++byte) vocab[byte_spelling(byte)] = byte;
        json tokenizer = {{"added_tokens", {{{"id", 256}, {"content", "<|im_start|>"}, {"special", true}},
                                            {{"id", 257}, {"content", "<|im_end|>"}, {"special", true}}}},
                          {"normalizer", nullptr},
                          {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
                          {"decoder", {{"type", "ByteLevel"}}},
                          {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array()}}}};
        write_json(dir + "/tokenizer.json", tokenizer);
        write_json(dir + "/tokenizer_config.json", {{"bos_token", "<|im_start|>"}, {"eos_token", "<|im_end|>"}});
        // More embedding rows than tokens (260 for 258): padded, as Qwen2 pads its embedding.
        write_json(dir + "/config.json", {{"model_type", "llama"}, {"hidden_size", 8}, {"intermediate_size", 16},
                                          {"num_hidden_layers", 2}, {"num_attention_heads", 2},
                                          {"num_key_value_heads", 1}, {"vocab_size", rows},
                                          {"tie_word_embeddings", false}});
        std::mt19937 generator(seed);
        std::normal_distribution<float> normal(0.0f, 0.3f);
        const auto random = [&](std::vector<std::int64_t> shape) {
            std::int64_t n = 1;
            for (auto d : shape) n *= d;
            std::vector<float> v(static_cast<std::size_t>(n));
            for (auto& x : v) x = normal(generator);
            return v;
        };
        std::vector<Tensor> tensors{{"model.embed_tokens.weight", {rows, 8}, random({rows, 8})},
                                    {"lm_head.weight", {rows, 8}, random({rows, 8})},
                                    {"model.norm.weight", {8}, std::vector<float>(8, 1.0f)}};
        for (int i = 0; i < 2; ++i) {
            const std::string h = "model.layers." + std::to_string(i) + ".";
            for (const auto& [part, shape] : std::vector<std::pair<std::string, std::vector<std::int64_t>>>{
                     {"input_layernorm", {8}}, {"post_attention_layernorm", {8}}, {"self_attn.q_proj", {8, 8}},
                     {"self_attn.k_proj", {4, 8}}, {"self_attn.v_proj", {4, 8}}, {"self_attn.o_proj", {8, 8}},
                     {"mlp.gate_proj", {16, 8}}, {"mlp.up_proj", {16, 8}}, {"mlp.down_proj", {8, 16}}})
                tensors.push_back({h + part + ".weight", shape, random(shape)});
        }
        write_weights(dir, tensors, 2);
        return dir;
    }

private slots:
    void initTestCase() {
        QVERIFY(root_.isValid());
        if (qEnvironmentVariableIsSet("PERSONA_TEST_KEEP_DIRS")) {
            root_.setAutoRemove(false);
            qInfo("checkpoints are kept in %s", qPrintable(root_.path()));
        }
        goldens_ = read_json(PERSONA_TEST_DATA_DIR "/tokenizer_goldens.json");
        smollm_file_ = GgufFile::open(persona_test::defaultModelPath().toStdString());
        smollm_gguf_ = Model::load(smollm_file_->path(), persona::ModelLoadOptions{"cpu", "f32"});
        QElapsedTimer timer;
        timer.start();
        const std::vector<Tensor> tensors = smollm_tensors(*smollm_file_);
        single_ = write_smollm("smollm2", tensors, 1, false);
        sharded_ = write_smollm("smollm2-sharded", tensors, 2, true);
        qInfo("wrote two SmolLM2 checkpoints in %lld ms", static_cast<long long>(timer.elapsed()));
    }

    void facts() {
        const auto model = Model::load(single_, persona::ModelLoadOptions{"cpu", "f32"});
        const auto& facts = model->facts();
        QCOMPARE(facts.layers, 30);
        QCOMPARE(facts.hidden_size, 576);
        QCOMPARE(facts.vocabulary_size, 49152);
        QCOMPARE(model->layer_count(), 30);
        QCOMPARE(model->hidden_size(), 576);
        QCOMPARE(model->context_length(), 8192);
        QCOMPARE(facts.architecture, std::string("llama"));
        QCOMPARE(facts.attention_heads, 9);
        QCOMPARE(facts.kv_heads, 3);
        QCOMPARE(facts.head_dim, 64);
        QCOMPARE(facts.feed_forward_size, 1536);
        QCOMPARE(facts.file_type, std::string("F32"));
        QCOMPARE(facts.tokenizer_model, std::string("gpt2"));
        QVERIFY(facts.has_chat_template);
        QCOMPARE(facts.path, single_);
        QCOMPARE(facts.name, std::string("smollm2"));
        // Tied embeddings: no lm_head in the checkpoint.
        QCOMPARE(facts.parameters, smollm_gguf_->facts().parameters);
        QCOMPARE(facts.file_bytes, std::filesystem::file_size(single_ + "/model.safetensors"));
    }

    // Every text of the tokenizer goldens, with and without special tokens.
    void tokenizerMatchesTheGguf() {
        for (const std::string& dir : {single_, sharded_}) {
            const auto model = Model::load(dir, persona::ModelLoadOptions{"cpu", "f32"});
            const Tokenizer& hf = model->tokenizer();
            const Tokenizer& gguf = smollm_gguf_->tokenizer();
            QCOMPARE(hf.vocab_size(), gguf.vocab_size());
            QCOMPARE(hf.pre_name(), std::string("smollm"));
            QCOMPARE(hf.bos_id(), gguf.bos_id());
            QCOMPARE(hf.eos_id(), gguf.eos_id());
            QCOMPARE(hf.adds_bos(), gguf.adds_bos());
            QVERIFY(hf.end_of_generation_ids() == gguf.end_of_generation_ids());
            std::vector<std::string> texts{"<|im_start|>user\nHi there<|im_end|>", "Numbers 1234567 and 3.14159",
                                           "  two  spaces\tand\ttabs\r\n", "Café 中文 😀👍🏽 مرحبا", "don't I'LL"};
            for (const auto& test : goldens_["models"]["smollm2"]["cases"]) texts.push_back(test["text"]);
            for (const auto& text : texts)
                for (const bool add_special : {false, true})
                    for (const bool parse_special : {false, true})
                        QVERIFY2(hf.encode(text, add_special, parse_special) == gguf.encode(text, add_special, parse_special),
                                 text.c_str());
            const Ids ids = gguf.encode("<|im_start|>assistant\nBonjour, ça va?<|im_end|>", false, true);
            QCOMPARE(hf.decode(ids), gguf.decode(ids));
            QCOMPARE(hf.decode(ids, false), gguf.decode(ids, false));
        }
    }

    void logitsMatchTheGguf() {
        const auto model = Model::load(single_, persona::ModelLoadOptions{"cpu", "f32"});
        compare_logits_with_gguf(*model);
    }

    void shardedCheckpointMatchesTheGguf() {
        const auto model = Model::load(sharded_, persona::ModelLoadOptions{"cpu", "f32"});
        QCOMPARE(model->facts().file_bytes, std::filesystem::file_size(sharded_ + "/model-00001-of-00002.safetensors") +
                                                std::filesystem::file_size(sharded_ + "/model-00002-of-00002.safetensors"));
        compare_logits_with_gguf(*model);
        // Greedy generation agrees as well, through the KV cache.
        persona::GenerationRow row;
        row.messages = {{"user", "Name a colour."}};
        row.sampling.max_new_tokens = 8;
        row.sampling.stop_at_eos = false;
        QCOMPARE(model->generate({row}).front().tokens, smollm_gguf_->generate({row}).front().tokens);
    }

    // Qwen2 is the Llama block with Q/K/V biases. SmolLM2's weights with zero biases under
    // model_type qwen2 must give SmolLM2's logits: the biases are found by their names, and
    // Qwen2's rows are taken as they are.
    void qwen2NamesAndBiases() {
        const std::string dir = link_copy(sharded_, "qwen2");
        const GgufFacts f = gguf_facts(*smollm_file_);
        std::vector<Tensor> biases;
        for (int i = 0; i < f.layers; ++i)
            for (const auto& [part, rows] : {std::pair{"q_proj", f.heads * f.head_dim}, std::pair{"k_proj", f.kv_heads * f.head_dim},
                                             std::pair{"v_proj", f.kv_heads * f.head_dim}})
                biases.push_back({"model.layers." + std::to_string(i) + ".self_attn." + part + ".bias", {rows},
                                  std::vector<float>(static_cast<std::size_t>(rows), 0.0f)});
        std::vector<const Tensor*> pointers;
        for (const auto& b : biases) pointers.push_back(&b);
        persona::write_safetensors(dir + "/biases.safetensors", as_float_tensors(pointers));
        json index = read_json(dir + "/model.safetensors.index.json");
        for (const auto& b : biases) index["weight_map"][b.name] = "biases.safetensors";
        replace_json(dir + "/model.safetensors.index.json", index);
        json config = read_json(dir + "/config.json");
        config["model_type"] = "qwen2";
        config["architectures"] = {"Qwen2ForCausalLM"};
        config["use_sliding_window"] = false;
        config["sliding_window"] = 32768;
        replace_json(dir + "/config.json", config);

        const auto model = Model::load(dir, persona::ModelLoadOptions{"cpu", "f32"});
        QCOMPARE(model->facts().architecture, std::string("qwen2"));
        compare_logits_with_gguf(*model);

        // Without the biases the checkpoint is incomplete, and the error says which tensor.
        index["weight_map"].erase("model.layers.0.self_attn.k_proj.bias");
        replace_json(dir + "/model.safetensors.index.json", index);
        QCOMPARE(expect_file_error(dir, {"model.layers.0.self_attn.k_proj.bias"}, [&] { Model::load(dir); }), QString());
    }

    // Gemma 3: other tensor names, norms stored as w (GGUF: 1 + w), sliding layers from
    // layer_types. The tokenizer does not matter for the weights, so the directory gets the tiny
    // SentencePiece model, which also loads a model's tokenizer.model through the module.
    void gemma3MatchesTheGguf() {
        PERSONA_SKIP_WITHOUT_SENTENCEPIECE();
        const auto gemma_file = GgufFile::open(persona_test::secondModelPath().toStdString());
        const std::string dir = make_dir("gemma3");
        write_weights(dir, gemma_tensors(*gemma_file), 1);
        write_json(dir + "/config.json", gemma_config(*gemma_file));
        std::filesystem::copy_file(PERSONA_TEST_DATA_DIR "/tiny_bpe.model", dir + "/tokenizer.model");
        write_json(dir + "/tokenizer_config.json", {{"add_bos_token", true}});

        const auto gguf = Model::load(gemma_file->path(), persona::ModelLoadOptions{"cpu", "f32"});
        const auto hf = Model::load(dir, persona::ModelLoadOptions{"cpu", "f32"});
        QCOMPARE(hf->facts().architecture, std::string("gemma3"));
        QCOMPARE(hf->layer_count(), gguf->layer_count());
        QCOMPARE(hf->facts().vocabulary_size, 262144);
        QCOMPARE(hf->facts().tokenizer_model, std::string("llama"));
        QCOMPARE(hf->tokenizer().vocab_size(), std::size_t{262144});
        // Long enough (600 tokens) for the 512-token sliding window to matter.
        Ids prompt = gguf->tokenizer().encode("The capital of France is Paris. ", true, false);
        const Ids sentence = gguf->tokenizer().encode("Steering vectors nudge a model toward a trait. ", false, false);
        while (prompt.size() < 600) prompt.insert(prompt.end(), sentence.begin(), sentence.end());
        const auto expected = gguf->trace(prompt);
        const auto actual = hf->trace(prompt);
        const double difference = max_abs_difference(actual.logits, expected.logits);
        qInfo("Gemma 3: largest logit difference to the GGUF model: %.3g", difference);
        QVERIFY2(difference < 1e-3, qPrintable(QString::number(difference)));
    }

    void tinyCheckpointLoads() {
        const std::string dir = write_tiny("tiny");
        const auto model = Model::load(dir, persona::ModelLoadOptions{"cpu", "f32"});
        QCOMPARE(model->facts().vocabulary_size, 260);
        QCOMPARE(model->tokenizer().vocab_size(), std::size_t{260});
        QCOMPARE(model->tokenizer().token_type(259), persona::TokenType::Unused);
        QCOMPARE(model->tokenizer().encode("hi", false, false), (Ids{'h', 'i'}));
        const auto trace = model->trace({256, 'h', 'i'});
        for (const float x : trace.logits) QVERIFY(std::isfinite(x));
        // No chat template: the model loads, chat prompts say why they cannot be built.
        QVERIFY_THROWS_EXCEPTION(persona::Error, model->encode_chat({{"user", "hi"}}, true));
    }

    // Two fine-tunes of one shape are two models: their fingerprints, and so their extraction
    // checkpoints, differ; the same weights elsewhere are the same model.
    void fingerprintsTellCheckpointsOfOneShapeApart() {
        const std::string a = write_tiny("tune-a", 260, 1), b = write_tiny("tune-b", 260, 2), copy = write_tiny("tune-a-copy", 260, 1);
        const auto modelA = Model::load(a, persona::ModelLoadOptions{"cpu", "f32"});
        const auto modelB = Model::load(b, persona::ModelLoadOptions{"cpu", "f32"});
        const persona::ModelFacts& factsA = modelA->facts();
        const persona::ModelFacts& factsB = modelB->facts();
        QCOMPARE(factsA.file_bytes, factsB.file_bytes);  // same shape, same sizes
        QCOMPARE(factsA.fingerprint.size(), std::size_t(64));
        QVERIFY(factsA.fingerprint != factsB.fingerprint);
        QCOMPARE(persona::model_fingerprint(a), factsA.fingerprint);
        QCOMPARE(persona::model_fingerprint(copy), factsA.fingerprint);

        const persona::Trait trait = persona::load_builtin_trait("evil");
        persona::ExtractionSettings settings;
        const std::string checkpointA = persona::extraction_checkpoint_file("/tmp/ck", trait, settings, factsA);
        QVERIFY(checkpointA != persona::extraction_checkpoint_file("/tmp/ck", trait, settings, factsB));
        // dtype, device and every generation setting a checkpoint must match name another file.
        persona::ModelFacts inBf16 = factsA;
        inBf16.dtype = "bf16";
        QVERIFY(checkpointA != persona::extraction_checkpoint_file("/tmp/ck", trait, settings, inBf16));
        persona::ExtractionSettings otherTopP = settings;
        otherTopP.top_p = 0.9f;
        QVERIFY(checkpointA != persona::extraction_checkpoint_file("/tmp/ck", trait, otherTopP, factsA));
        persona::ExtractionSettings otherBatch = settings;
        otherBatch.batch_size = 3;  // batches do not change the answers: the same checkpoint resumes
        QCOMPARE(persona::extraction_checkpoint_file("/tmp/ck", trait, otherBatch, factsA), checkpointA);

        // A folder's files are what the fingerprint reads; the model's own facts agree with
        // the metadata-only view the CLI's import and add-run use.
        const persona::ModelFacts inspected = persona::inspect_model(b);
        QCOMPARE(inspected.layers, factsB.layers);
        QCOMPARE(inspected.hidden_size, factsB.hidden_size);
        QCOMPARE(inspected.file_bytes, factsB.file_bytes);
    }

    // Each file's hash is cached by path, size and modification time: a file edited in place
    // with its size and time kept is not read again (the cache is trusted), one whose time
    // moved is.
    void fingerprintsAreCachedByPathSizeAndTime() {
        const std::string dir = write_tiny("cached", 260, 3);
        std::string shard;
        for (const auto& entry : std::filesystem::directory_iterator(dir))
            if (entry.path().extension() == ".safetensors") shard = entry.path().string();
        QVERIFY(!shard.empty());
        const std::string before = persona::model_fingerprint(dir);
        const auto time = std::filesystem::last_write_time(shard);
        {
            std::fstream file(shard, std::ios::in | std::ios::out | std::ios::binary);
            file.seekp(-4, std::ios::end);
            file.write("\x11\x22\x33\x44", 4);
        }
        std::filesystem::last_write_time(shard, time);
        QCOMPARE(persona::model_fingerprint(dir), before);
        std::filesystem::last_write_time(shard, time + std::chrono::seconds(2));
        QVERIFY(persona::model_fingerprint(dir) != before);
        QCOMPARE(persona::file_sha256(shard).size(), std::size_t(64));
    }

    // Every command that takes a model takes a checkpoint folder: import reads its shape, and
    // project add-run records its fingerprint and the dtype the vector says it was made in.
    void cliImportAndAddRunTakeACheckpointFolder() {
        const std::string model = write_tiny("cli-tiny", 260, 4);  // 2 blocks of 8: vectors [3, 8]
        persona::PersonaVector vector;
        vector.trait = "evil";
        vector.layer_count = 3;
        vector.hidden_size = 8;
        for (int i = 0; i < 24; ++i) vector.values.push_back(0.1f * float(i % 7) - 0.3f);
        vector.provenance["dtype"] = "f32";
        vector.provenance["device"] = "cpu";
        vector.provenance["suggested_layer"] = "1";
        const QString dir = QString::fromStdString(make_dir("cli-files"));
        const QString vectorFile = dir + "/evil.safetensors", gguf = dir + "/evil.gguf", back = dir + "/back.safetensors";
        persona::write_vector_file(vectorFile.toStdString(), vector);

        const QString modelDir = QString::fromStdString(model);
        const persona_test::CliRun exported = persona_test::runCli({"export", "--vector", vectorFile, "--out", gguf});
        QVERIFY2(exported.exitCode == 0, exported.err.constData());
        const persona_test::CliRun imported =
            persona_test::runCli({"import", "--control-vector", gguf, "--out", back, "--model", modelDir});
        QVERIFY2(imported.exitCode == 0, imported.err.constData());
        const persona::PersonaVector roundTrip = persona::read_vector_file(back.toStdString());
        QCOMPARE(roundTrip.layer_count, 3);
        QCOMPARE(roundTrip.hidden_size, 8);
        // llama.cpp steers blocks 1 and up: of two blocks, block 1 (row 2) travels; row 1 comes back 0.
        for (int i = 0; i < 8; ++i) {
            QCOMPARE(roundTrip.layer(2).values[i], vector.layer(2).values[i]);
            QCOMPARE(roundTrip.layer(1).values[i], 0.0f);
        }

        const json layers = json::array({{{"layer", 0}, {"norm", 0.0}, {"effect_size", nullptr}, {"auroc", 0.5},
                                          {"positive_mean_projection", 0.0}, {"negative_mean_projection", 0.0}},
                                         {{"layer", 1}, {"norm", 1.0}, {"effect_size", 2.0}, {"auroc", 1.0},
                                          {"positive_mean_projection", 1.0}, {"negative_mean_projection", -1.0}},
                                         {{"layer", 2}, {"norm", 1.5}, {"effect_size", 1.0}, {"auroc", 0.9},
                                          {"positive_mean_projection", 0.5}, {"negative_mean_projection", -0.5}}});
        write_json((dir + "/summary.json").toStdString(),
                   {{"trait", "evil"}, {"vector", vectorFile.toStdString()}, {"judge", "none"}, {"pairs_total", 4},
                    {"pairs_kept", 4}, {"suggested_layer", 1}, {"layers", layers}});
        const QString project = dir + "/tiny.persona";
        QCOMPARE(persona_test::runCli({"project", "new", project}).exitCode, 0);
        const persona_test::CliRun added =
            persona_test::runCli({"project", "add-run", project, "--summary", dir + "/summary.json", "--model", modelDir});
        QVERIFY2(added.exitCode == 0, added.err.constData());
        const persona::Project read = persona::read_project(project.toStdString());
        QCOMPARE(read.runs.size(), std::size_t(1));
        const persona::ModelIdentity& identity = read.runs[0].model;
        QCOMPARE(identity.file, std::string("cli-tiny"));
        QCOMPARE(identity.sha256, persona::model_fingerprint(model));
        QCOMPARE(identity.dtype, std::string("f32"));
        QCOMPARE(identity.device, std::string("cpu"));
        QCOMPARE(read.runs[0].pairs.kept, std::size_t(4));

        // A vector of another shape is refused, naming the vector file.
        persona::PersonaVector wide = vector;
        wide.hidden_size = 4;
        wide.values.resize(12);
        persona::write_vector_file(vectorFile.toStdString(), wide);
        const persona_test::CliRun refused =
            persona_test::runCli({"project", "add-run", project, "--summary", dir + "/summary.json", "--model", modelDir});
        QCOMPARE(refused.exitCode, 1);
        QVERIFY2(refused.err.contains("evil.safetensors") && refused.err.contains("but the model needs [3, 8]"),
                 refused.err.constData());
    }

    // Numbers the model math divides by or takes powers of: a zero or negative RoPE base, or an
    // epsilon of 0, is refused naming the file instead of giving NaN logits.
    void implausibleConfigNumbersAreRefused() {
        for (const auto& [key, value] : std::vector<std::pair<std::string, double>>{
                 {"rope_theta", 0.0}, {"rope_theta", -10000.0}, {"rms_norm_eps", 0.0}, {"rms_norm_eps", -1e-6}}) {
            const std::string dir = write_tiny(QString::fromStdString("bad-" + key + std::to_string(value)));
            json config = read_json(dir + "/config.json");
            config[key] = value;
            replace_json(dir + "/config.json", config);
            try {
                Model::load(dir, persona::ModelLoadOptions{"cpu", "f32"});
                QFAIL(qPrintable(QString::fromStdString(key + " " + std::to_string(value) + " was accepted")));
            } catch (const persona::FileError& e) {
                QVERIFY2(std::string(e.what()).find(dir) == 0 && std::string(e.what()).find("finite number above 0") != std::string::npos,
                         e.what());
            }
        }
    }

    void missingConfigKey() {
        const std::string dir = link_copy(sharded_, "no-layers");
        json config = read_json(dir + "/config.json");
        config.erase("num_hidden_layers");
        replace_json(dir + "/config.json", config);
        QCOMPARE(expect_file_error(dir + "/config.json", {"num_hidden_layers", "missing"}, [&] { Model::load(dir); }),
                 QString());
    }

    void missingConfig() {
        const std::string dir = link_copy(sharded_, "no-config");
        std::filesystem::remove(dir + "/config.json");
        QCOMPARE(expect_file_error(dir, {"config.json"}, [&] { Model::load(dir); }), QString());
    }

    void missingShard() {
        const std::string dir = link_copy(sharded_, "no-shard");
        std::filesystem::remove(dir + "/model-00002-of-00002.safetensors");
        QCOMPARE(expect_file_error(dir + "/model.safetensors.index.json", {"model-00002-of-00002.safetensors", "missing"},
                                   [&] { Model::load(dir); }),
                 QString());
    }

    void tensorWithWrongShape() {
        const std::string dir = write_tiny("wrong-shape");
        // The tiny model's layer-1 down projection, written transposed.
        auto checkpoint = persona::SafetensorsCheckpoint::open_directory(dir);
        std::vector<Tensor> tensors;
        for (const auto& [name, tensor] : checkpoint->tensors()) {
            Tensor t{name, tensor.info->shape, checkpoint->read_floats(name)};
            if (name == "model.layers.1.mlp.down_proj.weight") t.shape = {16, 8};
            tensors.push_back(std::move(t));
        }
        checkpoint.reset();
        std::filesystem::remove(dir + "/model.safetensors.index.json");
        write_weights(dir, tensors, 1);
        QCOMPARE(expect_file_error(dir + "/model.safetensors",
                                   {"model.layers.1.mlp.down_proj.weight", "[16, 8]", "[8, 16]", "config.json"},
                                   [&] { Model::load(dir); }),
                 QString());
        // A config that disagrees with the real tensors fails the same way.
        const std::string real = link_copy(sharded_, "wrong-config");
        json config = read_json(real + "/config.json");
        config["intermediate_size"] = 1535;
        replace_json(real + "/config.json", config);
        try {
            Model::load(real);
            QFAIL("a config that does not match the tensors loaded");
        } catch (const persona::FileError& e) {
            QVERIFY2(QString(e.what()).contains("[1536, 576]") && QString(e.what()).contains("[1535, 576]"), e.what());
        }
    }

    void noTokenizer() {
        const std::string dir = link_copy(sharded_, "no-tokenizer");
        std::filesystem::remove(dir + "/tokenizer.json");
        QCOMPARE(expect_file_error(dir, {"no tokenizer", "tokenizer.json", "tokenizer.model"}, [&] { Model::load(dir); }),
                 QString());
    }

    void unsupportedModelType() {
        const std::string dir = link_copy(sharded_, "neox");
        json config = read_json(dir + "/config.json");
        config["model_type"] = "gpt_neox";
        replace_json(dir + "/config.json", config);
        QCOMPARE(expect_file_error(dir + "/config.json", {"gpt_neox", "not supported", "gemma3_text"}, [&] { Model::load(dir); }),
                 QString());
        // A multimodal Gemma 3 nests its language model; that is said plainly.
        replace_json(dir + "/config.json", {{"model_type", "gemma3"}, {"text_config", {{"hidden_size", 640}}}});
        QCOMPARE(expect_file_error(dir + "/config.json", {"text_config", "multimodal"}, [&] { Model::load(dir); }), QString());
    }

    // Pre-tokenizers are recognised from their configuration; others are refused, and without
    // a tokenizer.model to fall back on the error says why.
    void preTokenizerRecognition_data() {
        QTest::addColumn<QString>("preTokenizer");
        QTest::addColumn<QString>("expected");  // pre name, or "!" + words of the reason
        const json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}};
        const auto split = [&](const char* regex) {
            return json{{"type", "Sequence"},
                        {"pretokenizers",
                         {{{"type", "Split"}, {"pattern", {{"Regex", regex}}}, {"behavior", "Isolated"}, {"invert", false}},
                          byte_level}}};
        };
        const char* llama3 =
            R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
        const char* qwen2 =
            R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
        QTest::newRow("gpt2") << QString::fromStdString(
            json{{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}.dump()) << "gpt2";
        QTest::newRow("llama3") << QString::fromStdString(split(llama3).dump()) << "llama-bpe";
        QTest::newRow("qwen2") << QString::fromStdString(split(qwen2).dump()) << "qwen2";
        QTest::newRow("other regex") << QString::fromStdString(split(R"(\p{N}{1,2}|\s+)").dump()) << "!not one this version recognises";
        // A SentencePiece BPE spelled with Metaspace loads from tokenizer.json alone (split is
        // on unless the file says otherwise, as before tokenizers 0.19).
        QTest::newRow("metaspace") << QString::fromStdString(
            json{{"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", "first"}}.dump())
                                   << "metaspace-first-split";
        QTest::newRow("metaspace, other replacement") << QString::fromStdString(
            json{{"type", "Metaspace"}, {"replacement", "_"}, {"prepend_scheme", "first"}}.dump())
                                   << "!other than U+2581";
        QTest::newRow("whitespace split") << QString::fromStdString(json{{"type", "WhitespaceSplit"}}.dump())
                                          << "!does not end in ByteLevel";
        QTest::newRow("prefix space") << QString::fromStdString(
            json{{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}}.dump()) << "!prefix space";
    }
    void preTokenizerRecognition() {
        QFETCH(QString, preTokenizer);
        QFETCH(QString, expected);
        static int count = 0;
        const std::string dir = write_tiny("pre-tokenizer-" + QString::number(++count));
        json tokenizer = read_json(dir + "/tokenizer.json");
        tokenizer["pre_tokenizer"] = json::parse(preTokenizer.toStdString());
        write_json(dir + "/tokenizer.json", tokenizer);
        const auto parsed = persona::read_hf_tokenizer_json(dir + "/tokenizer.json", {});
        if (!expected.startsWith('!')) {
            QCOMPARE(QString::fromStdString(parsed.unsupported), QString());
            QCOMPARE(QString::fromStdString(parsed.vocabulary.pre), expected);
            QCOMPARE(Model::load(dir)->tokenizer().pre_name(), expected.toStdString());
            return;
        }
        QVERIFY2(QString::fromStdString(parsed.unsupported).contains(expected.mid(1)), parsed.unsupported.c_str());
        QCOMPARE(expect_file_error(dir + "/tokenizer.json", {expected.mid(1), "tokenizer.model"}, [&] { Model::load(dir); }),
                 QString());
    }

    // Mistral's sliding_window: each block sees the last W positions only, so with two blocks the
    // last position cannot depend on a token 2(W-1) or more places back; without the window it
    // does. Decoding with the KV cache past the window, and a left-padded batch, agree with whole
    // passes.
    void mistralSlidingWindow() {
        const std::string dir = write_tiny("mistral-window");
        json config = read_json(dir + "/config.json");
        config["model_type"] = "mistral";
        config["sliding_window"] = 3;
        replace_json(dir + "/config.json", config);
        const std::string full_dir = link_copy(dir, "mistral-no-window");
        config["sliding_window"] = nullptr;  // Mistral 7B v0.2 and later
        replace_json(full_dir + "/config.json", config);
        const auto windowed = Model::load(dir, persona::ModelLoadOptions{"cpu", "f32"});
        const auto full = Model::load(full_dir, persona::ModelLoadOptions{"cpu", "f32"});

        const Ids tokens{10, 20, 30, 40, 50, 60, 70, 80};
        const auto last_logits = [](Model& model, const Ids& ids) {
            const auto trace = model.trace(ids);
            const std::size_t vocabulary = trace.logits.size() / ids.size();
            return std::vector<float>(trace.logits.end() - static_cast<std::ptrdiff_t>(vocabulary), trace.logits.end());
        };
        Ids first_changed = tokens, near_changed = tokens;
        first_changed[0] = 99;  // 7 places back: outside the window's reach of 2 * (3 - 1) = 4
        near_changed[4] = 99;   // 3 places back: inside it
        const double far_windowed = max_abs_difference(last_logits(*windowed, first_changed), last_logits(*windowed, tokens));
        const double far_full = max_abs_difference(last_logits(*full, first_changed), last_logits(*full, tokens));
        const double near_windowed = max_abs_difference(last_logits(*windowed, near_changed), last_logits(*windowed, tokens));
        qInfo("last logits change by %.3g (window, far token), %.3g (no window), %.3g (window, near token)",
              far_windowed, far_full, near_windowed);
        QVERIFY(far_windowed < 1e-6);
        QVERIFY(far_full > 1e-4);
        QVERIFY(near_windowed > 1e-4);

        // Greedy tokens with the cache equal the argmax of a whole pass over prompt + answer, for
        // each row of a batch whose prompts differ in length.
        persona::GenerationRow row;
        row.prompt_tokens = tokens;
        row.sampling.max_new_tokens = 8;
        row.sampling.stop_at_eos = false;
        persona::GenerationRow short_row = row;
        short_row.prompt_tokens = Ids{33, 44, 55};
        const auto results = windowed->generate({row, short_row});
        for (const auto& result : results) {
            QCOMPARE(result.tokens.size(), std::size_t{8});
            Ids sequence = result.prompt_tokens;
            sequence.insert(sequence.end(), result.tokens.begin(), result.tokens.end() - 1);
            const auto trace = windowed->trace(sequence);
            const std::size_t vocabulary = trace.logits.size() / sequence.size();
            Ids argmax;
            for (std::size_t t = result.prompt_tokens.size() - 1; t < sequence.size(); ++t) {
                const auto begin = trace.logits.begin() + static_cast<std::ptrdiff_t>(t * vocabulary);
                argmax.push_back(static_cast<std::int32_t>(
                    std::max_element(begin, begin + static_cast<std::ptrdiff_t>(vocabulary)) - begin));
            }
            QCOMPARE(persona_test::ids_text(result.tokens), persona_test::ids_text(argmax));
        }
        QCOMPARE(results[1].tokens, windowed->generate({short_row}).front().tokens);
    }

    // generation_config.json's eos_token_id (one id or a list) ends generation like EOS does.
    void generationConfigEndsGeneration() {
        const std::string dir = write_tiny("generation-config");
        persona::GenerationRow row;
        row.prompt_tokens = Ids{10, 20, 30, 40};
        row.sampling.max_new_tokens = 6;
        const Ids free_run = Model::load(dir)->generate({row}).front().tokens;
        QCOMPARE(free_run.size(), std::size_t{6});
        // The first step that brings a token not generated before, so generation stops exactly there.
        std::size_t stop_at = 1;
        while (stop_at < free_run.size() &&
               std::find(free_run.begin(), free_run.begin() + static_cast<std::ptrdiff_t>(stop_at), free_run[stop_at]) !=
                   free_run.begin() + static_cast<std::ptrdiff_t>(stop_at))
            ++stop_at;
        if (stop_at == free_run.size()) QSKIP("the random model repeats one token; no step to stop at");
        write_json(dir + "/generation_config.json", {{"bos_token_id", 256}, {"eos_token_id", {257, free_run[stop_at]}}});
        const auto model = Model::load(dir);
        QVERIFY(model->tokenizer().is_end_of_generation(free_run[stop_at]));
        const auto stopped = model->generate({row}).front();
        QCOMPARE(stopped.stop_reason, persona::StopReason::EndOfSequence);
        QCOMPARE(stopped.tokens, Ids(free_run.begin(), free_run.begin() + static_cast<std::ptrdiff_t>(stop_at)));

        // One id instead of a list; and what is not an id is an error naming the file.
        replace_json(dir + "/generation_config.json", {{"eos_token_id", free_run[stop_at]}});
        QVERIFY(Model::load(dir)->tokenizer().is_end_of_generation(free_run[stop_at]));
        replace_json(dir + "/generation_config.json", {{"eos_token_id", "</s>"}});
        QCOMPARE(expect_file_error(dir + "/generation_config.json", {"eos_token_id", "a string"}, [&] { Model::load(dir); }),
                 QString());
        replace_json(dir + "/generation_config.json", {{"eos_token_id", {257, 5000}}});
        QCOMPARE(expect_file_error(dir + "/generation_config.json", {"5000", "outside the vocabulary"},
                                   [&] { Model::load(dir); }),
                 QString());
    }

    // A tokenizer.json that is not byte-level gives way to a tokenizer.model beside it, which
    // takes over its added tokens.
    void sentencePieceBesideTokenizerJson() {
        PERSONA_SKIP_WITHOUT_SENTENCEPIECE();
        const std::string dir = write_tiny("spm-beside", 482);
        json tokenizer = read_json(dir + "/tokenizer.json");
        tokenizer["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\u2581"}};
        tokenizer["model"]["byte_fallback"] = true;
        tokenizer["added_tokens"] = {{{"id", 480}, {"content", "<|im_start|>"}, {"special", true}},
                                     {{"id", 481}, {"content", "<|im_end|>"}, {"special", true}}};
        write_json(dir + "/tokenizer.json", tokenizer);
        std::filesystem::copy_file(PERSONA_TEST_DATA_DIR "/tiny_bpe.model", dir + "/tokenizer.model");
        const auto model = Model::load(dir);
        const Tokenizer& t = model->tokenizer();
        QCOMPARE(t.model_name(), std::string("llama"));
        QCOMPARE(t.vocab_size(), std::size_t{482});
        QCOMPARE(t.token_type(479), persona::TokenType::Normal);  // the model's last piece
        QCOMPARE(t.find_token("<|im_start|>"), std::optional<std::int32_t>(480));
        QCOMPARE(t.bos_id(), std::optional<std::int32_t>(480));  // tokenizer_config.json's bos_token
        QCOMPARE(t.encode("<|im_start|>", false, true), (Ids{480}));
    }
};

QTEST_GUILESS_MAIN(TestHfCheckpoint)
#include "test_hf_checkpoint.moc"
