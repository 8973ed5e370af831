#pragma once
// GGUF's quantized blocks, repacked once at load into the two layouts the quantized matrix
// kernels (model/quantized_matrix.h) read, so that six ggml block formats need two kernels.
// Every value is exactly the one ggml's own block gives (dequantize.h decodes the same numbers).
//
// Small blocks hold 32 values: f16 d, f16 dmin, then the values; value = d * q - dmin.
// Super blocks hold 256 values in groups (8 of 32, or 16 of 16 for Q6_K): f16 d, f16 dmin,
// int8 scale[groups], int8 min[groups], then the values; value = d * scale[g] * q - dmin * min[g].
// Q6_K's offset of -32 is dmin = 32 d with min[g] = scale[g], so its blocks store neither
// (f16 d, scale[16], values: 210 bytes, as in the file). Halves hold d and dmin exactly, as GGUF
// stores them.
// Values are unsigned (at most 63, so two products of a value and an int8 fit an int16), except
// in SmallSigned8, where q is an int8 and dmin is 0. 4-bit values pack 32 values into 16 bytes:
// byte i holds value i in its low nibble and value i + 16 in its high nibble. 6-bit values are
// their low four bits so packed (128 bytes), then the top two bits, 8 bytes per 32 values: bits
// 2k and 2k + 1 of byte i belong to value 8k + i.
#include <cstddef>
#include <cstdint>
#include <optional>

namespace persona::packed {

enum class Kind : std::uint8_t {
    Small4,        // from Q4_0, Q4_1
    Small8,        // from Q5_0, Q5_1 (values < 32)
    SmallSigned8,  // from Q8_0
    Super4,        // from Q4_K
    Super5,        // from Q5_K, one byte per value (< 32)
    Super6,        // from Q6_K
};

struct Layout {
    Kind kind;
    int block_values;         // 32 or 256
    int value_bits;           // 4, 6 or 8
    int groups;               // scale groups of a block: 1 (small), 8 or 16
    std::size_t block_bytes;  // header and values
    std::size_t header_bytes;
    // Super blocks: where scale[] and min[] start, and whether dmin and min[] are derived
    // (dmin = 32 d, min = scale) instead of stored.
    std::size_t scales_offset, mins_offset;
    bool derived_mins;
};

constexpr int kSmallValues = 32;
constexpr int kSuperValues = 256;
constexpr int kGroupValues = 16;   // activation sums are kept per 16 values, the smallest group
constexpr int kMostGroups = kSuperValues / kGroupValues;
constexpr std::size_t kSmallHeaderBytes = 4;  // f16 d, f16 dmin
constexpr float kDerivedDminPerD = 32;

// constexpr, so the kernels take their widths and sizes from the kind they are compiled for.
constexpr Layout layout_of(Kind kind) {
    const auto super = [kind](int bits, int groups) {
        const bool derived = kind == Kind::Super6;
        const std::size_t scales = derived ? 2 : 4, mins = derived ? scales : scales + static_cast<std::size_t>(groups);
        const std::size_t header = scales + static_cast<std::size_t>(derived ? groups : 2 * groups);
        return Layout{kind, kSuperValues, bits, groups, header + static_cast<std::size_t>(kSuperValues * bits / 8), header,
                      scales, mins, derived};
    };
    switch (kind) {
        case Kind::Small4: return {kind, kSmallValues, 4, 1, kSmallHeaderBytes + 16, kSmallHeaderBytes, 0, 0, false};
        case Kind::Small8:
        case Kind::SmallSigned8: return {kind, kSmallValues, 8, 1, kSmallHeaderBytes + 32, kSmallHeaderBytes, 0, 0, false};
        case Kind::Super4: return super(4, 8);
        case Kind::Super5: return super(8, 8);
        case Kind::Super6: break;
    }
    return super(6, 16);
}

// The layout a GGUF tensor type repacks into; nullopt for types kept dense (F32, F16, BF16, Q2_K,
// Q3_K, the IQ types).
std::optional<Kind> packed_kind(std::uint32_t ggml_type);

// Repacks one row of `values` elements (a whole number of the type's blocks) from GGUF's
// blocks at `src` into `dst`, which holds values / block_values * block_bytes bytes.
void repack_row(std::uint32_t ggml_type, const std::uint8_t* src, std::uint8_t* dst, std::size_t values);

// Decodes `values` elements of one packed row to float32: the reference the kernels are tested
// against, and how embeddings and large products read the weights.
void unpack_row(Kind kind, const std::uint8_t* src, float* dst, std::size_t values);

}  // namespace persona::packed
