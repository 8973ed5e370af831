// Quantized matrices (dtype "quantized"): GGUF blocks repacked without changing a value, the
// int8 kernels against a reference written here, and the real models' predictions against
// their dequantized float32 selves (the fidelity figure docs/platform-notes.md quotes).
#include "formats/dequantize.h"
#include "formats/ggml_types.h"
#include "model/quantized_matrix.h"
#include "persona/model.h"
#include "persona/paths.h"
#include "persona/tokenizer.h"
#include "test_support.h"

#include <QFile>
#include <QtTest>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

using persona::GgmlType;
using persona::model::QuantizedMatrix;

namespace {

constexpr GgmlType kTypes[] = {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1,
                               GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};

// Byte offsets of each type's f16 fields (block scales and mins); every other byte of a block
// may hold anything.
std::vector<int> halfOffsets(GgmlType type) {
    switch (type) {
        case GgmlType::Q4_1:
        case GgmlType::Q5_1:
        case GgmlType::Q4_K:
        case GgmlType::Q5_K: return {0, 2};
        case GgmlType::Q6_K: return {208};
        default: return {0};
    }
}

// `rows` rows of random blocks whose scales are small normal halves of either sign.
std::vector<std::uint8_t> randomBlocks(GgmlType type, std::int64_t rows, std::int64_t cols, unsigned seed) {
    const auto traits = *persona::ggml_type_traits(static_cast<std::uint32_t>(type));
    const std::size_t blocks = static_cast<std::size_t>(rows * cols) / traits.block_elements;
    std::vector<std::uint8_t> bytes(blocks * traits.block_bytes);
    std::mt19937 generator(seed);
    for (auto& b : bytes) b = static_cast<std::uint8_t>(generator());
    for (std::size_t b = 0; b < blocks; ++b)
        for (const int offset : halfOffsets(type)) {
            // exponent 9..12 (about 0.001 to 0.03), random mantissa and sign
            const auto half = static_cast<std::uint16_t>(((generator() & 1) << 15) | ((9 + generator() % 4) << 10) | (generator() & 0x3ff));
            std::memcpy(bytes.data() + b * traits.block_bytes + offset, &half, 2);
        }
    return bytes;
}

torch::Tensor dequantizedReference(GgmlType type, const std::vector<std::uint8_t>& bytes, std::int64_t rows, std::int64_t cols) {
    torch::Tensor out = torch::empty({rows, cols}, torch::kFloat32);
    persona::dequantize_row(static_cast<std::uint32_t>(type), bytes.data(), out.data_ptr<float>(), static_cast<std::size_t>(rows * cols));
    return out;
}

double relativeError(const torch::Tensor& actual, const torch::Tensor& expected) {
    return (actual.to(torch::kFloat64) - expected.to(torch::kFloat64)).norm().item<double>() /
           expected.to(torch::kFloat64).norm().item<double>();
}

// The product the int8 kernel computes, in double: each block's weights times the activations as
// quantize_activations left them.
torch::Tensor quantizedActivationProduct(const torch::Tensor& weights, const torch::Tensor& x, int blockValues) {
    const std::int64_t rows = x.size(0), cols = x.size(1);
    const auto activations = persona::model::quant::quantize_activations(x.contiguous().data_ptr<float>(), rows, cols, blockValues);
    torch::Tensor dequantized = torch::empty({rows, cols}, torch::kFloat64);
    for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t c = 0; c < cols; ++c)
            dequantized[r][c] = double(activations.values[std::size_t(r * cols + c)]) *
                                activations.scales[std::size_t((r * cols + c) / blockValues)];
    return torch::matmul(dequantized, weights.to(torch::kFloat64).t());
}

int blockValuesOf(GgmlType type) { return type >= GgmlType::Q2_K ? 256 : 32; }

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

