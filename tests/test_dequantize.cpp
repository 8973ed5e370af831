// Dequantization against an independent decoder (the gguf Python package, through
// tests/data/dequant_goldens.json), against blocks built by hand from the format description,
// and on its error paths.
#include "formats/dequantize.h"
#include "persona/errors.h"
#include "formats/ggml_types.h"
#include "formats/gguf.h"
#include "test_support.h"

#include <nlohmann/json.hpp>

#include <QElapsedTimer>
#include <QtTest>

#include <array>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <vector>

using persona::GgmlType;

namespace {

// Both sides compute in float32 with the same operation order, so values are expected to be
// bit-identical; the tolerance only leaves room for a compiler that fuses multiply-adds.
constexpr double kRelativeTolerance = 1e-6;
constexpr double kAbsoluteTolerance = 1e-8;

bool closeEnough(float actual, double expected) {
    return std::abs(static_cast<double>(actual) - expected) <= kRelativeTolerance * std::abs(expected) + kAbsoluteTolerance;
}

// Counts values outside the tolerance and describes the first few: one wrong layout detail
// breaks thousands of values, and a full list would bury the useful lines.
class Mismatches {
public:
    void check(std::size_t index, float actual, double expected) {
        ++checked_;
        if (double(actual) == double(float(expected))) ++identical_;
        if (closeEnough(actual, expected)) return;
        if (++count_ <= 5)
            first_ += QString("\n  value %1: ours %2, reference %3").arg(index).arg(double(actual), 0, 'g', 9).arg(expected, 0, 'g', 9);
    }
    bool none() const { return count_ == 0; }
    std::size_t identical() const { return identical_; }
    std::size_t checked() const { return checked_; }
    QString report() const { return QString("%1 of %2 values differ:").arg(count_).arg(checked_) + first_; }

private:
    std::size_t count_ = 0, identical_ = 0, checked_ = 0;
    QString first_;
};

std::uint32_t typeNumber(GgmlType type) { return static_cast<std::uint32_t>(type); }

std::vector<float> decode(GgmlType type, const std::vector<std::uint8_t>& bytes, std::size_t elements) {
    std::vector<float> values(elements, std::numeric_limits<float>::quiet_NaN());
    persona::dequantize_row(typeNumber(type), bytes.data(), values.data(), elements);
    return values;
}

void putHalf(std::uint8_t* at, std::uint16_t half_bits) {
    at[0] = static_cast<std::uint8_t>(half_bits & 0xFF);
    at[1] = static_cast<std::uint8_t>(half_bits >> 8);
}

std::uint32_t floatBits(float value) {
    std::uint32_t bits;
    std::memcpy(&bits, &value, sizeof bits);
    return bits;
}

// Reference for one binary16 value, straight from the IEEE definition.
double halfByDefinition(std::uint16_t half_bits) {
    const int exponent = (half_bits >> 10) & 0x1F;
    const int mantissa = half_bits & 0x3FF;
    const double sign = (half_bits & 0x8000) ? -1.0 : 1.0;
    if (exponent == 0) return sign * std::ldexp(mantissa, -24);
    if (exponent == 31) return mantissa ? std::numeric_limits<double>::quiet_NaN() : sign * INFINITY;
    return sign * std::ldexp(1024 + mantissa, exponent - 25);
}

// Q4_K / Q5_K scale packing written from the format description: 6-bit scales and mins, the first
// four in the low six bits of bytes 0-3 and 4-7, the last four split into a low nibble in bytes
// 8-11 and two high bits in the top of bytes 0-3 (scales) and 4-7 (mins).
std::array<std::uint8_t, 12> packKScales(const std::array<int, 8>& scales, const std::array<int, 8>& mins) {
    std::array<std::uint8_t, 12> packed{};
    for (int j = 0; j < 4; ++j) {
        packed[j] = static_cast<std::uint8_t>(scales[j] | ((scales[j + 4] >> 4) << 6));
        packed[j + 4] = static_cast<std::uint8_t>(mins[j] | ((mins[j + 4] >> 4) << 6));
        packed[j + 8] = static_cast<std::uint8_t>((scales[j + 4] & 0x0F) | ((mins[j + 4] & 0x0F) << 4));
    }
    return packed;
}

}  // namespace

