// Tensor: a view (shape, strides, offset, dtype) of storage owned by a backend's allocator,
// plus the autograd fields that ops fill in. Views made by reshape/transpose/slice share the
// storage. A Tensor is a cheap handle; copies of it alias the same tensor.
//
// Lifetime rule: a Backend outlives every tensor it allocated (the trainer and the tests create
// the backend first and destroy it last).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "lab/dtype.h"

namespace lab {

class Backend;
struct Node;

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& s);  // "[2, 3, 4]"
int64_t shape_numel(const Shape& s);
Shape contiguous_strides(const Shape& s);

// A block of memory. The release callback returns it to the allocator that made it.
struct Storage {
    void* data = nullptr;
    size_t bytes = 0;
    Backend* backend = nullptr;
    std::function<void(void*, size_t)> release;
    Storage(void* d, size_t b, Backend* be, std::function<void(void*, size_t)> r)
        : data(d), bytes(b), backend(be), release(std::move(r)) {}
    Storage(const Storage&) = delete;
    Storage& operator=(const Storage&) = delete;
    ~Storage() { if (release) release(data, bytes); }
};

struct TensorImpl {
    std::shared_ptr<Storage> storage;
    Shape shape;
    Shape strides;        // in elements
    int64_t offset = 0;   // in elements
    DType dtype = DType::f32;
    bool requires_grad = false;
    std::shared_ptr<TensorImpl> grad;      // accumulated gradient of a leaf
    std::shared_ptr<Node> grad_fn;         // the op that produced this tensor (null for leaves)
};

class Tensor {
public:
    Tensor() = default;
    explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

    // ---- factories (memory from `backend`'s caching allocator) ----
    static Tensor empty(Backend& backend, const Shape& shape, DType dtype = DType::f32);
    static Tensor zeros(Backend& backend, const Shape& shape, DType dtype = DType::f32);
    static Tensor full(Backend& backend, const Shape& shape, double value, DType dtype = DType::f32);
    static Tensor from_floats(Backend& backend, const Shape& shape, const std::vector<float>& values);
    static Tensor from_ints(Backend& backend, const Shape& shape, const std::vector<int64_t>& values,
                            DType dtype = DType::i64);
    static Tensor from_host(Backend& backend, const Shape& shape, DType dtype, const void* data);

    bool defined() const { return impl_ != nullptr; }
    const Shape& shape() const { return impl_->shape; }
    const Shape& strides() const { return impl_->strides; }
    int64_t offset() const { return impl_->offset; }
    int64_t dim() const { return static_cast<int64_t>(impl_->shape.size()); }
    int64_t size(int64_t d) const;  // negative d counts from the end
    int64_t numel() const { return shape_numel(impl_->shape); }
    DType dtype() const { return impl_->dtype; }
    Backend& backend() const { return *impl_->storage->backend; }
    const std::shared_ptr<Storage>& storage() const { return impl_->storage; }
    bool is_contiguous() const;
    // True when the elements fill numel() consecutive slots from raw() on in some order of the
    // dims: a contiguous tensor or a permutation of one (a transposed view), no gaps, no overlaps.
    bool is_dense() const;
    bool same_storage(const Tensor& other) const { return impl_->storage == other.impl_->storage; }
    // True when this handle is the only one to its tensor and no other tensor views its storage:
    // a write into it in place is seen by no one else (autograd adds gradients into such tensors).
    bool is_sole_reference() const { return impl_.use_count() == 1 && impl_->storage.use_count() == 1; }

    // Pointer to the first element (host or device memory, as the backend's).
    void* raw() const;
    template <class T> T* data() const { return static_cast<T*>(raw()); }

    // A new tensor that shares storage with this one (no autograd history).
    Tensor view(const Shape& shape, const Shape& strides, int64_t offset) const;
    Tensor detach() const { return view(shape(), strides(), offset()); }

    // ---- autograd ----
    bool requires_grad() const { return impl_->requires_grad; }
    Tensor& set_requires_grad(bool on) { impl_->requires_grad = on; return *this; }
    Tensor grad() const { return Tensor(impl_->grad); }
    void set_grad(const Tensor& g) { impl_->grad = g.impl_; }
    const std::shared_ptr<Node>& grad_fn() const { return impl_->grad_fn; }
    void set_grad_fn(std::shared_ptr<Node> fn) { impl_->grad_fn = std::move(fn); }
    TensorImpl* id() const { return impl_.get(); }

    // ---- host access (copies through the backend; any layout, any dtype) ----
    std::vector<float> to_floats() const;
    std::vector<int64_t> to_ints() const;
    float item() const;  // a one-element tensor's value
    std::string str(int64_t max_elems = 16) const;

    // Element-type conversion into a new contiguous tensor.
    Tensor to(DType dtype) const;
    // Element-type conversion into a new tensor with this one's strides when it is dense (so a
    // transposed view converts in one pass over consecutive memory), else contiguous.
    Tensor to_like(DType dtype) const;
    // Contiguous copy (or this tensor itself when it already is contiguous).
    Tensor contiguous_copy() const;
    // Overwrite this tensor's elements (any layout) with those of src (same shape).
    void copy_(const Tensor& src) const;
    void fill_(double value) const;

private:
    std::shared_ptr<TensorImpl> impl_;
};

}  // namespace lab
