// The GELU of the erf form, gelu(x) = x Phi(x), and its derivative Phi(x) + x phi(x), over runs of
// floats in GCC vectors (16 lanes with AVX-512, else 8). Internal to the HostBackend kernels
// (host_backend.cpp).
//
// Phi comes from the complementary error function in the form of Numerical Recipes' erfcc
// (Chebyshev fit, fractional error below 1.2e-7 everywhere): the lower tail
// Phi(-|x|) = 0.5 erfc(|x| / sqrt 2) = 0.5 t exp(-z^2 + P(t)), z = |x| / sqrt 2, t = 1 / (1 + z / 2),
// is relatively accurate however far out it goes, where 0.5 (1 + erf(x / sqrt 2)) cancels to
// nothing for x below about -4; the upper half is 1 - Phi(-x). One reciprocal and one or two exps
// per vector, against std::erf one element at a time.
#pragma once
#include <cstdint>
#include <cstring>

#include "host_lanes.h"  // with <immintrin.h> where AVX-512 is compiled for

namespace lab::host {

namespace gelu_detail {

constexpr float kInvSqrt2 = 0.70710678118654752440f;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;  // 1/sqrt(2 pi)

// P(t) of erfcc, -1.26551223 + t (1.00002368 + ...): erfc(z) = t exp(-z^2 + P(t)) for z >= 0.
inline Lanes erfcc_poly(Lanes t) {
    Lanes p = t * 0.17087277f - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    return p * t - 1.26551223f;
}

#if defined(__AVX512F__)
// 1 / d for d >= 1: the 14-bit reciprocal estimate and one Newton step (about 1 ulp).
inline Lanes recip_gelu(Lanes d) {
    const __m512 r = _mm512_maskz_rcp14_ps(kAllLanes, d);
    return _mm512_fmadd_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(1.0f)), r);
}
#else
inline Lanes recip_gelu(Lanes d) { return 1.0f / d; }
#endif

inline Lanes abs_lanes(Lanes x) {
    LanesBits b;
    std::memcpy(&b, &x, sizeof b);
    b &= 0x7fffffffu;
    Lanes r;
    std::memcpy(&r, &b, sizeof r);
    return r;
}

// z = |x| / sqrt 2, at most 1e4 (where the tail is long 0), so that t stays finite for x = +-inf.
// NaN becomes 1e4 here and stays NaN through the callers' products with x.
inline Lanes scaled_abs(Lanes x) {
    const Lanes z = abs_lanes(x) * kInvSqrt2;
    return z < 1e4f ? z : Lanes{} + 1e4f;
}

// Phi(x) from the lower tail 0.5 t e^(-z^2) e^P(t), given e^(-z^2) as ez2 (the backward's phi
// needs it too) or folded into one exp (the forward).
inline Lanes cdf_from_tail(Lanes x, Lanes tail) { return x < 0.0f ? tail : 1.0f - tail; }

}  // namespace gelu_detail

inline Lanes gelu_lanes(Lanes x) {
    using namespace gelu_detail;
    const Lanes z = scaled_abs(x);
    const Lanes t = recip_gelu(z * 0.5f + 1.0f);
    const Lanes tail = 0.5f * t * exp_fast(erfcc_poly(t) - z * z);
    return x * cdf_from_tail(x, tail);
}

// d gelu / dx = Phi(x) + x phi(x), phi(x) = e^(-x^2/2) / sqrt(2 pi) = e^(-z^2) / sqrt(2 pi).
inline Lanes gelu_grad_lanes(Lanes x) {
    using namespace gelu_detail;
    const Lanes z = scaled_abs(x);
    const Lanes t = recip_gelu(z * 0.5f + 1.0f);
    const Lanes ez2 = exp_fast(-(z * z));
    const Lanes tail = 0.5f * t * ez2 * exp_fast(erfcc_poly(t));
    return cdf_from_tail(x, tail) + x * (ez2 * kInvSqrt2Pi);
}

// y[i] = gelu(x[i]) for i < n, f32.
inline void gelu_run(float* y, const float* x, int64_t n) {
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes) store_lanes(y + i, gelu_lanes(load_lanes(x + i, kLanes)), kLanes);
    if (i < n) store_lanes(y + i, gelu_lanes(load_lanes(x + i, n - i)), n - i);
}

// y[i] = gelu(x[i]) rounded to bf16 (nearest even) for i < n.
inline void gelu_run(uint16_t* y, const float* x, int64_t n) {
    bf16_through_buffer(y, x, n, [](float* out, const float* in, int64_t m) { gelu_run(out, in, m); });
}

// dx[i] = dy[i] gelu'(x[i]) for i < n.
inline void gelu_backward_run(float* dx, const float* dy, const float* x, int64_t n) {
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
        store_lanes(dx + i, load_lanes(dy + i, kLanes) * gelu_grad_lanes(load_lanes(x + i, kLanes)),
                    kLanes);
    if (i < n) store_lanes(dx + i, load_lanes(dy + i, n - i) * gelu_grad_lanes(load_lanes(x + i, n - i)), n - i);
}

}  // namespace lab::host
