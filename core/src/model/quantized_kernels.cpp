// Products of packed quantized weight rows (formats/packed_blocks.h) with int8 activations. The
// AVX2 kernel multiplies a block's unsigned values with the activations' int8s in pairs
// (vpmaddubsw: two products of at most 63 * 127 fit an int16), applies the group scales while
// widening to int32 (vpmaddwd), and turns each block's sum to float once; the mins come from the
// activations' group sums, so they cost one product per group rather than one per value.
#include "model/quantized_matrix.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define PERSONA_HAVE_AVX2_QUANT 1
#define PERSONA_AVX2 __attribute__((target("avx2,fma,f16c")))
#endif

namespace persona::model::quant {

using packed::Kind;

bool simd_available() {
#ifdef PERSONA_HAVE_AVX2_QUANT
    // PERSONA_CPU_KERNELS=off takes the portable path, as it does for the bf16 kernels.
    static const bool supported = [] {
        const char* setting = std::getenv("PERSONA_CPU_KERNELS");
        if (setting && std::string(setting) == "off") return false;
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    }();
    return supported;
#else
    return false;
#endif
}

Activations quantize_activations(const float* x, std::int64_t rows, std::int64_t cols, int block_values) {
    Activations out;
    out.block_values = block_values;
    out.rows = rows;
    out.cols = cols;
    out.values.resize(static_cast<std::size_t>(rows * cols));
    out.scales.resize(static_cast<std::size_t>(rows * cols / block_values));
    out.block_sums.resize(out.scales.size());
    out.group_sums.resize(static_cast<std::size_t>(rows * cols / packed::kGroupValues));
    for (std::int64_t b = 0; b < rows * cols / block_values; ++b) {
        const float* in = x + b * block_values;
        std::int8_t* q = out.values.data() + b * block_values;
        float largest = 0;
        bool finite = true;
        for (int i = 0; i < block_values; ++i) {
            largest = std::max(largest, std::fabs(in[i]));
            finite = finite && std::isfinite(in[i]);
        }
        // A NaN or infinite activation makes the block's scale NaN, so the product is NaN as in
        // float arithmetic rather than a finite number made up from clamped integers.
        if (!finite) largest = std::numeric_limits<float>::quiet_NaN();
        const float scale = largest / 127.0f;
        const float inverse = largest > 0 ? 127.0f / largest : 0.0f;
        for (int i = 0; i < block_values; ++i)
            q[i] = finite ? static_cast<std::int8_t>(std::clamp(std::nearbyint(in[i] * inverse), -127.0f, 127.0f)) : 0;
        out.scales[static_cast<std::size_t>(b)] = scale;
        int block_sum = 0;
        for (int g = 0; g < block_values / packed::kGroupValues; ++g) {
            int sum = 0;
            for (int i = 0; i < packed::kGroupValues; ++i) sum += q[g * packed::kGroupValues + i];
            out.group_sums[static_cast<std::size_t>(b * (block_values / packed::kGroupValues) + g)] = static_cast<std::int16_t>(sum);
            block_sum += sum;
        }
        out.block_sums[static_cast<std::size_t>(b)] = scale * static_cast<float>(block_sum);
    }
    return out;
}

namespace {

// Without AVX2: each block decoded to floats and multiplied with the activations as quantized,
// so both paths compute the same sum up to float rounding.
void portable_rows(const QuantizedMatrix::Part& part, std::int64_t n0, std::int64_t n1, const Activations& x, float* y,
                   std::int64_t y_stride) {
    const packed::Layout layout = packed::layout_of(part.kind);
    const std::int64_t blocks = x.cols / layout.block_values;
    std::vector<float> weights(static_cast<std::size_t>(layout.block_values));
    for (std::int64_t n = n0; n < n1; ++n) {
        const std::uint8_t* row = part.bytes.data() + n * static_cast<std::int64_t>(part.row_bytes);
        std::vector<double> sums(static_cast<std::size_t>(x.rows), 0.0);
        for (std::int64_t b = 0; b < blocks; ++b) {
            packed::unpack_row(part.kind, row + b * static_cast<std::int64_t>(layout.block_bytes), weights.data(),
                               static_cast<std::size_t>(layout.block_values));
            for (std::int64_t r = 0; r < x.rows; ++r) {
                const std::int8_t* q = x.values.data() + r * x.cols + b * layout.block_values;
                float block_sum = 0;
                for (int i = 0; i < layout.block_values; ++i) block_sum += weights[static_cast<std::size_t>(i)] * q[i];
                sums[static_cast<std::size_t>(r)] += block_sum * x.scales[static_cast<std::size_t>(r * blocks + b)];
            }
        }
        for (std::int64_t r = 0; r < x.rows; ++r) y[r * y_stride + (n - n0)] = static_cast<float>(sums[static_cast<std::size_t>(r)]);
    }
}

#ifdef PERSONA_HAVE_AVX2_QUANT

PERSONA_AVX2 inline float horizontal_sum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// 32 values of a block as bytes: 4-bit ones from 16 bytes (low nibbles first), 8-bit ones as stored.
template <int Bits>
PERSONA_AVX2 inline __m256i load_values(const std::uint8_t* p) {
    if constexpr (Bits == 4) {
        const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        const __m128i mask = _mm_set1_epi8(0x0F);
        return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(packed, 4), mask), _mm_and_si128(packed, mask));
    } else {
        return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    }
}

