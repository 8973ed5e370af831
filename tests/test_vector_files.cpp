// Vector files: ours (safetensors, .pt) and llama.cpp control-vector GGUFs: round trips, layer
// mapping, files of other tools, and damaged or non-finite input refused with the file named.
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "formats/safetensors.h"
#include "persona/errors.h"
#include "persona/persona_vector.h"
#include "persona/steering_vector.h"
#include "persona/vector_files.h"
#include "test_support.h"

#include <QTemporaryDir>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>

using persona::Aggregate;
using persona::PersonaVector;
using persona_test::errorOf;

namespace {

// A vector whose every value differs, so a layer or element off by one shows.
PersonaVector numbered_vector(int layer_count, int hidden_size) {
    PersonaVector vector;
    vector.trait = "evil";
    vector.aggregate = Aggregate::PromptLast;
    vector.layer_count = layer_count;
    vector.hidden_size = hidden_size;
    std::mt19937 generator(11);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    vector.values.resize(std::size_t(layer_count) * std::size_t(hidden_size));
    for (auto& x : vector.values) x = normal(generator);
    vector.provenance = {{"model", "SmolLM2-135M-Instruct"}, {"model_sha256", "0123abcd"},
                         {"positive_samples", "12"}, {"date", "2025-01-01T00:00:00Z"}};
    return vector;
}

bool bitwise_equal(const float* a, const float* b, int n) { return std::memcmp(a, b, std::size_t(n) * sizeof(float)) == 0; }

}  // namespace

class TestVectorFiles : public QObject {
    Q_OBJECT

private slots:
    void vectorFileRoundTrip() {
        QTemporaryDir dir;
        const std::string path = dir.filePath("evil.safetensors").toStdString();
        const PersonaVector written = numbered_vector(31, 576);
        persona::write_vector_file(path, written);

        const PersonaVector read = persona::read_vector_file(path);
        QCOMPARE(read.trait, written.trait);
        QVERIFY(read.aggregate == Aggregate::PromptLast);
        QCOMPARE(read.layer_count, 31);
        QCOMPARE(read.hidden_size, 576);
        QVERIFY(bitwise_equal(read.values.data(), written.values.data(), int(written.values.size())));
        QCOMPARE(read.provenance, written.provenance);

        const auto file = persona::SafetensorsFile::open(path);
        QCOMPARE(file->tensors().size(), std::size_t(1));
        QCOMPARE(file->tensors()[0].name, std::string("vector"));
        QCOMPARE(file->tensors()[0].dtype, std::string("F32"));
        QCOMPARE(file->tensors()[0].shape, (std::vector<std::int64_t>{31, 576}));
        const auto& metadata = file->metadata();
        QCOMPARE(metadata.at("schema"), std::string("persona-workbench/vector"));
        QCOMPARE(metadata.at("schema_version"), std::string("1"));
        QCOMPARE(metadata.at("trait"), std::string("evil"));
        QCOMPARE(metadata.at("aggregate"), std::string("prompt_last"));
        QCOMPARE(metadata.at("layer_convention"),
                 std::string("hidden_states: index 0 = embeddings, l = output of block l-1"));
        QCOMPARE(metadata.at("provenance.model_sha256"), std::string("0123abcd"));
        QVERIFY(metadata.at("writer").rfind("persona-workbench ", 0) == 0);

        // persona-cli generate --steer reads the same file, in the same indexing.
        const auto row = persona::read_layer_vector(path, 7, 30, 576);
        QVERIFY(bitwise_equal(row.data(), written.layer(7).begin(), 576));
        const auto steering = persona::parse_steering_spec(path + ":20:1.5", 30, 576);
        QCOMPARE(steering.layer, 20);
        QCOMPARE(steering.alpha, 1.5f);
        QVERIFY(bitwise_equal(steering.vector.data(), written.layer(20).begin(), 576));
    }

