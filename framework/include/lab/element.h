// A tensor element type as a C++ type, and the conversion Backend::copy applies between any two:
// through float for floating types, through int64 between integer types (exact for ids), and
// float to integer truncating toward zero with saturation (NaN gives 0), since C++ leaves an
// out-of-range conversion undefined and a saturated value is the least surprising. The host and
// cuda backends both copy with these (LAB_HOST_DEVICE), so their copies agree bit for bit.
#pragma once
#include <cstdint>
#include <limits>
#include <type_traits>

#include "lab/dtype.h"
#include "lab/host_device.h"

namespace lab {

template <class I> LAB_HOST_DEVICE I saturate_cast(float f) {
    if (f != f) return 0;  // NaN
    constexpr float lo = static_cast<float>(std::numeric_limits<I>::min());
    constexpr float hi = static_cast<float>(std::numeric_limits<I>::max());
    if (f <= lo) return std::numeric_limits<I>::min();
    if (f >= hi) return std::numeric_limits<I>::max();
    return static_cast<I>(f);
}

template <DType DT> struct Elem;
template <> struct Elem<DType::f32> {
    using T = float;
    static constexpr bool is_int = false;
    LAB_HOST_DEVICE static float to_float(T v) { return v; }
    LAB_HOST_DEVICE static T from_float(float f) { return f; }
};
template <> struct Elem<DType::bf16> {
    using T = uint16_t;
    static constexpr bool is_int = false;
    LAB_HOST_DEVICE static float to_float(T v) { return bf16_to_f32(v); }
    LAB_HOST_DEVICE static T from_float(float f) { return f32_to_bf16(f); }
};
template <> struct Elem<DType::f16> {
    using T = uint16_t;
    static constexpr bool is_int = false;
    LAB_HOST_DEVICE static float to_float(T v) { return f16_to_f32(v); }
    LAB_HOST_DEVICE static T from_float(float f) { return f32_to_f16(f); }
};
template <class I> struct IntElem {
    using T = I;
    static constexpr bool is_int = true;
    LAB_HOST_DEVICE static float to_float(T v) { return static_cast<float>(v); }
    LAB_HOST_DEVICE static T from_float(float f) { return saturate_cast<I>(f); }
};
template <> struct Elem<DType::i32> : IntElem<int32_t> {};
template <> struct Elem<DType::i64> : IntElem<int64_t> {};
template <> struct Elem<DType::u8> : IntElem<uint8_t> {};

// One element of type S as type D.
template <DType D, DType S> LAB_HOST_DEVICE typename Elem<D>::T convert(typename Elem<S>::T v) {
    if constexpr (D == S) {
        return v;
    } else if constexpr (Elem<D>::is_int && Elem<S>::is_int) {
        return static_cast<typename Elem<D>::T>(static_cast<int64_t>(v));
    } else {
        return Elem<D>::from_float(Elem<S>::to_float(v));
    }
}

// Backend::fill's value as type D: through float for floating types; integers truncate toward
// zero (NaN gives 0).
template <DType D> typename Elem<D>::T fill_value(double value) {
    using T = typename Elem<D>::T;
    if constexpr (Elem<D>::is_int) return value != value ? T(0) : static_cast<T>(static_cast<int64_t>(value));
    else return Elem<D>::from_float(static_cast<float>(value));
}

// Calls f(std::integral_constant<DType, t>{}): a kernel template instantiated per element type.
template <class F> void dispatch_dtype(DType t, F&& f) {
    switch (t) {
        case DType::f32: f(std::integral_constant<DType, DType::f32>{}); return;
        case DType::bf16: f(std::integral_constant<DType, DType::bf16>{}); return;
        case DType::f16: f(std::integral_constant<DType, DType::f16>{}); return;
        case DType::i32: f(std::integral_constant<DType, DType::i32>{}); return;
        case DType::i64: f(std::integral_constant<DType, DType::i64>{}); return;
        case DType::u8: f(std::integral_constant<DType, DType::u8>{}); return;
    }
}

}  // namespace lab
