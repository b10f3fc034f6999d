// CudaBackend: the Backend interface on one NVIDIA GPU.
//
// - Memory: lab::CachingAllocator over cudaMalloc (never managed memory). All work is queued on
//   the backend's one stream, so a block freed by one kernel's tensors can be handed to the next
//   kernel without a synchronisation (stream order), as PyTorch's caching allocator does.
// - Matmul: cuBLASLt (cuda_matmul.cpp), f32 (TF32 tensor cores when `tf32 = true`) or bf16 inputs
//   with f32 accumulation; the bias, and the tanh GELU of matmul_gelu_tanh, are cuBLASLt
//   epilogues; a matmul descriptor, its layouts and the heuristic's algorithm are cached by shape.
//   Operand layouts are worked out on the host by plan_matmul (cuda_matmul_plan.h, unit-tested
//   without a GPU).
// - Attention: cuDNN's fused scaled-dot-product attention (cuda_sdpa.cpp: graphs built through the
//   cuDNN frontend and cached by shape) where it applies: bf16 precision, no dropout, no window,
//   no ALiBi slopes, head size a multiple of 8 up to 128, key padding only at the end of each row
//   (sequence lengths). Everything else (f32, dropout with our Philox mask, windows, ALiBi, other
//   padding) runs the backend's own FlashAttention-style kernels (cuda_attention.cu), which follow
//   the CPU kernel's definition exactly.
// - Every other kernel is the backend's own (cuda_elementwise.cu, cuda_updates.cu, cuda_rows.cu);
//   the optimizers' updates are not Backend kernels: optimizer/adamw and optimizer/sgd register
//   theirs for "cuda" in the kernel registry (lab/kernels.h);
//   dropout draws the same counter-based Philox numbers as the CPU backends (cuda_philox.h), so a
//   seed gives the same mask on both.
// - Errors: every CUDA, cuBLASLt and cuDNN call is checked (cuda_check.h) and throws
//   lab::BackendError naming the call. Without a usable device the factory throws
//   lab::DeviceUnavailableError saying why (no driver, "driver version is insufficient", no GPU,
//   device index out of range).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "lab/backend.h"

namespace lab::cuda {

struct Settings {
    int device = 0;
    bool tf32 = false;            // f32 matmuls on TF32 tensor cores
    bool cudnn_attention = true;  // cuDNN's fused attention where it applies
};

// Why device `index` cannot be used ("" when it can): asks the CUDA runtime, which answers "CUDA
// driver version is insufficient for CUDA runtime version" on a machine with the toolkit and no
// driver. *count gets the number of devices (0 when none).
std::string probe_device(int index, int* count);

class CudaBackend;

// cuda_attention.cu: seq_q[b] = T and seq_kv[b] = the number of visible keys of key padding mask
// [B, S] (nonzero = padded), both i32 [B]; true when every row is visible keys followed by
// padding, with at least one visible key (then lengths say what the mask says). Reads back one
// flag (a synchronisation).
bool padding_lengths(CudaBackend& backend, const Tensor& mask, int64_t T, const Tensor& seq_q, const Tensor& seq_kv);

class MatmulCache;  // cuda_matmul.cpp
class SdpaGraphs;   // cuda_sdpa.cpp
struct MatmulCacheDeleter {
    void operator()(MatmulCache* cache) const;
};
struct SdpaGraphsDeleter {
    void operator()(SdpaGraphs* graphs) const;
};

class CudaBackend final : public Backend {
public:
    explicit CudaBackend(const Settings& settings);  // throws DeviceUnavailableError
    ~CudaBackend() override;

    std::string name() const override { return "cuda"; }
    std::string device_info() const override;
    DeviceKind device_kind() const override { return DeviceKind::cuda; }
    void synchronize() override;
    BackendStats stats() const override;
    void reset_peak_memory() override;
    // The device's free memory (cudaMemGetInfo) plus the blocks the caching allocator holds free.
    size_t available_memory() const override;
    std::map<std::string, std::string> library_versions() const override;

    std::shared_ptr<Storage> alloc(size_t bytes) override;
    void copy_from_host(const Tensor& dst, const void* src) override;
    void copy_to_host(void* dst, const Tensor& src) override;
    void copy(const Tensor& dst, const Tensor& src) override;
    void fill(const Tensor& dst, double value) override;