class TestDequantize : public QObject {
    Q_OBJECT

private:
    nlohmann::json golden_;
    std::map<std::string, std::unique_ptr<persona::GgufFile>> models_;

    const persona::GgufFile& model(const std::string& file_name) {
        auto& slot = models_[file_name];
        if (!slot) slot = persona::GgufFile::open(persona_test::modelPath(file_name.c_str()).toStdString());
        return *slot;
    }

private slots:
    void initTestCase() {
        std::ifstream in(PERSONA_TEST_DATA_DIR "/dequant_goldens.json");
        QVERIFY2(in, "cannot read " PERSONA_TEST_DATA_DIR "/dequant_goldens.json");
        golden_ = nlohmann::json::parse(in);
        QVERIFY(!golden_["models"].empty());
        QVERIFY(!golden_["synthetic"].empty());
    }

    // --- against the gguf package ---

    void realTensorsMatchReference_data() {
        QTest::addColumn<int>("modelIndex");
        QTest::addColumn<int>("tensorIndex");
        const auto& models = golden_["models"];
        for (std::size_t m = 0; m < models.size(); ++m)
            for (std::size_t t = 0; t < models[m]["tensors"].size(); ++t)
                QTest::addRow("%s %s", models[m]["file"].get<std::string>().c_str(),
                              models[m]["tensors"][t]["name"].get<std::string>().c_str())
                    << int(m) << int(t);
    }

    void realTensorsMatchReference() {
        QFETCH(int, modelIndex);
        QFETCH(int, tensorIndex);
        const auto& entry = golden_["models"][modelIndex]["tensors"][tensorIndex];
        const auto& file = model(golden_["models"][modelIndex]["file"].get<std::string>());
        const auto* tensor = file.find_tensor(entry["name"].get<std::string>());
        QVERIFY(tensor);
        QCOMPARE(tensor->type, entry["type"].get<std::uint32_t>());
        QCOMPARE(tensor->element_count(), entry["element_count"].get<std::uint64_t>());

        const std::vector<float> values = persona::dequantize_tensor(file, *tensor);
        QCOMPARE(values.size(), entry["element_count"].get<std::size_t>());

        Mismatches mismatches;
        const auto& first = entry["first_values"];
        for (std::size_t i = 0; i < first.size(); ++i) mismatches.check(i, values[i], first[i].get<double>());
        const auto& indices = entry["strided_indices"];
        const auto& strided = entry["strided_values"];
        QCOMPARE(indices.size(), strided.size());
        for (std::size_t i = 0; i < indices.size(); ++i) {
            const auto index = indices[i].get<std::size_t>();
            QVERIFY(index < values.size());
            mismatches.check(index, values[index], strided[i].get<double>());
        }
        QVERIFY2(mismatches.none(), qPrintable(mismatches.report()));
        if (mismatches.identical() != mismatches.checked())
            qInfo("%zu of %zu sampled values bit-identical", mismatches.identical(), mismatches.checked());

        // Sums catch a wrong value anywhere in the tensor, not just at the sampled positions.
        // They are float64 sums in different orders, hence a bound that grows with the tensor.
        double sum = 0, sum_of_squares = 0;
        for (float v : values) {
            sum += v;
            sum_of_squares += double(v) * double(v);
        }
        const double reference_squares = entry["sum_of_squares"].get<double>();
        const double sum_bound = 1e-9 * std::sqrt(double(values.size()) * reference_squares) + 1e-9;
        QVERIFY2(std::abs(sum - entry["sum"].get<double>()) <= sum_bound,
                 qPrintable(QString("sum %1 vs %2").arg(sum, 0, 'g', 17).arg(entry["sum"].get<double>(), 0, 'g', 17)));
        QVERIFY2(std::abs(sum_of_squares - reference_squares) <= 1e-9 * reference_squares,
                 qPrintable(QString("sum of squares %1 vs %2").arg(sum_of_squares, 0, 'g', 17).arg(reference_squares, 0, 'g', 17)));
    }

