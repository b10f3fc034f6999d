// Out-of-line parts of the counter-based generator (rng.h).
#include "lab/rng.h"

#include <cmath>

#include "lab/error.h"

namespace lab {

float philox_normal(const RngKey& k, uint64_t i) {
    // Box-Muller in double: the result is rounded to float once, so libm differences between
    // host and device math libraries rarely reach the returned bits.
    double u1 = philox_uniform(k, 2 * i);
    const double u2 = philox_uniform(k, 2 * i + 1);
    if (u1 <= 0.0) u1 = 0x1p-25;  // uniform() can return exactly 0; log(0) would give inf
    const double radius = std::sqrt(-2.0 * std::log(u1));
    return static_cast<float>(radius * std::cos(2.0 * 3.14159265358979323846 * u2));
}

std::vector<float> Generator::normals(size_t n, float std_dev) {
    const RngKey key = next(2 * static_cast<uint64_t>(n));  // philox_normal uses two numbers per value
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = std_dev * philox_normal(key, i);
    return v;
}

uint64_t Generator::uniform_int(uint64_t n) {
    if (n == 0) {
        throw Error("Generator::uniform_int: the range [0, n) is empty (n = 0); hint: the caller must "
                    "draw from a non-empty range");
    }
    const RngKey key = next(2);
    // 64 random bits: the modulo bias is below n / 2^64, negligible for any n < 2^32.
    const uint64_t bits = (static_cast<uint64_t>(philox_u32(key, 0)) << 32) | philox_u32(key, 1);
    return bits % n;
}

}  // namespace lab