class TestQuantized : public QObject {
    Q_OBJECT

private slots:
    void everyTypeKeepsTheValuesGgmlDecodes() {
        for (const GgmlType type : kTypes) {
            const auto name = persona::ggml_type_name(static_cast<std::uint32_t>(type));
            const std::vector<std::uint8_t> bytes = randomBlocks(type, 3, 512, 7);
            const QuantizedMatrix m = QuantizedMatrix::from_gguf(static_cast<std::uint32_t>(type), bytes.data(), 3, 512);
            const torch::Tensor expected = dequantizedReference(type, bytes, 3, 512);
            const double largest = (m.dequantized(torch::kFloat32) - expected).abs().max().item<double>();
            QVERIFY2(largest <= 1e-6 * expected.abs().max().item<double>(), qPrintable(QString::fromStdString(name) + QString(": %1").arg(largest)));
            // Rows read one at a time (an embedding look-up) are the same rows.
            const torch::Tensor rows = m.lookup(torch::tensor({2, 0}, torch::kInt64));
            QVERIFY(torch::allclose(rows, m.dequantized(torch::kFloat32).index_select(0, torch::tensor({2, 0}, torch::kInt64))));
        }
    }

    void theKernelComputesTheQuantizedActivationProduct() {
        qputenv("PERSONA_QUANTIZED_DENSE_ROWS", "0");
        for (const GgmlType type : kTypes) {
            const auto name = QString::fromStdString(persona::ggml_type_name(static_cast<std::uint32_t>(type)));
            const std::int64_t rows = 70, cols = 768;  // rows: more than one kernel tile, not a multiple of it
            const std::vector<std::uint8_t> bytes = randomBlocks(type, rows, cols, 11);
            const QuantizedMatrix m = QuantizedMatrix::from_gguf(static_cast<std::uint32_t>(type), bytes.data(), rows, cols);
            const torch::Tensor weights = dequantizedReference(type, bytes, rows, cols);
            for (const std::int64_t count : {1, 2, 3, 5, 9}) {  // every row-group shape of the kernel
                const torch::Tensor x = torch::randn({count, cols}, torch::TensorOptions().dtype(torch::kFloat32));
                const torch::Tensor y = m.multiply(x);
                const torch::Tensor exact = quantizedActivationProduct(weights, x, blockValuesOf(type));
                const double kernelError = relativeError(y, exact);
                QVERIFY2(kernelError < 1e-5, qPrintable(name + QString(" x%1: %2 from the int8 product").arg(count).arg(kernelError)));
                // Activations rounded to int8 per block move the result by well under a percent.
                const double roundingError = relativeError(y, torch::matmul(x.to(torch::kFloat64), weights.to(torch::kFloat64).t()));
                QVERIFY2(roundingError < 0.02, qPrintable(name + QString(" x%1: %2 from the float product").arg(count).arg(roundingError)));
            }
        }
        qunsetenv("PERSONA_QUANTIZED_DENSE_ROWS");
    }

    void manyRowsTakeTheDenseProduct() {
        const std::vector<std::uint8_t> bytes = randomBlocks(GgmlType::Q4_K, 40, 512, 3);
        const QuantizedMatrix m = QuantizedMatrix::from_gguf(static_cast<std::uint32_t>(GgmlType::Q4_K), bytes.data(), 40, 512);
        const torch::Tensor weights = dequantizedReference(GgmlType::Q4_K, bytes, 40, 512);
        const torch::Tensor x = torch::randn({2, 60, 512});
        const torch::Tensor y = m.multiply(x);
        QCOMPARE(y.sizes().vec(), (std::vector<std::int64_t>{2, 60, 40}));
        QVERIFY(relativeError(y, torch::matmul(x, weights.t())) < 0.01);  // bf16 or f32 weights
    }

    void mixedTypesStackAndRowsReorder() {
        const std::vector<std::uint8_t> a = randomBlocks(GgmlType::Q4_K, 8, 256, 1), b = randomBlocks(GgmlType::Q6_K, 4, 256, 2),
                                        c = randomBlocks(GgmlType::Q6_K, 4, 256, 3);
        std::vector<std::int64_t> order = {7, 6, 5, 4, 0, 1, 2, 3};
        const QuantizedMatrix fused = QuantizedMatrix::stacked(
            {QuantizedMatrix::from_gguf(12, a.data(), 8, 256).reordered(order), QuantizedMatrix::from_gguf(14, b.data(), 4, 256),
             QuantizedMatrix::from_gguf(14, c.data(), 4, 256)});
        QCOMPARE(fused.rows(), std::int64_t{16});
        QCOMPARE(fused.parts().size(), std::size_t{2});  // the two Q6_K matrices join
        const torch::Tensor expected = torch::cat({dequantizedReference(GgmlType::Q4_K, a, 8, 256).index_select(0, torch::tensor(order)),
                                                   dequantizedReference(GgmlType::Q6_K, b, 4, 256),
                                                   dequantizedReference(GgmlType::Q6_K, c, 4, 256)});
        QVERIFY(torch::allclose(fused.dequantized(torch::kFloat32), expected, 1e-6, 1e-7));
        const torch::Tensor x = torch::randn({1, 256});
        QVERIFY(relativeError(fused.multiply(x), torch::matmul(x, expected.t())) < 0.02);
    }