    void syntheticBlocksMatchReference_data() {
        QTest::addColumn<int>("entryIndex");
        const auto& entries = golden_["synthetic"];
        for (std::size_t i = 0; i < entries.size(); ++i)
            QTest::addRow("%s", entries[i]["type_name"].get<std::string>().c_str()) << int(i);
    }

    void syntheticBlocksMatchReference() {
        QFETCH(int, entryIndex);
        const auto& entry = golden_["synthetic"][entryIndex];
        const QByteArray bytes = QByteArray::fromHex(QByteArray::fromStdString(entry["bytes_hex"].get<std::string>()));
        const auto type = entry["type"].get<std::uint32_t>();
        const auto elements = entry["element_count"].get<std::size_t>();
        const auto traits = persona::ggml_type_traits(type);
        QVERIFY(traits);
        QCOMPARE(std::size_t(bytes.size()), elements / traits->block_elements * traits->block_bytes);
        QVERIFY(persona::can_dequantize(type));

        std::vector<float> values(elements);
        persona::dequantize_row(type, bytes.constData(), values.data(), elements);
        const auto& expected = entry["values"];
        QCOMPARE(expected.size(), elements);
        Mismatches mismatches;
        for (std::size_t i = 0; i < elements; ++i) mismatches.check(i, values[i], expected[i].get<double>());
        QVERIFY2(mismatches.none(), qPrintable(mismatches.report()));
    }

    // --- half floats ---

    void halfSpecialValues() {
        QCOMPARE(floatBits(persona::half_to_float(0x0000)), 0x00000000u);  // +0
        QCOMPARE(floatBits(persona::half_to_float(0x8000)), 0x80000000u);  // -0 keeps its sign
        QCOMPARE(persona::half_to_float(0x0001), std::ldexp(1.0f, -24));   // smallest subnormal
        QCOMPARE(persona::half_to_float(0x03FF), std::ldexp(1023.0f, -24));  // largest subnormal
        QCOMPARE(persona::half_to_float(0x8200), -std::ldexp(1.0f, -15));   // negative subnormal
        QCOMPARE(persona::half_to_float(0x0400), std::ldexp(1.0f, -14));   // smallest normal
        QCOMPARE(persona::half_to_float(0x3C00), 1.0f);
        QCOMPARE(persona::half_to_float(0xC000), -2.0f);
        QCOMPARE(persona::half_to_float(0x3555), 0.333251953125f);
        QCOMPARE(persona::half_to_float(0x7BFF), 65504.0f);  // largest finite
        QCOMPARE(persona::half_to_float(0x7C00), std::numeric_limits<float>::infinity());
        QCOMPARE(persona::half_to_float(0xFC00), -std::numeric_limits<float>::infinity());
        QVERIFY(std::isnan(persona::half_to_float(0x7E00)));
        QCOMPARE(floatBits(persona::half_to_float(0x7C01)), 0x7F802000u);  // NaN payload carried over
    }

    void everyHalfMatchesDefinition() {
        for (std::uint32_t bits = 0; bits <= 0xFFFF; ++bits) {
            const float ours = persona::half_to_float(static_cast<std::uint16_t>(bits));
            const double expected = halfByDefinition(static_cast<std::uint16_t>(bits));
            if (std::isnan(expected)) {
                if (!std::isnan(ours)) QFAIL(qPrintable(QString("0x%1 should be NaN").arg(bits, 4, 16)));
            } else if (double(ours) != expected || std::signbit(ours) != std::signbit(expected)) {
                QFAIL(qPrintable(QString("0x%1: %2, expected %3").arg(bits, 4, 16).arg(double(ours)).arg(expected)));
            }
        }
    }