// Weight rows lie one after another, and decode reads each once: asking for the bytes 2 KB ahead
// (into L2) keeps the memory bus busy while this block computes, which the hardware prefetchers
// alone did not: Q4_K rows streamed at 8.8 GB/s without it, 17-18 with it (1 KB: 16; 4 KB: 17.6;
// into L1: 14.5-18), Q6_K at 19.7 and 21.7.
constexpr std::size_t kPrefetchBytes = 2048;

inline void prefetch_ahead(const std::uint8_t* block, std::size_t block_bytes) {
    const char* ahead = reinterpret_cast<const char*>(block) + kPrefetchBytes;
    for (std::size_t line = 0; line < block_bytes; line += 64) _mm_prefetch(ahead + line, _MM_HINT_T1);
}

// Chunk c (32 values) of a block's values as bytes, for the block's value width.
template <int Bits>
PERSONA_AVX2 inline __m256i load_chunk(const std::uint8_t* values, int c) {
    if constexpr (Bits == 8) return load_values<8>(values + 32 * c);
    const __m256i low = load_values<4>(values + 16 * c);
    if constexpr (Bits == 4) return low;
    // 6 bits: 64-bit lane k shifted right by 2k leaves, in byte i, the top bits of value 8k + i.
    std::int64_t high_bits;
    std::memcpy(&high_bits, values + 128 + 8 * c, 8);
    const __m256i high = _mm256_and_si256(_mm256_srlv_epi64(_mm256_set1_epi64x(high_bits), _mm256_setr_epi64x(0, 2, 4, 6)),
                                          _mm256_set1_epi8(3));
    return _mm256_or_si256(low, _mm256_slli_epi16(high, 4));
}

PERSONA_AVX2 inline __m256i load_activations(const std::int8_t* p) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

PERSONA_AVX2 inline float half_at(const std::uint8_t* p) {
    std::uint16_t bits;
    std::memcpy(&bits, p, 2);
    return _cvtsh_ss(bits);
}

