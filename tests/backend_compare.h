// What the tests comparing a backend with lab::HostBackend share (the conformance suite,
// backend_ops.h and test_backend_ops.cpp, and test_cuda_*.cpp): seeded random values, the relative
// difference they measure, the matmul cases, whose operands are laid out and multiplied the same
// way on any backend, and the binary op cases with size-1 dims, run forward and backward through
// lab::ops.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "lab/autograd.h"
#include "lab/backend.h"
#include "lab/ops.h"
#include "lab/registry.h"
#include "lab/tensor.h"

namespace lab_test {

// Every plugin of the build (backend_cuda.so among them when it was built), loaded once.
inline lab::Registry& plugin_registry() {
    static std::unique_ptr<lab::Registry> registry = [] {
        auto loaded = std::make_unique<lab::Registry>();
        loaded->load_directory(LAB_PLUGIN_DIR);
        return loaded;
    }();
    return *registry;
}

inline std::vector<float> random_values(int64_t count, uint32_t seed, float low = -1.0f, float high = 1.0f) {
    std::mt19937 generator(seed);
    std::uniform_real_distribution<float> uniform(low, high);
    std::vector<float> values(static_cast<size_t>(count));
    for (float& v : values) v = uniform(generator);
    return values;
}

// The values rounded to bf16 (nearest even) and back: inputs that a bf16 kernel reads exactly.
inline std::vector<float> rounded_to_bf16(std::vector<float> values) {
    for (float& v : values) v = lab::bf16_to_f32(lab::f32_to_bf16(v));
    return values;
}

// max |got - want| / max |want|. Infinite when the sizes differ or either holds a NaN, or an
// infinity the other does not hold at the same place (a query with no visible key has lse = -inf
// on every backend); matching infinities are left out of both maxima.
inline double relative_difference(const std::vector<float>& got, const std::vector<float>& want) {
    if (got.size() != want.size()) return std::numeric_limits<double>::infinity();
    double largest = 0, difference = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        if (std::isnan(got[i]) || std::isnan(want[i])) return std::numeric_limits<double>::infinity();
        if (std::isinf(got[i]) || std::isinf(want[i])) {
            if (got[i] != want[i]) return std::numeric_limits<double>::infinity();
            continue;
        }
        largest = std::max(largest, std::fabs(double(want[i])));
        difference = std::max(difference, std::fabs(double(got[i]) - double(want[i])));
    }
    return largest > 0 ? difference / largest : difference;
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

// A broadcast binary op whose operands both have size-1 dims, as in linear attention at T = 1:
// numerator [B, H, 1, D] over normaliser [B, H, 1, 1]. Its backward sums the gradient of the
// broadcast operand over the broadcast dims and, for mul and div, runs the op again on broadcast
// views, so a kernel that mislays a size-1 dim shows in the output or in either gradient.
struct BinaryGradCase {
    std::string name;
    lab::Shape a_shape, b_shape;  // broadcast against each other
    // a and b are slices [..., 0:D] and [..., D:D+1] of one leaf [..., D + 1] (strided views,
    // how linear attention splits numerator and normaliser); b_shape must be a_shape with last dim 1.
    bool one_leaf = false;
};

inline std::vector<BinaryGradCase> size_one_binary_cases() {
    return {
        {"[3,4,1,4] by [3,4,1,1]", {3, 4, 1, 4}, {3, 4, 1, 1}},
        {"[3,4,2,4] by [3,4,2,1]", {3, 4, 2, 4}, {3, 4, 2, 1}},
        {"slices [3,4,1,0:4] by [3,4,1,4:5]", {3, 4, 1, 4}, {3, 4, 1, 1}, true},
        {"[3,4,1,1] by [3,4,1,4]", {3, 4, 1, 1}, {3, 4, 1, 4}},
        {"[1,4,1,4] by [1,4,1,1]", {1, 4, 1, 4}, {1, 4, 1, 1}},
        {"[3,1,5] by [1,1,5]", {3, 1, 5}, {1, 1, 5}},
        {"[2,1,3,1] by [2,1,1,1]", {2, 1, 3, 1}, {2, 1, 1, 1}},
        {"[2,3,1] by [1,3,1]", {2, 3, 1}, {1, 3, 1}},
        {"[1,4,1] by [3,1,1]", {1, 4, 1}, {3, 1, 1}},
    };
}

// The op's output and the gradients of its leaves for a seeded upstream gradient. With one_leaf,
// da holds the leaf's gradient and db is empty.
struct BinaryGrads {
    std::vector<float> out, da, db;
};

inline BinaryGrads binary_with_grads(lab::Backend& backend, const BinaryGradCase& c, lab::BinaryOp op) {
    // b in [0.5, 2], away from 0 for div.
    lab::Tensor a_leaf, b_leaf, a, b;
    if (c.one_leaf) {
        lab::Shape leaf_shape = c.a_shape;
        const int64_t d = c.a_shape.back();
        leaf_shape.back() = d + 1;
        std::vector<float> values = random_values(lab::shape_numel(leaf_shape), 91, -2.0f, 2.0f);
        const std::vector<float> divisors = random_values(lab::shape_numel(c.b_shape), 92, 0.5f, 2.0f);
        for (size_t row = 0; row < divisors.size(); ++row) values[row * static_cast<size_t>(d + 1) + d] = divisors[row];
        a_leaf = lab::Tensor::from_floats(backend, leaf_shape, values);
        a_leaf.set_requires_grad(true);
        a = lab::ops::slice(a_leaf, -1, 0, d);
        b = lab::ops::slice(a_leaf, -1, d, d + 1);
    } else {
        a_leaf = lab::Tensor::from_floats(backend, c.a_shape,
                                          random_values(lab::shape_numel(c.a_shape), 91, -2.0f, 2.0f));
        b_leaf = lab::Tensor::from_floats(backend, c.b_shape,
                                          random_values(lab::shape_numel(c.b_shape), 92, 0.5f, 2.0f));
        a_leaf.set_requires_grad(true);
        b_leaf.set_requires_grad(true);
        a = a_leaf;
        b = b_leaf;
    }
    lab::Tensor out;
    switch (op) {
        case lab::BinaryOp::add: out = lab::ops::add(a, b); break;
        case lab::BinaryOp::sub: out = lab::ops::sub(a, b); break;
        case lab::BinaryOp::mul: out = lab::ops::mul(a, b); break;
        case lab::BinaryOp::div: out = lab::ops::div(a, b); break;
    }
    const lab::Tensor upstream =
        lab::Tensor::from_floats(backend, out.shape(), random_values(out.numel(), 93, -1.0f, 1.0f));
    lab::backward(out, upstream);
    BinaryGrads grads{out.to_floats(), a_leaf.grad().to_floats(), {}};
    if (!c.one_leaf) grads.db = b_leaf.grad().to_floats();
    return grads;
}

}  // namespace lab_test
