// SentencePiece model files through libpersona_sentencepiece, the dlopen'ed module, inside an
// executable that links libtorch: the combination that crashes when sentencepiece is linked
// directly (docs/platform-notes.md). Ids, pieces and decoded text are compared with what Google's
// sentencepiece gave for the same models (tests/reference/make_sentencepiece_fixture.py).
#include "persona/errors.h"
#include "persona/model.h"
#include "persona/tokenizer.h"
#include "test_support.h"

#include <QFile>
#include <QTemporaryDir>
#include <QtTest>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <fstream>

using persona::FileError;
using persona::Tokenizer;
using persona::TokenType;
using Ids = std::vector<std::int32_t>;
using persona_test::ids_text;

namespace {


bool process_has_mapped(const char* library) {
    QFile maps("/proc/self/maps");
    if (!maps.open(QIODevice::ReadOnly)) qFatal("cannot read /proc/self/maps");
    return maps.readAll().contains(library);
}

std::string data_path(const std::string& name) { return std::string(PERSONA_TEST_DATA_DIR) + "/" + name; }

}  // namespace

class TestSentencePiece : public QObject {
    Q_OBJECT

    nlohmann::json goldens_;

    const nlohmann::json& golden_model(const char* name) { return goldens_.at("models").at(name); }

private slots:
    void initTestCase() {
        PERSONA_SKIP_WITHOUT_SENTENCEPIECE();
        std::ifstream in(data_path("sentencepiece_goldens.json"));
        QVERIFY(in.good());
        goldens_ = nlohmann::json::parse(in);
    }

    // Runs first, before anything has loaded the module: a wrong explicit path is an error that
    // says where it looked and how to choose another, not a crash.
    void missingModuleIsAClearError() {
        qputenv("PERSONA_SENTENCEPIECE_LIBRARY", "/nonexistent/libpersona_sentencepiece.so");
        try {
            Tokenizer::from_sentencepiece(data_path("tiny_bpe.model"));
            qunsetenv("PERSONA_SENTENCEPIECE_LIBRARY");
            QFAIL("a missing module was not reported");
        } catch (const FileError& e) {
            qunsetenv("PERSONA_SENTENCEPIECE_LIBRARY");
            const QString message = e.what();
            QVERIFY2(message.contains("tiny_bpe.model"), e.what());
            QVERIFY2(message.contains("/nonexistent/libpersona_sentencepiece.so"), e.what());
            QVERIFY2(message.contains("PERSONA_SENTENCEPIECE_LIBRARY"), e.what());
        }
    }

    // The crash scenario is only tested if libtorch and its protobuf really are in the process.
    // Debian's libtorch 1.13 links the system libprotobuf.so; pip's 2.x wheels build protobuf
    // into libtorch_cpu.so, so there is no library of its own to see.
    void libtorchIsInTheProcess() {
        QVERIFY(process_has_mapped("libtorch_cpu.so"));
        if (process_has_mapped("/usr/lib/x86_64-linux-gnu/libtorch_cpu.so"))
            QVERIFY(process_has_mapped("libprotobuf.so"));
        else
            qInfo("libtorch is not Debian's; its protobuf is inside libtorch_cpu.so");
    }

    void moduleIsFoundInTheBuildTree() {
        const std::string path = persona::sentencepiece_library_path();
        QVERIFY2(QFileInfo(QString::fromStdString(path)).isFile(), path.c_str());
        QVERIFY(QString::fromStdString(path).endsWith("libpersona_sentencepiece.so"));
        QVERIFY(process_has_mapped("libpersona_sentencepiece.so"));
        QVERIFY(process_has_mapped("libsentencepiece.so"));
    }

    void vocabularyMatchesSentencePiece_data() {
        QTest::addColumn<QString>("name");
        QTest::newRow("bpe") << "tiny_bpe";
        QTest::newRow("unigram") << "tiny_unigram";
    }
    void vocabularyMatchesSentencePiece() {
        QFETCH(QString, name);
        const auto& golden = golden_model(qPrintable(name));
        const auto tokenizer = Tokenizer::from_sentencepiece(data_path(golden.at("file")));
        QCOMPARE(tokenizer->vocab_size(), golden.at("vocab_size").get<std::size_t>());
        QCOMPARE(tokenizer->model_name(), std::string("llama"));
        const auto& pieces = golden.at("pieces");
        for (std::size_t id = 0; id < pieces.size(); ++id)
            QCOMPARE(tokenizer->token_text(static_cast<std::int32_t>(id)), pieces[id].get<std::string>());
        QCOMPARE(tokenizer->bos_id().value_or(-1), golden.at("bos").get<int>());
        QCOMPARE(tokenizer->eos_id().value_or(-1), golden.at("eos").get<int>());
        QVERIFY(tokenizer->adds_bos());
        QCOMPARE(tokenizer->strips_leading_space(), golden.at("add_dummy_prefix").get<bool>());
        const std::map<std::string, TokenType> kinds{{"control", TokenType::Control}, {"unknown", TokenType::Unknown},
                                                     {"byte", TokenType::Byte}, {"unused", TokenType::Unused}};
        for (const auto& [kind, ids] : golden.at("piece_types").items())
            for (const auto& id : ids) QCOMPARE(tokenizer->token_type(id.get<std::int32_t>()), kinds.at(kind));
        for (const auto& [text, id] : golden.at("user_defined").items())
            QCOMPARE(tokenizer->token_type(id.get<std::int32_t>()), TokenType::UserDefined);
    }