    // --- blocks built by hand ---

    void plainTypes() {
        const std::vector<std::uint8_t> f16{0x00, 0x3C, 0x01, 0x00, 0x00, 0x80, 0x00, 0x7C};
        const auto halves = decode(GgmlType::F16, f16, 4);
        QCOMPARE(halves[0], 1.0f);
        QCOMPARE(halves[1], std::ldexp(1.0f, -24));
        QCOMPARE(floatBits(halves[2]), 0x80000000u);
        QCOMPARE(halves[3], std::numeric_limits<float>::infinity());

        // bfloat16 is the top 16 bits of a float32.
        const std::vector<std::uint8_t> bf16{0x80, 0x3F, 0x40, 0xC0, 0x80, 0x7F, 0x01, 0x00};
        const auto bfloats = decode(GgmlType::BF16, bf16, 4);
        QCOMPARE(bfloats[0], 1.0f);
        QCOMPARE(bfloats[1], -3.0f);
        QCOMPARE(bfloats[2], std::numeric_limits<float>::infinity());
        QCOMPARE(floatBits(bfloats[3]), 0x00010000u);  // a float32 denormal, kept as is

        const std::array<float, 3> floats{1.5f, -0.0f, 3e-40f};
        std::vector<std::uint8_t> f32(sizeof floats);
        std::memcpy(f32.data(), floats.data(), sizeof floats);
        const auto copied = decode(GgmlType::F32, f32, 3);
        for (int i = 0; i < 3; ++i) QCOMPARE(floatBits(copied[i]), floatBits(floats[i]));
    }

    void q8_0Block() {
        // Scale 0.5 (f16 0x3800) then int8 values -128, -120, ..., 120.
        std::vector<std::uint8_t> block(34);
        putHalf(block.data(), 0x3800);
        for (int i = 0; i < 32; ++i) block[2 + i] = static_cast<std::uint8_t>(static_cast<std::int8_t>(-128 + 8 * i));
        const auto values = decode(GgmlType::Q8_0, block, 32);
        for (int i = 0; i < 32; ++i) QCOMPARE(values[i], 0.5f * float(-128 + 8 * i));
    }

    void q4_0AndQ4_1Blocks() {
        // Element i sits in the low nibble of byte i, element i + 16 in its high nibble.
        std::vector<std::uint8_t> q4_0(18);
        putHalf(q4_0.data(), 0x4000);  // d = 2
        for (int i = 0; i < 16; ++i) q4_0[2 + i] = static_cast<std::uint8_t>(i | ((15 - i) << 4));
        const auto v0 = decode(GgmlType::Q4_0, q4_0, 32);
        for (int i = 0; i < 16; ++i) {
            QCOMPARE(v0[i], 2.0f * float(i - 8));
            QCOMPARE(v0[i + 16], 2.0f * float(15 - i - 8));
        }

        std::vector<std::uint8_t> q4_1(20);
        putHalf(q4_1.data(), 0x3800);      // d = 0.5
        putHalf(q4_1.data() + 2, 0xBC00);  // m = -1
        for (int i = 0; i < 16; ++i) q4_1[4 + i] = static_cast<std::uint8_t>(i | ((15 - i) << 4));
        const auto v1 = decode(GgmlType::Q4_1, q4_1, 32);
        for (int i = 0; i < 16; ++i) {
            QCOMPARE(v1[i], 0.5f * float(i) - 1.0f);
            QCOMPARE(v1[i + 16], 0.5f * float(15 - i) - 1.0f);
        }
    }

