// The AMX tile product the host kernels share (host_attention_amx.cpp, host_matmul_amx.cpp): the
// tile configuration, c (+)= a . b in 2 x 2 blocks of 16 x 16 f32 tiles, bf16 operands, and the
// register shuffles their packing uses. Only where the compiler targets AMX-BF16
// (LAB_HAVE_AMX_ATTENTION, host_attention.h); a thread calls configure_tiles() before its first
// product and _tile_release() after its last. Internal.
#pragma once
#include <cstdint>

#include "host_attention.h"

#if LAB_HAVE_AMX_ATTENTION
#include <immintrin.h>

namespace lab::attention_kernel {

constexpr int64_t kDepthBlock = 32;  // bf16 values of one AMX tile row: Dp is a multiple of this

// Tile registers 0-3 hold a 32 x 32 block of C, 4-5 two row blocks of A, 6-7 two column blocks of B:
// every tile is 16 rows of 64 bytes.
struct alignas(64) TileConfig {
    uint8_t palette = 1;
    uint8_t start_row = 0;
    uint8_t reserved[14] = {};
    uint16_t bytes_per_row[16] = {};
    uint8_t rows[16] = {};
};

inline void configure_tiles() {
    TileConfig config;
    for (int t = 0; t < 8; ++t) {
        config.bytes_per_row[t] = 64;
        config.rows[t] = 16;
    }
    _tile_loadconfig(&config);
}

// The 32 bf16 values of two rows' 16 roundings (the first row's in the low half, as
// _mm512_cvtne2ps_pbh(odd, even) gives them), interleaved: even[0], odd[0], even[1], ...
inline __m512i interleave_pairs(__m512i both) {
    static const __m512i index = [] {
        alignas(64) uint16_t order[32];
        for (int i = 0; i < 16; ++i) {
            order[2 * i] = static_cast<uint16_t>(i);
            order[2 * i + 1] = static_cast<uint16_t>(16 + i);
        }
        return _mm512_load_si512(order);
    }();
    return _mm512_permutexvar_epi16(index, both);
}

// r[i] = column i of the 16 x 16 block whose rows r held: unpacks of 32-bit and 64-bit pairs,
// then two rounds of 128-bit lane shuffles.
inline void transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 8; ++i) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    auto pairs = [](__m512 a, __m512 b, bool high) {
        const __m512d x = _mm512_castps_pd(a), y = _mm512_castps_pd(b);
        return _mm512_castpd_ps(high ? _mm512_unpackhi_pd(x, y) : _mm512_unpacklo_pd(x, y));
    };
    for (int i = 0; i < 4; ++i) {
        r[4 * i] = pairs(t[4 * i], t[4 * i + 2], false);
        r[4 * i + 1] = pairs(t[4 * i], t[4 * i + 2], true);
        r[4 * i + 2] = pairs(t[4 * i + 1], t[4 * i + 3], false);
        r[4 * i + 3] = pairs(t[4 * i + 1], t[4 * i + 3], true);
    }
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 4; ++j) {
            t[8 * i + j] = _mm512_shuffle_f32x4(r[8 * i + j], r[8 * i + j + 4], 0x88);
            t[8 * i + j + 4] = _mm512_shuffle_f32x4(r[8 * i + j], r[8 * i + j + 4], 0xdd);
        }
    for (int j = 0; j < 8; ++j) {
        r[j] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88);
        r[j + 8] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0xdd);
    }
}

// c [M, N] f32 (row stride ldc) (+)= a [M, K] . b: a bf16 row-major (row stride lda), b bf16 in
// the pairs layout [K / 2, N, 2]. M and N are multiples of 32, K of 32. 2 x 2 blocks of 16 x 16
// C tiles: each A and B tile loaded serves two products. With `from` (f32, c's layout) the tiles
// start from it instead: c = from + a . b.
inline void amx_gemm(float* c, int64_t ldc, const uint16_t* a, int64_t lda, const uint16_t* b, int64_t M,
                     int64_t N, int64_t K, bool accumulate, const float* from = nullptr) {
    const int64_t c_stride = ldc * 4, a_stride = lda * 2, b_stride = N * 4;
    if (accumulate) from = c;
    for (int64_t m = 0; m < M; m += 32)
        for (int64_t n = 0; n < N; n += 32) {
            float* c0 = c + m * ldc + n;
            float* c1 = c0 + 16 * ldc;
            if (from) {
                const float* f0 = from + m * ldc + n;
                const float* f1 = f0 + 16 * ldc;
                _tile_loadd(0, f0, c_stride);
                _tile_loadd(1, f0 + 16, c_stride);
                _tile_loadd(2, f1, c_stride);
                _tile_loadd(3, f1 + 16, c_stride);
            } else {
                _tile_zero(0);
                _tile_zero(1);
                _tile_zero(2);
                _tile_zero(3);
            }
            for (int64_t x = 0; x < K; x += kDepthBlock) {
                const uint16_t* a0 = a + m * lda + x;
                const uint16_t* b0 = b + (x / 2) * (2 * N) + 2 * n;
                _tile_loadd(4, a0, a_stride);
                _tile_loadd(5, a0 + 16 * lda, a_stride);
                _tile_loadd(6, b0, b_stride);
                _tile_loadd(7, b0 + 32, b_stride);
                _tile_dpbf16ps(0, 4, 6);
                _tile_dpbf16ps(1, 4, 7);
                _tile_dpbf16ps(2, 5, 6);
                _tile_dpbf16ps(3, 5, 7);
            }
            _tile_stored(0, c0, c_stride);
            _tile_stored(1, c0 + 16, c_stride);
            _tile_stored(2, c1, c_stride);
            _tile_stored(3, c1 + 16, c_stride);
        }
}

}  // namespace lab::attention_kernel

#endif  // LAB_HAVE_AMX_ATTENTION

namespace lab::attention_kernel {

// c = a @ b (+ bias) (+ c when accumulate) on AMX, for the shapes of a training step's linear
// layers: 2-D, a and b bf16, c contiguous f32, alpha 1, M, N and K multiples of 32, the product
// large enough to pay for packing, and either a's rows contiguous (b any strides, and small enough,
// 1.25 MB, to stay in L2) or, for the weight gradient dy^T x, a a transposed view with b's rows
// contiguous and no bias. Returns false, having done nothing, when the call is not of that kind
// or the CPU (or the build) has no AMX. With addend (f32, c's shape, contiguous; a's rows
// contiguous, not accumulating): c = a @ b (+ bias) + addend, the tiles starting from addend.
// (In attention_kernel with the other AMX code.)
bool amx_matmul(Backend& backend, const Tensor& c, const Tensor& a, const Tensor& b, const Tensor* bias, float alpha,
                bool accumulate, const Tensor* addend = nullptr);

}  // namespace lab::attention_kernel