    // Without special parsing our tokenizer is sentencepiece itself: control-token text is plain
    // text and user-defined pieces are matched by the library.
    void encodesLikeSentencePiece_data() {
        QTest::addColumn<QString>("name");
        QTest::newRow("bpe") << "tiny_bpe";
        QTest::newRow("unigram") << "tiny_unigram";
    }
    void encodesLikeSentencePiece() {
        QFETCH(QString, name);
        const auto& golden = golden_model(qPrintable(name));
        const auto tokenizer = Tokenizer::from_sentencepiece(data_path(golden.at("file")));
        const auto unknown = golden.at("unk").get<std::int32_t>();
        for (const auto& test : golden.at("cases")) {
            const std::string text = test.at("text");
            const Ids expected = test.at("ids");
            const Ids ids = tokenizer->encode(text, /*add_special=*/false, /*parse_special=*/false);
            QVERIFY2(ids == expected, qPrintable(QString::fromStdString(text) + ": got " + ids_text(ids) +
                                                 ", sentencepiece gave " + ids_text(expected)));
            Ids with_bos = expected;
            with_bos.insert(with_bos.begin(), golden.at("bos").get<std::int32_t>());
            QVERIFY(tokenizer->encode(text, true, false) == with_bos);
            // sentencepiece writes <unk> as " ⁇ " when decoding; ours leaves it out.
            if (std::find(ids.begin(), ids.end(), unknown) == ids.end())
                QCOMPARE(tokenizer->decode(ids, false), test.at("decoded").get<std::string>());
        }
    }

    // With special parsing, control tokens written in the text are split out first and the text
    // between them goes to sentencepiece, as transformers and llama.cpp do.
    void controlTokensAreParsedOnRequest() {
        const auto& golden = golden_model("tiny_bpe");
        const auto tokenizer = Tokenizer::from_sentencepiece(data_path(golden.at("file")));
        const auto start = tokenizer->find_token("<start_of_turn>");
        const auto end = tokenizer->find_token("<end_of_turn>");
        QVERIFY(start && end);
        QCOMPARE(tokenizer->token_type(*start), TokenType::Control);
        Ids expected{*start};
        const Ids middle = tokenizer->encode("user\nHi", false, false);
        expected.insert(expected.end(), middle.begin(), middle.end());
        expected.push_back(*end);
        QCOMPARE(tokenizer->encode("<start_of_turn>user\nHi<end_of_turn>", false, true), expected);
        // The dummy prefix goes in front of each piece of text, after a control token too (as in
        // transformers' legacy Llama tokenizer and our GGUF SentencePiece encoder).
        QCOMPARE(tokenizer->decode(expected, true), std::string("<start_of_turn> user\nHi<end_of_turn>"));
        QCOMPARE(tokenizer->decode(expected, false), std::string("user\nHi"));
    }

    // Options a Hugging Face directory passes: tokens added past the model's pieces become
    // whole tokens, and the vocabulary is padded to the embedding's rows.
    void addedTokensAndPadding() {
        persona::SentencePieceOptions options;
        options.added_tokens = {{481, "<|im_start|>", true}, {482, "<|tool|>", false}};
        options.vocabulary_size = 500;
        options.eos_text = "<end_of_turn>";
        options.add_bos = false;
        const auto tokenizer = Tokenizer::from_sentencepiece(data_path("tiny_bpe.model"), options);
        QCOMPARE(tokenizer->vocab_size(), std::size_t{500});
        QCOMPARE(tokenizer->token_type(480), TokenType::Unused);
        QCOMPARE(tokenizer->token_type(481), TokenType::Control);
        QCOMPARE(tokenizer->token_type(482), TokenType::UserDefined);
        QCOMPARE(tokenizer->token_type(499), TokenType::Unused);
        QCOMPARE(tokenizer->eos_id(), tokenizer->find_token("<end_of_turn>"));
        QVERIFY(tokenizer->is_end_of_generation(*tokenizer->find_token("<end_of_turn>")));
        const Ids ids = tokenizer->encode("<|im_start|>Hello<|tool|>", false, true);
        QCOMPARE(ids.front(), 481);
        QCOMPARE(ids.back(), 482);
        QCOMPARE(tokenizer->decode(ids, true), std::string("<|im_start|> Hello<|tool|>"));
        QVERIFY(!tokenizer->adds_bos());
    }

    void badModelFileIsAClearError() {
        QTemporaryDir dir;
        const std::string path = dir.filePath("tokenizer.model").toStdString();
        std::ofstream(path) << "this is not a protobuf";
        QVERIFY_THROWS_EXCEPTION(FileError, Tokenizer::from_sentencepiece(path));
        try {
            Tokenizer::from_sentencepiece(path);
        } catch (const FileError& e) {
            QCOMPARE(e.path(), path);
        }
        QVERIFY_THROWS_EXCEPTION(FileError, Tokenizer::from_sentencepiece(dir.filePath("absent.model").toStdString()));
    }

    // With the module and its protobuf loaded, libtorch still runs a real model.
    void libtorchStillRunsAModel() {
        const auto tokenizer = Tokenizer::from_sentencepiece(data_path("tiny_bpe.model"));
        auto model = persona::Model::load(persona_test::defaultModelPath().toStdString(), persona::ModelLoadOptions{"cpu", "f32"});
        const auto trace = model->trace(model->tokenizer().encode("Hello world", false, false));
        QVERIFY(!trace.logits.empty());
        for (const float value : trace.logits) QVERIFY(std::isfinite(value));
        QCOMPARE(tokenizer->encode("Hello world", false, false), golden_model("tiny_bpe").at("cases")[1].at("ids").get<Ids>());
    }
};

QTEST_GUILESS_MAIN(TestSentencePiece)
#include "test_sentencepiece.moc"
