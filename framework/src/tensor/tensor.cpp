#include "lab/tensor.h"

#include <algorithm>
#include <sstream>
#include <utility>

#include "lab/backend.h"
#include "lab/error.h"

namespace lab {

std::string shape_str(const Shape& s) {
    std::string out = "[";
    for (size_t i = 0; i < s.size(); ++i) {
        if (i) out += ", ";
        out += std::to_string(s[i]);
    }
    return out + "]";
}

int64_t shape_numel(const Shape& s) {
    int64_t n = 1;
    for (int64_t d : s) n *= d;
    return n;
}

Shape contiguous_strides(const Shape& s) {
    Shape strides(s.size());
    int64_t stride = 1;
    for (size_t i = s.size(); i-- > 0;) {
        strides[i] = stride;
        stride *= s[i];
    }
    return strides;
}

Tensor Tensor::empty(Backend& backend, const Shape& shape, DType dtype) {
    for (int64_t d : shape)
        if (d < 0) throw ShapeError("Tensor::empty: negative dimension in shape " + shape_str(shape));
    auto impl = std::make_shared<TensorImpl>();
    size_t bytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
    impl->storage = backend.alloc(bytes);
    impl->shape = shape;
    impl->strides = contiguous_strides(shape);
    impl->dtype = dtype;
    return Tensor(std::move(impl));
}

Tensor Tensor::zeros(Backend& backend, const Shape& shape, DType dtype) { return full(backend, shape, 0.0, dtype); }

Tensor Tensor::full(Backend& backend, const Shape& shape, double value, DType dtype) {
    Tensor t = empty(backend, shape, dtype);
    if (t.numel() > 0) backend.fill(t, value);
    return t;
}

Tensor Tensor::from_host(Backend& backend, const Shape& shape, DType dtype, const void* data) {
    Tensor t = empty(backend, shape, dtype);
    if (t.numel() > 0) backend.copy_from_host(t, data);
    return t;
}

Tensor Tensor::from_floats(Backend& backend, const Shape& shape, const std::vector<float>& values) {
    if (static_cast<int64_t>(values.size()) != shape_numel(shape))
        throw ShapeError("Tensor::from_floats: " + std::to_string(values.size()) + " values for shape " +
                         shape_str(shape));
    return from_host(backend, shape, DType::f32, values.data());
}

Tensor Tensor::from_ints(Backend& backend, const Shape& shape, const std::vector<int64_t>& values, DType dtype) {
    if (static_cast<int64_t>(values.size()) != shape_numel(shape))
        throw ShapeError("Tensor::from_ints: " + std::to_string(values.size()) + " values for shape " +
                         shape_str(shape));
    switch (dtype) {
        case DType::i64: return from_host(backend, shape, dtype, values.data());
        case DType::i32: {
            std::vector<int32_t> v(values.begin(), values.end());
            return from_host(backend, shape, dtype, v.data());
        }
        case DType::u8: {
            std::vector<uint8_t> v(values.begin(), values.end());
            return from_host(backend, shape, dtype, v.data());
        }
        default: {
            std::vector<float> v(values.begin(), values.end());
            return from_host(backend, shape, DType::f32, v.data()).to(dtype);
        }
    }
}

int64_t Tensor::size(int64_t d) const {
    int64_t n = dim();
    if (d < 0) d += n;
    if (d < 0 || d >= n)
        throw ShapeError("dimension " + std::to_string(d) + " out of range for shape " + shape_str(shape()));
    return impl_->shape[static_cast<size_t>(d)];
}

bool Tensor::is_contiguous() const {
    int64_t expected = 1;
    for (size_t i = impl_->shape.size(); i-- > 0;) {
        if (impl_->shape[i] == 1) continue;
        if (impl_->strides[i] != expected) return false;
        expected *= impl_->shape[i];
    }
    return true;
}

bool Tensor::is_dense() const {
    // Visit the dims of size > 1 from the smallest stride up: each stride must be the product of
    // the sizes before it.
    std::vector<std::pair<int64_t, int64_t>> dims;  // (stride, size)
    for (size_t i = 0; i < impl_->shape.size(); ++i)
        if (impl_->shape[i] != 1) dims.emplace_back(impl_->strides[i], impl_->shape[i]);
    std::sort(dims.begin(), dims.end());
    int64_t expected = 1;
    for (const auto& [stride, size] : dims) {
        if (stride != expected) return false;
        expected *= size;
    }
    return true;
}

void* Tensor::raw() const {
    return static_cast<char*>(impl_->storage->data) + impl_->offset * static_cast<int64_t>(dtype_size(dtype()));
}

Tensor Tensor::view(const Shape& shape, const Shape& strides, int64_t offset) const {
    auto impl = std::make_shared<TensorImpl>();
    impl->storage = impl_->storage;
    impl->shape = shape;
    impl->strides = strides;
    impl->offset = offset;
    impl->dtype = impl_->dtype;
    return Tensor(std::move(impl));
}

Tensor Tensor::contiguous_copy() const {
    if (is_contiguous()) return *this;
    Tensor out = empty(backend(), shape(), dtype());
    if (numel() > 0) backend().copy(out, *this);
    return out;
}

Tensor Tensor::to(DType dt) const {
    Tensor out = empty(backend(), shape(), dt);
    if (numel() > 0) backend().copy(out, *this);
    return out;
}

Tensor Tensor::to_like(DType dt) const {
    if (!is_dense()) return to(dt);
    Tensor out = empty(backend(), shape(), dt);
    out.impl_->strides = strides();
    if (numel() > 0) backend().copy(out, *this);
    return out;
}

void Tensor::copy_(const Tensor& src) const {
    if (src.shape() != shape())
        throw ShapeError("copy_: source shape " + shape_str(src.shape()) + " differs from destination " +
                         shape_str(shape()));
    if (numel() > 0) backend().copy(*this, src);
}

void Tensor::fill_(double value) const {
    if (numel() == 0) return;
    if (is_contiguous()) {
        backend().fill(*this, value);
    } else {
        copy_(full(backend(), shape(), value, dtype()));
    }
}

std::vector<float> Tensor::to_floats() const {
    std::vector<float> out(static_cast<size_t>(numel()));
    if (out.empty()) return out;
    Tensor f = dtype() == DType::f32 ? contiguous_copy() : to(DType::f32);
    backend().copy_to_host(out.data(), f);
    return out;
}

std::vector<int64_t> Tensor::to_ints() const {
    std::vector<int64_t> out(static_cast<size_t>(numel()));
    if (out.empty()) return out;
    Tensor i = dtype() == DType::i64 ? contiguous_copy() : to(DType::i64);
    backend().copy_to_host(out.data(), i);
    return out;
}

float Tensor::item() const {
    if (numel() != 1) throw ShapeError("item() needs a one-element tensor, got shape " + shape_str(shape()));
    return to_floats()[0];
}

std::string Tensor::str(int64_t max_elems) const {
    std::ostringstream os;
    os << "Tensor(" << shape_str(shape()) << ", " << dtype_name(dtype()) << ", [";
    std::vector<float> v = to_floats();
    for (int64_t i = 0; i < std::min<int64_t>(max_elems, static_cast<int64_t>(v.size())); ++i)
        os << (i ? ", " : "") << v[static_cast<size_t>(i)];
    if (static_cast<int64_t>(v.size()) > max_elems) os << ", ...";
    os << "])";
    return os.str();
}

}  // namespace lab
