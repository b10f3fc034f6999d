// Element types and bf16 conversion.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>

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

// bf16 is the top half of an IEEE f32; rounding is to nearest even, NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return static_cast<uint16_t>(u >> 16);
}

inline float bf16_to_f32(uint16_t h) {
    uint32_t u = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// IEEE half conversion (f16), round to nearest even; used for storage and casts only.
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

}  // namespace lab
