#include "model/quantized_matrix.h"

#include "formats/ggml_types.h"
#include "model/cpu_kernels.h"
#include "persona/errors.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>

namespace persona::model {

namespace {

// From this many activation rows on (a prompt, not a decode step), dequantizing the matrix to
// bf16 once and letting oneDNN multiply beats the int8 kernel, which reads the activations again
// for every weight row: prefill of 16, 24 and 32 tokens ran at 45, 47, 42 tok/s through the
// kernel against 29, 41, 55 dense (1.5B Q4_K_M; SmolLM2 Q4_1: 290, 312, 370 against 245, 359,
// 454). PERSONA_QUANTIZED_DENSE_ROWS moves the threshold (0: never dense), so tests can run a
// whole prompt through the int8 kernel.
std::int64_t dense_from_rows() {
    constexpr std::int64_t kDenseFromRows = 28;
    const char* setting = std::getenv("PERSONA_QUANTIZED_DENSE_ROWS");
    if (!setting || !*setting) return kDenseFromRows;
    const long long rows = std::atoll(setting);
    return rows <= 0 ? std::numeric_limits<std::int64_t>::max() : rows;
}

// The dense product's band of weight rows.
constexpr std::int64_t kDenseBandBytes = std::int64_t{32} << 20;

// Activations for blocks of `block_values`; with two passes, each row's rounding error follows
// the rows as a row of its own (rows [count, 2 count)), so the kernel's rows sum to the product.
quant::Activations rounded_activations(const torch::Tensor& flat, int block_values, ActivationRounding rounding) {
    const std::int64_t count = flat.size(0), cols = flat.size(1);
    const float* x = flat.data_ptr<float>();
    quant::Activations rows = quant::quantize_activations(x, count, cols, block_values);
    if (rounding == ActivationRounding::Int8) return rows;
    std::vector<float> errors(static_cast<std::size_t>(count * cols));
    for (std::size_t i = 0; i < errors.size(); ++i)
        errors[i] = x[i] - rows.scales[i / static_cast<std::size_t>(block_values)] * rows.values[i];
    const quant::Activations second = quant::quantize_activations(errors.data(), count, cols, block_values);
    const auto append = [](auto& to, const auto& from) { to.insert(to.end(), from.begin(), from.end()); };
    append(rows.values, second.values);
    append(rows.scales, second.scales);
    append(rows.block_sums, second.block_sums);
    append(rows.group_sums, second.group_sums);
    rows.rows += count;
    return rows;
}

std::size_t packed_row_bytes(packed::Kind kind, std::int64_t cols) {
    const packed::Layout layout = packed::layout_of(kind);
    return static_cast<std::size_t>(cols / layout.block_values) * layout.block_bytes;
}

}  // namespace

QuantizedMatrix QuantizedMatrix::from_gguf(std::uint32_t ggml_type, const std::uint8_t* data, std::int64_t rows, std::int64_t cols) {
    const auto kind = packed::packed_kind(ggml_type);
    if (!kind) throw Error("a tensor of this type is not kept quantized");
    const packed::Layout layout = packed::layout_of(*kind);
    if (cols % layout.block_values != 0) throw Error("rows of " + std::to_string(cols) + " values do not fill whole blocks");
    const std::size_t blocks = static_cast<std::size_t>(cols / layout.block_values);
    const std::size_t source_block_bytes = ggml_type_traits(ggml_type)->block_bytes;
    QuantizedMatrix m;
    m.rows_ = rows;
    m.cols_ = cols;
    Part part{*kind, rows, packed_row_bytes(*kind, cols), {}};
    part.bytes.resize(static_cast<std::size_t>(rows) * part.row_bytes);
    at::parallel_for(0, rows, 64, [&](std::int64_t r0, std::int64_t r1) {
        for (std::int64_t r = r0; r < r1; ++r)
            packed::repack_row(ggml_type, data + static_cast<std::size_t>(r) * blocks * source_block_bytes,
                               part.bytes.data() + static_cast<std::size_t>(r) * part.row_bytes, static_cast<std::size_t>(cols));
    });
    m.parts_.push_back(std::move(part));
    return m;
}

QuantizedMatrix QuantizedMatrix::stacked(std::vector<QuantizedMatrix> matrices) {
    QuantizedMatrix m;
    m.cols_ = matrices.empty() ? 0 : matrices.front().cols_;
    for (QuantizedMatrix& piece : matrices) {
        if (piece.cols_ != m.cols_) throw Error("stacked matrices differ in their column count");
        m.rows_ += piece.rows_;
        for (Part& part : piece.parts_) {
            // Neighbouring rows of one kind join, so a fused matrix of one type stays one part.
            if (!m.parts_.empty() && m.parts_.back().kind == part.kind) {
                Part& last = m.parts_.back();
                last.bytes.insert(last.bytes.end(), part.bytes.begin(), part.bytes.end());
                last.rows += part.rows;
            } else {
                m.parts_.push_back(std::move(part));
            }
        }
    }
    for (Part& part : m.parts_) part.bytes.shrink_to_fit();  // insertion left up to half unused
    return m;
}

QuantizedMatrix QuantizedMatrix::reordered(const std::vector<std::int64_t>& order) const {
    if (parts_.size() != 1 || static_cast<std::int64_t>(order.size()) != rows_) throw Error("cannot reorder these rows");
    const Part& from = parts_.front();
    QuantizedMatrix m;
    m.rows_ = rows_;
    m.cols_ = cols_;
    Part to{from.kind, from.rows, from.row_bytes, std::vector<std::uint8_t>(from.bytes.size())};
    for (std::size_t i = 0; i < order.size(); ++i)
        std::memcpy(to.bytes.data() + i * to.row_bytes, from.bytes.data() + static_cast<std::size_t>(order[i]) * from.row_bytes,
                    from.row_bytes);
    m.parts_.push_back(std::move(to));
    return m;
}

std::uint64_t QuantizedMatrix::bytes() const {
    std::uint64_t total = 0;
    for (const Part& part : parts_) total += part.bytes.size();
    return total;
}

void QuantizedMatrix::dequantize_into(std::int64_t first, std::int64_t count, torch::Tensor& out) const {
    std::int64_t part_first = 0;
    for (const Part& part : parts_) {
        const std::int64_t begin = std::max(first, part_first), end = std::min(first + count, part_first + part.rows);
        if (begin < end)
            at::parallel_for(begin, end, 16, [&](std::int64_t r0, std::int64_t r1) {
                const std::int64_t at = (r0 - first) * cols_;
                if (out.scalar_type() == torch::kBFloat16)
                    quant::dequantize_rows(part, r0 - part_first, r1 - part_first, cols_, out.data_ptr<at::BFloat16>() + at);
                else
                    quant::dequantize_rows(part, r0 - part_first, r1 - part_first, cols_, out.data_ptr<float>() + at);
            });
        part_first += part.rows;
    }
}

torch::Tensor QuantizedMatrix::dequantized(torch::ScalarType dtype) const {
    torch::Tensor out = torch::empty({rows_, cols_}, dtype == torch::kBFloat16 ? torch::kBFloat16 : torch::kFloat32);
    dequantize_into(0, rows_, out);
    return out.scalar_type() == dtype ? out : out.to(dtype);
}

torch::Tensor QuantizedMatrix::lookup(const torch::Tensor& ids) const {
    const torch::Tensor flat = ids.reshape({-1}).to(torch::kInt64).contiguous();
    torch::Tensor out = torch::empty({flat.size(0), cols_}, torch::kFloat32);
    const std::int64_t* id = flat.data_ptr<std::int64_t>();
    for (std::int64_t i = 0; i < flat.size(0); ++i) {
        if (id[i] < 0 || id[i] >= rows_)
            throw Error("token id " + std::to_string(id[i]) + " is outside the embedding's " + std::to_string(rows_) + " rows");
        torch::Tensor row = out[i];
        dequantize_into(id[i], 1, row);
    }
    std::vector<std::int64_t> shape = ids.sizes().vec();
    shape.push_back(cols_);
    return out.view(shape);
}

torch::Tensor QuantizedMatrix::multiply(const torch::Tensor& x) const {
    std::vector<std::int64_t> shape = x.sizes().vec();
    shape.back() = rows_;
    const torch::Tensor flat = x.reshape({-1, cols_}).to(torch::kFloat32).contiguous();
    const std::int64_t count = flat.size(0);
    if (count >= dense_from_rows()) {
        // A band of rows at a time, so a 150k-row output matrix never exists dense in memory.
        const bool bf16 = cpu::available() && rounding_ == ActivationRounding::Int8;
        const torch::ScalarType dtype = bf16 ? torch::kBFloat16 : torch::kFloat32;
        const torch::Tensor input = flat.to(dtype);
        const std::int64_t band = std::max<std::int64_t>(1, kDenseBandBytes / (cols_ * input.element_size()));
        torch::Tensor weights = torch::empty({std::min(band, rows_), cols_}, dtype);
        torch::Tensor y = torch::empty({count, rows_}, torch::kFloat32);
        for (std::int64_t first = 0; first < rows_; first += band) {
            const std::int64_t rows = std::min(band, rows_ - first);
            torch::Tensor slice = weights.narrow(0, 0, rows);
            dequantize_into(first, rows, slice);
            y.narrow(1, first, rows).copy_(torch::linear(input, slice));
        }
        return y.view(shape);
    }
    const bool two_passes = rounding_ == ActivationRounding::TwoPassInt8;
    torch::Tensor y = torch::empty({two_passes ? 2 * count : count, rows_}, torch::kFloat32);
    float* out = y.data_ptr<float>();
    std::optional<quant::Activations> small, super;
    std::int64_t row0 = 0;
    for (const Part& part : parts_) {
        const int block_values = packed::layout_of(part.kind).block_values;
        std::optional<quant::Activations>& activations = block_values == packed::kSmallValues ? small : super;
        if (!activations) activations = rounded_activations(flat, block_values, rounding_);
        // Tasks of at least 32 weight rows: a thread hand-off costs about as much as 32 rows of
        // a 1536-wide matrix.
        at::parallel_for(0, part.rows, 32, [&](std::int64_t n0, std::int64_t n1) {
            quant::multiply_rows(part, n0, n1, *activations, out + row0 + n0, rows_);
        });
        row0 += part.rows;
    }
    if (two_passes) y = y.narrow(0, 0, count) + y.narrow(0, count, count);
    return y.view(shape);
}

}  // namespace persona::model
