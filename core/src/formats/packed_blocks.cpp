#include "formats/packed_blocks.h"

#include "formats/dequantize.h"
#include "formats/ggml_types.h"
#include "persona/errors.h"

#include <cstring>

namespace persona::packed {

namespace {

inline std::uint16_t load_u16(const std::uint8_t* bytes) { return static_cast<std::uint16_t>(bytes[0] | (bytes[1] << 8)); }

// Only for values that are exactly a half (a half times a power of two, here): the low
// mantissa bits dropped are zero, so no rounding is needed.
std::uint16_t exact_half_bits(float value) {
    std::uint32_t bits;
    std::memcpy(&bits, &value, sizeof bits);
    const std::uint32_t sign = (bits >> 16) & 0x8000u;
    const int exponent = static_cast<int>((bits >> 23) & 0xff) - 127 + 15;
    const std::uint32_t mantissa = bits & 0x7fffffu;
    if ((bits & 0x7fffffffu) == 0) return static_cast<std::uint16_t>(sign);
    if (exponent >= 31) return static_cast<std::uint16_t>(sign | 0x7c00u);
    if (exponent <= 0) {  // a half subnormal
        const std::uint32_t full = mantissa | 0x800000u;
        return static_cast<std::uint16_t>(sign | (full >> (14 - exponent)));
    }
    return static_cast<std::uint16_t>(sign | (static_cast<std::uint32_t>(exponent) << 10) | (mantissa >> 13));
}

// One block, decoded to its integers before being written in a packed layout. Left
// uninitialised: read_block writes what the layout uses, and zeroing 300 bytes per block cost a
// noticeable part of loading a 1.5B model.
struct Block {
    float d, dmin;
    std::int8_t scale[kMostGroups];  // per group of the layout
    std::int8_t min[kMostGroups];
    std::uint8_t q[kSuperValues];
};

void unpack_nibbles(const std::uint8_t* packed, std::uint8_t* q) {  // Q4_0 order: i, i + 16
    for (int i = 0; i < 16; ++i) {
        q[i] = packed[i] & 0x0F;
        q[i + 16] = packed[i] >> 4;
    }
}

void add_fifth_bits(const std::uint8_t* qh, std::uint8_t* q) {  // bit i of a little-endian u32
    for (int i = 0; i < 32; ++i) q[i] |= static_cast<std::uint8_t>(((qh[i / 8] >> (i % 8)) & 1) << 4);
}

// Reads block b of a GGUF row into `out`; returns the source bytes it used.
std::size_t read_block(GgmlType type, const std::uint8_t* src, Block& out) {
    switch (type) {
        case GgmlType::Q4_0:  // d * (q - 8)
            out.d = half_to_float(load_u16(src));
            out.dmin = 8 * out.d;
            unpack_nibbles(src + 2, out.q);
            return 18;
        case GgmlType::Q4_1:  // d * q + m
            out.d = half_to_float(load_u16(src));
            out.dmin = -half_to_float(load_u16(src + 2));
            unpack_nibbles(src + 4, out.q);
            return 20;
        case GgmlType::Q5_0:
            out.d = half_to_float(load_u16(src));
            out.dmin = 16 * out.d;
            unpack_nibbles(src + 6, out.q);
            add_fifth_bits(src + 2, out.q);
            return 22;
        case GgmlType::Q5_1:
            out.d = half_to_float(load_u16(src));
            out.dmin = -half_to_float(load_u16(src + 2));
            unpack_nibbles(src + 8, out.q);
            add_fifth_bits(src + 4, out.q);
            return 24;
        case GgmlType::Q8_0:
            out.d = half_to_float(load_u16(src));
            out.dmin = 0;
            std::memcpy(out.q, src + 2, 32);
            return 34;
        case GgmlType::Q4_K:
        case GgmlType::Q5_K: {
            const bool fifth = type == GgmlType::Q5_K;
            out.d = half_to_float(load_u16(src));
            out.dmin = half_to_float(load_u16(src + 2));
            std::uint8_t scales[8], mins[8];
            unpack_k_scales(src + 4, scales, mins);
            for (int g = 0; g < 8; ++g) {
                out.scale[g] = static_cast<std::int8_t>(scales[g]);
                out.min[g] = static_cast<std::int8_t>(mins[g]);
            }
            const std::uint8_t* qh = src + 16;
            const std::uint8_t* qs = src + (fifth ? 48 : 16);
            for (int pair = 0; pair < 4; ++pair, qs += 32)
                for (int i = 0; i < 32; ++i) {
                    const int low = 2 * pair, high = low + 1;  // sub-blocks of 32, and their qh bits
                    out.q[64 * pair + i] = static_cast<std::uint8_t>((qs[i] & 0x0F) | (fifth ? ((qh[i] >> low) & 1) << 4 : 0));
                    out.q[64 * pair + 32 + i] = static_cast<std::uint8_t>((qs[i] >> 4) | (fifth ? ((qh[i] >> high) & 1) << 4 : 0));
                }
            return fifth ? 176 : 144;
        }
        case GgmlType::Q6_K: {  // d * scale[g] * (q - 32): the -32 becomes dmin = 32 d, min = scale
            const std::uint8_t* ql = src;
            const std::uint8_t* qh = src + 128;
            const auto* scales = reinterpret_cast<const std::int8_t*>(src + 192);
            out.d = half_to_float(load_u16(src + 208));
            out.dmin = kDerivedDminPerD * out.d;
            for (int g = 0; g < kMostGroups; ++g) out.scale[g] = out.min[g] = scales[g];
            for (int half = 0; half < 2; ++half, ql += 64, qh += 32)
                for (int i = 0; i < 32; ++i) {
                    std::uint8_t* q = out.q + 128 * half;
                    q[i] = static_cast<std::uint8_t>((ql[i] & 0x0F) | ((qh[i] & 3) << 4));
                    q[i + 32] = static_cast<std::uint8_t>((ql[i + 32] & 0x0F) | (((qh[i] >> 2) & 3) << 4));
                    q[i + 64] = static_cast<std::uint8_t>((ql[i] >> 4) | (((qh[i] >> 4) & 3) << 4));
                    q[i + 96] = static_cast<std::uint8_t>((ql[i + 32] >> 4) | (((qh[i] >> 6) & 3) << 4));
                }
            return 210;
        }
        default:
            throw Error("cannot repack tensor type " + ggml_type_name(static_cast<std::uint32_t>(type)));
    }
}

void pack_nibbles(const std::uint8_t* q, int count, std::uint8_t* dst) {
    for (int chunk = 0; chunk < count / 32; ++chunk)
        for (int i = 0; i < 16; ++i)
            dst[16 * chunk + i] = static_cast<std::uint8_t>((q[32 * chunk + i] & 0x0F) | ((q[32 * chunk + 16 + i] & 0x0F) << 4));
}

void write_block(const Layout& layout, const Block& block, std::uint8_t* dst) {
    const std::uint16_t d = exact_half_bits(block.d), dmin = exact_half_bits(block.dmin);
    std::memcpy(dst, &d, 2);
    if (!layout.derived_mins) std::memcpy(dst + 2, &dmin, 2);
    if (layout.block_values == kSuperValues) {
        std::memcpy(dst + layout.scales_offset, block.scale, static_cast<std::size_t>(layout.groups));
        if (!layout.derived_mins) std::memcpy(dst + layout.mins_offset, block.min, static_cast<std::size_t>(layout.groups));
    }
    std::uint8_t* values = dst + layout.header_bytes;
    if (layout.value_bits == 8) {
        std::memcpy(values, block.q, static_cast<std::size_t>(layout.block_values));
        return;
    }
    pack_nibbles(block.q, layout.block_values, values);
    if (layout.value_bits == 6) {
        std::uint8_t* high = values + layout.block_values / 2;
        for (int chunk = 0; chunk < layout.block_values / 32; ++chunk)
            for (int i = 0; i < 8; ++i) {
                std::uint8_t bits = 0;
                for (int k = 0; k < 4; ++k) bits = static_cast<std::uint8_t>(bits | ((block.q[32 * chunk + 8 * k + i] >> 4) << (2 * k)));
                high[8 * chunk + i] = bits;
            }
    }
}

}  // namespace

std::optional<Kind> packed_kind(std::uint32_t ggml_type) {
    switch (static_cast<GgmlType>(ggml_type)) {
        case GgmlType::Q4_0:
        case GgmlType::Q4_1: return Kind::Small4;
        case GgmlType::Q5_0:
        case GgmlType::Q5_1: return Kind::Small8;
        case GgmlType::Q8_0: return Kind::SmallSigned8;
        case GgmlType::Q4_K: return Kind::Super4;
        case GgmlType::Q5_K: return Kind::Super5;
        case GgmlType::Q6_K: return Kind::Super6;
        default: return std::nullopt;
    }
}

void repack_row(std::uint32_t ggml_type, const std::uint8_t* src, std::uint8_t* dst, std::size_t values) {
    const auto kind = packed_kind(ggml_type);
    if (!kind) throw Error("cannot repack tensor type " + ggml_type_name(ggml_type));
    const Layout layout = layout_of(*kind);
    const auto type = static_cast<GgmlType>(ggml_type);
    for (std::size_t v = 0; v < values; v += static_cast<std::size_t>(layout.block_values)) {
        Block block;  // NOLINT(cppcoreguidelines-pro-type-member-init): filled by read_block
        src += read_block(type, src, block);
        write_block(layout, block, dst);
        dst += layout.block_bytes;
    }
}

void unpack_row(Kind kind, const std::uint8_t* src, float* dst, std::size_t values) {
    const Layout layout = layout_of(kind);
    for (std::size_t v = 0; v < values; v += static_cast<std::size_t>(layout.block_values), src += layout.block_bytes) {
        const std::uint8_t* stored = src + layout.header_bytes;
        std::uint8_t q[kSuperValues];
        if (layout.value_bits == 8) {
            std::memcpy(q, stored, static_cast<std::size_t>(layout.block_values));
        } else {
            for (int chunk = 0; chunk < layout.block_values / 32; ++chunk) unpack_nibbles(stored + 16 * chunk, q + 32 * chunk);
        }
        if (layout.value_bits == 6) {
            const std::uint8_t* high = stored + layout.block_values / 2;
            for (int i = 0; i < layout.block_values; ++i)
                q[i] = static_cast<std::uint8_t>(q[i] | (((high[8 * (i / 32) + i % 8] >> (2 * ((i % 32) / 8))) & 3) << 4));
        }
        float* out = dst + v;
        const float d = half_to_float(load_u16(src));
        const float dmin = layout.derived_mins ? kDerivedDminPerD * d : half_to_float(load_u16(src + 2));
        if (layout.block_values == kSmallValues) {
            for (int i = 0; i < kSmallValues; ++i) {
                const float value = kind == Kind::SmallSigned8 ? static_cast<float>(static_cast<std::int8_t>(q[i]))
                                                               : static_cast<float>(q[i]);
                out[i] = d * value - dmin;
            }
            continue;
        }
        const auto* scale = reinterpret_cast<const std::int8_t*>(src + layout.scales_offset);
        const auto* min = reinterpret_cast<const std::int8_t*>(src + layout.mins_offset);
        const int group_values = kSuperValues / layout.groups;
        for (int i = 0; i < kSuperValues; ++i) {
            const int g = i / group_values;
            out[i] = d * static_cast<float>(scale[g]) * static_cast<float>(q[i]) - dmin * static_cast<float>(min[g]);
        }
    }
}

}  // namespace persona::packed
