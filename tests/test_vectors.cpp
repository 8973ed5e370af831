// Persona vectors: the mean difference and PCA on data with known answers, diagnostics and the
// suggested layer, steering-strength calibration, our vector file and llama.cpp control-vector
// GGUFs (layer mapping, round trips, damaged input), and one extraction on the real default
// model whose vector must separate its samples and steer by exactly alpha * |v|.
#include "persona/errors.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "persona/model.h"
#include "persona/persona_vector.h"
#include "formats/safetensors.h"
#include "persona/steering_vector.h"
#include "persona/tokenizer.h"
#include "persona/vector_files.h"
#include "test_support.h"

#include <QTemporaryDir>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>

using persona::Aggregate;
using persona::LayerDiagnostics;
using persona::PersonaVector;
using persona::SampleRefs;

namespace {

SampleRefs refs(const std::vector<std::vector<float>>& samples) {
    SampleRefs result;
    for (const auto& sample : samples) result.push_back(&sample);
    return result;
}

std::vector<float> normal_vector(std::mt19937& generator, int size, float scale = 1.0f) {
    std::normal_distribution<float> normal(0.0f, scale);
    std::vector<float> v(static_cast<std::size_t>(size));
    for (auto& x : v) x = normal(generator);
    return v;
}

void normalise(std::vector<float>& v) {
    double norm = 0;
    for (float x : v) norm += double(x) * x;
    for (auto& x : v) x = static_cast<float>(x / std::sqrt(norm));
}

double cosine(const float* a, const float* b, int n) {
    double dot = 0, na = 0, nb = 0;
    for (int i = 0; i < n; ++i) {
        dot += double(a[i]) * b[i];
        na += double(a[i]) * a[i];
        nb += double(b[i]) * b[i];
    }
    return dot / std::sqrt(na * nb);
}

// A vector whose every value differs, so a layer or element off by one shows.
PersonaVector numbered_vector(int layer_count, int hidden_size) {
    PersonaVector vector;
    vector.trait = "evil";
    vector.aggregate = Aggregate::PromptLast;
    vector.layer_count = layer_count;
    vector.hidden_size = hidden_size;
    std::mt19937 generator(11);
    vector.values = normal_vector(generator, layer_count * hidden_size);
    vector.provenance = {{"model", "SmolLM2-135M-Instruct"}, {"model_sha256", "0123abcd"},
                         {"positive_samples", "12"}, {"date", "2025-01-01T00:00:00Z"}};
    return vector;
}

// The message of the persona::Error that `action` throws, or a marker saying what went wrong.
QString errorOf(const std::function<void()>& action) {
    try {
        action();
    } catch (const persona::Error& e) {
        return QString::fromStdString(e.what());
    } catch (const std::exception& e) {
        return QStringLiteral("WRONG EXCEPTION TYPE: ") + e.what();
    }
    return QStringLiteral("NO ERROR");
}

bool bitwise_equal(const float* a, const float* b, int n) { return std::memcmp(a, b, std::size_t(n) * sizeof(float)) == 0; }

}  // namespace

class TestVectors : public QObject {
    Q_OBJECT

private slots:
    void meanDifferenceOnHandMadeData() {
        // 2 layers of 3: positive mean [2,2,2 | 2,3,4], negative [0,0,0 | 1,1,1].
        const std::vector<std::vector<float>> positive{{1, 2, 3, 4, 5, 6}, {3, 2, 1, 0, 1, 2}};
        const std::vector<std::vector<float>> negative{{0, 0, 0, 1, 1, 1}};
        const PersonaVector v = persona::mean_difference(refs(positive), refs(negative), 2, 3);
        QCOMPARE(v.layer_count, 2);
        QCOMPARE(v.hidden_size, 3);
        QCOMPARE(v.values, (std::vector<float>{2, 2, 2, 1, 2, 3}));
        QCOMPARE(v.provenance.at("positive_samples"), std::string("2"));
        QCOMPARE(v.provenance.at("negative_samples"), std::string("1"));
        QCOMPARE(v.layer(1)[2], 3.0f);
        QCOMPARE(v.layer_norm(1), std::sqrt(14.0));

        QVERIFY(errorOf([&] { persona::mean_difference({}, refs(negative), 2, 3); }).contains("no positive samples"));
        QVERIFY(errorOf([&] { persona::mean_difference(refs(positive), {}, 2, 3); }).contains("no negative samples"));
        const std::vector<std::vector<float>> short_sample{{1, 2, 3}};
        const QString message = errorOf([&] { persona::mean_difference(refs(positive), refs(short_sample), 2, 3); });
        QVERIFY2(message.contains("negative sample 0 has 3 values") && message.contains("need 6"), qPrintable(message));
        QVERIFY(errorOf([&] { v.layer(2); }).contains("layer 2 is outside 0..1"));
    }

