// Qwen3, Llama 3.x and Phi-3 against the independent NumPy reference (tests/reference/
// numpy_hf_forward.py, float64) on tiny random-weight checkpoints written by
// tests/reference/make_tiny_architectures.py: hidden states at every layer and position, logits,
// greedy generation through the KV cache, from Hugging Face folders and from GGUF files; and
// Qwen3's chat template against jinja2's renderings with thinking off and on.
#include "persona/errors.h"
#include "persona/model.h"
#include "persona/model_facts.h"
#include "persona/tokenizer.h"
#include "io/json_file.h"
#include "tokenizer/chat_template.h"
#include "test_support.h"

#include <QProcess>
#include <QTemporaryDir>
#include <QtTest>

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>

using nlohmann::json;

namespace {

const std::string kModels = PERSONA_TEST_DATA_DIR "/tiny_models";
// The floors of the real models' float32 tolerances (tests/test_reference.cpp): a float32 pass
// of these 3-block models drifts ~1e-6 from float64.
constexpr double kHiddenRelative = 1e-5;
constexpr double kLogitsAbsolute = 1e-4;

json read_json(const std::string& path) { return persona::detail::read_json_file(path); }

}  // namespace

class TestArchitectures : public QObject {
    Q_OBJECT
    json goldens_;

private slots:
    void initTestCase() { goldens_ = read_json(kModels + "/goldens.json"); }

    void forwardMatchesReference_data() {
        QTest::addColumn<QString>("name");
        QTest::addColumn<QString>("path");
        QTest::addColumn<QString>("architecture");
        QTest::newRow("qwen3 folder") << "qwen3" << "qwen3" << "qwen3";
        QTest::newRow("qwen3 gguf") << "qwen3" << "qwen3.gguf" << "qwen3";
        QTest::newRow("llama3 folder") << "llama3" << "llama3" << "llama";
        QTest::newRow("llama3 gguf") << "llama3" << "llama3.gguf" << "llama";
        QTest::newRow("phi3 folder") << "phi3" << "phi3" << "phi3";
        QTest::newRow("phi3 gguf") << "phi3" << "phi3.gguf" << "phi3";
    }

    void forwardMatchesReference() {
        QFETCH(QString, name);
        QFETCH(QString, path);
        QFETCH(QString, architecture);
        const json& golden = goldens_[name.toStdString()];
        const auto model = persona::Model::load(kModels + "/" + path.toStdString(), persona::ModelLoadOptions{"cpu", "f32"});
        QCOMPARE(QString::fromStdString(model->facts().architecture), architecture);
        const int hidden = model->hidden_size(), layers = model->layer_count();
        const int vocabulary = model->facts().vocabulary_size;

        const auto tokens = golden["token_ids"].get<std::vector<std::int32_t>>();
        QCOMPARE(model->tokenizer().encode(golden["prompt"].get<std::string>(), false, true), tokens);
        const auto trace = model->trace(tokens);
        const int length = trace.tokens;
        QCOMPARE(int(golden["hidden_norms"].size()), layers + 1);

        double worst = 0;
        for (int layer = 0; layer <= layers; ++layer) {
            const float* states = trace.hidden_states.data() + std::size_t(layer) * length * hidden;
            for (int p = 0; p < length; ++p) {
                const double expected = golden["hidden_norms"][layer][p];
                worst = std::max(worst, std::abs(persona_test::l2(states + std::size_t(p) * hidden, hidden) - expected) / expected);
            }
            const float* last = states + std::size_t(length - 1) * hidden;
            const double scale = persona_test::l2(last, hidden);
            for (int i = 0; i < hidden; ++i)
                worst = std::max(worst, std::abs(last[i] - golden["hidden_last_position"][layer][i].get<double>()) / scale);
        }
        qInfo("%s: hidden states differ by at most %.2e (relative)", qPrintable(path), worst);
        QVERIFY2(worst < kHiddenRelative, qPrintable(QString::number(worst)));

        const float* last = trace.logits.data() + std::size_t(length - 1) * vocabulary;
        double logit_worst = 0;
        for (int i = 0; i < vocabulary; ++i)
            logit_worst = std::max(logit_worst, std::abs(last[i] - golden["logits_last_position"][i].get<double>()));
        qInfo("%s: logits differ by at most %.2e", qPrintable(path), logit_worst);
        QVERIFY2(logit_worst < kLogitsAbsolute, qPrintable(QString::number(logit_worst)));
        for (int p = 0; p < length; ++p) {
            const float* row = trace.logits.data() + std::size_t(p) * vocabulary;
            QCOMPARE(int(std::max_element(row, row + vocabulary) - row), golden["top1_per_position"][p].get<int>());
        }

        persona::GenerationRow row;
        row.prompt_tokens = tokens;
        row.sampling.max_new_tokens = int(golden["greedy_ids"].size());
        row.sampling.stop_at_eos = false;
        QCOMPARE(model->generate({row}).front().tokens, golden["greedy_ids"].get<std::vector<std::int32_t>>());

        // The goldens' prompt is the chat template's rendering of one user turn (Qwen3: thinking off).
        QCOMPARE(model->encode_chat({{"user", "hello, tell me the truth"}}, true), tokens);
    }