    void q5_0AndQ5_1Blocks() {
        // Quant value of element i is i: low nibble i % 16, fifth bit (bit i of qh) set for i >= 16.
        std::vector<std::uint8_t> q5_0(22);
        putHalf(q5_0.data(), 0x3400);  // d = 0.25
        q5_0[4] = q5_0[5] = 0xFF;      // qh = 0xFFFF0000, little-endian
        for (int i = 0; i < 16; ++i) q5_0[6 + i] = static_cast<std::uint8_t>(i | (i << 4));
        const auto v0 = decode(GgmlType::Q5_0, q5_0, 32);
        for (int i = 0; i < 32; ++i) QCOMPARE(v0[i], 0.25f * float(i - 16));

        std::vector<std::uint8_t> q5_1(24);
        putHalf(q5_1.data(), 0x3400);      // d = 0.25
        putHalf(q5_1.data() + 2, 0x4200);  // m = 3
        q5_1[6] = q5_1[7] = 0xFF;
        for (int i = 0; i < 16; ++i) q5_1[8 + i] = static_cast<std::uint8_t>(i | (i << 4));
        const auto v1 = decode(GgmlType::Q5_1, q5_1, 32);
        for (int i = 0; i < 32; ++i) QCOMPARE(v1[i], 0.25f * float(i) + 3.0f);
    }

    void q4_KAndQ5_KBlocks() {
        // Scales and mins above 15 exercise the split 6-bit packing of sub-blocks 4-7.
        const std::array<int, 8> scales{1, 2, 3, 63, 17, 34, 48, 5};
        const std::array<int, 8> mins{0, 5, 10, 15, 20, 40, 50, 63};
        const auto packed = packKScales(scales, mins);
        auto quant = [](int sub_block, int i) { return (i + 3 * sub_block) % 16; };

        // Each 32-byte run holds sub-block 2p in its low nibbles and 2p + 1 in its high nibbles.
        std::vector<std::uint8_t> q4_k(144);
        putHalf(q4_k.data(), 0x3800);      // d = 0.5
        putHalf(q4_k.data() + 2, 0x3400);  // dmin = 0.25
        std::copy(packed.begin(), packed.end(), q4_k.begin() + 4);
        for (int p = 0; p < 4; ++p)
            for (int i = 0; i < 32; ++i)
                q4_k[16 + 32 * p + i] = static_cast<std::uint8_t>(quant(2 * p, i) | (quant(2 * p + 1, i) << 4));
        const auto v4 = decode(GgmlType::Q4_K, q4_k, 256);
        for (int s = 0; s < 8; ++s)
            for (int i = 0; i < 32; ++i)
                QCOMPARE(v4[32 * s + i], 0.5f * float(scales[s]) * float(quant(s, i)) - 0.25f * float(mins[s]));

        // Q5_K adds qh[32]: bit s of qh[i] is the fifth bit of element i of sub-block s.
        std::vector<std::uint8_t> q5_k(176);
        std::copy(q4_k.begin(), q4_k.begin() + 16, q5_k.begin());
        for (int i = 0; i < 32; ++i) q5_k[16 + i] = static_cast<std::uint8_t>(i % 2 ? 0xF0 : 0x0F);
        std::copy(q4_k.begin() + 16, q4_k.end(), q5_k.begin() + 48);
        const auto v5 = decode(GgmlType::Q5_K, q5_k, 256);
        for (int s = 0; s < 8; ++s)
            for (int i = 0; i < 32; ++i) {
                const bool fifth_bit = (i % 2) ? s >= 4 : s < 4;
                const int q = quant(s, i) + (fifth_bit ? 16 : 0);
                QCOMPARE(v5[32 * s + i], 0.5f * float(scales[s]) * float(q) - 0.25f * float(mins[s]));
            }
    }

