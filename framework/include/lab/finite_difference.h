// Central finite differences against autograd, one input at a time: the core of the gradient
// checks in tests/gradcheck.h (every op) and in the attention conformance check
// (attention_check.h). Both check L = sum(f(x) * R) for a fixed random R, with the forwards in
// f32 and L accumulated in double.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

namespace lab {

// sum_i y[i] * weights[i], in double.
double weighted_sum(const std::vector<float>& y, const std::vector<float>& weights);

struct FiniteDifferenceReport {
    double max_abs_diff = 0.0;  // max over elements of |analytic - numeric|
    double worst_ratio = 0.0;   // max of |analytic - numeric| / max(1, |numeric|); infinite on NaN
    int64_t worst_index = -1;   // flat index of the worst element (-1: no element)
    double worst_analytic = 0.0, worst_numeric = 0.0;
};

// For every element j of `values`: numeric_j = (loss() with values[j] + eps - loss() with
// values[j] - eps) / (2 eps), compared with analytic[j] (same size as values). `loss` reads
// `values` as they are when it is called; each element is restored after its two evaluations.
FiniteDifferenceReport central_differences(const std::vector<float>& analytic, std::vector<float>& values,
                                           float eps, const std::function<double()>& loss);

}  // namespace lab