    void chatTemplatesRenderLikeJinja_data() {
        QTest::addColumn<QString>("name");
        QTest::addColumn<int>("family");
        QTest::newRow("qwen3") << "qwen3" << int(persona::ChatFamily::Qwen3);
        QTest::newRow("llama3") << "llama3" << int(persona::ChatFamily::Llama3);
        QTest::newRow("phi3") << "phi3" << int(persona::ChatFamily::Phi3);
    }

    void chatTemplatesRenderLikeJinja() {
        QFETCH(QString, name);
        QFETCH(int, family);
        const json config = read_json(kModels + "/" + name.toStdString() + "/tokenizer_config.json");
        persona::ChatTemplate chat = persona::ChatTemplate::detect(config["chat_template"], name.toStdString(),
                                                                   config.value("bos_token", ""), config["eos_token"],
                                                                   name.toStdString());
        QCOMPARE(int(chat.family()), family);
        QVERIFY(!chat.thinking());
        for (const auto& c : goldens_[name.toStdString()]["chat"]) {
            std::vector<persona::ChatMessage> messages;
            for (const auto& m : c["messages"]) messages.push_back({m["role"], m["content"]});
            chat.set_thinking(c["thinking"]);
            const QString rendered = QString::fromStdString(chat.render(messages, c["add_generation_prompt"]));
            if (rendered != QString::fromStdString(c["rendered"].get<std::string>()))
                qWarning("case %s, thinking %d", c["name"].get<std::string>().c_str(), c["thinking"].get<bool>());
            QCOMPARE(rendered, QString::fromStdString(c["rendered"].get<std::string>()));
        }
        if (name == "qwen3") QVERIFY_THROWS_EXCEPTION(persona::Error, chat.render({{"tool", "42"}}, true));
    }

    // Thinking is off unless asked for, and the switch reaches the prompt, the facts and the CLI.
    void thinkingSwitch() {
        const std::string path = kModels + "/qwen3";
        const std::vector<persona::ChatMessage> question = {{"user", "hello, tell me the truth"}};
        const auto tokens = goldens_["qwen3"]["token_ids"].get<std::vector<std::int32_t>>();
        const auto quiet = persona::Model::load(path, persona::ModelLoadOptions{"cpu", "f32"});
        QCOMPARE(quiet->facts().chat_format, std::string("Qwen3 (ChatML with thinking), thinking off"));
        const auto thinking = persona::Model::load(path, persona::ModelLoadOptions{"cpu", "f32", true});
        QCOMPARE(thinking->facts().chat_format, std::string("Qwen3 (ChatML with thinking), thinking on"));
        const auto think_block = quiet->tokenizer().encode("<think>\n\n</think>\n\n", false, true);
        auto expected = thinking->encode_chat(question, true);
        expected.insert(expected.end(), think_block.begin(), think_block.end());
        QCOMPARE(expected, tokens);

        for (const bool on : {false, true}) {
            QProcess cli;
            QStringList arguments{"--device", "cpu"};
            if (on) arguments << "--thinking";
            cli.start(PERSONA_CLI_PATH, arguments << "info" << QString::fromStdString(path));
            QVERIFY(cli.waitForFinished(60000));
            QCOMPARE(cli.exitCode(), 0);
            const json facts = json::parse(cli.readAllStandardOutput().toStdString());
            QCOMPARE(QString::fromStdString(facts["chat_format"]), on ? QString("Qwen3 (ChatML with thinking), thinking on")
                                                                      : QString("Qwen3 (ChatML with thinking), thinking off"));
        }
    }