// Small blocks (32 values, f16 d and dmin), for Rows activation rows starting at r0.
template <Kind K, int Rows>
PERSONA_AVX2 void small_block_rows(const QuantizedMatrix::Part& part, std::int64_t n0, std::int64_t n1, const Activations& x,
                                   std::int64_t r0, float* y, std::int64_t y_stride) {
    constexpr bool kSigned = K == Kind::SmallSigned8;
    constexpr packed::Layout kLayout = packed::layout_of(K);
    constexpr int kBits = kLayout.value_bits;
    constexpr std::size_t kBlockBytes = kLayout.block_bytes;
    const std::int64_t blocks = x.cols / 32;
    const __m256i ones = _mm256_set1_epi16(1);
    for (std::int64_t n = n0; n < n1; ++n) {
        const std::uint8_t* block = part.bytes.data() + n * static_cast<std::int64_t>(part.row_bytes);
        __m256 acc[Rows];
        float min_sum[Rows];
        for (int r = 0; r < Rows; ++r) acc[r] = _mm256_setzero_ps(), min_sum[r] = 0;
        for (std::int64_t b = 0; b < blocks; ++b, block += kBlockBytes) {
            prefetch_ahead(block, kBlockBytes);
            const float d = half_at(block);
            const float dmin = kSigned ? 0.0f : half_at(block + 2);
            const __m256i stored = load_values<kBits>(block + packed::kSmallHeaderBytes);
            // vpmaddubsw takes one unsigned operand: signed weights lend their sign to the activations.
            const __m256i values = kSigned ? _mm256_sign_epi8(stored, stored) : stored;
            for (int r = 0; r < Rows; ++r) {
                const std::int64_t row = r0 + r;
                __m256i xv = load_activations(x.values.data() + row * x.cols + b * 32);
                if constexpr (kSigned) xv = _mm256_sign_epi8(xv, stored);
                const __m256i sums = _mm256_madd_epi16(_mm256_maddubs_epi16(values, xv), ones);
                const float scale = x.scales[static_cast<std::size_t>(row * blocks + b)];
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_set1_ps(d * scale), acc[r]);
                if constexpr (!kSigned) min_sum[r] += dmin * x.block_sums[static_cast<std::size_t>(row * blocks + b)];
            }
        }
        for (int r = 0; r < Rows; ++r) y[r * y_stride + (n - n0)] = horizontal_sum(acc[r]) - min_sum[r];
    }
}

// Super blocks (256 values in 8 or 16 groups with int8 scales and mins).
template <Kind K, int Rows>
PERSONA_AVX2 void super_block_rows(const QuantizedMatrix::Part& part, std::int64_t n0, std::int64_t n1, const Activations& x,
                                   std::int64_t r0, float* y, std::int64_t y_stride) {
    constexpr packed::Layout kLayout = packed::layout_of(K);
    constexpr int kBits = kLayout.value_bits, kGroups = kLayout.groups;
    constexpr std::size_t kHeaderBytes = kLayout.header_bytes, kBlockBytes = kLayout.block_bytes;
    const std::int64_t blocks = x.cols / 256;
    // Chunk c of 32 values spans groups 2c and 2c + 1 (16 groups) or group c (8): these spread
    // the scales over its 16 int16 lanes; `pairs` widens 8 mins to one per 16 values.
    __m128i spread[8];
    for (int c = 0; c < 8; ++c) {
        alignas(16) char index[16];
        for (int i = 0; i < 16; ++i) index[i] = static_cast<char>(kGroups == 16 ? 2 * c + i / 8 : c);
        spread[c] = _mm_load_si128(reinterpret_cast<const __m128i*>(index));
    }
    const __m128i pairs = _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    for (std::int64_t n = n0; n < n1; ++n) {
        const std::uint8_t* block = part.bytes.data() + n * static_cast<std::int64_t>(part.row_bytes);
        __m256 acc[Rows], min_acc[Rows];
        for (int r = 0; r < Rows; ++r) acc[r] = _mm256_setzero_ps(), min_acc[r] = _mm256_setzero_ps();
        for (std::int64_t b = 0; b < blocks; ++b, block += kBlockBytes) {
            prefetch_ahead(block, kBlockBytes);
            const float d = half_at(block);
            const float dmin = kLayout.derived_mins ? packed::kDerivedDminPerD * d : half_at(block + 2);
            // The first kGroups bytes of each count.
            const __m128i scales = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + kLayout.scales_offset));
            const __m128i stored_mins = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + kLayout.mins_offset));
            const __m256i mins = _mm256_cvtepi8_epi16(kGroups == 16 ? stored_mins : _mm_shuffle_epi8(stored_mins, pairs));
            const std::uint8_t* values = block + kHeaderBytes;
            __m256i sums[Rows];
            for (int r = 0; r < Rows; ++r) sums[r] = _mm256_setzero_si256();
            for (int c = 0; c < 8; ++c) {
                const __m256i v = load_chunk<kBits>(values, c);
                const __m256i group_scales = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, spread[c]));
                for (int r = 0; r < Rows; ++r) {
                    const __m256i xv = load_activations(x.values.data() + (r0 + r) * x.cols + b * 256 + c * 32);
                    sums[r] = _mm256_add_epi32(sums[r], _mm256_madd_epi16(_mm256_maddubs_epi16(v, xv), group_scales));
                }
            }
            for (int r = 0; r < Rows; ++r) {
                const std::int64_t row = r0 + r;
                const float scale = x.scales[static_cast<std::size_t>(row * blocks + b)];
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums[r]), _mm256_set1_ps(d * scale), acc[r]);
                const __m256i groups = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.group_sums.data() + (row * blocks + b) * 16));
                min_acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(mins, groups)), _mm256_set1_ps(dmin * scale), min_acc[r]);
            }
        }
        for (int r = 0; r < Rows; ++r) y[r * y_stride + (n - n0)] = horizontal_sum(acc[r]) - horizontal_sum(min_acc[r]);
    }
}

