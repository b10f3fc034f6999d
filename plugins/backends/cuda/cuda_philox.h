// Philox4x32-10 for device code: the same function as lab::philox_block / philox_uniform
// (lab/rng.h), so that a dropout mask drawn on the GPU with key k equals the CPU's bit for bit.
// Host-callable too: tests/unit/test_cuda_host.cpp compares it with lab/rng.h on the host.
#pragma once
#include <cstdint>

#include "lab/host_device.h"

namespace lab::cuda {

struct PhiloxWords {
    uint32_t w[4];
};

LAB_HOST_DEVICE uint32_t mul_hi32(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
    return __umulhi(a, b);
#else
    return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
#endif
}

// philox_block(seed, stream, block) of lab/rng.h.
LAB_HOST_DEVICE PhiloxWords philox_block(uint64_t seed, uint64_t stream, uint64_t block) {
    constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
    uint32_t c0 = static_cast<uint32_t>(block), c1 = static_cast<uint32_t>(block >> 32);
    uint32_t c2 = static_cast<uint32_t>(stream), c3 = static_cast<uint32_t>(stream >> 32);
    uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
    for (int round = 0; round < 10; ++round) {
        const uint32_t hi0 = mul_hi32(M0, c0), lo0 = M0 * c0;
        const uint32_t hi1 = mul_hi32(M1, c2), lo1 = M1 * c2;
        const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
        k0 += W0;
        k1 += W1;
    }
    return {{c0, c1, c2, c3}};
}

// philox_uniform(key, i) of lab/rng.h: word (offset + i) % 4 of block (offset + i) / 4, top 24
// bits, in [0, 1).
LAB_HOST_DEVICE float philox_uniform(uint64_t seed, uint64_t stream, uint64_t offset, uint64_t i) {
    const uint64_t n = offset + i;
    const PhiloxWords words = philox_block(seed, stream, n >> 2);
    return static_cast<float>(words.w[n & 3] >> 8) * (1.0f / 16777216.0f);
}

}  // namespace lab::cuda
