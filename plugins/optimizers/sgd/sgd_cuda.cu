// The cuda backend's kernel for sgd.step: one grid-stride launch per parameter on the backend's
// stream (Backend::native_stream), following the host kernel (sgd_host.cpp) element for element.
// Built when the cuda backend is (LAB_HAVE_CUDA).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "lab/error.h"
#include "lab/kernel_checks.h"
#include "sgd_kernels.h"

namespace lab::sgd {

namespace {

constexpr int kThreads = 256;

// buf null without momentum. Grid-stride.
__global__ void sgd_kernel(float* w, const float* g, float* buf, int64_t n, float lr, float momentum,
                           float weight_decay, bool nesterov) {
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        float step = g[i] + weight_decay * w[i];
        if (buf != nullptr) {
            const float b = momentum * buf[i] + step;
            buf[i] = b;
            step = nesterov ? step + momentum * b : b;
        }
        w[i] -= lr * step;
    }
}

// The cuda backend's own CUDA error helpers live in its library, with hidden symbols.
void check(cudaError_t status, const char* call) {
    if (status != cudaSuccess)
        throw BackendError(std::string("optimizer sgd: ") + call + " failed: " + cudaGetErrorString(status) + " (" +
                           cudaGetErrorName(status) + "); hint: run with CUDA_LAUNCH_BLOCKING=1 to see which call failed");
}

// Blocks for a grid-stride loop over n elements: enough to fill the device (32 per multiprocessor,
// as the cuda backend's elementwise kernels), not one per element.
int grid_for(int64_t n) {
    int device = 0, multiprocessors = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    check(cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, device),
          "cudaDeviceGetAttribute(multiprocessors)");
    const int64_t blocks = (n + kThreads - 1) / kThreads;
    return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(blocks, int64_t{multiprocessors} * 32)));
}

}  // namespace

void sgd_step_cuda(Backend& backend, const SgdStep& call) {
    const auto stream = static_cast<cudaStream_t>(backend.native_stream());
    const bool use_momentum = call.momentum != 0.0f;
    for (const SgdParam& p : call.params) {
        checks::require_sgd_update(p.w, p.g, p.buf, call.momentum);
        const int64_t n = p.w.numel();
        if (n == 0) continue;
        sgd_kernel<<<grid_for(n), kThreads, 0, stream>>>(p.w.data<float>(), p.g.data<float>(),
                                                         use_momentum ? p.buf.data<float>() : nullptr, n, call.lr,
                                                         call.momentum, call.weight_decay, call.nesterov);
        check(cudaGetLastError(), "the launch of kernel sgd_kernel");
    }
}

}  // namespace lab::sgd
