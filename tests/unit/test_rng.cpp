// Philox4x32-10 known-answer vectors (Random123's kat_vectors), the derived uniform and normal
// draws, and the Generator's range bookkeeping.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "lab/error.h"
#include "lab/rng.h"

using namespace lab;

TEST_CASE("philox4x32-10 matches the Random123 known-answer vectors", "[rng]") {
    using W4 = std::array<uint32_t, 4>;
    REQUIRE(philox4x32({0, 0, 0, 0}, {0, 0}) == W4{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8});
    REQUIRE(philox4x32({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}) ==
            W4{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd});
    REQUIRE(philox4x32({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}) ==
            W4{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1});
}

TEST_CASE("element i of a key is word i % 4 of block i / 4 after the offset", "[rng]") {
    const RngKey key{0x1234567890ull, 7, 6};
    for (uint64_t i = 0; i < 16; ++i) {
        const uint64_t n = key.offset + i;
        REQUIRE(philox_u32(key, i) == philox_block(key.seed, key.stream, n / 4)[n % 4]);
    }
    // Shifting the offset by k shifts the sequence by k.
    REQUIRE(philox_u32(RngKey{1, 2, 10}, 0) == philox_u32(RngKey{1, 2, 0}, 10));
    REQUIRE(philox_u32(RngKey{1, 2, 0}, 0) != philox_u32(RngKey{1, 3, 0}, 0));
    REQUIRE(philox_u32(RngKey{1, 2, 0}, 0) != philox_u32(RngKey{2, 2, 0}, 0));
}

TEST_CASE("philox_blocks8 gives philox_block's words for 8 consecutive blocks", "[rng]") {
    // Counters that carry into the high word, and seeds and streams using all 64 bits.
    for (uint64_t first : {uint64_t{0}, uint64_t{5}, uint64_t{0xFFFFFFFCull}, uint64_t{0x123456789ABCull}})
        for (RngKey key : {RngKey{0, 0, 0}, RngKey{0xDEADBEEFCAFEF00Dull, 0x0123456789ABCDEFull, 0}}) {
            uint32_t words[4][8];
            philox_blocks8(key.seed, key.stream, first, words);
            for (int j = 0; j < 8; ++j) {
                const auto want = philox_block(key.seed, key.stream, first + static_cast<uint64_t>(j));
                for (int w = 0; w < 4; ++w) REQUIRE(words[w][j] == want[static_cast<size_t>(w)]);
            }
        }
}

TEST_CASE("uniform and normal draws have the right range and moments", "[rng]") {
    const RngKey key{42, kStreamInit, 0};
    const int n = 200000;
    double sum_u = 0, sum_z = 0, sum_z2 = 0;
    int beyond_3sigma = 0;
    for (int i = 0; i < n; ++i) {
        const float u = philox_uniform(key, i);
        REQUIRE(u >= 0.0f);
        REQUIRE(u < 1.0f);
        sum_u += u;
        const float z = philox_normal(key, i);
        REQUIRE(std::isfinite(z));
        sum_z += z;
        sum_z2 += double(z) * z;
        beyond_3sigma += std::abs(z) > 3.0f;
    }
    REQUIRE(sum_u / n == Approx(0.5).margin(0.005));
    REQUIRE(sum_z / n == Approx(0.0).margin(0.01));
    REQUIRE(sum_z2 / n == Approx(1.0).margin(0.02));
    REQUIRE(double(beyond_3sigma) / n == Approx(0.0027).margin(0.001));
    // Box-Muller on uniforms 2i and 2i+1.
    const double u1 = philox_uniform(key, 10), u2 = philox_uniform(key, 11);
    REQUIRE(philox_normal(key, 5) == Approx(std::sqrt(-2 * std::log(u1)) * std::cos(2 * M_PI * u2)).epsilon(1e-6));
}

TEST_CASE("Generator hands out disjoint block-aligned ranges, uniform_int stays in range", "[rng]") {
    Generator gen(9, kStreamData);
    REQUIRE(gen.next(5).offset == 0);
    REQUIRE(gen.next(1).offset == 8);
    REQUIRE(gen.offset() == 12);

    Generator a(3, kStreamData), b(3, kStreamData);
    std::vector<int> counts(10, 0);
    for (int i = 0; i < 20000; ++i) {
        const uint64_t v = a.uniform_int(10);
        REQUIRE(v < 10);
        REQUIRE(b.uniform_int(10) == v);  // same seed and stream, same sequence
        ++counts[v];
    }
    for (int c : counts) REQUIRE(c == Approx(2000).margin(200));
    REQUIRE(a.uniform_int(1) == 0);
    const uint64_t large = (uint64_t(1) << 40) + 3;
    REQUIRE(a.uniform_int(large) < large);
    REQUIRE_THROWS_AS(a.uniform_int(0), Error);
}
