// OneDnnBackend: the HostBackend with its heavy kernels replaced by oneDNN primitives.
//
// Overridden here: matmul (and matmul_add), unary/unary_backward, binary, softmax/softmax_backward,
// layer_norm/layer_norm_backward. Every other kernel (embedding, cross-entropy, dropout,
// optimizer updates, copies, attention) is inherited from HostBackend, and matmul first offers a
// bf16 linear layer's product to HostBackend's AMX kernel (multiply_on_amx), faster than
// oneDNN 2.6.3's on those shapes; matmul_add offers it with the residual its tiles start from.
//
// oneDNN's order everywhere: memory descriptor (_md) -> primitive descriptor (_pd) -> primitive ->
// arguments -> execute. Building a primitive costs microseconds to milliseconds (JIT), so each
// configuration (kernel, shapes, strides, dtypes, flags) is built once into a Plan and cached;
// later calls only re-point the plan's memory objects at the new tensors' data. Values that
// change from call to call (matmul alpha, the scalar of scale/add_scalar) are runtime arguments,
// not part of the key, so a training loop's steady state builds nothing.
//
// A layout oneDNN cannot express (stride-0 rows of a matmul operand, a broadcast first operand of
// a non-commutative binary op, non-f32 elementwise data, ...) is cached as an unsupported plan and
// served by the inherited HostBackend kernel, which also produces the shape errors.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

#include "lab/host_backend.h"

namespace lab::onednn {

// Kinds of plans; the first field of every PlanKey.
enum class PlanKind : int64_t {
    matmul = 1, unary, unary_backward, binary, softmax, softmax_backward, layer_norm, layer_norm_backward
};

// What selects a primitive: the plan kind followed by shapes, strides, dtypes and flags. Fixed
// capacity, so that a look-up in the steady state allocates nothing.
class PlanKey {
public:
    explicit PlanKey(PlanKind kind) { push(static_cast<int64_t>(kind)); }
    PlanKey& push(int64_t value);
    PlanKey& push(const Shape& values);
    bool operator==(const PlanKey& other) const;
    size_t hash() const;

private:
    static constexpr int kCapacity = 64;
    std::array<int64_t, kCapacity> fields_{};
    int size_ = 0;
};

struct PlanKeyHash {
    size_t operator()(const PlanKey& key) const { return key.hash(); }
};

// One cached configuration: the primitive, its argument memories (whose data handles are set
// per call), optional bf16 -> f32 conversions that run first, and plan-owned scratch buffers.
struct Plan {
    bool supported = false;  // false: served by the HostBackend kernel
    dnnl::primitive primitive;
    std::unordered_map<int, dnnl::memory> args;

    // A reorder into plan-owned f32 scratch that the primitive reads instead of argument `arg`.
    struct Conversion {
        int arg = 0;
        dnnl::reorder primitive;
        dnnl::memory src, dst;
    };
    std::vector<Conversion> conversions;

    // Scratch that lives as long as the plan (variance, dgamma/dbeta partials, converted
    // operands, ones for an absent gamma). Sized once when the plan is built, never resized, so
    // memories that point into it stay valid.
    std::vector<std::vector<float>> buffers;
    // A runtime scalar argument (matmul alpha, the operand of scale/add_scalar); a memory in
    // `args` points at it.
    float scalar = 0;

    // Bytes of scratch the primitive needs (user-managed scratchpad, see
    // OneDnnBackend::execute); 0 when it needs none.
    size_t scratchpad_bytes = 0;

    uint64_t primitive_count() const { return supported ? 1 + conversions.size() : 0; }
    // Points argument `arg` (or the conversion that feeds it) at `data`, a tensor's first element.
    void bind(int arg, const void* data);
};

// Plan-building helpers shared by the kernel files.
dnnl::memory::desc strided_md(const Shape& dims, const Shape& strides, dnnl::memory::data_type type);
dnnl::memory::desc contiguous_md(const Shape& dims, dnnl::memory::data_type type);
// A memory on `engine` without a data handle yet (Plan::bind sets it per call).
dnnl::memory unbound_memory(const dnnl::memory::desc& md, const dnnl::engine& engine);

class OneDnnBackend : public HostBackend {
public:
    // threads > 0 sets the OpenMP thread count (shared by oneDNN and HostBackend loops).
    explicit OneDnnBackend(int64_t threads);
    ~OneDnnBackend() override;