PERSONA_AVX2 inline void store8(float* out, __m256 v) { _mm256_storeu_ps(out, v); }
// Rounds to nearest even as torch's .to(kBFloat16) does (weights are finite).
PERSONA_AVX2 inline void store8(at::BFloat16* out, __m256 v) {
    const __m256i bits = _mm256_castps_si256(v);
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
    const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(bits, _mm256_set1_epi32(0x7fff)), odd), 16);
    const __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(rounded), _mm256_extracti128_si256(rounded, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), packed);
}

// One block's values, as the kernel sees them, decoded eight at a time: value * scale - offset,
// with a scale and offset per group of 16 (the same pair for all of a small block).
template <Kind K, class Out>
PERSONA_AVX2 void simd_dequantize(const QuantizedMatrix::Part& part, std::int64_t n0, std::int64_t n1, std::int64_t cols, Out* out) {
    constexpr packed::Layout layout = packed::layout_of(K);
    const std::int64_t blocks = cols / layout.block_values;
    constexpr int kBits = layout.value_bits;
    alignas(32) std::uint8_t values[packed::kSuperValues];
    for (std::int64_t n = n0; n < n1; ++n) {
        const std::uint8_t* block = part.bytes.data() + n * static_cast<std::int64_t>(part.row_bytes);
        Out* row = out + (n - n0) * cols;
        for (std::int64_t b = 0; b < blocks; ++b, block += layout.block_bytes) {
            for (int c = 0; c < layout.block_values / 32; ++c)
                _mm256_store_si256(reinterpret_cast<__m256i*>(values + 32 * c), load_chunk<kBits>(block + layout.header_bytes, c));
            float scale[packed::kMostGroups], offset[packed::kMostGroups];
            const float d = half_at(block);
            const float dmin = layout.derived_mins ? packed::kDerivedDminPerD * d : half_at(block + 2);
            if (layout.block_values == packed::kSmallValues) {
                scale[0] = d;
                offset[0] = dmin;
            } else {
                const auto* scales = reinterpret_cast<const std::int8_t*>(block + layout.scales_offset);
                const auto* mins = reinterpret_cast<const std::int8_t*>(block + layout.mins_offset);
                for (int g = 0; g < layout.groups; ++g) {
                    scale[g] = d * static_cast<float>(scales[g]);
                    offset[g] = dmin * static_cast<float>(mins[g]);
                }
            }
            const int group_values = layout.block_values / layout.groups;
            for (int i = 0; i < layout.block_values; i += 8) {
                const __m128i eight = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(values + i));
                const __m256i wide = K == Kind::SmallSigned8 ? _mm256_cvtepi8_epi32(eight) : _mm256_cvtepu8_epi32(eight);
                const int g = i / group_values;
                store8(row + b * layout.block_values + i,
                       _mm256_fmsub_ps(_mm256_cvtepi32_ps(wide), _mm256_set1_ps(scale[g]), _mm256_set1_ps(offset[g])));
            }
        }
    }
}