    void matmul(const Tensor& c, const Tensor& a, const Tensor& b, const Tensor* bias, float alpha,
                bool accumulate) override;
    void matmul_gelu_tanh(const Tensor& c, const Tensor& pre, const Tensor& a, const Tensor& b,
                          const Tensor* bias) override;
    void unary(UnaryOp op, const Tensor& y, const Tensor& x, float alpha) override;
    void unary_backward(UnaryOp op, const Tensor& dx, const Tensor& dy, const Tensor& x, const Tensor& y) override;
    void binary(BinaryOp op, const Tensor& c, const Tensor& a, const Tensor& b) override;
    void reduce_sum(const Tensor& y, const Tensor& x) override;
    void sum_squares(const Tensor& out, const Tensor& x, bool accumulate) override;

    void softmax(const Tensor& y, const Tensor& x, bool log) override;
    void softmax_backward(const Tensor& dx, const Tensor& dy, const Tensor& y, bool log) override;
    void layer_norm(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x, const Tensor* gamma,
                    const Tensor* beta, float eps) override;
    void layer_norm_backward(const Tensor& dx, const Tensor* dgamma, const Tensor* dbeta, const Tensor& dy,
                             const Tensor& x, const Tensor& mean, const Tensor& rstd, const Tensor* gamma) override;

    void attention(const Tensor& o, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                   const AttentionKernelArgs& args) override;
    void attention_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout, const Tensor& q,
                            const Tensor& k, const Tensor& v, const Tensor& o, const Tensor& lse,
                            const AttentionKernelArgs& args) override;

    void embedding(const Tensor& y, const Tensor& ids, const Tensor& table) override;
    void embedding_backward(const Tensor& dtable, const Tensor& dy, const Tensor& ids) override;
    void cross_entropy(const Tensor& loss, const Tensor& lse, const Tensor& logits, const Tensor& targets,
                       int64_t ignore_index) override;
    void cross_entropy_backward(const Tensor& dlogits, const Tensor& dloss, const Tensor& logits, const Tensor& lse,
                                const Tensor& targets, int64_t ignore_index) override;

    void masked_fill(const Tensor& y, const Tensor& x, const Tensor& mask, float value) override;
    void dropout(const Tensor& y, const Tensor& keep, const Tensor& x, float p, RngKey key) override;
    void dropout_backward(const Tensor& dx, const Tensor& dy, const Tensor& keep, float p) override;

    // The stream, for the kernels that other plugins register for backend "cuda" (lab/kernels.h):
    // optimizer/adamw's and optimizer/sgd's updates among them.
    void* native_stream() const override { return stream_; }

    // ---- for the kernels in this plugin ----
    cudaStream_t stream() const { return stream_; }
    const Settings& settings() const { return settings_; }
    const cudaDeviceProp& properties() const { return properties_; }
    // Counts a plan (cuBLASLt descriptor set, cuDNN graph) built, or one served from a cache.
    void count_plan_built() { ++plans_built_; }
    void count_plan_reused() { ++plans_reused_; }
    // Copies `count` bytes from device memory to the host and waits for them (small reads: an
    // error flag, a scalar).
    void read_back(void* host, const void* device, size_t count);

    bool native_bf16_matmul() const override { return true; }
    // cuda_sdpa.cpp: where cuDNN's fused attention applies (bf16), the fused path.
    bool prefers_fused_attention(int64_t T, int64_t S, int64_t D, const AttentionKernelArgs& args) const override;

private:
    Settings settings_;
    cudaDeviceProp properties_{};
    cudaStream_t stream_ = nullptr;
    std::unique_ptr<CachingAllocator> allocator_;
    std::unique_ptr<MatmulCache, MatmulCacheDeleter> matmul_;
    std::unique_ptr<SdpaGraphs, SdpaGraphsDeleter> sdpa_;
    uint64_t plans_built_ = 0;
    uint64_t plans_reused_ = 0;

    // matmul as given (operands already rounded for mixed precision), cuda_matmul.cpp; with
    // gelu_pre, c = gelu_tanh(a @ b + bias) and gelu_pre = a @ b + bias (cuBLASLt's GELU_AUX epilogue).
    void multiply(const Tensor& c, const Tensor& a, const Tensor& b, const Tensor* bias, float alpha, bool accumulate,
                  const Tensor* gelu_pre);
    // cuda_sdpa.cpp: cuDNN's fused attention; false when it does not apply (the caller then runs
    // the backend's own kernel).
    bool cudnn_attention(const Tensor& o, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                         const AttentionKernelArgs& args);
    bool cudnn_attention_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout,
                                  const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o, const Tensor& lse,
                                  const AttentionKernelArgs& args);
};

}  // namespace lab::cuda
