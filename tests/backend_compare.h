// What the tests comparing a backend with lab::HostBackend share (test_backend_conformance.cpp for
// oneDNN, test_cuda_*.cpp for cuda): seeded random values, and the matmul cases, whose operands
// are laid out and multiplied the same way on any backend.
#pragma once
#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "lab/backend.h"
#include "lab/tensor.h"

namespace lab_test {

inline std::vector<float> random_values(int64_t count, uint32_t seed, float low = -1.0f, float high = 1.0f) {
    std::mt19937 generator(seed);
    std::uniform_real_distribution<float> uniform(low, high);
    std::vector<float> values(static_cast<size_t>(count));
    for (float& v : values) v = uniform(generator);
    return values;
}

struct MatmulCase {
    std::string name;
    lab::Shape a_shape, b_shape;  // logical [..., M, K] and [..., K, N]
    bool a_transposed = false, b_transposed = false;
    bool b_expanded = false;  // b's batch dims broadcast by stride 0 instead of size 1
    bool bias = false;
    float alpha = 1.0f;
    bool accumulate = false;
    lab::DType dtype = lab::DType::f32;   // the operands' dtype
    lab::DType inputs = lab::DType::f32;  // Backend::set_matmul_inputs
};

// An operand [..., R, S] stored contiguously or as the transpose of a [..., S, R] array, with
// batch dims expanded (stride 0) when asked.
inline lab::Tensor matmul_operand(lab::Backend& backend, const lab::Shape& shape, bool transposed, bool expanded,
                                  const std::vector<float>& values, lab::DType dtype) {
    const size_t rank = shape.size();
    lab::Shape storage_shape = shape;
    if (expanded)
        for (size_t i = 0; i + 2 < rank; ++i) storage_shape[i] = 1;
    if (transposed) std::swap(storage_shape[rank - 1], storage_shape[rank - 2]);
    lab::Shape strides = lab::contiguous_strides(storage_shape);
    if (transposed) std::swap(strides[rank - 1], strides[rank - 2]);
    if (expanded)
        for (size_t i = 0; i + 2 < rank; ++i) strides[i] = 0;
    lab::Tensor storage = lab::Tensor::from_floats(backend, storage_shape, values);
    if (dtype != lab::DType::f32) storage = storage.to(dtype);
    return storage.view(shape, strides, 0);
}

// A case's seeded values; operands() lays them out on a backend, multiply() runs the case there.
class MatmulValues {
public:
    struct Operands {
        lab::Tensor a, b, bias, out;
    };

    explicit MatmulValues(const MatmulCase& c) : case_(c) {
        const size_t rank = c.a_shape.size();
        c_shape_.resize(rank);
        for (size_t i = 0; i + 2 < rank; ++i) c_shape_[i] = std::max(c.a_shape[i], c.b_shape[i]);
        c_shape_[rank - 2] = c.a_shape[rank - 2];
        c_shape_[rank - 1] = c.b_shape[rank - 1];
        lab::Shape b_storage = c.b_shape;
        if (c.b_expanded)
            for (size_t i = 0; i + 2 < rank; ++i) b_storage[i] = 1;
        a_ = random_values(lab::shape_numel(c.a_shape), 11);
        b_ = random_values(lab::shape_numel(b_storage), 12);
        bias_ = random_values(c_shape_.back(), 13);
        c_initial_ = random_values(lab::shape_numel(c_shape_), 14);
    }

    const lab::Shape& c_shape() const { return c_shape_; }

    Operands operands(lab::Backend& backend) const {
        return {matmul_operand(backend, case_.a_shape, case_.a_transposed, false, a_, case_.dtype),
                matmul_operand(backend, case_.b_shape, case_.b_transposed, case_.b_expanded, b_, case_.dtype),
                lab::Tensor::from_floats(backend, {c_shape_.back()}, bias_),
                lab::Tensor::from_floats(backend, c_shape_, c_initial_)};
    }

    // out = alpha a @ b (+ bias) (+ out), out starting from the case's initial values every time
    // (accumulate adds into it), with the case's matmul inputs set on the backend.
    void multiply(lab::Backend& backend, const Operands& ops) const {
        backend.set_matmul_inputs(case_.inputs);
        ops.out.copy_(lab::Tensor::from_floats(backend, c_shape_, c_initial_));
        backend.matmul(ops.out, ops.a, ops.b, case_.bias ? &ops.bias : nullptr, case_.alpha, case_.accumulate);
    }

private:
    MatmulCase case_;
    lab::Shape c_shape_;
    std::vector<float> a_, b_, bias_, c_initial_;
};

}  // namespace lab_test
