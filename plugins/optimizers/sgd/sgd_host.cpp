// The host kernel of sgd.step: the reference every other SGD kernel follows, and what runs on the
// CPU backends (reference, onednn) and, through host copies, on a backend without a kernel of its
// own. Parameters one after another, each split across the OpenMP threads.
#include <cstdint>

#include "lab/kernel_checks.h"
#include "sgd_kernels.h"

namespace lab::sgd {

namespace {

// Below this many elements a parameter is updated by one thread: starting the team costs more
// than the loop (the threshold of the framework's host kernels, framework/src/host_kernels.h).
constexpr int64_t kParallelElems = 1 << 15;

void update(const SgdParam& p, float lr, float momentum, float weight_decay, bool nesterov) {
    checks::require_sgd_update(p.w, p.g, p.buf, momentum);
    const bool use_momentum = momentum != 0.0f;
    float* wp = p.w.data<float>();
    const float* gp = p.g.data<float>();
    float* bp = use_momentum ? p.buf.data<float>() : nullptr;
    const int64_t n = p.w.numel();
#pragma omp parallel for schedule(static) if (n >= kParallelElems)
    for (int64_t i = 0; i < n; ++i) {
        float step = gp[i] + weight_decay * wp[i];
        if (use_momentum) {
            const float b = momentum * bp[i] + step;
            bp[i] = b;
            step = nesterov ? step + momentum * b : b;
        }
        wp[i] -= lr * step;
    }
}

}  // namespace

void sgd_step_host(Backend&, const SgdStep& step) {
    for (const SgdParam& p : step.params) update(p, step.lr, step.momentum, step.weight_decay, step.nesterov);
}

}  // namespace lab::sgd
