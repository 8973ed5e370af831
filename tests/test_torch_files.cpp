// PyTorch .pt vector files (torch.save of one tensor), the persona_vectors repository's format:
// files written by tests/reference/make_torch_fixtures.py from known values are read bit for
// bit, our exports are what torch.save writes, and hostile or wrong files are refused with the
// file named, without executing anything. Where Python has torch, the round trip goes through
// torch.load and torch.save too.
#include "formats/torch_file.h"
#include "formats/torch_pickle.h"
#include "persona/errors.h"
#include "persona/vector_files.h"
#include "cli_runner.h"
#include "test_support.h"

#include <QFile>
#include <QProcess>
#include <QTemporaryDir>
#include <QtTest>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

namespace {

const QString kFixtures = QStringLiteral(PERSONA_TEST_DATA_DIR "/torch/");
const char* kPayloadMarker = "/tmp/persona-workbench-pt-payload-ran";

// The fixture script's values: element i is (i - 5) * 0.375, element 0 is -0.0 and 1 is 1e-40.
std::vector<float> fixture_values(int count) {
    std::vector<float> values;
    for (int i = 0; i < count; ++i) values.push_back(float((i - 5) * 0.375));
    values[0] = -0.0f;
    if (count > 1) values[1] = 1e-40f;
    return values;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

QByteArray read_bytes(const QString& path) {
    QFile file(path);
    return file.open(QIODevice::ReadOnly) ? file.readAll() : QByteArray();
}

std::string path_of(const char* name) { return (kFixtures + name).toStdString(); }

}  // namespace

class TestTorchFiles : public QObject {
    Q_OBJECT

private slots:
    void readsTheReferenceLayout() {
        const persona::PersonaVector vector = persona::read_vector_file(path_of("evil_response_avg_diff.pt"));
        QCOMPARE(vector.layer_count, 4);
        QCOMPARE(vector.hidden_size, 3);
        QVERIFY(same_bits(vector.values, fixture_values(12)));
        QVERIFY(std::signbit(vector.values[0]));
        // Named as the reference names its files: trait, aggregate, "_diff".
        QCOMPARE(vector.trait, std::string("evil"));
        QCOMPARE(vector.aggregate, persona::Aggregate::ResponseMean);
        QVERIFY(vector.provenance.at("source").find("PyTorch") != std::string::npos);
        QVERIFY(!vector.provenance.count("source_storage"));
        // One row for --steer FILE:LAYER:ALPHA, from the same file.
        const std::vector<float> row = persona::read_layer_vector(path_of("evil_response_avg_diff.pt"), 2, 3, 3);
        QVERIFY(same_bits(row, std::vector<float>(vector.values.begin() + 6, vector.values.begin() + 9)));
    }

    void widensBfloat16AndFollowsViews() {
        const persona::PersonaVector bf16 = persona::read_vector_file(path_of("optimistic_prompt_last_diff.pt"));
        QCOMPARE(bf16.aggregate, persona::Aggregate::PromptLast);
        QCOMPARE(bf16.provenance.at("source_storage"), std::string("BFloat16Storage"));
        std::vector<float> expected = fixture_values(6);
        for (float& value : expected) {  // the fixture keeps each float's upper half
            std::uint32_t bits;
            std::memcpy(&bits, &value, sizeof bits);
            bits &= 0xffff0000u;
            std::memcpy(&value, &bits, sizeof bits);
        }
        QVERIFY(same_bits(bf16.values, expected));

        // Offset 3, strides (1, 3): element (r, c) is storage[3 + r + 3c].
        const persona::TorchFloatTensor view = persona::read_torch_tensor(path_of("view.pt"));
        QCOMPARE(view.shape, (std::vector<std::int64_t>{3, 3}));
        const std::vector<float> storage = fixture_values(12);
        std::vector<float> walked;
        for (int r = 0; r < 3; ++r)
            for (int c = 0; c < 3; ++c) walked.push_back(storage[std::size_t(3 + r + 3 * c)]);
        QVERIFY(same_bits(view.values, walked));
    }

    // The pickle we write is byte for byte the one in the fixture, which the script wrote as
    // torch.save's pickler does; the archive reads back bit-exactly, and the save is atomic.
    void writesWhatTorchSaveWrites() {
        const std::string pickle = persona::write_tensor_pickle("FloatStorage", "0", {4, 3});
        QVERIFY(read_bytes(kFixtures + "evil_response_avg_diff.pt").contains(QByteArray::fromStdString(pickle)));
        const persona::TorchTensorPickle parsed =
            persona::read_tensor_pickle(reinterpret_cast<const std::uint8_t*>(pickle.data()), pickle.size());
        QCOMPARE(parsed.stride, (std::vector<std::int64_t>{3, 1}));

        persona::PersonaVector vector;
        vector.layer_count = 31;
        vector.hidden_size = 576;
        for (int i = 0; i < 31 * 576; ++i) vector.values.push_back(std::ldexp(float(i % 977) - 400.5f, -(i % 40)));
        vector.values[5] = -0.0f;
        QTemporaryDir dir;
        const std::string out = dir.filePath("evil_prompt_avg_diff.pt").toStdString();
        persona::write_vector_file(out, vector);
        const persona::PersonaVector back = persona::read_vector_file(out);
        QVERIFY(same_bits(back.values, vector.values));
        QCOMPARE(back.layer_count, 31);
        QCOMPARE(back.aggregate, persona::Aggregate::PromptMean);
        // Only the archive is left: no temporary file beside it.
        QCOMPARE(int(std::distance(std::filesystem::directory_iterator(dir.path().toStdString()),
                                   std::filesystem::directory_iterator())), 1);
    }

