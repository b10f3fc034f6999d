// HostBackend: every Backend kernel in plain C++ on host memory (OpenMP across rows where it
// pays). It is the reference that other backends are checked against, the fallback that
// optimised CPU backends (plugins/backends/onednn) inherit for kernels they do not override, and,
// registered as backend `reference`, a backend of its own.
#pragma once
#include <memory>
#include <string>

#include "lab/backend.h"

namespace lab {

class HostBackend : public Backend {
public:
    HostBackend();
    ~HostBackend() override;

    std::string name() const override { return "reference"; }
    std::string device_info() const override;
    DeviceKind device_kind() const override { return DeviceKind::cpu; }
    BackendStats stats() const override;
    void reset_peak_memory() override;

    std::shared_ptr<Storage> alloc(size_t bytes) override;
    void copy_from_host(const Tensor& dst, const void* src) override;
    void copy_to_host(void* dst, const Tensor& src) override;
    void copy(const Tensor& dst, const Tensor& src) override;
    void fill(const Tensor& dst, double value) override;

    void matmul(const Tensor& c, const Tensor& a, const Tensor& b, const Tensor* bias, float alpha,
                bool accumulate) override;
    void unary(UnaryOp op, const Tensor& y, const Tensor& x, float alpha) override;
    void unary_bf16(UnaryOp op, const Tensor& y, const Tensor& x, float alpha) override;
    void unary_backward(UnaryOp op, const Tensor& dx, const Tensor& dy, const Tensor& x,
                        const Tensor& y) override;
    void unary_backward_bf16(UnaryOp op, const Tensor& dx, const Tensor& dy, const Tensor& x,
                             const Tensor& y) override;
    void binary(BinaryOp op, const Tensor& c, const Tensor& a, const Tensor& b) override;
    void reduce_sum(const Tensor& y, const Tensor& x) override;
    void sum_squares(const Tensor& out, const Tensor& x, bool accumulate) override;

    void softmax(const Tensor& y, const Tensor& x, bool log) override;
    void softmax_backward(const Tensor& dx, const Tensor& dy, const Tensor& y, bool log) override;
    void layer_norm(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                    const Tensor* gamma, const Tensor* beta, float eps) override;
    void layer_norm_bf16(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                         const Tensor* gamma, const Tensor* beta, float eps) override;
    void layer_norm_backward(const Tensor& dx, const Tensor* dgamma, const Tensor* dbeta, const Tensor& dy,
                             const Tensor& x, const Tensor& mean, const Tensor& rstd,
                             const Tensor* gamma) override;
    void layer_norm_backward_accumulate(const Tensor& dx, const Tensor* dgamma, const Tensor* dbeta,
                                        const Tensor& dy, const Tensor& x, const Tensor& mean, const Tensor& rstd,
                                        const Tensor* gamma) override;

    void attention(const Tensor& o, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                   const AttentionKernelArgs& args) override;
    void attention_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout,
                            const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o, const Tensor& lse,
                            const AttentionKernelArgs& args) override;
    bool prefers_fused_attention(int64_t T, int64_t S, int64_t D, const AttentionKernelArgs& args) const override;

    void embedding(const Tensor& y, const Tensor& ids, const Tensor& table) override;
    void embedding_backward(const Tensor& dtable, const Tensor& dy, const Tensor& ids) override;
    void cross_entropy(const Tensor& loss, const Tensor& lse, const Tensor& logits, const Tensor& targets,
                       int64_t ignore_index) override;
    void cross_entropy_backward(const Tensor& dlogits, const Tensor& dloss, const Tensor& logits,
                                const Tensor& lse, const Tensor& targets, int64_t ignore_index) override;

    void masked_fill(const Tensor& y, const Tensor& x, const Tensor& mask, float value) override;
    void dropout(const Tensor& y, const Tensor& keep, const Tensor& x, float p, RngKey key) override;
    void dropout_backward(const Tensor& dx, const Tensor& dy, const Tensor& keep, float p) override;

protected:
    // matmul on the operands as they are (no rounding for mixed precision): what matmul runs
    // after rounding, and what a derived backend falls back to.
    void multiply(const Tensor& c, const Tensor& a, const Tensor& b, const Tensor* bias, float alpha, bool accumulate);
    // The same product on AMX where the CPU has it and the call is a bf16 linear layer's (2-D, a
    // and b bf16, M, N and K multiples of 32, large, b at most 1.25 MB): true when it ran, false
    // (nothing done) otherwise. For derived backends whose own bf16 matmul is slower on such
    // shapes (onednn).
    // addend (f32, c's shape, contiguous): c = a @ b (+ bias) + addend, the tiles starting from it.
    bool multiply_on_amx(const Tensor& c, const Tensor& a, const Tensor& b, const Tensor* bias, float alpha,
                         bool accumulate, const Tensor* addend = nullptr);
    CachingAllocator& allocator() { return *allocator_; }
    uint64_t primitives_created_ = 0;  // for derived backends that cache primitives
    uint64_t primitive_cache_hits_ = 0;

private:
    std::unique_ptr<CachingAllocator> allocator_;
};

}  // namespace lab