    std::string name() const override { return "onednn"; }
    std::string device_info() const override;

    void matmul(const Tensor& c, const Tensor& a, const Tensor& b, const Tensor* bias, float alpha,
                bool accumulate) override;
    void matmul_add(const Tensor& c, const Tensor& a, const Tensor& b, const Tensor* bias,
                    const Tensor& addend) override;
    void unary(UnaryOp op, const Tensor& y, const Tensor& x, float alpha) override;
    void unary_backward(UnaryOp op, const Tensor& dx, const Tensor& dy, const Tensor& x,
                        const Tensor& y) override;
    void binary(BinaryOp op, const Tensor& c, const Tensor& a, const Tensor& b) override;

    void softmax(const Tensor& y, const Tensor& x, bool log) override;
    void softmax_backward(const Tensor& dx, const Tensor& dy, const Tensor& y, bool log) override;
    void layer_norm(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                    const Tensor* gamma, const Tensor* beta, float eps) override;
    void layer_norm_backward(const Tensor& dx, const Tensor* dgamma, const Tensor* dbeta, const Tensor& dy,
                             const Tensor& x, const Tensor& mean, const Tensor& rstd,
                             const Tensor* gamma) override;

    // "2.6.3" as reported by the loaded library.
    static std::string library_version();
    std::map<std::string, std::string> library_versions() const override { return {{"oneDNN", library_version()}}; }

    // oneDNN 2.6 serves cases its optimised kernels do not cover with "ref:any", scalar loops that
    // are slower than the host kernels (softmax backward over [8192, 64]: 2.4 ms; a binary op on
    // permuted attention heads: ~20x the host kernel). A builder calls this so that such a plan is
    // cached as unsupported and the HostBackend kernel serves it.
    template <class PrimitiveDesc>
    static void reject_reference(const PrimitiveDesc& pd) {
        if (std::string(pd.impl_info_str()).rfind("ref", 0) == 0)
            throw dnnl::error(dnnl_unimplemented, "only oneDNN's reference implementation covers this case");
    }

    bool native_bf16_matmul() const override { return native_bf16_; }

private:
    // matmul on the operands as they are (after mixed-precision rounding).
    void multiply_onednn(const Tensor& c, const Tensor& a, const Tensor& b, const Tensor* bias, float alpha,
                         bool accumulate);

    // The cached plan for `key`; on first use `build(plan, engine)` fills a new one. A build that
    // oneDNN rejects (dnnl::error) leaves an unsupported plan, cached too, so the rejection is not
    // retried. Counts primitives_created_ / primitive_cache_hits_. Call with mutex_ held.
    template <class Build>
    Plan& find_or_build(const PlanKey& key, Build&& build) {
        if (Plan* cached = find_plan(key)) return *cached;
        auto plan = std::make_unique<Plan>();
        try {
            build(*plan, engine_);
            plan->supported = true;
        } catch (const dnnl::error&) {
            plan = std::make_unique<Plan>();
        }
        return insert_plan(key, std::move(plan));
    }
    Plan* find_plan(const PlanKey& key);
    Plan& insert_plan(const PlanKey& key, std::unique_ptr<Plan> plan);
    // Runs the plan's conversions and primitive and waits for the stream; a oneDNN failure
    // becomes a BackendError naming `kernel`. Call with mutex_ held.
    void execute(Plan& plan, const char* kernel);

    dnnl::engine engine_;
    dnnl::stream stream_;
    // The scratchpad every plan's primitive uses (one call runs at a time), grown to the largest
    // plan's need. Left to oneDNN, the bf16 matmuls allocate their packing buffers on every call,
    // and the fresh pages' faults cost up to a quarter of a bf16 training step.
    std::unique_ptr<char, void (*)(void*)> scratchpad_{nullptr, std::free};
    size_t scratchpad_capacity_ = 0;
    bool native_bf16_ = false;  // oneDNN has a bf16 matmul kernel for this CPU (avx512_core_bf16, AMX)
    // Plans own shared memory objects whose handles are re-pointed per call, so one call at a
    // time uses them.
    std::mutex mutex_;
    std::unordered_map<PlanKey, std::unique_ptr<Plan>, PlanKeyHash> plans_;
};

}  // namespace lab::onednn
