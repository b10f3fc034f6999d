// The kernel operation of optimizer/sgd: one SGD step over every parameter, registered in the
// kernel registry (lab/kernels.h) by this plugin. Its host kernel (sgd_host.cpp) is the reference
// that every other kernel follows element for element; the cuda backend's is sgd_cuda.cu (built
// with LAB_WITH_CUDA). A backend plugin that wants its own kernel includes this header and adds
// one for kSgdStep under its name.
#pragma once
#include <vector>

#include "lab/kernels.h"
#include "lab/tensor.h"

namespace lab::sgd {

// One parameter: weights, gradient and momentum buffer (f32, contiguous, one shape); `buf` is
// undefined when momentum == 0.
struct SgdParam {
    Tensor w, g, buf;
};

// SGD with momentum, PyTorch's convention: buf = momentum * buf + (g + wd * w); w -= lr * buf, or
// with nesterov w -= lr * ((g + wd * w) + momentum * buf).
struct SgdStep {
    std::vector<SgdParam> params;
    float lr = 0, momentum = 0, weight_decay = 0;
    bool nesterov = false;

    template <class F>
    void for_each_tensor(F&& f) {
        for (SgdParam& p : params) {
            f(p.w, KernelAccess::read_write);
            f(p.g, KernelAccess::read);
            f(p.buf, KernelAccess::read_write);
        }
    }
};

inline constexpr KernelOp<SgdStep> kSgdStep{"sgd.step"};

// The kernels this plugin registers (LAB_PLUGIN in sgd.cpp); callers go through the registry.
void sgd_step_host(Backend& backend, const SgdStep& step);  // sgd_host.cpp
void sgd_step_cuda(Backend& backend, const SgdStep& step);  // sgd_cuda.cu, built with the cuda backend

}  // namespace lab::sgd