template <class Out>
void simd_dequantize_rows(const QuantizedMatrix::Part& part, std::int64_t n0, std::int64_t n1, std::int64_t cols, Out* out) {
    switch (part.kind) {
        case Kind::Small4: return simd_dequantize<Kind::Small4>(part, n0, n1, cols, out);
        case Kind::Small8: return simd_dequantize<Kind::Small8>(part, n0, n1, cols, out);
        case Kind::SmallSigned8: return simd_dequantize<Kind::SmallSigned8>(part, n0, n1, cols, out);
        case Kind::Super4: return simd_dequantize<Kind::Super4>(part, n0, n1, cols, out);
        case Kind::Super5: return simd_dequantize<Kind::Super5>(part, n0, n1, cols, out);
        case Kind::Super6: return simd_dequantize<Kind::Super6>(part, n0, n1, cols, out);
    }
}

template <int Rows>
void simd_rows(const QuantizedMatrix::Part& part, std::int64_t n0, std::int64_t n1, const Activations& x, std::int64_t r0,
               float* y, std::int64_t y_stride) {
    switch (part.kind) {
        case Kind::Small4: return small_block_rows<Kind::Small4, Rows>(part, n0, n1, x, r0, y, y_stride);
        case Kind::Small8: return small_block_rows<Kind::Small8, Rows>(part, n0, n1, x, r0, y, y_stride);
        case Kind::SmallSigned8: return small_block_rows<Kind::SmallSigned8, Rows>(part, n0, n1, x, r0, y, y_stride);
        case Kind::Super4: return super_block_rows<Kind::Super4, Rows>(part, n0, n1, x, r0, y, y_stride);
        case Kind::Super5: return super_block_rows<Kind::Super5, Rows>(part, n0, n1, x, r0, y, y_stride);
        case Kind::Super6: return super_block_rows<Kind::Super6, Rows>(part, n0, n1, x, r0, y, y_stride);
    }
}

#endif

}  // namespace

void dequantize_rows(const QuantizedMatrix::Part& part, std::int64_t n0, std::int64_t n1, std::int64_t cols, float* out) {
#ifdef PERSONA_HAVE_AVX2_QUANT
    if (simd_available()) return simd_dequantize_rows(part, n0, n1, cols, out);
#endif
    for (std::int64_t n = n0; n < n1; ++n)
        packed::unpack_row(part.kind, part.bytes.data() + n * static_cast<std::int64_t>(part.row_bytes), out + (n - n0) * cols,
                           static_cast<std::size_t>(cols));
}

void dequantize_rows(const QuantizedMatrix::Part& part, std::int64_t n0, std::int64_t n1, std::int64_t cols, at::BFloat16* out) {
#ifdef PERSONA_HAVE_AVX2_QUANT
    if (simd_available()) return simd_dequantize_rows(part, n0, n1, cols, out);
#endif
    std::vector<float> row(static_cast<std::size_t>(cols));
    for (std::int64_t n = n0; n < n1; ++n) {
        dequantize_rows(part, n, n + 1, cols, row.data());
        for (std::int64_t i = 0; i < cols; ++i) out[(n - n0) * cols + i] = at::BFloat16(row[static_cast<std::size_t>(i)]);
    }
}

void multiply_rows(const QuantizedMatrix::Part& part, std::int64_t n0, std::int64_t n1, const Activations& x, float* y,
                   std::int64_t y_stride) {
#ifdef PERSONA_HAVE_AVX2_QUANT
    if (simd_available()) {
        // Up to four activation rows share each weight block's unpacking; a tile of 16 weight
        // rows keeps those rows' blocks in L1 while every group of activation rows passes.
        constexpr std::int64_t kTile = 16;
        for (std::int64_t t0 = n0; t0 < n1; t0 += kTile) {
            const std::int64_t t1 = std::min(n1, t0 + kTile);
            float* yt = y + (t0 - n0);
            for (std::int64_t r = 0; r < x.rows; r += 4) {
                float* yr = yt + r * y_stride;
                switch (std::min<std::int64_t>(4, x.rows - r)) {
                    case 1: simd_rows<1>(part, t0, t1, x, r, yr, y_stride); break;
                    case 2: simd_rows<2>(part, t0, t1, x, r, yr, y_stride); break;
                    case 3: simd_rows<3>(part, t0, t1, x, r, yr, y_stride); break;
                    default: simd_rows<4>(part, t0, t1, x, r, yr, y_stride); break;
                }
            }
        }
        return;
    }
#endif
    portable_rows(part, n0, n1, x, y, y_stride);
}

}  // namespace persona::model::quant
