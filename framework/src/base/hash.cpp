// SHA-256 as specified in FIPS 180-4 (section 6.2). Hand-written because none of the libraries
// labrun links (Boost, SQLite, nlohmann/json, oneDNN) exposes a SHA-256 we can rely on; the
// algorithm is small and the tests check it against the standard's test vectors.
#include "lab/hash.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <vector>

#include "lab/error.h"

namespace lab {
namespace {

// First 32 bits of the fractional parts of the cube roots of the first 64 primes (FIPS 180-4 4.2.2).
constexpr std::array<uint32_t, 64> kRoundConstants = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

// First 32 bits of the fractional parts of the square roots of the first 8 primes (5.3.3).
constexpr std::array<uint32_t, 8> kInitialState = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

constexpr size_t kBlockBytes = 64;

constexpr uint32_t rotate_right(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

// Incremental hasher: feed bytes with update(), then finish() once. Kept private to this file;
// the public interface is the two one-shot functions in hash.h.
class Sha256 {
 public:
    void update(const unsigned char* data, size_t size) {
        total_bytes_ += size;
        if (buffered_ > 0) {
            const size_t take = std::min(size, kBlockBytes - buffered_);
            std::memcpy(buffer_.data() + buffered_, data, take);
            buffered_ += take;
            data += take;
            size -= take;
            if (buffered_ < kBlockBytes) return;
            compress(buffer_.data());
            buffered_ = 0;
        }
        for (; size >= kBlockBytes; data += kBlockBytes, size -= kBlockBytes) compress(data);
        std::memcpy(buffer_.data(), data, size);
        buffered_ = size;
    }

    std::string finish() {
        // Padding (5.1.1): a single 1 bit, zeros up to 56 mod 64 bytes, then the message length in
        // bits as a 64-bit big-endian integer.
        const uint64_t message_bits = total_bytes_ * 8;
        const unsigned char one_bit = 0x80;
        update(&one_bit, 1);
        const unsigned char zero = 0;
        while (buffered_ != kBlockBytes - 8) update(&zero, 1);
        unsigned char length_bytes[8];
        for (int i = 0; i < 8; ++i) length_bytes[i] = static_cast<unsigned char>(message_bits >> (56 - 8 * i));
        update(length_bytes, 8);

        static const char* const kHexDigits = "0123456789abcdef";
        std::string hex;
        hex.reserve(64);
        for (uint32_t word : state_) {
            for (int shift = 28; shift >= 0; shift -= 4) hex.push_back(kHexDigits[(word >> shift) & 0xf]);
        }
        return hex;
    }

 private:
    // One 512-bit block (6.2.2).
    void compress(const unsigned char* block) {
        std::array<uint32_t, 64> schedule;
        for (int t = 0; t < 16; ++t) {
            schedule[t] = (uint32_t(block[4 * t]) << 24) | (uint32_t(block[4 * t + 1]) << 16) |
                          (uint32_t(block[4 * t + 2]) << 8) | uint32_t(block[4 * t + 3]);
        }
        for (int t = 16; t < 64; ++t) {
            const uint32_t s0 = rotate_right(schedule[t - 15], 7) ^ rotate_right(schedule[t - 15], 18) ^
                                (schedule[t - 15] >> 3);
            const uint32_t s1 = rotate_right(schedule[t - 2], 17) ^ rotate_right(schedule[t - 2], 19) ^
                                (schedule[t - 2] >> 10);
            schedule[t] = schedule[t - 16] + s0 + schedule[t - 7] + s1;
        }
        uint32_t a = state_[0], b = state_[1], c = state_[2], d = state_[3];
        uint32_t e = state_[4], f = state_[5], g = state_[6], h = state_[7];
        for (int t = 0; t < 64; ++t) {
            const uint32_t big_sigma1 = rotate_right(e, 6) ^ rotate_right(e, 11) ^ rotate_right(e, 25);
            const uint32_t choose = (e & f) ^ (~e & g);
            const uint32_t t1 = h + big_sigma1 + choose + kRoundConstants[t] + schedule[t];
            const uint32_t big_sigma0 = rotate_right(a, 2) ^ rotate_right(a, 13) ^ rotate_right(a, 22);
            const uint32_t majority = (a & b) ^ (a & c) ^ (b & c);
            const uint32_t t2 = big_sigma0 + majority;
            h = g;
            g = f;
            f = e;
            e = d + t1;
            d = c;
            c = b;
            b = a;
            a = t1 + t2;
        }
        state_[0] += a;
        state_[1] += b;
        state_[2] += c;
        state_[3] += d;
        state_[4] += e;
        state_[5] += f;
        state_[6] += g;
        state_[7] += h;
    }

    std::array<uint32_t, 8> state_ = kInitialState;
    std::array<unsigned char, kBlockBytes> buffer_{};
    size_t buffered_ = 0;
    uint64_t total_bytes_ = 0;
};

}  // namespace

std::string sha256_hex(std::string_view data) {
    Sha256 hasher;
    hasher.update(reinterpret_cast<const unsigned char*>(data.data()), data.size());
    return hasher.finish();
}

std::string sha256_file(const std::filesystem::path& file) {
    std::error_code ec;
    if (std::filesystem::is_directory(file, ec)) {
        throw DataError("cannot hash '" + file.string() +
                        "': it is a directory; hint: give the path of a regular file");
    }
    std::ifstream in(file, std::ios::binary);
    if (!in) {
        throw DataError("cannot open '" + file.string() + "' for hashing: " + std::strerror(errno) +
                        "; hint: check that the file exists and is readable");
    }
    // Stream in chunks so that hashing a large plugin or checkpoint never holds it in memory.
    constexpr size_t kChunkBytes = 1 << 16;
    std::vector<char> chunk(kChunkBytes);
    Sha256 hasher;
    while (in) {
        in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
        const std::streamsize got = in.gcount();
        if (got > 0) hasher.update(reinterpret_cast<const unsigned char*>(chunk.data()), static_cast<size_t>(got));
    }
    if (in.bad()) {
        throw DataError("read error while hashing '" + file.string() +
                        "'; hint: check the disk and that the file is not being truncated");
    }
    return hasher.finish();
}

}  // namespace lab
