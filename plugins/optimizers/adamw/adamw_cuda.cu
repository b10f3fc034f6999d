// The cuda backend's kernel for adamw.step: every parameter in a few launches instead of one or
// more per parameter, on the backend's stream (Backend::native_stream), following the host kernel
// (adamw_host.cpp) element for element. Built when the cuda backend is (LAB_HAVE_CUDA).
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "adamw_kernels.h"
#include "lab/error.h"
#include "lab/kernel_checks.h"

namespace lab::adamw {

namespace {

constexpr int kThreads = 256;

// The batch rides in the kernel's parameter space (under the 4 KB limit for kernel arguments):
// per tensor its pointers, size and decay (lr * weight decay), and the prefix sums of its block
// counts, from which a block finds its tensor.
constexpr int kMaxTensors = 64;
constexpr int kBlockElems = kThreads * 4;  // elements per block: 4 per thread

struct DeviceParam {
    float* w;
    const float* g;
    float* m;
    float* v;
    int64_t numel;
    float decay;
};

struct Batch {
    int count = 0;
    int64_t first_block[kMaxTensors + 1] = {};  // first_block[count]: blocks in all
    DeviceParam tensors[kMaxTensors];
};

struct StepConstants {
    float lr, beta1, beta2, eps, bias_correction1, bias_correction2;
};

static_assert(sizeof(Batch) + sizeof(StepConstants) <= 4000, "AdamW kernel arguments must stay under 4 KB");

// The host kernel per element: decoupled decay first, then the Adam step from the updated moments
// and the bias corrections. Block b updates elements [j * 1024, (j + 1) * 1024) of the tensor
// whose block range holds b (j its block within that tensor).
__global__ void adamw_kernel(Batch batch, StepConstants step) {
    const int64_t block = blockIdx.x;
    int lo = 0, hi = batch.count - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (batch.first_block[mid] <= block) lo = mid;
        else hi = mid - 1;
    }
    const DeviceParam& t = batch.tensors[lo];
    const int64_t begin = (block - batch.first_block[lo]) * kBlockElems;
    for (int64_t i = begin + threadIdx.x; i < min(t.numel, begin + kBlockElems); i += blockDim.x) {
        const float grad = t.g[i];
        float weight = t.w[i] - t.decay * t.w[i];
        const float m_new = step.beta1 * t.m[i] + (1.0f - step.beta1) * grad;
        const float v_new = step.beta2 * t.v[i] + (1.0f - step.beta2) * grad * grad;
        const float m_hat = m_new / step.bias_correction1;
        const float v_hat = v_new / step.bias_correction2;
        weight -= step.lr * m_hat / (sqrtf(v_hat) + step.eps);
        t.m[i] = m_new;
        t.v[i] = v_new;
        t.w[i] = weight;
    }
}

// A bad launch configuration shows up here (the cuda backend's LAB_CUDA_LAUNCHED lives in its own
// library, with hidden symbols).
void check_launch(const char* kernel) {
    const cudaError_t status = cudaGetLastError();
    if (status != cudaSuccess)
        throw BackendError(std::string("optimizer adamw: the launch of kernel ") + kernel +
                           " failed: " + cudaGetErrorString(status) + " (" + cudaGetErrorName(status) +
                           "); hint: run with CUDA_LAUNCH_BLOCKING=1 to see which call failed");
}

}  // namespace

void adamw_step_cuda(Backend& backend, const AdamWStep& call) {
    // Every entry is checked before any is updated (the host kernel checks each just before it).
    for (const AdamWParam& p : call.params) checks::require_adamw_update(p.w, p.g, p.m, p.v, call.t);
    const auto stream = static_cast<cudaStream_t>(backend.native_stream());
    const double steps = static_cast<double>(call.t);
    const StepConstants step{call.lr, call.beta1, call.beta2, call.eps,
                             static_cast<float>(1.0 - std::pow(static_cast<double>(call.beta1), steps)),
                             static_cast<float>(1.0 - std::pow(static_cast<double>(call.beta2), steps))};
    Batch batch;
    auto launch = [&] {
        if (batch.count == 0) return;
        adamw_kernel<<<static_cast<unsigned>(batch.first_block[batch.count]), kThreads, 0, stream>>>(batch, step);
        check_launch("adamw_kernel");
        batch = Batch{};
    };
    for (const AdamWParam& p : call.params) {
        const int64_t n = p.w.numel();
        if (n == 0) continue;
        batch.tensors[batch.count] = {p.w.data<float>(), p.g.data<float>(), p.m.data<float>(), p.v.data<float>(), n,
                                      call.lr * p.weight_decay};
        const int64_t blocks = (n + kBlockElems - 1) / kBlockElems;
        batch.first_block[batch.count + 1] = batch.first_block[batch.count] + blocks;
        if (++batch.count == kMaxTensors) launch();
    }
    launch();
}

}  // namespace lab::adamw
