// The host kernel of adamw.step: the reference every other AdamW kernel follows, and what runs on
// the CPU backends (reference, onednn) and, through host copies, on a backend without a kernel of
// its own. Parameters one after another, each split across the OpenMP threads: the update is
// memory-bound, and a parameter of BERT size (tens of millions of elements) fills every core.
#include <cmath>
#include <cstdint>

#include "adamw_kernels.h"
#include "lab/kernel_checks.h"

namespace lab::adamw {

namespace {

// Below this many elements a parameter is updated by one thread: starting the team costs more
// than the loop (the threshold of the framework's host kernels, framework/src/host_kernels.h).
constexpr int64_t kParallelElems = 1 << 15;

void update(const AdamWParam& p, float lr, float beta1, float beta2, float eps, int64_t t) {
    checks::require_adamw_update(p.w, p.g, p.m, p.v, t);
    float* wp = p.w.data<float>();
    const float* gp = p.g.data<float>();
    float* mp = p.m.data<float>();
    float* vp = p.v.data<float>();
    const double steps = static_cast<double>(t);
    const float bias_correction1 = static_cast<float>(1.0 - std::pow(static_cast<double>(beta1), steps));
    const float bias_correction2 = static_cast<float>(1.0 - std::pow(static_cast<double>(beta2), steps));
    const float decay = lr * p.weight_decay;
    const int64_t n = p.w.numel();
#pragma omp parallel for schedule(static) if (n >= kParallelElems)
    for (int64_t i = 0; i < n; ++i) {
        const float grad = gp[i];
        float weight = wp[i] - decay * wp[i];
        const float m_new = beta1 * mp[i] + (1.0f - beta1) * grad;
        const float v_new = beta2 * vp[i] + (1.0f - beta2) * grad * grad;
        const float m_hat = m_new / bias_correction1;
        const float v_hat = v_new / bias_correction2;
        weight -= lr * m_hat / (std::sqrt(v_hat) + eps);
        mp[i] = m_new;
        vp[i] = v_new;
        wp[i] = weight;
    }
}

}  // namespace

void adamw_step_host(Backend&, const AdamWStep& step) {
    for (const AdamWParam& p : step.params) update(p, step.lr, step.beta1, step.beta2, step.eps, step.t);
}

}  // namespace lab::adamw
