#pragma once
// Decoding GGUF tensor data (plain floats and ggml's block-quantized formats) to float32.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace persona {

class GgufFile;
struct GgufTensorInfo;

// IEEE binary16 bits to float, exact for every input (subnormals, infinities, NaN payloads).
float half_to_float(std::uint16_t half_bits);
// bfloat16 bits to float: the upper half of a float's bits.
float bfloat16_to_float(std::uint16_t bfloat16_bits);

// Q4_K and Q5_K's eight 6-bit scales and mins, unpacked from their 12 bytes.
void unpack_k_scales(const std::uint8_t* packed, std::uint8_t scales[8], std::uint8_t mins[8]);

// True for the GgmlType numbers dequantize_row can decode: F32, F16, BF16, Q4_0, Q4_1, Q5_0,
// Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.
bool can_dequantize(std::uint32_t ggml_type);

// Decodes element_count values from src (the type's packed blocks, little-endian as in GGUF) to
// dst. element_count must be a whole number of the type's blocks. Throws persona::Error naming
// the type when it cannot be decoded or the count does not fit its blocks.
void dequantize_row(std::uint32_t ggml_type, const void* src, float* dst, std::size_t element_count);

// Decodes a whole tensor of a mapped file, splitting the blocks across threads because model
// loading decodes hundreds of MB. thread_count 0 means std::thread::hardware_concurrency().
// The pointer overload writes tensor.element_count() floats to destination.
// Throws persona::Error naming the tensor when its type cannot be decoded or its byte size does
// not match its shape and type.
std::vector<float> dequantize_tensor(const GgufFile& file, const GgufTensorInfo& tensor,
                                     unsigned thread_count = 0);
void dequantize_tensor(const GgufFile& file, const GgufTensorInfo& tensor, float* destination,
                       unsigned thread_count = 0);

}  // namespace persona