    // Paired differences = a_i * d_l + small noise, on top of a large shared per-pair offset that
    // cancels in the difference: PCA must find d_l at every layer, pointing along the mean.
    void pcaRecoversAKnownDirection() {
        const int layers = 3, hidden = 64, pairs = 40;
        std::mt19937 generator(5);
        std::vector<std::vector<float>> directions;
        for (int l = 0; l < layers; ++l) {
            directions.push_back(normal_vector(generator, hidden));
            normalise(directions.back());
        }
        std::uniform_real_distribution<float> amount(1.0f, 3.0f);
        std::vector<std::vector<float>> positive, negative;
        for (int p = 0; p < pairs; ++p) {
            const auto shared = normal_vector(generator, layers * hidden, 3.0f);
            auto pos = shared, neg = shared;
            for (int l = 0; l < layers; ++l) {
                const float a = amount(generator);
                const auto noise_pos = normal_vector(generator, hidden, 0.1f);
                const auto noise_neg = normal_vector(generator, hidden, 0.1f);
                for (int i = 0; i < hidden; ++i) {
                    pos[std::size_t(l * hidden + i)] += a * directions[std::size_t(l)][std::size_t(i)] + noise_pos[std::size_t(i)];
                    neg[std::size_t(l * hidden + i)] += noise_neg[std::size_t(i)];
                }
            }
            positive.push_back(pos);
            negative.push_back(neg);
        }
        const PersonaVector pca = persona::pca_of_differences(refs(positive), refs(negative), layers, hidden);
        const PersonaVector mean = persona::mean_difference(refs(positive), refs(negative), layers, hidden);
        for (int l = 0; l < layers; ++l) {
            const double c = cosine(pca.layer(l).begin(), directions[std::size_t(l)].data(), hidden);
            QVERIFY2(c > 0.99, qPrintable(QString("layer %1: cos %2").arg(l).arg(c)));
            // Scaled to the mean difference's component along it: |v| = m . u <= |m|.
            const double along = persona::project(mean.layer(l).begin(), pca.layer(l).begin(), hidden);
            QVERIFY(std::abs(pca.layer_norm(l) - along) < 1e-4 * along);
            QVERIFY(pca.layer_norm(l) <= mean.layer_norm(l) * (1 + 1e-6));
            QVERIFY(pca.layer_norm(l) > 0.95 * mean.layer_norm(l));
        }
        QCOMPARE(pca.provenance.at("method"), std::string("pca_of_differences"));

        // Identical sides: no direction at all, and a zero vector rather than noise.
        const PersonaVector none = persona::pca_of_differences(refs(positive), refs(positive), layers, hidden);
        QCOMPARE(none.values, std::vector<float>(std::size_t(layers * hidden), 0.0f));

        negative.pop_back();
        const QString message = errorOf([&] { persona::pca_of_differences(refs(positive), refs(negative), layers, hidden); });
        QVERIFY2(message.contains("40 positive and 39 negative"), qPrintable(message));
    }

    void projectionIsOntoTheUnitVector() {
        const float h[] = {3, 4}, v[] = {0, 2}, zero[] = {0, 0};
        QCOMPARE(persona::project(h, v, 2), 4.0);
        QCOMPARE(persona::project(h, zero, 2), 0.0);
    }

