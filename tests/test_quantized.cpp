// Quantized matrices (dtype "quantized"): GGUF blocks repacked without changing a value and the
// int8 kernels against a reference written here, on random blocks of every type. The real
// models against their float32 selves are test_quantized_models.
#include "formats/dequantize.h"
#include "formats/ggml_types.h"
#include "model/quantized_matrix.h"
#include "test_support.h"

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
            // A Q4_K_M file's two types stay within 3% of their size in the file (halves, and
            // Q6_K's derived mins: f32 headers took 5.6% and 10.5% more).
            if (type == GgmlType::Q4_K || type == GgmlType::Q6_K)
                QVERIFY2(double(m.bytes()) <= 1.03 * double(bytes.size()),
                         qPrintable(QString::fromStdString(name) + QString(": %1 bytes from %2").arg(m.bytes()).arg(bytes.size())));
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

    // quantized-precise: each row's rounding error rounded and multiplied again, so the product
    // comes within float rounding of the float product, where one pass stays ~1% off; prompts
    // (many rows) multiply in float32 instead of bf16.
    void twoRoundingPassesGiveTheFloatProduct() {
        qputenv("PERSONA_QUANTIZED_DENSE_ROWS", "0");
        for (const GgmlType type : {GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q6_K}) {
            const auto name = QString::fromStdString(persona::ggml_type_name(static_cast<std::uint32_t>(type)));
            const std::vector<std::uint8_t> bytes = randomBlocks(type, 40, 512, 13);
            QuantizedMatrix m = QuantizedMatrix::from_gguf(static_cast<std::uint32_t>(type), bytes.data(), 40, 512);
            const torch::Tensor weights = dequantizedReference(type, bytes, 40, 512).to(torch::kFloat64);
            const torch::Tensor x = torch::randn({3, 512});
            const torch::Tensor exact = torch::matmul(x.to(torch::kFloat64), weights.t());
            const double onePass = relativeError(m.multiply(x), exact);
            m.set_activation_rounding(persona::model::ActivationRounding::TwoPassInt8);
            const double twoPasses = relativeError(m.multiply(x), exact);
            qInfo("%s: one pass %.2e, two passes %.2e from the float product", qPrintable(name), onePass, twoPasses);
            QVERIFY2(twoPasses < 1e-4 && twoPasses < onePass / 20, qPrintable(name));
        }
        qunsetenv("PERSONA_QUANTIZED_DENSE_ROWS");
        const std::vector<std::uint8_t> bytes = randomBlocks(GgmlType::Q4_K, 40, 512, 3);
        QuantizedMatrix m = QuantizedMatrix::from_gguf(static_cast<std::uint32_t>(GgmlType::Q4_K), bytes.data(), 40, 512);
        m.set_activation_rounding(persona::model::ActivationRounding::TwoPassInt8);
        const torch::Tensor x = torch::randn({60, 512});
        const torch::Tensor exact = torch::matmul(x.to(torch::kFloat64), dequantizedReference(GgmlType::Q4_K, bytes, 40, 512).to(torch::kFloat64).t());
        const double dense = relativeError(m.multiply(x), exact);
        QVERIFY2(dense < 1e-5, qPrintable(QString("dense: %1").arg(dense)));
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
        // Each part's rows in their place: the product is the int8 product with the reordered and
        // stacked weights, to rounding (a CI run once saw this exceed 0.02 against the float
        // product, never reproduced; the figures say which part went wrong if it happens again).
        const torch::Tensor x = torch::randn({1, 256});
        const torch::Tensor y = fused.multiply(x);
        const torch::Tensor exact = quantizedActivationProduct(expected, x, 256);
        QString rowErrors;
        const torch::Tensor difference = (y.to(torch::kFloat64) - exact).flatten();
        for (std::int64_t i = 0; i < difference.numel(); ++i) rowErrors += QString(" %1").arg(difference[i].item<double>(), 0, 'g', 3);
        const QString figures = QString("int8 product %1, float product %2, by row:%3")
                                    .arg(relativeError(y, exact))
                                    .arg(relativeError(y, torch::matmul(x, expected.t())))
                                    .arg(rowErrors);
        QVERIFY2(relativeError(y, exact) < 1e-5, qPrintable(figures));
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

};

QTEST_GUILESS_MAIN(TestQuantized)
#include "test_quantized.moc"
