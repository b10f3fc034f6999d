// Float vectors of the compiler's widest registers for the elementwise HostBackend kernels
// (host_gelu.h, the f32 -> bf16 rounding of host_backend.cpp, the bf16 layer norm of
// host_rows.cpp): loads and stores of partial
// vectors, and rounding to bf16 the way f32_to_bf16 (lab/element.h) rounds, only faster.
// Internal, not part of the plugin SDK.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "host_kernels.h"

namespace lab::host {

// 16 lanes where the compiler targets AVX-512, else 8 (a vector wider than the target's registers
// changes the calling convention, which GCC warns about, -Wpsabi).
#if defined(__AVX512F__)
constexpr int kLanes = 16;
#else
constexpr int kLanes = 8;
#endif
typedef float Lanes __attribute__((vector_size(4 * kLanes)));
typedef int32_t LanesInt __attribute__((vector_size(4 * kLanes)));
typedef uint32_t LanesBits __attribute__((vector_size(4 * kLanes)));
typedef uint16_t LanesHalf __attribute__((vector_size(2 * kLanes)));

#if defined(__AVX512F__)
// exp over the lanes: exp_lanes's polynomial (host_kernels.h, Cephes expf, relative error about
// 1e-7; below -87 and for -inf exactly 0), with AVX-512's scalef for the 2^n and a rounding
// instruction where compiled for: fewer operations than the portable form. The zero-masked forms
// of the intrinsics, with every lane selected: GCC 12's unmasked ones start from
// _mm512_undefined_ps(), which -Wmaybe-uninitialized reports at each caller.
constexpr __mmask16 kAllLanes = 0xffff;

inline Lanes exp_fast(Lanes x) {
    const __m512 lo = _mm512_set1_ps(-87.0f);
    const __m512 xc = _mm512_maskz_min_ps(kAllLanes, _mm512_maskz_max_ps(kAllLanes, x, lo), _mm512_set1_ps(88.0f));
    const __m512 n = _mm512_maskz_roundscale_ps(kAllLanes, _mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    const __m512 e = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
    // Below -87 (and -inf) exactly 0. NaN gives 0 too (its compare is false), where exp_lanes
    // keeps it: the GELU keeps NaN through its own products with x.
    return _mm512_maskz_scalef_ps(_mm512_cmp_ps_mask(x, lo, _CMP_GE_OQ), e, n);
}

#else
inline Lanes exp_fast(Lanes x) { return exp_lanes<Lanes, LanesInt>(x); }
#endif

// Loads n <= kLanes floats; the lanes past n hold 0.
inline Lanes load_lanes(const float* in, int64_t n) {
    Lanes v = {};
    std::memcpy(&v, in, sizeof(float) * n);
    return v;
}

// bf16 of each lane, nearest even; NaN stays NaN, made quiet. The integer form of f32_to_bf16.
inline LanesHalf round_lanes_to_bf16(Lanes v) {
    LanesBits u;
    std::memcpy(&u, &v, sizeof u);
    const LanesBits rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const LanesBits nan = (u >> 16) | 0x40u;
    const LanesBits bits = (u & 0x7fffffffu) > 0x7f800000u ? nan : rounded;
    return __builtin_convertvector(bits, LanesHalf);
}

inline void store_lanes(float* out, Lanes v, int64_t n) { std::memcpy(out, &v, sizeof(float) * n); }

// Stores the first n <= kLanes lanes rounded to bf16, with exactly round_lanes_to_bf16's bits.
inline void store_lanes(uint16_t* out, Lanes v, int64_t n) {
#if defined(__AVX512BF16__)
    // AVX512-BF16's conversion rounds to nearest even and quiets NaN alike, in one instruction
    // against the integer form's six, but it flushes subnormal inputs to zero: a vector holding one
    // (fpclass 0x20: subnormal) takes the integer route.
    if (__builtin_expect(_mm512_fpclass_ps_mask(v, 0x20) == 0, 1)) {
        const __m256bh h = _mm512_cvtneps_pbh(v);
        std::memcpy(out, &h, sizeof(uint16_t) * n);
        return;
    }
#endif
    const LanesHalf h = round_lanes_to_bf16(v);
    std::memcpy(out, &h, sizeof(uint16_t) * n);
}

// y[i] = f32_to_bf16(x[i]) for i < n.
inline void round_run_to_bf16(uint16_t* y, const float* x, int64_t n) {
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes) store_lanes(y + i, load_lanes(x + i, kLanes), kLanes);
    if (i < n) store_lanes(y + i, load_lanes(x + i, n - i), n - i);
}

// y[i] = bf16(f[i]) for i < n, where f32_run(out, first, m) writes the m f32 results f[first ..
// first + m). The f32 results pass through a buffer that stays in L1. Stored straight out, 32 bytes
// for every 64 loaded, the loads kept waiting on stores whose addresses match theirs modulo 4 KiB:
// the GELU ran 1.7x slower into bf16 than into f32 (48 against 29 ms for 25M elements on one core
// of a Xeon with AMX), and through the buffer as fast.
template <class Run> inline void bf16_through_buffer(uint16_t* y, int64_t n, Run f32_run) {
    constexpr int64_t kBlock = 512;
    alignas(64) float buf[kBlock];
    for (int64_t s = 0; s < n; s += kBlock) {
        const int64_t m = n - s < kBlock ? n - s : kBlock;
        f32_run(buf, s, m);
        round_run_to_bf16(y + s, buf, m);
    }
}

}  // namespace lab::host