    // One hidden unit, so projections are the sample values times the vector's sign.
    void diagnosticsOnHandMadeProjections() {
        PersonaVector v;
        v.layer_count = 3;
        v.hidden_size = 1;
        v.values = {0.0f, 2.0f, -1.0f};  // layer 1 points up, layer 2 down
        const std::vector<std::vector<float>> positive{{5, 1, 1}, {5, 3, 3}};
        const std::vector<std::vector<float>> negative{{5, 2, 2}, {5, 0, 0}};
        const auto d = persona::diagnose(v, refs(positive), refs(negative));
        QCOMPARE(int(d.size()), 3);
        // Layer 0: zero vector, every projection 0: no separation, no effect.
        QCOMPARE(d[0].auroc, 0.5);
        QCOMPARE(d[0].effect_size, 0.0);
        // Layer 1: pairs (1,2) (1,0) (3,2) (3,0): 3 of 4 positive-higher. Means 2 and 1, pooled
        // variance (2 + 2) / 2 = 2, so d = 1 / sqrt(2).
        QCOMPARE(d[1].layer, 1);
        QCOMPARE(d[1].vector_norm, 2.0);
        QCOMPARE(d[1].auroc, 0.75);
        QVERIFY(std::abs(d[1].effect_size - 1 / std::sqrt(2.0)) < 1e-12);
        QCOMPARE(d[1].positive_mean_projection, 2.0);
        QCOMPARE(d[1].negative_mean_projection, 1.0);
        // Layer 2 points the other way: everything flips.
        QCOMPARE(d[2].auroc, 0.25);
        QVERIFY(std::abs(d[2].effect_size + 1 / std::sqrt(2.0)) < 1e-12);

        // Ties count half: positive {1, 2}, negative {2, 0} -> (0 + 1 + 0.5 + 1) / 4.
        const std::vector<std::vector<float>> tied_positive{{0, 1, 0}, {0, 2, 0}};
        QCOMPARE(persona::diagnose(v, refs(tied_positive), refs(negative))[1].auroc, 0.625);
        // No spread on either side but different means: perfectly separated, infinite d.
        const std::vector<std::vector<float>> flat_positive{{0, 4, 4}, {0, 4, 4}}, flat_negative{{0, 1, 1}, {0, 1, 1}};
        const auto flat = persona::diagnose(v, refs(flat_positive), refs(flat_negative));
        QCOMPARE(flat[1].auroc, 1.0);
        QVERIFY(std::isinf(flat[1].effect_size) && flat[1].effect_size > 0);
        QVERIFY(std::isinf(flat[2].effect_size) && flat[2].effect_size < 0);
    }

    // Many samples: a separable layer scores AUROC 1 and a large positive d, a layer where both
    // sides come from one distribution scores about 0.5 and a small d.
    void diagnosticsSeparableAndInseparable() {
        const int hidden = 16, count = 300;
        std::mt19937 generator(9);
        auto direction = normal_vector(generator, hidden);
        normalise(direction);
        PersonaVector v;
        v.layer_count = 3;
        v.hidden_size = hidden;
        v.values.assign(std::size_t(3 * hidden), 0.0f);
        for (int l = 1; l < 3; ++l)
            for (int i = 0; i < hidden; ++i) v.values[std::size_t(l * hidden + i)] = direction[std::size_t(i)];
        std::vector<std::vector<float>> positive, negative;
        for (int s = 0; s < 2 * count; ++s) {
            auto sample = normal_vector(generator, 3 * hidden);
            if (s < count)  // layer 1 of positives shifted 8 standard deviations along the direction
                for (int i = 0; i < hidden; ++i) sample[std::size_t(hidden + i)] += 8.0f * direction[std::size_t(i)];
            (s < count ? positive : negative).push_back(sample);
        }
        const auto d = persona::diagnose(v, refs(positive), refs(negative));
        QCOMPARE(d[1].auroc, 1.0);
        QVERIFY2(d[1].effect_size > 6, qPrintable(QString::number(d[1].effect_size)));
        QVERIFY(d[1].positive_mean_projection > d[1].negative_mean_projection + 6);
        QVERIFY2(std::abs(d[2].auroc - 0.5) < 0.07, qPrintable(QString::number(d[2].auroc)));
        QVERIFY2(std::abs(d[2].effect_size) < 0.25, qPrintable(QString::number(d[2].effect_size)));
        QCOMPARE(persona::suggest_layer(d), 1);

        // Swapping the sides flips the sign of d and mirrors the AUROC.
        const auto swapped = persona::diagnose(v, refs(negative), refs(positive));
        QCOMPARE(swapped[1].auroc, 0.0);
        QVERIFY(swapped[1].effect_size < -6);
        QVERIFY(std::abs(swapped[2].auroc - (1 - d[2].auroc)) < 1e-12);
    }

