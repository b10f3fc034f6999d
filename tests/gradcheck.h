// Finite-difference gradient check for differentiable ops (test-only).
//
// For a function f(inputs) -> Tensor of any shape we check the gradient of the scalar
// L = sum(f(x) * R), R a fixed random tensor of f's output shape, with respect to EVERY element of
// every input:
//   analytic: lab::backward(f(x), R), which seeds dL/df = R directly. Seeding with R instead of
//             building mul+sum keeps each check independent of mul's and sum's backward (those
//             have checks of their own), so a broken op shows up in its own check only.
//   numeric:  central differences (L(x + eps e_j) - L(x - eps e_j)) / (2 eps), with f run in f32
//             under NoGradGuard and L accumulated in double from f's f32 outputs.
//
// Any tensor f needs that is not checked (integer ids and targets, u8 masks, generators) is
// captured by the closure; `inputs` holds only the f32 tensors to check.
#pragma once
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "lab/autograd.h"
#include "lab/backend.h"
#include "lab/finite_difference.h"
#include "lab/tensor.h"

namespace lab::testing {

using GradFn = std::function<Tensor(const std::vector<Tensor>& inputs)>;

struct GradCheckOptions {
    // Step of the central difference. With inputs ~N(0, 1), f32 forwards and eps = 1e-2 the
    // truncation error (eps^2 / 6 * f''') and the f32 rounding noise of L divided by 2 eps stay
    // small: over all checks in test_gradcheck.cpp the worst scaled error measured on the
    // HostBackend is 4e-4 (div, d/db = -a/b^2 with b near 0.5); most checks are below 5e-5.
    float eps = 1e-2f;
    // Pass when |analytic - numeric| <= tolerance * max(1, |numeric|) for every element. 1e-2 is
    // some 25x above the measured noise and far below what real bugs produce: a missing factor of
    // 2 or 1/N, a transposed matmul operand, a dropped term of a softmax or layer_norm gradient or
    // a gradient routed to the wrong element all give errors of order |gradient| ~ 0.1 - 1 with R
    // ~N(0, 1) (test_gradcheck.cpp's "gradcheck: the checker rejects wrong gradients" shows it
    // for the first two). The floor max(1, .) keeps the check absolute for gradients much smaller
    // than 1, where a relative test would only measure noise.
    double tolerance = 1e-2;
    uint32_t seed = 20240611;  // for R
};

// lab::FiniteDifferenceReport (max |analytic - numeric|, worst scaled error and where) of one input.
struct InputReport : FiniteDifferenceReport {
    std::string problem;  // non-empty when the gradient is missing a shape or has the wrong one
};

struct GradCheckResult {
    std::vector<InputReport> inputs;
    double tolerance = 0.0;
    bool ok() const {
        for (const auto& r : inputs)
            if (!r.problem.empty() || !(r.worst_ratio <= tolerance)) return false;
        return true;
    }
    std::string summary() const {
        std::ostringstream out;
        for (size_t i = 0; i < inputs.size(); ++i) {
            const InputReport& r = inputs[i];
            out << "input " << i << ": max |analytic - numeric| = " << r.max_abs_diff
                << ", worst scaled error " << r.worst_ratio << " at element " << r.worst_index << " (analytic "
                << r.worst_analytic << ", numeric " << r.worst_numeric << ")";
            if (!r.problem.empty()) out << " [" << r.problem << "]";
            out << "\n";
        }
        return out.str();
    }
};

// N(0, 1) values; the same seed always gives the same numbers (tests are reproducible).
inline std::vector<float> normal_floats(size_t n, uint32_t seed) {
    std::mt19937 gen(seed);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(gen);
    return v;
}

// A leaf of `shape` filled with N(0, 1) values passed through `map` (e.g. to keep log's input
// positive or relu's away from its kink).
inline Tensor random_input(Backend& backend, const Shape& shape, uint32_t seed,
                           const std::function<float(float)>& map = nullptr) {
    std::vector<float> v = normal_floats(static_cast<size_t>(shape_numel(shape)), seed);
    if (map)
        for (auto& x : v) x = map(x);
    return Tensor::from_floats(backend, shape, v);
}

// Runs the check and returns the per-input report; gradcheck() below wraps it in Catch assertions.
inline GradCheckResult compute_gradcheck(const GradFn& f, const std::vector<Tensor>& inputs,
                                         const GradCheckOptions& options = {}) {
    GradCheckResult result;
    result.tolerance = options.tolerance;
    std::vector<std::vector<float>> values;
    for (const Tensor& t : inputs) values.push_back(t.to_floats());

    auto make_inputs = [&](bool requires_grad) {
        std::vector<Tensor> leaves;
        for (size_t i = 0; i < inputs.size(); ++i) {
            Tensor leaf = Tensor::from_floats(inputs[i].backend(), inputs[i].shape(), values[i]);
            leaf.set_requires_grad(requires_grad);
            leaves.push_back(leaf);
        }
        return leaves;
    };

    // Analytic gradients.
    std::vector<Tensor> leaves = make_inputs(true);
    Tensor out = f(leaves);
    const Shape out_shape = out.shape();
    const std::vector<float> weights = normal_floats(static_cast<size_t>(out.numel()), options.seed);
    Tensor seed = Tensor::from_floats(out.backend(), out_shape, weights);
    lab::backward(out, seed);

    // Numeric gradients, element by element.
    auto loss_at = [&]() {
        NoGradGuard no_grad;
        Tensor y = f(make_inputs(false));
        return weighted_sum(y.to_floats(), weights);
    };
    for (size_t i = 0; i < inputs.size(); ++i) {
        InputReport report;
        Tensor grad = leaves[i].grad();
        std::vector<float> analytic(values[i].size(), 0.0f);  // no gradient at all means zero
        if (grad.defined()) {
            if (grad.shape() != inputs[i].shape())
                report.problem = "gradient shape " + shape_str(grad.shape()) + " differs from input shape " +
                                 shape_str(inputs[i].shape());
            else
                analytic = grad.to_floats();
        }
        if (report.problem.empty())
            static_cast<FiniteDifferenceReport&>(report) = central_differences(analytic, values[i], options.eps, loss_at);
        result.inputs.push_back(report);
    }
    return result;
}

// The check as Catch assertions: on failure INFO prints every input's max |analytic - numeric|.
inline void gradcheck(const std::string& name, const GradFn& f, const std::vector<Tensor>& inputs,
                      const GradCheckOptions& options = {}) {
    GradCheckResult result = compute_gradcheck(f, inputs, options);
    INFO("gradcheck " << name << " (tolerance " << options.tolerance << " * max(1, |numeric|)):\n"
                      << result.summary());
    CHECK(result.ok());
}

}  // namespace lab::testing
