#include "formats/dequantize.h"

#include "persona/errors.h"
#include "formats/ggml_types.h"
#include "formats/gguf.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>
#include <system_error>
#include <thread>

namespace persona {

namespace {

// Block layouts follow ggml's block_* structs; every multi-byte field is little-endian and the
// structs are packed, so fields are read at byte offsets rather than through C++ structs.
inline std::uint16_t load_u16(const std::uint8_t* bytes) {
    return static_cast<std::uint16_t>(bytes[0] | (bytes[1] << 8));
}

inline float float_from_bits(std::uint32_t bits) {
    float value;
    std::memcpy(&value, &bits, sizeof value);
    return value;
}

inline std::uint32_t bits_from_float(float value) {
    std::uint32_t bits;
    std::memcpy(&bits, &value, sizeof bits);
    return bits;
}

// Selects rather than branches, so the F16 loop can vectorize. Half subnormals are built as a normal float
// 2^-14 * (1 + m/1024) minus 2^-14, which is exact and never relies on denormal arithmetic (a
// thread with flush-to-zero set would otherwise turn them into zeros).
inline float decode_half(std::uint16_t half_bits) {
    const std::uint32_t sign = static_cast<std::uint32_t>(half_bits & 0x8000u) << 16;
    const std::uint32_t magnitude = half_bits & 0x7fffu;
    const std::uint32_t shifted = magnitude << 13;  // half's exponent and mantissa lined up with float's
    const std::uint32_t normal = shifted + ((127u - 15u) << 23);
    const std::uint32_t inf_or_nan = shifted | 0x7f800000u;  // keeps NaN payloads
    const std::uint32_t subnormal = bits_from_float(float_from_bits(shifted + (113u << 23)) - 0x1p-14f);
    const std::uint32_t result = magnitude >= 0x7c00u ? inf_or_nan : magnitude >= 0x0400u ? normal : subnormal;
    return float_from_bits(sign | result);
}

void decode_f32(const std::uint8_t* src, float* dst, std::size_t count) {
    std::memcpy(dst, src, count * sizeof(float));
}

void decode_f16(const std::uint8_t* src, float* dst, std::size_t count) {
    for (std::size_t i = 0; i < count; ++i) dst[i] = decode_half(load_u16(src + 2 * i));
}

void decode_bf16(const std::uint8_t* src, float* dst, std::size_t count) {
    // bfloat16 is the top half of a float32, so widening is exact for every value including NaN.
    for (std::size_t i = 0; i < count; ++i) dst[i] = float_from_bits(static_cast<std::uint32_t>(load_u16(src + 2 * i)) << 16);
}

// block_q8_0: f16 d, int8 qs[32]; x = d * q.
void decode_q8_0(const std::uint8_t* src, float* dst, std::size_t blocks) {
    for (std::size_t b = 0; b < blocks; ++b, src += 34, dst += 32) {
        const float d = decode_half(load_u16(src));
        const std::uint8_t* qs = src + 2;
        for (int i = 0; i < 32; ++i) dst[i] = static_cast<float>(static_cast<std::int8_t>(qs[i])) * d;
    }
}

// Q4_0 and Q4_1 keep element i of a 32-element block in the low nibble of byte i and element
// i + 16 in its high nibble. Unpacking to bytes first leaves one 32-wide uint8 -> float loop per
// block, a shape the compiler vectorizes (a loop writing both halves at once it does not).
inline void unpack_nibbles(const std::uint8_t* packed, std::uint8_t quants[32]) {
    for (int i = 0; i < 16; ++i) {
        quants[i] = packed[i] & 0x0F;
        quants[i + 16] = packed[i] >> 4;
    }
}

// block_q4_0: f16 d, qs[16]; x = d * (q - 8).
void decode_q4_0(const std::uint8_t* src, float* dst, std::size_t blocks) {
    for (std::size_t b = 0; b < blocks; ++b, src += 18, dst += 32) {
        const float d = decode_half(load_u16(src));
        std::uint8_t quants[32];
        unpack_nibbles(src + 2, quants);
        for (int i = 0; i < 32; ++i) dst[i] = static_cast<float>(quants[i] - 8) * d;
    }
}

// block_q4_1: f16 d, f16 m, qs[16]; x = d * q + m.
void decode_q4_1(const std::uint8_t* src, float* dst, std::size_t blocks) {
    for (std::size_t b = 0; b < blocks; ++b, src += 20, dst += 32) {
        const float d = decode_half(load_u16(src));
        const float m = decode_half(load_u16(src + 2));
        std::uint8_t quants[32];
        unpack_nibbles(src + 4, quants);
        for (int i = 0; i < 32; ++i) dst[i] = d * static_cast<float>(quants[i]) + m;
    }
}

// Maps a byte to eight bytes, byte k being 0x10 when bit k is set: it turns Q5's packed fifth
// bits into per-element values with table loads, where shifting by the element index would
// need per-lane variable shifts that plain SSE2 lacks.
struct FifthBitTable {
    std::uint8_t bytes[256][8];
};

constexpr FifthBitTable make_fifth_bit_table() {
    FifthBitTable table{};
    for (int value = 0; value < 256; ++value)
        for (int bit = 0; bit < 8; ++bit) table.bytes[value][bit] = ((value >> bit) & 1) ? 0x10 : 0;
    return table;
}

constexpr FifthBitTable kFifthBits = make_fifth_bit_table();

// Element i's fifth bit is bit i of qh (little-endian u32), so its bytes in order cover elements
// 0-7, 8-15, 16-23, 24-31.
inline void expand_fifth_bits(const std::uint8_t* qh, std::uint8_t fifth[32]) {
    for (int byte = 0; byte < 4; ++byte) std::memcpy(fifth + 8 * byte, kFifthBits.bytes[qh[byte]], 8);
}

// block_q5_0: f16 d, u32 qh (bit i is the fifth bit of element i), qs[16] low nibbles as Q4_0;
// x = d * (q - 16).
void decode_q5_0(const std::uint8_t* src, float* dst, std::size_t blocks) {
    for (std::size_t b = 0; b < blocks; ++b, src += 22, dst += 32) {
        const float d = decode_half(load_u16(src));
        std::uint8_t fifth[32];
        expand_fifth_bits(src + 2, fifth);
        std::uint8_t quants[32];
        unpack_nibbles(src + 6, quants);
        for (int i = 0; i < 32; ++i) dst[i] = static_cast<float>((quants[i] | fifth[i]) - 16) * d;
    }
}

// block_q5_1: f16 d, f16 m, u32 qh, qs[16] as Q5_0; x = d * q + m.
void decode_q5_1(const std::uint8_t* src, float* dst, std::size_t blocks) {
    for (std::size_t b = 0; b < blocks; ++b, src += 24, dst += 32) {
        const float d = decode_half(load_u16(src));
        const float m = decode_half(load_u16(src + 2));
        std::uint8_t fifth[32];
        expand_fifth_bits(src + 4, fifth);
        std::uint8_t quants[32];
        unpack_nibbles(src + 8, quants);
        for (int i = 0; i < 32; ++i) dst[i] = d * static_cast<float>(quants[i] | fifth[i]) + m;
    }
}

// block_q4_K (144 bytes): f16 d, f16 dmin, scales[12], qs[128]. Eight sub-blocks of 32; each
// 32-byte run of qs holds two sub-blocks, the first in the low nibbles, the second in the high.
// x = (d * scale) * q - (dmin * min).
void decode_q4_k(const std::uint8_t* src, float* dst, std::size_t blocks) {
    for (std::size_t b = 0; b < blocks; ++b, src += 144) {
        const float d = decode_half(load_u16(src));
        const float dmin = decode_half(load_u16(src + 2));
        std::uint8_t scales[8], mins[8];
        unpack_k_scales(src + 4, scales, mins);
        const std::uint8_t* qs = src + 16;
        for (int pair = 0; pair < 4; ++pair, qs += 32, dst += 64) {
            const float d_low = d * scales[2 * pair], min_low = dmin * mins[2 * pair];
            const float d_high = d * scales[2 * pair + 1], min_high = dmin * mins[2 * pair + 1];
            for (int i = 0; i < 32; ++i) dst[i] = d_low * static_cast<float>(qs[i] & 0x0F) - min_low;
            for (int i = 0; i < 32; ++i) dst[i + 32] = d_high * static_cast<float>(qs[i] >> 4) - min_high;
        }
    }
}

// block_q5_K (176 bytes): f16 d, f16 dmin, scales[12], qh[32], qs[128]. As Q4_K, plus a fifth
// bit per element: bit s of qh[i] belongs to element i of sub-block s.
void decode_q5_k(const std::uint8_t* src, float* dst, std::size_t blocks) {
    for (std::size_t b = 0; b < blocks; ++b, src += 176) {
        const float d = decode_half(load_u16(src));
        const float dmin = decode_half(load_u16(src + 2));
        std::uint8_t scales[8], mins[8];
        unpack_k_scales(src + 4, scales, mins);
        const std::uint8_t* qh = src + 16;
        const std::uint8_t* qs = src + 48;
        for (int pair = 0; pair < 4; ++pair, qs += 32, dst += 64) {
            const int low = 2 * pair, high = 2 * pair + 1;  // sub-block numbers, also their qh bits
            const float d_low = d * scales[low], min_low = dmin * mins[low];
            const float d_high = d * scales[high], min_high = dmin * mins[high];
            for (int i = 0; i < 32; ++i)
                dst[i] = d_low * static_cast<float>((qs[i] & 0x0F) | (((qh[i] >> low) & 1) << 4)) - min_low;
            for (int i = 0; i < 32; ++i)
                dst[i + 32] = d_high * static_cast<float>((qs[i] >> 4) | (((qh[i] >> high) & 1) << 4)) - min_high;
        }
    }
}

// block_q6_K (210 bytes): ql[128] low nibbles, qh[64] top two bits, int8 scales[16], f16 d.
// Sixteen sub-blocks of 16; x = (d * scale) * (q - 32). Each 128-element half uses 64 bytes of
// ql, 32 of qh and 8 scales: element i + 32k (i < 32) takes nibble k / 2 of ql[i + 32 (k % 2)]
// and bits 2k..2k+1 of qh[i].
void decode_q6_k(const std::uint8_t* src, float* dst, std::size_t blocks) {
    for (std::size_t b = 0; b < blocks; ++b, src += 210) {
        const std::uint8_t* ql = src;
        const std::uint8_t* qh = src + 128;
        const auto* scales = reinterpret_cast<const std::int8_t*>(src + 192);
        const float d = decode_half(load_u16(src + 208));
        for (int half = 0; half < 2; ++half, ql += 64, qh += 32, scales += 8, dst += 128) {
            for (int part = 0; part < 2; ++part) {
                const float s0 = d * scales[part], s1 = d * scales[part + 2];
                const float s2 = d * scales[part + 4], s3 = d * scales[part + 6];
                for (int i = 16 * part; i < 16 * part + 16; ++i) {
                    const int q0 = ((ql[i] & 0x0F) | (((qh[i] >> 0) & 3) << 4)) - 32;
                    const int q1 = ((ql[i + 32] & 0x0F) | (((qh[i] >> 2) & 3) << 4)) - 32;
                    const int q2 = ((ql[i] >> 4) | (((qh[i] >> 4) & 3) << 4)) - 32;
                    const int q3 = ((ql[i + 32] >> 4) | (((qh[i] >> 6) & 3) << 4)) - 32;
                    dst[i] = s0 * static_cast<float>(q0);
                    dst[i + 32] = s1 * static_cast<float>(q1);
                    dst[i + 64] = s2 * static_cast<float>(q2);
                    dst[i + 96] = s3 * static_cast<float>(q3);
                }
            }
        }
    }
}

// block_q2_K (84 bytes): scales[16] (low nibble scale, high nibble min), qs[64], f16 d, f16 dmin.
// Each 32-byte run of qs holds 128 elements as four 2-bit planes (shift 0, 2, 4, 6), plane k of
// the block being elements 32k..32k+31; sub-blocks are 16 elements.
// x = (d * scale) * q - (dmin * min). Q2_K and Q3_K unpack whole planes to bytes first, so that
// both passes are loops the compiler vectorizes.
void decode_q2_k(const std::uint8_t* src, float* dst, std::size_t blocks) {
    for (std::size_t b = 0; b < blocks; ++b, src += 84, dst += 256) {
        const std::uint8_t* scales = src;
        const float d = decode_half(load_u16(src + 80));
        const float dmin = decode_half(load_u16(src + 82));
        std::uint8_t quants[256];
        for (int plane = 0; plane < 8; ++plane) {
            const std::uint8_t* qs = src + 16 + 32 * (plane / 4);
            const int shift = 2 * (plane % 4);
            for (int i = 0; i < 32; ++i) quants[32 * plane + i] = (qs[i] >> shift) & 3;
        }
        for (int sub_block = 0; sub_block < 16; ++sub_block) {
            const float scale = d * static_cast<float>(scales[sub_block] & 0x0F);
            const float min = dmin * static_cast<float>(scales[sub_block] >> 4);
            const std::uint8_t* q = quants + 16 * sub_block;
            float* out = dst + 16 * sub_block;
            for (int i = 0; i < 16; ++i) out[i] = scale * static_cast<float>(q[i]) - min;
        }
    }
}

// block_q3_K (110 bytes): hmask[32], qs[64], scales[12], f16 d. Low two bits as Q2_K; the third
// bit of element 32k + i is bit k of hmask[i], and a clear bit means "subtract 4". Sixteen 6-bit
// scales biased by 32: low four bits in the nibbles of bytes 0-7 (scale j < 8 low nibble of byte
// j, scale j >= 8 high nibble of byte j - 8), top two bits in bytes 8-11 (byte 8 + j % 4, bit
// pair j / 4). x = (d * scale) * q.
void decode_q3_k(const std::uint8_t* src, float* dst, std::size_t blocks) {
    for (std::size_t b = 0; b < blocks; ++b, src += 110, dst += 256) {
        const std::uint8_t* hmask = src;
        const std::uint8_t* packed_scales = src + 96;
        const float d = decode_half(load_u16(src + 108));
        std::int8_t quants[256];
        for (int plane = 0; plane < 8; ++plane) {
            const std::uint8_t* qs = src + 32 + 32 * (plane / 4);
            const int shift = 2 * (plane % 4);
            for (int i = 0; i < 32; ++i)
                quants[32 * plane + i] =
                    static_cast<std::int8_t>(((qs[i] >> shift) & 3) - (((hmask[i] >> plane) & 1) ? 0 : 4));
        }
        for (int sub_block = 0; sub_block < 16; ++sub_block) {
            const int low = sub_block < 8 ? packed_scales[sub_block] & 0x0F : packed_scales[sub_block - 8] >> 4;
            const int high = (packed_scales[8 + sub_block % 4] >> (2 * (sub_block / 4))) & 3;
            const float scale = d * static_cast<float>((low | (high << 4)) - 32);
            const std::int8_t* q = quants + 16 * sub_block;
            float* out = dst + 16 * sub_block;
            for (int i = 0; i < 16; ++i) out[i] = scale * static_cast<float>(q[i]);
        }
    }
}

// count is in blocks; the plain types (F32, F16, BF16) are treated as one-element blocks.
using BlockDecoder = void (*)(const std::uint8_t* src, float* dst, std::size_t count);

BlockDecoder find_decoder(std::uint32_t ggml_type) {
    switch (static_cast<GgmlType>(ggml_type)) {
        case GgmlType::F32: return decode_f32;
        case GgmlType::F16: return decode_f16;
        case GgmlType::BF16: return decode_bf16;
        case GgmlType::Q4_0: return decode_q4_0;
        case GgmlType::Q4_1: return decode_q4_1;
        case GgmlType::Q5_0: return decode_q5_0;
        case GgmlType::Q5_1: return decode_q5_1;
        case GgmlType::Q8_0: return decode_q8_0;
        case GgmlType::Q2_K: return decode_q2_k;
        case GgmlType::Q3_K: return decode_q3_k;
        case GgmlType::Q4_K: return decode_q4_k;
        case GgmlType::Q5_K: return decode_q5_k;
        case GgmlType::Q6_K: return decode_q6_k;
        default: return nullptr;
    }
}

struct Decoding {
    BlockDecoder decode;
    GgmlTypeTraits traits;
};

Decoding decoding_for(std::uint32_t ggml_type, const std::string& context) {
    const BlockDecoder decode = find_decoder(ggml_type);
    const auto traits = ggml_type_traits(ggml_type);
    if (!decode || !traits)
        throw Error(context + "cannot dequantize tensor type " + ggml_type_name(ggml_type) + " (type " +
                    std::to_string(ggml_type) +
                    "): supported types are F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, "
                    "Q5_K, Q6_K");
    return {decode, *traits};
}

// The unit of work handed to a thread: 256 KB of output, large enough that a thread start (tens
// of microseconds) is not wasted on it, so tensors smaller than this (norm weights) stay on the
// calling thread.
constexpr std::size_t kElementsPerChunk = std::size_t{1} << 16;

}  // namespace

// Q4_K and Q5_K pack eight 6-bit scales and eight 6-bit mins into 12 bytes: bytes 0-3 hold
// scales 0-3 and bytes 4-7 mins 0-3 in their low six bits; sub-blocks 4-7 take their low four
// bits from the nibbles of bytes 8-11 and their top two bits from the spare top bits of bytes 0-7.
void unpack_k_scales(const std::uint8_t* packed, std::uint8_t scales[8], std::uint8_t mins[8]) {
    for (int j = 0; j < 4; ++j) {
        scales[j] = packed[j] & 63;
        mins[j] = packed[j + 4] & 63;
    }
    for (int j = 4; j < 8; ++j) {
        scales[j] = static_cast<std::uint8_t>((packed[j + 4] & 0x0F) | ((packed[j - 4] >> 6) << 4));
        mins[j] = static_cast<std::uint8_t>((packed[j + 4] >> 4) | ((packed[j] >> 6) << 4));
    }
}

float half_to_float(std::uint16_t half_bits) { return decode_half(half_bits); }

float bfloat16_to_float(std::uint16_t bfloat16_bits) {
    const std::uint32_t bits = std::uint32_t(bfloat16_bits) << 16;
    float value;
    std::memcpy(&value, &bits, sizeof value);
    return value;
}

bool can_dequantize(std::uint32_t ggml_type) {
    return find_decoder(ggml_type) != nullptr && ggml_type_traits(ggml_type).has_value();
}

void dequantize_row(std::uint32_t ggml_type, const void* src, float* dst, std::size_t element_count) {
    const Decoding decoding = decoding_for(ggml_type, "");
    if (element_count % decoding.traits.block_elements != 0)
        throw Error("cannot dequantize " + std::to_string(element_count) + " elements of " + decoding.traits.name +
                    ": not a whole number of " + std::to_string(decoding.traits.block_elements) +
                    "-element blocks");
    decoding.decode(static_cast<const std::uint8_t*>(src), dst, element_count / decoding.traits.block_elements);
}

namespace {

// Checks the tensor against its own type and the file before anything is allocated or read, so a
// damaged file reports what is wrong instead of crashing or throwing bad_alloc.
Decoding checked_decoding(const GgufFile& file, const GgufTensorInfo& tensor) {
    const Decoding decoding = decoding_for(tensor.type, file.path() + ": tensor '" + tensor.name + "': ");
    const std::uint64_t elements = tensor.element_count();
    const std::size_t block_elements = decoding.traits.block_elements;
    if (elements % block_elements != 0 || tensor.byte_size != elements / block_elements * decoding.traits.block_bytes)
        throw FileError(file.path(), "tensor '" + tensor.name + "': " + std::to_string(tensor.byte_size) +
                                         " bytes do not hold " + std::to_string(elements) + " " +
                                         decoding.traits.name + " elements");
    if (tensor.offset > file.file_size() || tensor.byte_size > file.file_size() - tensor.offset)
        throw FileError(file.path(), "tensor '" + tensor.name + "' runs past the end of the file");
    if (elements > std::numeric_limits<std::size_t>::max() / sizeof(float))
        throw FileError(file.path(), "tensor '" + tensor.name + "' is too large to decode in memory");
    return decoding;
}

void decode_checked(const GgufFile& file, const GgufTensorInfo& tensor, const Decoding& decoding,
                    float* destination, unsigned thread_count) {
    const std::size_t elements = static_cast<std::size_t>(tensor.element_count());
    const std::size_t block_elements = decoding.traits.block_elements;
    const std::size_t block_bytes = decoding.traits.block_bytes;
    const std::size_t block_count = elements / block_elements;
    const std::uint8_t* source = file.tensor_data(tensor);
    auto decode_blocks = [&](std::size_t first_block, std::size_t end_block) {
        decoding.decode(source + first_block * block_bytes, destination + first_block * block_elements,
                        end_block - first_block);
    };

    // Threads take fixed-size chunks from a shared counter instead of one equal share each: when
    // another process holds a core, a thread that starts late then simply takes fewer chunks,
    // where equal shares would make every tensor wait for the slowest thread.
    const std::size_t chunk_blocks = std::max<std::size_t>(1, kElementsPerChunk / block_elements);
    const std::size_t chunk_count = (block_count + chunk_blocks - 1) / chunk_blocks;
    if (thread_count == 0) thread_count = std::max(1u, std::thread::hardware_concurrency());
    const std::size_t workers = std::min<std::size_t>(thread_count, chunk_count);
    if (workers <= 1) {
        decode_blocks(0, block_count);
        return;
    }
    std::atomic<std::size_t> next_chunk{0};
    auto work = [&] {
        while (true) {
            const std::size_t chunk = next_chunk.fetch_add(1, std::memory_order_relaxed);
            if (chunk >= chunk_count) return;
            decode_blocks(chunk * chunk_blocks, std::min(block_count, (chunk + 1) * chunk_blocks));
        }
    };
    std::vector<std::thread> threads;
    threads.reserve(workers - 1);
    try {
        for (std::size_t worker = 1; worker < workers; ++worker) threads.emplace_back(work);
    } catch (const std::system_error&) {
        // Out of threads: the ones that started and this one still take every chunk.
    }
    work();
    for (auto& thread : threads) thread.join();
}

}  // namespace

void dequantize_tensor(const GgufFile& file, const GgufTensorInfo& tensor, float* destination,
                       unsigned thread_count) {
    decode_checked(file, tensor, checked_decoding(file, tensor), destination, thread_count);
}

std::vector<float> dequantize_tensor(const GgufFile& file, const GgufTensorInfo& tensor, unsigned thread_count) {
    const Decoding decoding = checked_decoding(file, tensor);
    std::vector<float> values(static_cast<std::size_t>(tensor.element_count()));
    decode_checked(file, tensor, decoding, values.data(), thread_count);
    return values;
}

}  // namespace persona