    // persona_vectors saves "{trait}_{aggregate}_diff.pt" holding a bare [L+1, hidden] tensor.
    void bareTensorFilesAreReadWithDefaults() {
        QTemporaryDir dir;
        const std::vector<float> values(3 * 4, 0.25f);
        const std::string named = dir.filePath("evil_prompt_last_diff.safetensors").toStdString();
        persona::write_safetensors(named, {{"data", {3, 4}, values.data(), values.size()}}, {{"format", "pt"}});
        const PersonaVector v = persona::read_vector_file(named);
        QCOMPARE(v.trait, std::string("evil"));
        QVERIFY(v.aggregate == Aggregate::PromptLast);
        QCOMPARE(v.layer_count, 3);
        QCOMPARE(v.hidden_size, 4);
        QCOMPARE(v.values, values);
        QVERIFY(v.provenance.at("source").find("file name") != std::string::npos);

        const std::string plain = dir.filePath("optimism.safetensors").toStdString();
        persona::write_safetensors(plain, {{"anything", {3, 4}, values.data(), values.size()}});
        const PersonaVector w = persona::read_vector_file(plain);
        QCOMPARE(w.trait, std::string("optimism"));
        QVERIFY(w.aggregate == Aggregate::ResponseMean);
    }

    void badVectorFilesFailClearly_data() {
        QTest::addColumn<QString>("damage");
        QTest::addColumn<QString>("expected");
        QTest::newRow("one-dimensional") << "1d" << "has shape [4]; a persona vector has one row per layer";
        QTest::newRow("two unnamed tensors") << "two" << "holds 2 tensors; a vector file holds one";
        QTest::newRow("newer schema") << "version" << "schema_version 2 is not one this build reads";
        QTest::newRow("version not a number") << "version text" << "schema_version 'one' is not a number";
        QTest::newRow("foreign schema") << "schema" << "metadata schema is 'other/thing'";
        QTest::newRow("unknown aggregate") << "aggregate" << "aggregate 'response_mean' is not response_avg";
        QTest::newRow("other layer convention") << "convention" << "would steer the wrong layer";
        QTest::newRow("not safetensors") << "garbage" << "";
    }
    void badVectorFilesFailClearly() {
        QFETCH(QString, damage);
        QFETCH(QString, expected);
        QTemporaryDir dir;
        const QString path = dir.filePath("bad.safetensors");
        const std::string file = path.toStdString();
        const std::vector<float> values(2 * 4, 1.0f);
        std::map<std::string, std::string> metadata{{"schema", "persona-workbench/vector"},
                                                    {"schema_version", "1"},
                                                    {"aggregate", "response_avg"}};
        std::vector<persona::SafetensorsFloatTensor> tensors{{"vector", {2, 4}, values.data(), values.size()}};
        if (damage == "1d") tensors[0].shape = {4}, tensors[0].value_count = 4;
        if (damage == "two") tensors = {{"a", {2, 4}, values.data(), 8}, {"b", {2, 4}, values.data(), 8}};
        if (damage == "version") metadata["schema_version"] = "2";
        if (damage == "version text") metadata["schema_version"] = "one";
        if (damage == "schema") metadata["schema"] = "other/thing";
        if (damage == "aggregate") metadata["aggregate"] = "response_mean";
        if (damage == "convention") metadata["layer_convention"] = "blocks: l = output of block l";
        persona::write_safetensors(file, tensors, metadata);
        if (damage == "garbage") {
            QFile out(path);
            QVERIFY(out.open(QIODevice::WriteOnly | QIODevice::Truncate));
            out.write("not a safetensors file at all");
        }
        try {
            persona::read_vector_file(file);
            QFAIL("no error");
        } catch (const persona::FileError& e) {
            QCOMPARE(QString::fromStdString(e.path()), path);
            QVERIFY2(QString(e.what()).contains(expected), e.what());
        }
    }