    // Phi-3's longrope: the short divisors and the cos/sin factor hold within the original
    // context, so the usable context stops there.
    void phi3ContextStopsAtTheOriginalOne() {
        const int original = read_json(kModels + "/phi3/config.json")["original_max_position_embeddings"];
        for (const char* path : {"/phi3", "/phi3.gguf"})
            QCOMPARE(persona::Model::load(kModels + path, persona::ModelLoadOptions{"cpu", "f32"})->context_length(), original);
    }

    // The same refusal for a GGUF: rope.dimension_count smaller than the head (Phi-4-mini's 96 of 128).
    void partialRotaryGgufIsRefused() {
        QTemporaryDir dir;
        const std::string path = dir.filePath("phi4.gguf").toStdString();
        std::ifstream in(kModels + "/phi3.gguf", std::ios::binary);
        std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        const std::string key = "phi3.rope.dimension_count";
        const std::size_t at = bytes.find(key);
        QVERIFY(at != std::string::npos);
        const std::size_t value = at + key.size() + 4;  // after the key, its uint32 type tag
        QCOMPARE(int(bytes[value]), 8);                   // head size 8 in the tiny Phi-3
        bytes[value] = 6;
        std::ofstream(path, std::ios::binary) << bytes;
        try {
            persona::Model::load(path);
            QFAIL("loaded");
        } catch (const persona::FileError& e) {
            QCOMPARE(QString::fromStdString(e.path()), QString::fromStdString(path));
            QVERIFY2(QString(e.what()).contains("rope.dimension_count"), e.what());
        }
    }

    void unsupportedRopeVariantsAreRefused_data() {
        QTest::addColumn<QString>("key");
        QTest::addColumn<QString>("value");
        QTest::addColumn<QString>("message");
        QTest::newRow("partial rotary") << "partial_rotary_factor" << "0.75" << "partial_rotary_factor";
        QTest::newRow("short factors") << "rope_scaling" << R"({"type": "longrope", "short_factor": [1, 2], "long_factor": [1, 2]})"
                                       << "short_factor list of 4";
        QTest::newRow("yarn") << "rope_scaling" << R"({"type": "yarn", "factor": 4})" << "yarn";
    }

    void unsupportedRopeVariantsAreRefused() {
        QFETCH(QString, key);
        QFETCH(QString, value);
        QFETCH(QString, message);
        QTemporaryDir dir;
        namespace fs = std::filesystem;
        for (const auto& entry : fs::directory_iterator(kModels + "/phi3"))
            fs::copy_file(entry.path(), fs::path(dir.path().toStdString()) / entry.path().filename());
        const std::string config_path = dir.filePath("config.json").toStdString();
        json config = read_json(config_path);
        config[key.toStdString()] = json::parse(value.toStdString());
        std::ofstream(config_path) << config.dump();
        try {
            persona::Model::load(dir.path().toStdString());
            QFAIL("loaded");
        } catch (const persona::FileError& e) {
            QCOMPARE(QString::fromStdString(e.path()), QString::fromStdString(config_path));
            QVERIFY2(QString(e.what()).contains(message), e.what());
        }
    }
};

QTEST_GUILESS_MAIN(TestArchitectures)
#include "test_architectures.moc"
