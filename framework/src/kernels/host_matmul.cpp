// HostBackend::matmul: c[..., M, N] = alpha * a[..., M, K] @ b[..., K, N] (+ bias) (+ c).
//
// The reference GEMM, written for clarity first and speed second (optimised backends override
// it). Operands are packed to f32: a to row-major [M, K] (skipped when a already is f32 with
// unit column stride), b to column panels [K, kNR] padded with zeros, so the inner kernel reads
// both with unit stride whatever the views' strides or dtypes. The micro-kernel keeps a
// kMR x kNR tile of c in vector registers (GCC/Clang vector extensions) across the K loop.
// Threads take (batch, row block, column block) tiles; a tile's b panels stay in cache while
// its row blocks stream past them.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "host_amx.h"
#include "host_kernels.h"
#include "lab/host_backend.h"

namespace lab {

using namespace host;

namespace {

constexpr int kMR = 6;              // rows of c per micro-kernel call
constexpr int kNR = 16;             // columns per b panel: two 8-float vectors
constexpr int64_t kRowBlock = 60;   // rows per thread tile (a multiple of kMR)
constexpr int64_t kPanelsPerBlock = 8;

typedef float Vec8 __attribute__((vector_size(32)));

inline Vec8 load8(const float* p) {
    Vec8 v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

// tile[MR][kNR] = a[MR rows, K] @ panel[K, kNR]
template <int MR>
void micro_kernel(int64_t K, const float* a, int64_t lda, const float* panel, float* tile) {
    Vec8 acc[MR][2] = {};
    for (int64_t k = 0; k < K; ++k) {
        const Vec8 b0 = load8(panel + k * kNR), b1 = load8(panel + k * kNR + 8);
        for (int r = 0; r < MR; ++r) {
            const float av = a[r * lda + k];
            acc[r][0] += av * b0;
            acc[r][1] += av * b1;
        }
    }
    for (int r = 0; r < MR; ++r) {
        std::memcpy(tile + r * kNR, &acc[r][0], sizeof(Vec8));
        std::memcpy(tile + r * kNR + 8, &acc[r][1], sizeof(Vec8));
    }
}

void run_micro_kernel(int rows, int64_t K, const float* a, int64_t lda, const float* panel, float* tile) {
    switch (rows) {
        case 1: micro_kernel<1>(K, a, lda, panel, tile); break;
        case 2: micro_kernel<2>(K, a, lda, panel, tile); break;
        case 3: micro_kernel<3>(K, a, lda, panel, tile); break;
        case 4: micro_kernel<4>(K, a, lda, panel, tile); break;
        case 5: micro_kernel<5>(K, a, lda, panel, tile); break;
        default: micro_kernel<kMR>(K, a, lda, panel, tile); break;
    }
}

inline float load_f32_or_bf16(const void* base, bool bf16, int64_t offset) {
    return bf16 ? bf16_to_f32(static_cast<const uint16_t*>(base)[offset]) : static_cast<const float*>(base)[offset];
}

// Element offset of batch `index` (row-major over c's batch dims) in a tensor whose batch dims
// are equal to c's or 1 (broadcast).
int64_t batch_offset(const Tensor& t, const Shape& batch_dims, int64_t index) {
    int64_t offset = 0;
    for (int64_t d = static_cast<int64_t>(batch_dims.size()) - 1; d >= 0; --d) {
        const int64_t i = index % batch_dims[d];
        index /= batch_dims[d];
        if (t.size(d) != 1) offset += i * t.strides()[d];
    }
    return offset;
}


}  // namespace

void HostBackend::matmul(const Tensor& c, const Tensor& a, const Tensor& b, const Tensor* bias, float alpha,
                         bool accumulate) {
    Tensor a16, b16;
    if (round_matmul_operands(a, b, &a16, &b16)) multiply(c, a16, b16, bias, alpha, accumulate);
    else multiply(c, a, b, bias, alpha, accumulate);
}

void HostBackend::multiply(const Tensor& c, const Tensor& a, const Tensor& b, const Tensor* bias, float alpha,
                           bool accumulate) {
    require_matmul(c, a, b, bias);
    const int64_t rank = c.dim();
    const int64_t M = c.size(-2), N = c.size(-1), K = a.size(-1);
    Shape batch_dims(c.shape().begin(), c.shape().end() - 2);
    std::vector<float> bias_values;
    if (bias != nullptr) {
        const bool bf16 = bias->dtype() == DType::bf16;
        const int64_t stride = bias->dim() > 0 ? bias->strides().back() : 0;
        bias_values.resize(static_cast<size_t>(N));
        for (int64_t j = 0; j < N; ++j) bias_values[j] = load_f32_or_bf16(bias->raw(), bf16, j * stride);
    }
    const int64_t batches = shape_numel(batch_dims);
    if (M == 0 || N == 0 || batches == 0) return;

    // Pack a (unless it already is f32 row-major with unit column stride) and b, once per
    // distinct batch of each: a broadcast operand is packed a single time.
    const int64_t a_batches = shape_numel(Shape(a.shape().begin(), a.shape().end() - 2));
    const int64_t b_batches = shape_numel(Shape(b.shape().begin(), b.shape().end() - 2));
    const Shape a_batch_shape(a.shape().begin(), a.shape().end() - 2);
    const Shape b_batch_shape(b.shape().begin(), b.shape().end() - 2);
    const bool a_bf16 = a.dtype() == DType::bf16, b_bf16 = b.dtype() == DType::bf16;
    const int64_t a_rs = a.strides()[rank - 2], a_cs = a.strides()[rank - 1];
    const int64_t b_rs = b.strides()[rank - 2], b_cs = b.strides()[rank - 1];
    const bool a_direct = !a_bf16 && (a_cs == 1 || K == 1);
    std::vector<float> a_packed(a_direct ? 0 : static_cast<size_t>(a_batches * M * K));
    const int64_t panels = (N + kNR - 1) / kNR;
    const int64_t panel_size = K * kNR;
    std::vector<float> b_packed(static_cast<size_t>(b_batches * panels * panel_size));
    if (!a_direct) {
#pragma omp parallel for collapse(2) schedule(static) if (a_batches * M * K >= kParallelElems)
        for (int64_t ab = 0; ab < a_batches; ++ab) {
            for (int64_t i = 0; i < M; ++i) {
                const int64_t base = batch_offset(a, a_batch_shape, ab) + i * a_rs;
                float* dst = a_packed.data() + (ab * M + i) * K;
                for (int64_t k = 0; k < K; ++k) dst[k] = load_f32_or_bf16(a.raw(), a_bf16, base + k * a_cs);
            }
        }
    }
#pragma omp parallel for collapse(2) schedule(static) if (b_batches * K * N >= kParallelElems)
    for (int64_t bb = 0; bb < b_batches; ++bb) {
        for (int64_t p = 0; p < panels; ++p) {
            const int64_t base = batch_offset(b, b_batch_shape, bb);
            float* dst = b_packed.data() + (bb * panels + p) * panel_size;
            const int64_t width = std::min<int64_t>(kNR, N - p * kNR);
            for (int64_t k = 0; k < K; ++k) {
                for (int64_t j = 0; j < kNR; ++j) {
                    const int64_t at = base + k * b_rs + (p * kNR + j) * b_cs;
                    dst[k * kNR + j] = j < width ? load_f32_or_bf16(b.raw(), b_bf16, at) : 0.0f;
                }
            }
        }
    }

    // Map c's batch index to a's and b's batch index (size-1 batch dims broadcast).
    auto operand_batch = [&](const Shape& operand_shape, int64_t index) {
        int64_t result = 0, scale = 1;
        for (int64_t d = static_cast<int64_t>(batch_dims.size()) - 1; d >= 0; --d) {
            const int64_t i = index % batch_dims[d];
            index /= batch_dims[d];
            if (operand_shape[d] != 1) result += i * scale;
            scale *= operand_shape[d];
        }
        return result;
    };

    const bool c_bf16 = c.dtype() == DType::bf16;
    float* c_f32 = c_bf16 ? nullptr : c.data<float>();
    uint16_t* c_b16 = c_bf16 ? c.data<uint16_t>() : nullptr;
    const float* bias_ptr = bias_values.empty() ? nullptr : bias_values.data();
    const int64_t row_blocks = (M + kRowBlock - 1) / kRowBlock;
    const int64_t col_blocks = (panels + kPanelsPerBlock - 1) / kPanelsPerBlock;
#pragma omp parallel for collapse(3) schedule(static) if (batches * M * N * K >= kParallelElems)
    for (int64_t batch = 0; batch < batches; ++batch) {
        for (int64_t cb = 0; cb < col_blocks; ++cb) {
            for (int64_t rb = 0; rb < row_blocks; ++rb) {
                const int64_t ab = operand_batch(a_batch_shape, batch), bb = operand_batch(b_batch_shape, batch);
                const float* a_rows;
                int64_t lda;
                if (a_direct) {
                    a_rows = a.data<float>() + batch_offset(a, a_batch_shape, ab);
                    lda = a_rs;
                } else {
                    a_rows = a_packed.data() + ab * M * K;
                    lda = K;
                }
                const int64_t p_end = std::min(panels, (cb + 1) * kPanelsPerBlock);
                const int64_t i_end = std::min(M, (rb + 1) * kRowBlock);
                float tile[kMR * kNR];
                for (int64_t p = cb * kPanelsPerBlock; p < p_end; ++p) {
                    const float* panel = b_packed.data() + (bb * panels + p) * panel_size;
                    const int64_t j0 = p * kNR, width = std::min<int64_t>(kNR, N - j0);
                    for (int64_t i0 = rb * kRowBlock; i0 < i_end; i0 += kMR) {
                        const int rows = static_cast<int>(std::min<int64_t>(kMR, i_end - i0));
                        run_micro_kernel(rows, K, a_rows + i0 * lda, lda, panel, tile);
                        for (int r = 0; r < rows; ++r) {
                            const int64_t c_row = (batch * M + i0 + r) * N + j0;
                            for (int64_t j = 0; j < width; ++j) {
                                float value = alpha * tile[r * kNR + j];
                                if (bias_ptr) value += bias_ptr[j0 + j];
                                if (c_bf16) {
                                    if (accumulate) value += bf16_to_f32(c_b16[c_row + j]);
                                    c_b16[c_row + j] = f32_to_bf16(value);
                                } else {
                                    if (accumulate) value += c_f32[c_row + j];
                                    c_f32[c_row + j] = value;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

bool HostBackend::multiply_on_amx(const Tensor& c, const Tensor& a, const Tensor& b, const Tensor* bias, float alpha,
                                  bool accumulate, const Tensor* addend) {
    return attention_kernel::amx_matmul(*this, c, a, b, bias, alpha, accumulate, addend);
}

}  // namespace lab