    void refusesWhatIsNotASavedFloatTensor_data() {
        QTest::addColumn<QString>("file");
        QTest::addColumn<QString>("problem");
        QTest::newRow("shell command") << "runs_a_command.pt" << "posix.system";
        QTest::newRow("global as storage type") << "global_in_storage.pt" << "posix.system";
        QTest::newRow("truncated") << "truncated.pt" << "not a readable PyTorch archive";
        QTest::newRow("integer storage") << "integer_storage.pt" << "torch.LongStorage";
        QTest::newRow("3-D") << "three_dimensions.pt" << "[2, 2, 3]";
        QTest::newRow("short storage") << "short_storage.pt" << "holds 40 bytes";
        QTest::newRow("view outside storage") << "view_outside_storage.pt" << "reaches outside its storage";
        QTest::newRow("legacy format") << "legacy_format.pt" << "legacy format";
    }
    void refusesWhatIsNotASavedFloatTensor() {
        QFETCH(QString, file);
        QFETCH(QString, problem);
        std::filesystem::remove(kPayloadMarker);
        const std::string path = (kFixtures + file).toStdString();
        try {
            persona::read_vector_file(path);
            QFAIL("read");
        } catch (const persona::FileError& e) {
            QCOMPARE(e.path(), path);
            QVERIFY2(std::string(e.what()).find(problem.toStdString()) != std::string::npos, e.what());
        }
        // The payload never ran: nothing in the reader can call what a pickle names.
        QVERIFY(!std::filesystem::exists(kPayloadMarker));
    }

    void refusesDamagedPickles() {
        const std::string good = persona::write_tensor_pickle("FloatStorage", "0", {4, 3});
        const auto parse = [](const std::string& bytes) {
            persona::read_tensor_pickle(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
        };
        // Every truncation is an error, never a crash or a read past the end.
        for (std::size_t length = 0; length < good.size(); ++length)
            QVERIFY_THROWS_EXCEPTION(persona::Error, parse(good.substr(0, length)));
        // A recall of a memo entry never stored, an opcode a tensor does not use (INST).
        QVERIFY_THROWS_EXCEPTION(persona::Error, parse(std::string("\x80\x02h\x05.", 5)));
        QVERIFY_THROWS_EXCEPTION(persona::Error, parse(std::string("\x80\x02iposix\nsystem\n.", 17)));
        // Found by tests/fuzz: TUPLE2 reaching under a MARK, then TUPLE closing that mark.
        QVERIFY_THROWS_EXCEPTION(persona::Error, parse(std::string("\x80\x02(K\x01K\x02K\x03((\x86t.", 14)));
    }

    void exportsFromTheCli() {
        QTemporaryDir dir;
        const QString pt = dir.filePath("evil_response_avg_diff.pt");
        const persona_test::CliRun exported =
            persona_test::runCli({"export", "--vector", kFixtures + "evil_response_avg_diff.pt", "--out", dir.filePath("v.safetensors")});
        QVERIFY2(exported.exitCode == 0, exported.err.constData());
        const persona_test::CliRun back = persona_test::runCli({"export", "--vector", dir.filePath("v.safetensors"), "--out", pt});
        QVERIFY2(back.exitCode == 0, back.err.constData());
        QVERIFY(same_bits(persona::read_vector_file(pt.toStdString()).values, fixture_values(12)));
        const persona_test::CliRun scaled =
            persona_test::runCli({"export", "--vector", pt, "--out", dir.filePath("x.pt"), "--coefficient", "2"});
        QCOMPARE(scaled.exitCode, 2);
        QVERIFY(scaled.err.contains("--coefficient"));
    }

    // ours -> .pt -> torch.load / torch.save -> .pt -> ours, where Python has torch.
    void roundTripsThroughTorch() {
        if (QProcess::execute("python3", {"-c", "import torch"}) != 0) QSKIP("Python has no torch here");
        QTemporaryDir dir;
        persona::PersonaVector vector;
        vector.layer_count = 5;
        vector.hidden_size = 7;
        for (int i = 0; i < 35; ++i) vector.values.push_back(std::ldexp(float(i) - 17.25f, i % 9 - 4));
        const QString pt = dir.filePath("ours.pt");
        persona::write_vector_file(pt.toStdString(), vector);
        QFile expectation(dir.filePath("ours.json"));
        QVERIFY(expectation.open(QIODevice::WriteOnly));
        expectation.write(QByteArray::fromStdString(nlohmann::json{{"shape", {5, 7}}, {"values", vector.values}}.dump()));
        expectation.close();
        QProcess check;
        check.start("python3", {QStringLiteral(PERSONA_TEST_DATA_DIR "/../reference/make_torch_fixtures.py"),
                                "--check-with-torch", pt, expectation.fileName()});
        QVERIFY(check.waitForFinished(120000));
        QVERIFY2(check.exitCode() == 0, check.readAllStandardError().constData());
        const persona::PersonaVector resaved = persona::read_vector_file((pt + ".resaved.pt").toStdString());
        QVERIFY(same_bits(resaved.values, vector.values));
    }
};

QTEST_GUILESS_MAIN(TestTorchFiles)
#include "test_torch_files.moc"