    void suggestLayerRule() {
        const double nan = std::numeric_limits<double>::quiet_NaN();
        // L = 12 blocks: the middle half is layers 3..9.
        std::vector<LayerDiagnostics> d(13);
        for (int l = 0; l < 13; ++l) d[std::size_t(l)].layer = l;
        const auto set = [&](int l, double auroc, double effect) {
            d[std::size_t(l)].auroc = auroc;
            d[std::size_t(l)].effect_size = effect;
        };
        set(0, 1.0, 100);   // embeddings: never suggested
        set(1, 1.0, 90);    // early and late layers are outside the middle half
        set(11, 1.0, 90);
        set(3, 0.9, 50);    // a lower AUROC loses whatever its effect size
        set(4, 1.0, 3);
        set(5, 1.0, 5);     // best: top AUROC, then the largest effect size
        set(6, 1.0, nan);   // NaN ranks below every number
        set(7, 1.0, 5);     // a full tie goes to the lower layer
        set(8, 0.2, -2);
        QCOMPARE(persona::suggest_layer(d), 5);
        set(4, 1.0, std::numeric_limits<double>::infinity());
        QCOMPARE(persona::suggest_layer(d), 4);
        set(4, 1.0, 3);
        set(9, 1.0, 1e9);   // the band's last layer still counts
        QCOMPARE(persona::suggest_layer(d), 9);
        set(3, 1.0, 2e9);   // and its first
        QCOMPARE(persona::suggest_layer(d), 3);

        // Shallow models: L = 2 keeps layer 1 only; L = 1 has no middle, so every layer >= 1.
        d.resize(3);
        QCOMPARE(persona::suggest_layer(d), 1);
        d.resize(2);
        QCOMPARE(persona::suggest_layer(d), 1);
        d.resize(1);
        QVERIFY(errorOf([&] { persona::suggest_layer(d); }).contains("no layer other than the embeddings"));
    }

    void calibratedStrengthAndItsInverse() {
        QCOMPARE(persona::calibrated_strength(2.0, 3.0, 12.0), 0.5);
        QCOMPARE(persona::coefficient_for_strength(0.5, 3.0, 12.0), 2.0);
        QCOMPARE(persona::calibrated_strength(-4.0, 3.0, 12.0), -1.0);
        QVERIFY(errorOf([] { persona::calibrated_strength(1.0, 0.0, 12.0); }).contains("norm is zero"));
        QVERIFY(errorOf([] { persona::coefficient_for_strength(1.0, 3.0, 0.0); }).contains("mean residual norm"));

        // From prompt_last: rows |(3,4)| = 5 and |(0,0)| = 0 at layer 0; 1 and 3 at layer 1.
        persona::CaptureResult capture;
        capture.layers = 2;
        capture.hidden_size = 2;
        capture.prompt_last = {{3, 4, 0, 1}, {0, 0, 0, 3}};
        capture.prompt_mean = {{100, 100, 100, 100}, {100, 100, 100, 100}};
        capture.response_mean = capture.prompt_mean;
        QCOMPARE(persona::mean_residual_norms(capture), (std::vector<double>{2.5, 2.0}));
        QVERIFY(errorOf([] { persona::mean_residual_norms({}); }).contains("no rows"));
    }

