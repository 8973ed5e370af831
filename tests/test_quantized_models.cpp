// Quantized models (dtype "quantized") against their dequantized float32 selves, teacher-forced
// through the int8 kernel: the fidelity figures docs/platform-notes.md quotes.
#include "persona/model.h"
#include "persona/paths.h"
#include "persona/tokenizer.h"
#include "test_support.h"

#include <QFile>
#include <QFileInfo>
#include <QtTest>

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

// The first `count` tokens of varied text: questions and answers on many subjects.
std::vector<std::int32_t> variedText(const persona::Tokenizer& tokenizer, std::size_t count) {
    QFile file(QStringLiteral(PERSONA_TEST_DATA_DIR "/../../resources/datasets/neutral_heldout.jsonl"));
    if (!file.open(QIODevice::ReadOnly)) qFatal("cannot read the neutral held-out set");
    const QByteArray text = file.readAll();
    std::vector<std::int32_t> tokens = tokenizer.encode(text.toStdString(), false, false);
    if (tokens.size() < count) qFatal("the held-out set has only %zu tokens", tokens.size());
    tokens.resize(count);
    return tokens;
}

}  // namespace

class TestQuantizedModels : public QObject {
    Q_OBJECT

private slots:
    // Teacher-forced over 1000 positions through the int8 kernel: the quantized model's top token
    // against the dequantized float32 model's. The 135M model's bf16 path, itself short of 99%
    // there, runs beside it for a bar; the 1.5B model's is left out (where the CPU lacks bf16
    // arithmetic, libtorch emulates it and 1,000 positions of a 1.5B model take many minutes).
    // quantized-precise (two rounding passes) is held to 99% and to a hidden state within 0.5% of
    // float32's on the model where one pass falls short of 99%.
    void realModelsPredictAsTheirFloat32Selves_data() {
        QTest::addColumn<QString>("file");
        QTest::addColumn<QString>("dtype");
        QTest::addColumn<bool>("besideBf16");
        QTest::addColumn<double>("hiddenErrorBar");
        QTest::newRow("SmolLM2-135M Q4_1") << QString(persona::kDefaultModelFile) << "quantized" << true << 0.1;
        QTest::newRow("SmolLM2-135M Q4_1, two rounding passes") << QString(persona::kDefaultModelFile) << "quantized-precise" << false << 0.005;
        QTest::newRow("Qwen2.5-Coder-1.5B Q4_K_M") << QString(persona::kJudgeModelFile) << "quantized" << false << 0.1;
    }
    void realModelsPredictAsTheirFloat32Selves() {
        QFETCH(QString, file);
        QFETCH(QString, dtype);
        QFETCH(bool, besideBf16);
        QFETCH(double, hiddenErrorBar);
        const std::string path = persona_test::modelPath(file.toUtf8().constData()).toStdString();
        qputenv("PERSONA_QUANTIZED_DENSE_ROWS", "0");
        auto reference = persona::Model::load(path, persona::ModelLoadOptions{"cpu", "f32"});
        auto bf16 = besideBf16 ? persona::Model::load(path, persona::ModelLoadOptions{"cpu", "bf16"}) : nullptr;
        auto quantized = persona::Model::load(path, persona::ModelLoadOptions{"cpu", dtype.toStdString()});
        QCOMPARE(QString::fromStdString(quantized->dtype()), dtype);
        const double fileBytes = double(QFileInfo(QString::fromStdString(path)).size());
        QVERIFY2(double(quantized->facts().weight_bytes) <= 1.3 * fileBytes,
                 qPrintable(QString("weights take %1 bytes for a %2-byte file").arg(quantized->facts().weight_bytes).arg(fileBytes)));

        struct Fidelity {
            int agree = 0, positions = 0;
            std::vector<double> hiddenErrors;  // the last block's output, per position
            double agreement() const { return double(agree) / positions; }
            double hiddenError(double quantile) const { return hiddenErrors[std::size_t(quantile * double(hiddenErrors.size() - 1))]; }
        };
        Fidelity ofQuantized, ofBf16;
        const auto compare = [&](const persona::Model::Trace& expected, const persona::Model::Trace& actual, std::size_t length,
                                 Fidelity& fidelity) {
            const std::size_t vocabulary = expected.logits.size() / length, hidden = std::size_t(quantized->hidden_size());
            for (std::size_t t = 0; t < length; ++t) {
                const float* e = expected.logits.data() + t * vocabulary;
                const float* a = actual.logits.data() + t * vocabulary;
                fidelity.agree += std::max_element(e, e + vocabulary) - e == std::max_element(a, a + vocabulary) - a;
                ++fidelity.positions;
                const std::size_t at = (std::size_t(quantized->layer_count()) * length + t) * hidden;
                double difference = 0, norm = 0;
                for (std::size_t h = 0; h < hidden; ++h) {
                    difference += std::pow(double(actual.hidden_states[at + h]) - expected.hidden_states[at + h], 2);
                    norm += std::pow(double(expected.hidden_states[at + h]), 2);
                }
                fidelity.hiddenErrors.push_back(std::sqrt(difference / norm));
            }
        };
        const std::vector<std::int32_t> text = variedText(quantized->tokenizer(), 1000);
        constexpr std::size_t kPiece = 250;  // four sequences keep the logits small
        for (std::size_t start = 0; start < text.size(); start += kPiece) {
            const std::vector<std::int32_t> piece(text.begin() + long(start), text.begin() + long(start + kPiece));
            const auto expected = reference->trace(piece);
            compare(expected, quantized->trace(piece), kPiece, ofQuantized);
            if (bf16) compare(expected, bf16->trace(piece), kPiece, ofBf16);
        }
        qunsetenv("PERSONA_QUANTIZED_DENSE_ROWS");
        std::sort(ofQuantized.hiddenErrors.begin(), ofQuantized.hiddenErrors.end());
        qInfo("%s (%s) against f32 over %d positions: top-1 agreement %.2f%%, last hidden state relative error median %.4f p95 %.4f",
              qPrintable(file), qPrintable(dtype), ofQuantized.positions, 100 * ofQuantized.agreement(), ofQuantized.hiddenError(0.5),
              ofQuantized.hiddenError(0.95));
        double bar = 0.99;
        if (bf16) {
            std::sort(ofBf16.hiddenErrors.begin(), ofBf16.hiddenErrors.end());
            qInfo("the bf16 path: top-1 agreement %.2f%%, last hidden state relative error median %.4f p95 %.4f",
                  100 * ofBf16.agreement(), ofBf16.hiddenError(0.5), ofBf16.hiddenError(0.95));
            // Within a point of the bf16 path where that is short of 99% itself (the 135M model:
            // 98.8%, and the quantized path 98.2-98.6%; the 1.5B model's quantized path: 99.2%).
            bar = std::min(bar, ofBf16.agreement() - 0.01);
        }
        QVERIFY2(ofQuantized.agreement() >= bar, qPrintable(QString("top-1 agreement %1 under %2").arg(ofQuantized.agreement()).arg(bar)));
        QVERIFY2(ofQuantized.hiddenError(0.5) < hiddenErrorBar,
                 qPrintable(QString("the hidden states drifted: median relative error %1").arg(ofQuantized.hiddenError(0.5))));
    }
};

QTEST_GUILESS_MAIN(TestQuantizedModels)
#include "test_quantized_models.moc"