    // A NaN or infinity would turn every steered activation into NaN: each reader refuses the
    // file and says where the value is, safetensors and .pt (whole and one layer) and GGUF.
    void nonFiniteValuesAreRefused() {
        QTemporaryDir dir;
        PersonaVector v = numbered_vector(3, 4);
        v.values[5] = std::numeric_limits<float>::quiet_NaN();
        for (const char* name : {"nan.safetensors", "nan.pt"}) {
            const std::string path = dir.filePath(name).toStdString();
            persona::write_vector_file(path, v);
            for (const auto& read : std::vector<std::function<void()>>{
                     [&] { persona::read_vector_file(path); }, [&] { persona::read_layer_vector(path, 2, 2, 4); }}) {
                const QString message = errorOf(read);
                QVERIFY2(message.contains(QString::fromStdString(path)) && message.contains("holds nan at row 1, element 1"),
                         qPrintable(message));
            }
        }
        const std::string gguf = dir.filePath("inf.gguf").toStdString();
        persona::GgufWriter writer;
        writer.add_string("general.architecture", "controlvector");
        writer.add_f32_tensor("direction.1", {4}, {1, 2, -std::numeric_limits<float>::infinity(), 4});
        writer.write(gguf);
        const QString message = errorOf([&] { persona::import_control_vector(gguf, 4); });
        QVERIFY2(message.contains("holds -inf at row 2, element 2"), qPrintable(message));
    }

    void writingAMalformedVectorFails() {
        QTemporaryDir dir;
        PersonaVector v = numbered_vector(3, 4);
        v.values.pop_back();
        const std::string path = dir.filePath("v.safetensors").toStdString();
        QVERIFY(errorOf([&] { persona::write_vector_file(path, v); }).contains("holds 11 values"));
        QVERIFY(!QFileInfo::exists(dir.filePath("v.safetensors")));
    }

    // L = 4 blocks: llama.cpp steers blocks 1..3 with direction.1..3 = hidden_states[2..4].
    void controlVectorLayerMapping() {
        QTemporaryDir dir;
        const QString path = dir.filePath("evil.gguf");
        const PersonaVector v = numbered_vector(5, 8);
        persona::export_control_vector(path.toStdString(), v, 1.0, "llama");

        const auto file = persona::GgufFile::open(path.toStdString());
        QCOMPARE(file->version(), std::uint32_t(3));
        QCOMPARE(file->get_string("general.architecture"), std::string("controlvector"));
        QCOMPARE(file->get_string("controlvector.model_hint"), std::string("llama"));
        QVERIFY(file->find("controlvector.layer_count")->type() == persona::GgufValueType::UInt32);
        QCOMPARE(file->get_int("controlvector.layer_count"), std::int64_t(3));  // tensors written
        QCOMPARE(file->get_int("persona_workbench.block_count"), std::int64_t(4));
        QCOMPARE(file->data_offset() % 32, std::uint64_t(0));
        QCOMPARE(int(file->tensors().size()), 3);
        for (int n = 1; n <= 3; ++n) {
            const auto& tensor = file->tensors()[std::size_t(n - 1)];
            QCOMPARE(tensor.name, "direction." + std::to_string(n));
            QCOMPARE(tensor.type, std::uint32_t(0));  // F32
            QCOMPARE(tensor.shape, (std::vector<std::uint64_t>{8}));
            QCOMPARE(tensor.offset % 32, std::uint64_t(0));
            QVERIFY2(bitwise_equal(reinterpret_cast<const float*>(file->tensor_data(tensor)), v.layer(n + 1).begin(), 8),
                     qPrintable(QString("direction.%1 is not hidden_states[%2]").arg(n).arg(n + 1)));
        }
        QVERIFY(!file->find_tensor("direction.0"));  // llama.cpp refuses the whole file if present
        QVERIFY(!file->find_tensor("direction.4"));  // there is no block 4

        // The Python cross-check (tests/reference/check_control_vector.py) reads this copy and
        // the vector it came from.
        const QString sample = QString::fromLocal8Bit(qgetenv("PERSONA_CONTROL_VECTOR_SAMPLE"));
        if (!sample.isEmpty()) {
            QFile::remove(sample);
            QVERIFY(QFile::copy(path, sample));
            persona::write_vector_file((sample + ".vector.safetensors").toStdString(), v);
        }

        // The coefficient scales what is written.
        persona::export_control_vector(path.toStdString(), v, -2.0, "llama");
        const auto scaled = persona::GgufFile::open(path.toStdString());
        const float* direction2 = reinterpret_cast<const float*>(scaled->tensor_data(*scaled->find_tensor("direction.2")));
        for (int i = 0; i < 8; ++i) QCOMPARE(direction2[i], -2.0f * v.layer(3)[i]);
        QVERIFY(std::abs(*scaled->find_float("persona_workbench.coefficient") + 2.0) < 1e-12);
    }

