// The kernel operation of optimizer/adamw: one AdamW step over every parameter, registered in the
// kernel registry (lab/kernels.h) by this plugin. Its host kernel (adamw_host.cpp) is the reference
// that every other kernel follows element for element; the cuda backend's (adamw_cuda.cu, built
// with LAB_WITH_CUDA) updates all parameters in a few launches. A backend plugin that wants its own
// kernel includes this header and adds one for kAdamWStep under its name.
#pragma once
#include <cstdint>
#include <vector>

#include "lab/kernels.h"
#include "lab/tensor.h"

namespace lab::adamw {

// One parameter: weights, gradient, the two moments (all f32, contiguous, one shape), its decay.
struct AdamWParam {
    Tensor w, g, m, v;
    float weight_decay = 0;
};

// AdamW (Loshchilov & Hutter 2019) at step t (1-based) for every entry of params: decoupled decay
// w -= lr * wd * w, then the Adam step with bias corrections 1 - beta^t.
struct AdamWStep {
    std::vector<AdamWParam> params;
    float lr = 0, beta1 = 0, beta2 = 0, eps = 0;
    int64_t t = 1;

    template <class F>
    void for_each_tensor(F&& f) {
        for (AdamWParam& p : params) {
            f(p.w, KernelAccess::read_write);
            f(p.g, KernelAccess::read);
            f(p.m, KernelAccess::read_write);
            f(p.v, KernelAccess::read_write);
        }
    }
};

inline constexpr KernelOp<AdamWStep> kAdamWStep{"adamw.step"};

// The kernels this plugin registers (LAB_PLUGIN in adamw.cpp); callers go through the registry.
void adamw_step_host(Backend& backend, const AdamWStep& step);  // adamw_host.cpp
void adamw_step_cuda(Backend& backend, const AdamWStep& step);  // adamw_cuda.cu, built with the cuda backend

}  // namespace lab::adamw