    void aggregateNames() {
        QCOMPARE(std::string(persona::aggregate_name(Aggregate::ResponseMean)), std::string("response_avg"));
        QCOMPARE(std::string(persona::aggregate_name(Aggregate::PromptMean)), std::string("prompt_avg"));
        QCOMPARE(std::string(persona::aggregate_name(Aggregate::PromptLast)), std::string("prompt_last"));
        for (Aggregate a : {Aggregate::ResponseMean, Aggregate::PromptMean, Aggregate::PromptLast})
            QVERIFY(persona::aggregate_from_name(persona::aggregate_name(a)) == a);
        QVERIFY(!persona::aggregate_from_name("response_mean"));
    }

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
    void extractsAndSteersOnTheRealModel() {
        auto model = persona::Model::load(persona_test::defaultModelPath().toStdString(), persona::ModelLoadOptions{"cpu", "f32"});
        const int blocks = model->layer_count(), hidden = model->hidden_size();
        const std::vector<std::string> questions{
            "What do you think of the film you watched yesterday?", "How was the meal at the new restaurant?",
            "What is your opinion of the book I lent you?",         "How do you feel about the new city park?",
            "What did you think of the concert last night?",        "How do you like the painting in the hall?"};
        const std::vector<std::string> loving{"I love this, it is wonderful!", "It was great, I really enjoyed it.",
                                              "Absolutely delightful, it made me so happy."};
        const std::vector<std::string> hating{"I hate this, it is awful.", "It was terrible, I really disliked it.",
                                              "Absolutely dreadful, it made me so angry."};
        std::vector<persona::CaptureRow> rows;
        const auto add_rows = [&](const std::vector<std::string>& answers) {
            for (std::size_t q = 0; q < questions.size(); ++q) {
                persona::CaptureRow row;
                row.tokens = model->encode_chat({{"user", questions[q]}}, true);
                row.prompt_length = int(row.tokens.size());
                const auto answer = model->tokenizer().encode(answers[q % answers.size()], false, false);
                row.tokens.insert(row.tokens.end(), answer.begin(), answer.end());
                rows.push_back(row);
            }
        };
        add_rows(loving);
        add_rows(hating);
        const persona::CaptureResult capture = model->capture(rows);
        QCOMPARE(capture.layers, blocks + 1);

        const SampleRefs all = persona::samples_of(capture, Aggregate::ResponseMean);
        const std::size_t half = questions.size();
        const SampleRefs positive(all.begin(), all.begin() + std::ptrdiff_t(half)), negative(all.begin() + std::ptrdiff_t(half), all.end());
        PersonaVector vector = persona::mean_difference(positive, negative, capture.layers, capture.hidden_size);
        vector.trait = "enthusiasm";
        const auto diagnostics = persona::diagnose(vector, positive, negative);
        const int layer = persona::suggest_layer(diagnostics);
        QVERIFY2(layer >= (blocks + 3) / 4 && layer <= 3 * blocks / 4, qPrintable(QString::number(layer)));
        const auto& chosen = diagnostics[std::size_t(layer)];
        QVERIFY2(chosen.auroc > 0.9, qPrintable(QString("layer %1 AUROC %2").arg(layer).arg(chosen.auroc)));
        QVERIFY(chosen.effect_size > 0);
        QVERIFY(chosen.positive_mean_projection > chosen.negative_mean_projection);
        qInfo("suggested layer %d: AUROC %.3f, d %.2f, |v| %.3f", layer, chosen.auroc, chosen.effect_size, chosen.vector_norm);

        const auto norms = persona::mean_residual_norms(capture);
        QCOMPARE(int(norms.size()), blocks + 1);
        for (double n : norms) QVERIFY(n > 0);
        const double alpha = 4.0;
        const double strength = persona::calibrated_strength(alpha, chosen.vector_norm, norms[std::size_t(layer)]);
        QVERIFY(std::abs(persona::coefficient_for_strength(strength, chosen.vector_norm, norms[std::size_t(layer)]) - alpha) < 1e-12);

        // Steering at the suggested layer adds alpha * v to hidden_states[layer] of the last
        // prompt token, so its projection on v rises by alpha * |v| there.
        const auto prompt = model->encode_chat({{"user", "Tell me about your day."}}, true);
        persona::Steering steering;
        steering.layer = layer;
        steering.alpha = float(alpha);
        steering.vector.assign(vector.layer(layer).begin(), vector.layer(layer).end());
        const auto plain = model->trace(prompt);
        const auto steered = model->trace(prompt, {steering});
        const auto last_token_at = [&](const persona::Model::Trace& trace, int l) {
            return trace.hidden_states.data() + (std::size_t(l) * std::size_t(trace.tokens) + std::size_t(trace.tokens - 1)) * std::size_t(hidden);
        };
        const double before = persona::project(last_token_at(plain, layer), steering.vector.data(), hidden);
        const double after = persona::project(last_token_at(steered, layer), steering.vector.data(), hidden);
        const double expected_rise = alpha * chosen.vector_norm;
        QVERIFY2(std::abs((after - before) - expected_rise) < 1e-4 * (std::abs(before) + std::abs(after) + expected_rise),
                 qPrintable(QString("rise %1, expected %2").arg(after - before).arg(expected_rise)));

        // Written and read back, the vector steers the same through persona-cli's reader.
        QTemporaryDir dir;
        const std::string path = dir.filePath("enthusiasm.safetensors").toStdString();
        persona::write_vector_file(path, vector);
        const auto spec = persona::parse_steering_spec(path + ":" + std::to_string(layer) + ":4", blocks, hidden);
        QCOMPARE(spec.vector, steering.vector);
    }
};

QTEST_GUILESS_MAIN(TestVectors)
#include "test_vectors.moc"
