// Persona vectors: the mean difference and PCA on data with known answers, diagnostics and the
// suggested layer, steering-strength calibration, and one extraction on the real default model
// whose vector must separate its samples and steer by exactly alpha * |v|. Their files are
// test_vector_files'.
#include "persona/errors.h"
#include "persona/model.h"
#include "persona/persona_vector.h"
#include "persona/steering_vector.h"
#include "persona/tokenizer.h"
#include "persona/vector_files.h"
#include "test_support.h"

#include <QTemporaryDir>

#include <cmath>
#include <limits>
#include <random>

using persona::Aggregate;
using persona::LayerDiagnostics;
using persona::PersonaVector;
using persona::SampleRefs;
using persona_test::errorOf;

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
