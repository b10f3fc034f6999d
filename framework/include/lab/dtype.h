// Element types and the bf16 and f16 conversions.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>

#include "lab/host_device.h"

namespace lab {

enum class DType : uint8_t { f32, bf16, f16, i32, i64, u8 };

inline size_t dtype_size(DType t) {
    switch (t) {
        case DType::f32: case DType::i32: return 4;
        case DType::bf16: case DType::f16: return 2;
        case DType::i64: return 8;
        case DType::u8: return 1;
    }
    return 0;
}

inline const char* dtype_name(DType t) {
    switch (t) {
        case DType::f32: return "f32";
        case DType::bf16: return "bf16";
        case DType::f16: return "f16";
        case DType::i32: return "i32";
        case DType::i64: return "i64";
        case DType::u8: return "u8";
    }
    return "?";
}

inline bool is_integer(DType t) { return t == DType::i32 || t == DType::i64 || t == DType::u8; }

// The float conversions below are LAB_HOST_DEVICE: the cuda backend's copies run the same code.

// bf16 is the top half of an IEEE f32; rounding is to nearest even, NaN stays NaN.
LAB_HOST_DEVICE uint16_t f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return static_cast<uint16_t>(u >> 16);
}

LAB_HOST_DEVICE float bf16_to_f32(uint16_t h) { return f32_from_bits(static_cast<uint32_t>(h) << 16); }

// IEEE 754 binary16 (f16), round to nearest even, NaN payloads kept; used for storage and casts
// only. Hand-written because C++ has no portable half type before C++23 and the host must read
// f16 checkpoints without a GPU toolkit.
LAB_HOST_DEVICE float f16_to_f32(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exponent = (h >> 10) & 0x1fu;
    uint32_t mantissa = h & 0x3ffu;
    uint32_t bits;
    if (exponent == 0x1f) {
        bits = sign | 0x7f800000u | (mantissa << 13);  // inf, or NaN keeping its payload
    } else if (exponent != 0) {
        bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);  // rebias 15 -> 127
    } else if (mantissa == 0) {
        bits = sign;  // signed zero
    } else {
        // Subnormal half: shift the mantissa up until its leading 1 becomes the implicit bit.
        int32_t e = 113;  // exponent of 2^-14 in f32 bias, plus one for the first shift
        while ((mantissa & 0x400u) == 0) {
            mantissa <<= 1;
            --e;
        }
        bits = sign | (static_cast<uint32_t>(e) << 23) | ((mantissa & 0x3ffu) << 13);
    }
    return f32_from_bits(bits);
}

LAB_HOST_DEVICE uint16_t f32_to_f16(float f) {
    const uint32_t u = f32_bits(f);
    const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
    const uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((abs >> 13) & 0x3ffu));  // NaN
    if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds past 65504: inf
    if (abs < 0x38800000u) {
        // Result is subnormal (or zero): value = m * 2^-24 with m = round(|f| * 2^24).
        if (abs < 0x33000000u) return sign;  // below half the smallest subnormal: zero
        const uint32_t exponent = abs >> 23;
        const uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
        const uint32_t shift = 126u - exponent;  // |f| = mantissa * 2^(exponent - 150)
        uint32_t half = mantissa >> shift;
        const uint32_t rest = mantissa & ((1u << shift) - 1u);
        const uint32_t halfway = 1u << (shift - 1);
        if (rest > halfway || (rest == halfway && (half & 1u))) ++half;
        return static_cast<uint16_t>(sign | half);
    }
    // Normal: rebias the exponent and round the 13 dropped mantissa bits to nearest even; a
    // carry out of the mantissa correctly bumps the exponent.
    uint32_t bits = abs - 0x38000000u;  // (127 - 15) << 23
    bits += 0xfffu + ((bits >> 13) & 1u);
    return static_cast<uint16_t>(sign | (bits >> 13));
}

}  // namespace lab