    void controlVectorRoundTrip() {
        QTemporaryDir dir;
        const std::string path = dir.filePath("evil.gguf").toStdString();
        const PersonaVector v = numbered_vector(31, 576);
        persona::export_control_vector(path, v, 1.0, "llama");
        for (int expected_blocks : {0, 30}) {
            const PersonaVector back = persona::import_control_vector(path, 576, expected_blocks);
            QCOMPARE(back.layer_count, 31);
            QCOMPARE(back.hidden_size, 576);
            QCOMPARE(back.trait, std::string("evil"));
            QVERIFY(back.aggregate == Aggregate::PromptLast);
            QCOMPARE(back.provenance.at("model_hint"), std::string("llama"));
            QCOMPARE(back.provenance.at("coefficient"), std::string("1"));
            QCOMPARE(back.provenance.at("model_sha256"), std::string("0123abcd"));
            QCOMPARE(back.provenance.at("positive_samples"), std::string("12"));
            for (int l = 2; l <= 30; ++l)
                QVERIFY2(bitwise_equal(back.layer(l).begin(), v.layer(l).begin(), 576), qPrintable(QString::number(l)));
            // Not expressible for llama.cpp: embeddings and block 0's output come back as zero.
            for (int l : {0, 1})
                for (float x : back.layer(l)) QCOMPARE(x, 0.0f);
        }
        const QString message = errorOf([&] { persona::import_control_vector(path, 576, 24); });
        QVERIFY2(message.contains("exported for a model with 30 blocks; this model has 24"), qPrintable(message));
        QVERIFY(errorOf([&] { persona::import_control_vector(path, 896); }).contains("the model's hidden size is 896"));

        PersonaVector too_short = numbered_vector(2, 8);
        QVERIFY(errorOf([&] { persona::export_control_vector(path, too_short, 1.0, "llama"); }).contains("at least 2"));
    }

    // Files made by other tools: repeng and llama.cpp write no persona_workbench keys.
    void foreignControlVectors() {
        QTemporaryDir dir;
        const std::string path = dir.filePath("happy.gguf").toStdString();
        persona::GgufWriter writer;
        writer.add_string("general.architecture", "controlvector");
        writer.add_string("controlvector.model_hint", "mistral");
        writer.add_uint32("controlvector.layer_count", 2);
        writer.add_f32_tensor("direction.5", {4}, {1, 2, 3, 4});
        writer.add_f32_tensor("direction.2", {4}, {5, 6, 7, 8});
        writer.write(path);
        PersonaVector v = persona::import_control_vector(path, 4);
        QCOMPARE(v.trait, std::string("happy"));
        QCOMPARE(v.layer_count, 7);  // blocks 0..5 known, so hidden_states 0..6
        QCOMPARE(v.values, (std::vector<float>{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 6, 7, 8,  //
                                               0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}));
        v = persona::import_control_vector(path, 4, 30);  // sized for the model to steer
        QCOMPARE(v.layer_count, 31);
        QCOMPARE(v.layer(6)[3], 4.0f);
        QVERIFY(errorOf([&] { persona::import_control_vector(path, 4, 5); }).contains("model has blocks 0..4"));

        // direction.0 is block 0's output, hidden_states[1], even though llama.cpp refuses it.
        const std::string zero = dir.filePath("zero.gguf").toStdString();
        persona::GgufWriter with_zero;
        with_zero.add_string("general.architecture", "controlvector");
        with_zero.add_f32_tensor("direction.0", {2}, {7, 9});
        with_zero.write(zero);
        const PersonaVector z = persona::import_control_vector(zero, 2);
        QCOMPARE(z.values, (std::vector<float>{0, 0, 7, 9}));
        QVERIFY(z.provenance.at("warning").find("llama.cpp refuses") != std::string::npos);
    }

