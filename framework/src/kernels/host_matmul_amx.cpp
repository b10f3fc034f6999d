// attention_kernel::amx_matmul (host_amx.h): a training step's bf16 linear layers on AMX.
//
// oneDNN 2.6.3's AMX matmul runs the long, thin products of a transformer's linears at 1,100-1,600
// GFLOP/s on two cores of a Xeon with AMX (lab_bench_matmul --shape), where PyTorch's newer oneDNN
// reaches 2,300-2,900 on those with K >= 1152. This is the plain form of what those do: b packed
// once per call into the pairs layout the tile product reads ([K / 2, N, 2], 0.6-1.2 MB for these
// layers), a's tiles loaded straight from its rows, and one task per 32 rows of c running
// amx_gemm's 2 x 2 blocks of 16 x 16 tiles over every column block, with all of b in L2: so only
// for b up to 1.25 MB (larger ones stay on oneDNN).
#include "host_amx.h"

#include <cstring>

#include "lab/tensor.h"

namespace lab::attention_kernel {

#if LAB_HAVE_AMX_ATTENTION

namespace {

// The largest packed b taken: the shakespeare_char MLP's 1536 x 384 weight is 1.2 MB.
constexpr int64_t kMaxPackedBytes = 1280 * 1024;

// b [K, N] (any strides) in the pairs layout: out[(x * N + n) * 2 + i] = b[2x + i][n].
void pack_pairs(uint16_t* out, const Tensor& b) {
    const int64_t K = b.size(0), N = b.size(1), sk = b.strides()[0], sn = b.strides()[1];
    const uint16_t* src = static_cast<const uint16_t*>(b.raw());
    if (sk == 1) {
        // A transposed weight (x @ W^T): each pair is two neighbours in a row of W, one 32-bit
        // word, so packing transposes words.
#pragma omp parallel for schedule(static)
        for (int64_t x = 0; x < K / 2; ++x)
            for (int64_t n = 0; n < N; ++n) std::memcpy(out + (x * N + n) * 2, src + n * sn + 2 * x, 4);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t x = 0; x < K / 2; ++x) {
        const uint16_t* even = src + 2 * x * sk;
        const uint16_t* odd = even + sk;
        uint16_t* row = out + x * N * 2;
        for (int64_t n = 0; n < N; ++n) {
            row[2 * n] = even[n * sn];
            row[2 * n + 1] = odd[n * sn];
        }
    }
}

}  // namespace

bool amx_matmul(Backend& backend, const Tensor& c, const Tensor& a, const Tensor& b, const Tensor* bias, float alpha,
                bool accumulate) {
    if (a.dim() != 2 || b.dim() != 2 || c.dim() != 2 || alpha != 1.0f) return false;
    if (a.dtype() != DType::bf16 || b.dtype() != DType::bf16 || c.dtype() != DType::f32 || !c.is_contiguous())
        return false;
    const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
    if (b.size(0) != K || c.size(0) != M || c.size(1) != N || M % 32 || N % 32 || K % 32 || a.strides()[1] != 1)
        return false;
    // Below about 16M multiply-adds packing b and starting the tiles cost more than oneDNN saves.
    if (static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K) < 16e6) return false;
    // Every 32 rows of c read all of packed b, which must stay in L2: with a larger b the kernel
    // fell behind oneDNN (GPT-2's 768 x 2304 weight, 3.5 MB: 1,190 against 1,395 GFLOP/s; square
    // 1024: 1,540 against 1,825), where blocking over K and N would be needed.
    if (K * N * 2 > kMaxPackedBytes) return false;
    if (bias && (bias->dtype() != DType::f32 || !bias->is_contiguous() || bias->numel() != N)) return false;
    if (!amx_attention_ready()) return false;

    const Tensor packed = Tensor::empty(backend, {K * N}, DType::bf16);
    uint16_t* b_pairs = static_cast<uint16_t*>(packed.raw());
    pack_pairs(b_pairs, b);
    const uint16_t* a_rows = static_cast<const uint16_t*>(a.raw());
    const int64_t lda = a.strides()[0];
    float* c_rows = c.data<float>();
    const float* bias_data = bias ? bias->data<float>() : nullptr;
    const int64_t blocks = M / 32;
#pragma omp parallel if (blocks > 1)
    {
        configure_tiles();
#pragma omp for schedule(static)
        for (int64_t block = 0; block < blocks; ++block) {
            float* cb = c_rows + block * 32 * N;
            amx_gemm(cb, N, a_rows + block * 32 * lda, lda, b_pairs, 32, N, K, accumulate);
            if (bias_data)
                for (int64_t r = 0; r < 32; ++r)
                    for (int64_t n = 0; n < N; ++n) cb[r * N + n] += bias_data[n];
        }
        _tile_release();
    }
    return true;
}

#else  // built without AMX

bool amx_matmul(Backend&, const Tensor&, const Tensor&, const Tensor&, const Tensor*, float, bool) { return false; }

#endif

}  // namespace lab::attention_kernel
