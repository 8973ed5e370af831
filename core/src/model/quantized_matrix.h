#pragma once
// Weight matrices kept in GGUF's quantized blocks on the CPU (repacked once at load,
// formats/packed_blocks.h) instead of being widened to bf16: a Q4_K_M model then takes about
// its file's size in memory, and decode, which streams every weight once per token, reads a
// third of the bytes. Products quantize the activations to int8 per block, as llama.cpp does,
// and multiply them with the blocks' integers (AVX2 where the CPU has it, plain C++ elsewhere);
// many rows at once (a long prompt) dequantize the matrix to bf16 and let oneDNN multiply.
// With two rounding passes (dtype "quantized-precise") the rows' rounding error is rounded and
// multiplied again, and long prompts widen to float32: results within ~1e-4 of float32's.
#include "formats/packed_blocks.h"

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace persona::model {

// How a product rounds its activations: once to int8 per block, as llama.cpp does (about 1% off
// the float product), or twice, the second pass over the first's rounding error (about 15 bits),
// which costs a product of twice the rows.
enum class ActivationRounding { Int8, TwoPassInt8 };

class QuantizedMatrix {
public:
    // Consecutive rows stored in one packed kind. Q4_K_M files mix Q4_K and Q6_K among the
    // q, k and v matrices the model fuses, so a fused matrix has a part per source tensor.
    struct Part {
        packed::Kind kind;
        std::int64_t rows = 0;
        std::size_t row_bytes = 0;
        std::vector<std::uint8_t> bytes;  // rows * row_bytes
    };

    // `rows` rows of `cols` values of GGUF type `ggml_type` (packed::packed_kind must know it).
    static QuantizedMatrix from_gguf(std::uint32_t ggml_type, const std::uint8_t* data, std::int64_t rows, std::int64_t cols);
    // The rows of `matrices`, one after another (all with the same column count).
    static QuantizedMatrix stacked(std::vector<QuantizedMatrix> matrices);
    // Row i of the result is row order[i] of this single-part matrix.
    QuantizedMatrix reordered(const std::vector<std::int64_t>& order) const;

    std::int64_t rows() const { return rows_; }
    std::int64_t cols() const { return cols_; }
    std::uint64_t bytes() const;
    const std::vector<Part>& parts() const { return parts_; }
    void set_activation_rounding(ActivationRounding rounding) { rounding_ = rounding; }

    // The whole matrix [rows, cols] in `dtype`.
    torch::Tensor dequantized(torch::ScalarType dtype) const;
    // Rows `ids` (int64, any shape) as float32 [..., cols]: an embedding look-up.
    torch::Tensor lookup(const torch::Tensor& ids) const;
    // x [..., cols] (float32 or bf16) times this matrix transposed, as float32 [..., rows].
    torch::Tensor multiply(const torch::Tensor& x) const;

private:
    // Rows [first, first + count) decoded into `out` ([count, cols], float32 or bf16, contiguous).
    void dequantize_into(std::int64_t first, std::int64_t count, torch::Tensor& out) const;

    std::int64_t rows_ = 0, cols_ = 0;
    std::vector<Part> parts_;
    ActivationRounding rounding_ = ActivationRounding::Int8;
};

namespace quant {

// Activation rows quantized for products with packed blocks of `block_values` values: int8
// values, a float scale per block (x ~ scale * q) and the sums of its values, which a weight
// block's min multiplies.
struct Activations {
    int block_values = 0;
    std::int64_t rows = 0, cols = 0;
    std::vector<std::int8_t> values;      // rows * cols
    std::vector<float> scales;            // rows * cols / block_values
    std::vector<float> block_sums;        // per block: scale * the sum of its values
    std::vector<std::int16_t> group_sums; // rows * cols / 16
};

Activations quantize_activations(const float* x, std::int64_t rows, std::int64_t cols, int block_values);

// y[r * y_stride + n - n0] = row r of `x` . weight row n, for weight rows [n0, n1) of a part
// whose rows start at `weights`.
void multiply_rows(const QuantizedMatrix::Part& part, std::int64_t n0, std::int64_t n1, const Activations& x,
                   float* y, std::int64_t y_stride);

// Weight rows [n0, n1) of a part decoded to `cols` values each at `out` (float32, or bf16
// rounded to nearest even): the dense products of long prompts, and embedding look-ups.
void dequantize_rows(const QuantizedMatrix::Part& part, std::int64_t n0, std::int64_t n1, std::int64_t cols, float* out);
void dequantize_rows(const QuantizedMatrix::Part& part, std::int64_t n0, std::int64_t n1, std::int64_t cols, at::BFloat16* out);

// True when multiply_rows runs the AVX2 kernel.
bool simd_available();

}  // namespace quant

}  // namespace persona::model