    void nanActivationsGiveNan() {
        const std::vector<std::uint8_t> bytes = randomBlocks(GgmlType::Q4_1, 4, 64, 5);
        const QuantizedMatrix m = QuantizedMatrix::from_gguf(static_cast<std::uint32_t>(GgmlType::Q4_1), bytes.data(), 4, 64);
        torch::Tensor x = torch::randn({2, 64});
        x[1][3] = std::numeric_limits<float>::quiet_NaN();
        const torch::Tensor y = m.multiply(x);
        QVERIFY(torch::isfinite(y[0]).all().item<bool>());
        QVERIFY(torch::isnan(y[1]).all().item<bool>());
        QVERIFY_THROWS_EXCEPTION(persona::Error, m.lookup(torch::tensor({4}, torch::kInt64)));
    }

    // Teacher-forced over 1000 positions through the int8 kernel: the quantized model's top token
    // against the dequantized float32 model's, beside what the bf16 path (dtype auto here) keeps.
    void realModelsPredictAsTheirFloat32Selves_data() {
        QTest::addColumn<QString>("file");
        QTest::newRow("SmolLM2-135M Q4_1") << QString(persona::kDefaultModelFile);
        QTest::newRow("Qwen2.5-Coder-1.5B Q4_K_M") << QString(persona::kJudgeModelFile);
    }
    void realModelsPredictAsTheirFloat32Selves() {
        QFETCH(QString, file);
        const std::string path = persona_test::modelPath(file.toUtf8().constData()).toStdString();
        qputenv("PERSONA_QUANTIZED_DENSE_ROWS", "0");
        auto reference = persona::Model::load(path, persona::ModelLoadOptions{"cpu", "f32"});
        auto bf16 = persona::Model::load(path, persona::ModelLoadOptions{"cpu", "bf16"});
        auto quantized = persona::Model::load(path, persona::ModelLoadOptions{"cpu", "quantized"});
        QCOMPARE(quantized->dtype(), std::string("quantized"));
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
            compare(expected, bf16->trace(piece), kPiece, ofBf16);
        }
        qunsetenv("PERSONA_QUANTIZED_DENSE_ROWS");
        for (auto* fidelity : {&ofQuantized, &ofBf16}) std::sort(fidelity->hiddenErrors.begin(), fidelity->hiddenErrors.end());
        qInfo("%s against f32 over %d positions: top-1 agreement quantized %.2f%%, bf16 %.2f%%; last hidden state relative "
              "error quantized median %.4f p95 %.4f, bf16 median %.4f p95 %.4f",
              qPrintable(file), ofQuantized.positions, 100 * ofQuantized.agreement(), 100 * ofBf16.agreement(),
              ofQuantized.hiddenError(0.5), ofQuantized.hiddenError(0.95), ofBf16.hiddenError(0.5), ofBf16.hiddenError(0.95));
        // 99%, or within a point of the bf16 path, itself short of 99% on the 135M model (98.8%;
        // the quantized path measured 98.2-98.6% there, 99.2% on the 1.5B model).
        const double bar = std::min(0.99, ofBf16.agreement() - 0.01);
        QVERIFY2(ofQuantized.agreement() >= bar, qPrintable(QString("top-1 agreement %1 under %2").arg(ofQuantized.agreement()).arg(bar)));
        QVERIFY2(ofQuantized.hiddenError(0.5) < 0.1, "the hidden states drifted");
    }
};

QTEST_GUILESS_MAIN(TestQuantized)
#include "test_quantized.moc"