    void badControlVectorsFailClearly_data() {
        QTest::addColumn<QString>("damage");
        QTest::addColumn<QString>("expected");
        QTest::newRow("a model") << "architecture" << "general.architecture is 'llama', not 'controlvector'";
        QTest::newRow("no architecture") << "no architecture" << "has no general.architecture";
        QTest::newRow("stray tensor") << "name" << "tensor 'output.weight' is not named direction.<block number>";
        QTest::newRow("signed index") << "signed" << "tensor 'direction.-1' is not named";
        QTest::newRow("wrong length") << "length" << "tensor 'direction.1' has 5 values; the model's hidden size is 4";
        QTest::newRow("two-dimensional") << "2d" << "tensor 'direction.1' has 2 dimensions; a direction is 1-D";
        QTest::newRow("no directions") << "empty" << "holds no direction tensors";
    }
    void badControlVectorsFailClearly() {
        QFETCH(QString, damage);
        QFETCH(QString, expected);
        QTemporaryDir dir;
        const QString path = dir.filePath("bad.gguf");
        persona::GgufWriter writer;
        if (damage != "no architecture")
            writer.add_string("general.architecture", damage == "architecture" ? "llama" : "controlvector");
        if (damage == "name") writer.add_f32_tensor("output.weight", {4}, {1, 2, 3, 4});
        else if (damage == "signed") writer.add_f32_tensor("direction.-1", {4}, {1, 2, 3, 4});
        else if (damage == "length") writer.add_f32_tensor("direction.1", {5}, {1, 2, 3, 4, 5});
        else if (damage == "2d") writer.add_f32_tensor("direction.1", {2, 2}, {1, 2, 3, 4});
        else if (damage != "empty") writer.add_f32_tensor("direction.1", {4}, {1, 2, 3, 4});
        writer.write(path.toStdString());
        try {
            persona::import_control_vector(path.toStdString(), 4);
            QFAIL("no error");
        } catch (const persona::FileError& e) {
            QCOMPARE(QString::fromStdString(e.path()), path);
            QVERIFY2(QString(e.what()).contains(expected), e.what());
        }
    }

    void ggufWriterRejectsBadArguments() {
        persona::GgufWriter writer;
        writer.add_string("a", "x");
        QVERIFY(errorOf([&] { writer.add_uint32("a", 1); }).contains("key 'a' is set twice"));
        QVERIFY(errorOf([&] { writer.add_float32("", 1); }).contains("key is empty"));
        writer.add_f32_tensor("t", {2}, {1, 2});
        QVERIFY(errorOf([&] { writer.add_f32_tensor("t", {2}, {1, 2}); }).contains("added twice"));
        QVERIFY(errorOf([&] { writer.add_f32_tensor("u", {3}, {1, 2}); }).contains("2 values for 3 elements"));
        QVERIFY(errorOf([&] { writer.add_f32_tensor("u", {}, {}); }).contains("0 dimensions"));
        QTemporaryDir dir;
        const QString missing = dir.filePath("no/such/dir/x.gguf");
        const QString message = errorOf([&] { writer.write(missing.toStdString()); });
        QVERIFY2(message.startsWith(missing + ": cannot create a temporary file"), qPrintable(message));
    }

    // The whole path on the real default model: teacher-forced contrasting answers, the
    // response_avg vector, diagnostics that separate the samples, and steering that moves the
    // projection at the suggested layer by exactly alpha * |v|.
};

QTEST_GUILESS_MAIN(TestVectorFiles)
#include "test_vector_files.moc"