    void q6_KBlock() {
        // ql all 0x21 and qh all 0b11100100: in each 128-element half, quarter k (32 elements)
        // reads nibble k / 2 of ql and bit pair k of qh, giving 6-bit values 1, 17, 34, 50.
        std::vector<std::uint8_t> block(210);
        std::fill(block.begin(), block.begin() + 128, 0x21);
        std::fill(block.begin() + 128, block.begin() + 192, 0xE4);
        for (int j = 0; j < 16; ++j) block[192 + j] = static_cast<std::uint8_t>(static_cast<std::int8_t>(j - 8));
        putHalf(block.data() + 208, 0x3400);  // d = 0.25
        const std::array<int, 4> quarter_values{1, 17, 34, 50};
        const auto values = decode(GgmlType::Q6_K, block, 256);
        for (int e = 0; e < 256; ++e) {
            const int scale = e / 16 - 8;  // one int8 scale per 16 elements
            const int q = quarter_values[(e % 128) / 32] - 32;
            QCOMPARE(values[e], 0.25f * float(scale) * float(q));
        }
    }

    void q2_KBlock() {
        // Every scale byte 0x21: scale 1, min 2. Each qs byte 0b11100100 holds 0, 1, 2, 3 in its
        // four bit planes, and plane s of a 32-byte run is elements 32s..32s+31 of that run.
        std::vector<std::uint8_t> block(84);
        std::fill(block.begin(), block.begin() + 16, 0x21);
        std::fill(block.begin() + 16, block.begin() + 80, 0xE4);
        putHalf(block.data() + 80, 0x4000);  // d = 2
        putHalf(block.data() + 82, 0x3800);  // dmin = 0.5
        const auto values = decode(GgmlType::Q2_K, block, 256);
        for (int e = 0; e < 256; ++e) QCOMPARE(values[e], 2.0f * float((e % 128) / 32) - 0.5f * 2.0f);
    }

    void q3_KBlock() {
        // Every 6-bit scale is 33 (low nibbles 1, high bit pairs 0b10), i.e. +1 after the bias of
        // 32. hmask bytes 0x55 set bit k for even k, and element 32k + i reads bit k of hmask[i]:
        // where it is clear the value drops by 4.
        std::vector<std::uint8_t> block(110);
        std::fill(block.begin(), block.begin() + 32, 0x55);
        std::fill(block.begin() + 32, block.begin() + 96, 0xE4);
        std::fill(block.begin() + 96, block.begin() + 104, 0x11);
        std::fill(block.begin() + 104, block.begin() + 108, 0xAA);
        putHalf(block.data() + 108, 0x4000);  // d = 2
        const auto values = decode(GgmlType::Q3_K, block, 256);
        for (int e = 0; e < 256; ++e) {
            const int plane = e / 32;
            const int q = (e % 128) / 32 - (plane % 2 ? 4 : 0);
            QCOMPARE(values[e], 2.0f * float(q));
        }
    }

    void manyBlocksDecodeIndependently() {
        // Two Q8_0 blocks with different scales: the second must not reuse the first's scale.
        std::vector<std::uint8_t> blocks(68);
        putHalf(blocks.data(), 0x3C00);       // 1
        putHalf(blocks.data() + 34, 0xC200);  // -3
        for (int i = 0; i < 32; ++i) blocks[2 + i] = blocks[36 + i] = static_cast<std::uint8_t>(i);
        const auto values = decode(GgmlType::Q8_0, blocks, 64);
        for (int i = 0; i < 32; ++i) {
            QCOMPARE(values[i], float(i));
            QCOMPARE(values[32 + i], -3.0f * float(i));
        }
    }

    // --- threads ---

    void threadCountDoesNotChangeResults() {
        const auto& file = model(persona::kSecondModelFile);
        for (const char* name : {"blk.0.ffn_down.weight", "blk.0.attn_output.weight", "blk.0.ffn_gate.weight"}) {
            const auto* tensor = file.find_tensor(name);
            QVERIFY(tensor);
            const auto single = persona::dequantize_tensor(file, *tensor, 1);
            for (unsigned threads : {2u, 3u, 7u, 64u}) {
                std::vector<float> into(tensor->element_count());
                persona::dequantize_tensor(file, *tensor, into.data(), threads);
                QVERIFY2(std::memcmp(single.data(), into.data(), into.size() * sizeof(float)) == 0, name);
            }
        }
    }

