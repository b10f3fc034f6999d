// The GELU of the erf form, gelu(x) = x Phi(x), and its derivative Phi(x) + x phi(x), over runs of
// floats in GCC vectors (16 lanes with AVX-512, else 8). Internal to the HostBackend kernels
// (host_backend.cpp).
//
// Phi comes from the lower tail Phi(-|x|) = 0.5 erfc(z), z = |x| / sqrt 2, in the form of Numerical
// Recipes' erfcc, erfc(z) = t e^(-z^2) Q(t) with t = 1 / (1 + z / 2), so that it is relatively
// accurate however far out it goes, where 0.5 (1 + erf(x / sqrt 2)) cancels to nothing for x below
// about -4; the upper half is 1 - Phi(-x). erfcc writes Q(t) = e^P(t); here Q itself is a degree-9
// polynomial in t (a relative-error Chebyshev fit on [0, 1], 1.8e-7 at most against erfcc's
// 1.2e-7), which saves the derivative its second exp: e^(-z^2) serves both Phi and phi. One
// reciprocal and one exp per vector, against std::erf one element at a time.
#pragma once
#include <cstdint>
#include <cstring>

#include "host_lanes.h"  // with <immintrin.h> where AVX-512 is compiled for

namespace lab::host {

namespace gelu_detail {

constexpr float kInvSqrt2 = 0.70710678118654752440f;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;  // 1/sqrt(2 pi)

// Q(t) = erfc(z) e^(z^2) / t for z >= 0, t = 1 / (1 + z / 2) in (0, 1]: Q(0) = 1 / sqrt(pi) gives
// erfc's asymptote e^(-z^2) / (z sqrt(pi)), Q(1) = erfc(0) = 1.
inline Lanes tail_poly(Lanes t) {
    Lanes q = t * -0.026425704f + 0.06871227f;
    q = q * t + 0.022372495f;
    q = q * t - 0.18957849f;
    q = q * t + 0.07381949f;
    q = q * t + 0.06038277f;
    q = q * t + 0.17995621f;
    q = q * t + 0.24656437f;
    q = q * t + 0.28210166f;
    return q * t + 0.28209478f;
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

// Phi(x) and e^(-z^2) (which phi needs too), from the lower tail Phi(-|x|) = 0.5 t e^(-z^2) Q(t).
inline Lanes cdf(Lanes x, Lanes* ez2) {
    const Lanes z = scaled_abs(x);
    const Lanes t = recip_gelu(z * 0.5f + 1.0f);
    *ez2 = exp_fast(-(z * z));
    const Lanes tail = 0.5f * t * tail_poly(t) * *ez2;
    return x < 0.0f ? tail : 1.0f - tail;
}

}  // namespace gelu_detail

inline Lanes gelu_lanes(Lanes x) {
    Lanes ez2;
    return x * gelu_detail::cdf(x, &ez2);
}

// d gelu / dx = Phi(x) + x phi(x), phi(x) = e^(-x^2/2) / sqrt(2 pi) = e^(-z^2) / sqrt(2 pi).
inline Lanes gelu_grad_lanes(Lanes x) {
    Lanes ez2;
    const Lanes cdf_x = gelu_detail::cdf(x, &ez2);
    return cdf_x + x * (ez2 * gelu_detail::kInvSqrt2Pi);
}

// y[i] = gelu(x[i]) for i < n, f32.
inline void gelu_run(float* y, const float* x, int64_t n) {
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes) store_lanes(y + i, gelu_lanes(load_lanes(x + i, kLanes)), kLanes);
    if (i < n) store_lanes(y + i, gelu_lanes(load_lanes(x + i, n - i)), n - i);
}

// y[i] = gelu(x[i]) rounded to bf16 (nearest even) for i < n.
inline void gelu_run(uint16_t* y, const float* x, int64_t n) {
    bf16_through_buffer(y, n, [x](float* out, int64_t first, int64_t m) { gelu_run(out, x + first, m); });
}

// dx[i] = dy[i] gelu'(x[i]) for i < n.
inline void gelu_backward_run(float* dx, const float* dy, const float* x, int64_t n) {
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
        store_lanes(dx + i, load_lanes(dy + i, kLanes) * gelu_grad_lanes(load_lanes(x + i, kLanes)),
                    kLanes);
    if (i < n) store_lanes(dx + i, load_lanes(dy + i, n - i) * gelu_grad_lanes(load_lanes(x + i, n - i)), n - i);
}

// dx[i] = dy[i] gelu'(x[i]) rounded to bf16 (nearest even) for i < n.
inline void gelu_backward_run(uint16_t* dx, const float* dy, const float* x, int64_t n) {
    bf16_through_buffer(dx, n, [dy, x](float* out, int64_t first, int64_t m) {
        gelu_backward_run(out, dy + first, x + first, m);
    });
}

}  // namespace lab::host
