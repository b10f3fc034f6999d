// LAB_HOST_DEVICE marks a function that both the host compiler and nvcc compile, for the host and
// for the GPU: the conversions of lab/dtype.h and lab/element.h, and the cuda backend's Philox,
// so that both backends compute them from one definition, bit for bit alike.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define LAB_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define LAB_HOST_DEVICE inline
#endif

namespace lab {

// The bits of an f32 and back (std::bit_cast is not available in device code).
LAB_HOST_DEVICE uint32_t f32_bits(float f) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(f);
#else
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
#endif
}

LAB_HOST_DEVICE float f32_from_bits(uint32_t u) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float f;
    std::memcpy(&f, &u, 4);
    return f;
#endif
}

}  // namespace lab