    void everyRealTensorDecodes() {
        // Also the load-time benchmark: every tensor of both models, as the engine will do it.
        for (const char* file_name : {persona::kDefaultModelFile, persona::kSecondModelFile}) {
            const auto& file = model(file_name);
            QElapsedTimer timer;
            timer.start();
            std::uint64_t elements = 0;
            for (const auto& tensor : file.tensors()) {
                QVERIFY2(persona::can_dequantize(tensor.type), tensor.name.c_str());
                const auto values = persona::dequantize_tensor(file, tensor);
                for (float v : values)
                    if (!std::isfinite(v)) QFAIL(qPrintable(QString("%1 holds a non-finite value").arg(tensor.name.c_str())));
                elements += values.size();
            }
            qInfo("%s: %zu tensors, %llu elements decoded and checked in %lld ms", file_name, file.tensors().size(),
                  static_cast<unsigned long long>(elements), static_cast<long long>(timer.elapsed()));
        }
    }

    // --- errors ---

    void unsupportedTypeIsNamed() {
        QVERIFY(!persona::can_dequantize(typeNumber(GgmlType::IQ2_XXS)));
        QVERIFY(!persona::can_dequantize(typeNumber(GgmlType::Q8_K)));
        QVERIFY(!persona::can_dequantize(999));
        QVERIFY(persona::can_dequantize(typeNumber(GgmlType::Q6_K)));
        std::vector<std::uint8_t> bytes(66);
        std::vector<float> out(256);
        try {
            persona::dequantize_row(typeNumber(GgmlType::IQ2_XXS), bytes.data(), out.data(), 256);
            QFAIL("IQ2_XXS should be refused");
        } catch (const persona::Error& error) {
            QVERIFY2(QString(error.what()).contains("IQ2_XXS"), error.what());
        }
        try {
            persona::dequantize_row(999, bytes.data(), out.data(), 1);
            QFAIL("type 999 should be refused");
        } catch (const persona::Error& error) {
            QVERIFY2(QString(error.what()).contains("999"), error.what());
        }
    }

    void partialBlockIsRefused() {
        std::vector<std::uint8_t> bytes(68);
        std::vector<float> out(64);
        try {
            persona::dequantize_row(typeNumber(GgmlType::Q8_0), bytes.data(), out.data(), 33);
            QFAIL("33 elements of Q8_0 should be refused");
        } catch (const persona::Error& error) {
            QVERIFY2(QString(error.what()).contains("Q8_0") && QString(error.what()).contains("33"), error.what());
        }
        // Zero elements is a whole number of blocks and writes nothing.
        persona::dequantize_row(typeNumber(GgmlType::Q4_K), bytes.data(), out.data(), 0);
    }

    void badTensorIsNamed() {
        const auto& file = model(persona::kDefaultModelFile);
        const auto* real = file.find_tensor("blk.0.ffn_down.weight");
        QVERIFY(real);

        persona::GgufTensorInfo unsupported = *real;
        unsupported.type = typeNumber(GgmlType::IQ2_XXS);
        try {
            persona::dequantize_tensor(file, unsupported);
            QFAIL("IQ2_XXS tensor should be refused");
        } catch (const persona::Error& error) {
            const QString message(error.what());
            QVERIFY2(message.contains("blk.0.ffn_down.weight") && message.contains("IQ2_XXS"), error.what());
        }

        persona::GgufTensorInfo wrong_size = *real;
        wrong_size.type = typeNumber(GgmlType::Q8_0);  // same shape, but its bytes are Q4_1's
        QVERIFY_EXCEPTION_THROWN(persona::dequantize_tensor(file, wrong_size), persona::FileError);

        persona::GgufTensorInfo past_end = *real;
        past_end.offset = file.file_size() - real->byte_size + 1;
        QVERIFY_EXCEPTION_THROWN(persona::dequantize_tensor(file, past_end), persona::FileError);
    }
};

QTEST_GUILESS_MAIN(TestDequantize)
#include "test_dequantize.moc"
