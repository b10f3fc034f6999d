// Counter-based random numbers (Philox4x32-10, Salmon et al. 2011, "Parallel random numbers: as
// easy as 1, 2, 3"). A value depends only on (seed, stream, offset), never on call order or thread
// count, so CPU and GPU backends draw the same numbers: element i of a dropout mask drawn with key
// k is uniform(k.seed, k.stream, k.offset + i) everywhere.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace lab {

struct RngKey {
    uint64_t seed = 0;
    uint64_t stream = 0;
    uint64_t offset = 0;
};

// Philox4x32-10: counter (4 x 32 bit) and key (2 x 32 bit) -> 4 random 32-bit words.
inline std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> ctr, std::array<uint32_t, 2> key) {
    constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
    for (int round = 0; round < 10; ++round) {
        uint64_t p0 = static_cast<uint64_t>(M0) * ctr[0];
        uint64_t p1 = static_cast<uint64_t>(M1) * ctr[2];
        ctr = {static_cast<uint32_t>(p1 >> 32) ^ ctr[1] ^ key[0], static_cast<uint32_t>(p1),
               static_cast<uint32_t>(p0 >> 32) ^ ctr[3] ^ key[1], static_cast<uint32_t>(p0)};
        key[0] += W0;
        key[1] += W1;
    }
    return ctr;
}

// Four words for counter block `block` of (seed, stream). Element n uses word n % 4 of block n / 4.
inline std::array<uint32_t, 4> philox_block(uint64_t seed, uint64_t stream, uint64_t block) {
    return philox4x32({static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
                       static_cast<uint32_t>(stream), static_cast<uint32_t>(stream >> 32)},
                      {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)});
}

// philox_block for the 8 consecutive blocks first .. first + 7, word-major:
// words[w][j] = philox_block(seed, stream, first + j)[w]. With AVX2 the 8 blocks run in the lanes
// of 256-bit registers (the 32 x 32 -> 64-bit products by vpmuludq on even and odd lanes).
inline void philox_blocks8(uint64_t seed, uint64_t stream, uint64_t first, uint32_t words[4][8]) {
#if defined(__AVX2__)
    constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
    uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
    alignas(32) uint32_t lo[8], hi[8];
    for (int j = 0; j < 8; ++j) {
        const uint64_t block = first + static_cast<uint64_t>(j);
        lo[j] = static_cast<uint32_t>(block);
        hi[j] = static_cast<uint32_t>(block >> 32);
    }
    __m256i c0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(lo));
    __m256i c1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(hi));
    __m256i c2 = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(stream)));
    __m256i c3 = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(stream >> 32)));
    const __m256i m0 = _mm256_set1_epi32(static_cast<int>(M0)), m1 = _mm256_set1_epi32(static_cast<int>(M1));
    // Low and high halves of the 8 products a[j] * m.
    auto mulhilo = [](__m256i a, __m256i m, __m256i& low, __m256i& high) {
        const __m256i even = _mm256_mul_epu32(a, m);
        const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
        low = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
        high = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
    };
    for (int round = 0; round < 10; ++round) {
        __m256i lo0, hi0, lo1, hi1;
        mulhilo(c0, m0, lo0, hi0);
        mulhilo(c2, m1, lo1, hi1);
        const __m256i key0 = _mm256_set1_epi32(static_cast<int>(k0)), key1 = _mm256_set1_epi32(static_cast<int>(k1));
        c0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), key0);
        c2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), key1);
        c1 = lo1;
        c3 = lo0;
        k0 += W0;
        k1 += W1;
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(words[0]), c0);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(words[1]), c1);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(words[2]), c2);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(words[3]), c3);
#else
    for (int j = 0; j < 8; ++j) {
        const std::array<uint32_t, 4> w = philox_block(seed, stream, first + static_cast<uint64_t>(j));
        for (int i = 0; i < 4; ++i) words[i][j] = w[static_cast<size_t>(i)];
    }
#endif
}

inline uint32_t philox_u32(const RngKey& k, uint64_t i) {
    uint64_t n = k.offset + i;
    return philox_block(k.seed, k.stream, n >> 2)[n & 3];
}

// Uniform in [0, 1) with 24 bits of resolution.
inline float philox_uniform(const RngKey& k, uint64_t i) {
    return static_cast<float>(philox_u32(k, i) >> 8) * (1.0f / 16777216.0f);
}

// Standard normal by Box-Muller on elements (2i, 2i+1) of the stream.
float philox_normal(const RngKey& k, uint64_t i);

// Hands out disjoint ranges of one stream: each call to next(n) reserves n numbers.
class Generator {
public:
    Generator(uint64_t seed = 0, uint64_t stream = 0) : seed_(seed), stream_(stream) {}
    RngKey next(uint64_t count) {
        RngKey key{seed_, stream_, offset_};
        offset_ += (count + 3) & ~uint64_t(3);  // keep each range block-aligned
        return key;
    }
    uint64_t seed() const { return seed_; }
    uint64_t stream() const { return stream_; }
    uint64_t offset() const { return offset_; }
    void set_offset(uint64_t o) { offset_ = o; }
    uint64_t uniform_int(uint64_t n);  // uniform in [0, n) using one reserved number pair
    float uniform() { return philox_uniform(next(1), 0); }
    // n normal draws N(0, std_dev^2), reserving the 2n numbers philox_normal uses.
    std::vector<float> normals(size_t n, float std_dev = 1.0f);

private:
    uint64_t seed_, stream_, offset_ = 0;
};

// Named streams, so that adding a random draw to one component never shifts another's numbers.
enum RngStream : uint64_t { kStreamInit = 1, kStreamDropout = 2, kStreamData = 3, kStreamSample = 4 };

}  // namespace lab
