// Batched matmul on the oneDNN matmul primitive:
//   c[..., M, N] = alpha * a[..., M, K] @ b[..., K, N] (+ bias[N]) (+ c when accumulate)
// Operands keep their strides (transposed views need no copy); a batch dim of size 1 or stride 0
// broadcasts. alpha is a runtime output scale (but for bf16 operands at alpha 1, see
// MatmulLayout::scaled), so changing it builds nothing new.
#include <algorithm>
#include <mutex>

#include "lab/error.h"
#include "onednn_backend.h"

namespace lab::onednn {

namespace {

using dt = dnnl::memory::data_type;

// How one matmul call maps onto oneDNN memory descriptors.
struct MatmulLayout {
    Shape a_dims, a_strides;  // [..., M, K]
    Shape b_dims, b_strides;  // [..., K, N]
    Shape c_dims, c_strides;  // [..., M, N]
    int64_t bias_stride = 0;  // bias[N]; 0 when there is no bias
    bool has_bias = false;
    bool accumulate = false;
    bool bf16_inputs = false;
    // A runtime output scale (alpha), which makes oneDNN 2.6 choose its gemm kernels. Left out for
    // bf16 operands when alpha is 1, so that its brgemm kernels (AMX) run them: twice the speed of
    // gemm:jit on the bf16 products of a GPT step. f32 operands keep it: there gemm:jit's sgemm is
    // the faster (measured: a shakespeare_char f32 step 5.2 s with it, 5.9 s with brgemm).
    bool scaled = false;
};

// Strides of size-1 dims never address memory, but oneDNN's choice of a fast GEMM kernel looks
// at them; give them the extent of the whole operand so that plain and transposed layouts are
// recognised whatever view produced them. False when a dim of size > 1 has stride <= 0.
bool normalise_strides(const Shape& dims, Shape& strides) {
    int64_t extent = 1;
    for (size_t i = 0; i < dims.size(); ++i) {
        if (dims[i] == 1) continue;
        if (strides[i] <= 0) return false;
        extent = std::max(extent, dims[i] * strides[i]);
    }
    for (size_t i = 0; i < dims.size(); ++i)
        if (dims[i] == 1) strides[i] = extent;
    return true;
}

// An operand whose batch dims are broadcast by stride 0 (an expanded view) is described with
// size-1 batch dims instead: oneDNN's GEMM kernels broadcast size-1 batch dims natively but fall
// back to a slow reference kernel for stride 0.
void collapse_broadcast_batch(Shape& dims, Shape& strides) {
    for (size_t i = 0; i + 2 < dims.size(); ++i)
        if (strides[i] == 0) dims[i] = 1;
}

// Fills `layout` when oneDNN can run this call; false sends it to HostBackend::multiply, which
// also reports inconsistent shapes.
bool describe_matmul(const Tensor& c, const Tensor& a, const Tensor& b, const Tensor* bias, float alpha,
                     bool accumulate, MatmulLayout* layout) {
    if (!c.defined() || !a.defined() || !b.defined()) return false;
    const int64_t rank = c.dim();
    if (rank < 2 || rank > 4 || a.dim() != rank || b.dim() != rank) return false;
    if (c.dtype() != DType::f32 || a.dtype() != b.dtype()) return false;
    if (a.dtype() != DType::f32 && a.dtype() != DType::bf16) return false;

    const int64_t M = c.size(-2), N = c.size(-1), K = a.size(-1);
    if (M <= 0 || N <= 0 || K <= 0) return false;
    if (a.size(-2) != M || b.size(-2) != K || b.size(-1) != N) return false;
    for (int64_t i = 0; i + 2 < rank; ++i) {
        const int64_t batch = c.shape()[i];
        if ((a.shape()[i] != batch && a.shape()[i] != 1) || (b.shape()[i] != batch && b.shape()[i] != 1))
            return false;
    }

    layout->a_dims = a.shape();
    layout->a_strides = a.strides();
    layout->b_dims = b.shape();
    layout->b_strides = b.strides();
    layout->c_dims = c.shape();
    layout->c_strides = c.strides();
    collapse_broadcast_batch(layout->a_dims, layout->a_strides);
    collapse_broadcast_batch(layout->b_dims, layout->b_strides);
    if (!normalise_strides(layout->a_dims, layout->a_strides) ||
        !normalise_strides(layout->b_dims, layout->b_strides) ||
        !normalise_strides(layout->c_dims, layout->c_strides))
        return false;

    layout->has_bias = bias != nullptr;
    if (bias) {
        if (!bias->defined() || bias->dtype() != DType::f32 || bias->dim() != 1 || bias->size(0) != N) return false;
        layout->bias_stride = N == 1 ? 1 : bias->strides()[0];
        if (layout->bias_stride <= 0) return false;
    }
    layout->accumulate = accumulate;
    layout->scaled = alpha != 1.0f || a.dtype() != DType::bf16;  // see MatmulLayout::scaled
    layout->bf16_inputs = a.dtype() == DType::bf16;
    return true;
}

PlanKey matmul_key(const MatmulLayout& layout) {
    PlanKey key(PlanKind::matmul);
    key.push(layout.a_dims).push(layout.a_strides);
    key.push(layout.b_dims).push(layout.b_strides);
    key.push(layout.c_dims).push(layout.c_strides);
    key.push(layout.has_bias).push(layout.bias_stride).push(layout.accumulate).push(layout.bf16_inputs).push(layout.scaled);
    return key;
}

// The sum post-op (accumulate) comes first, the bias add after it.
int bias_post_op_index(bool accumulate) { return accumulate ? 1 : 0; }
int bias_arg(bool accumulate) { return DNNL_ARG_ATTR_MULTIPLE_POST_OP(bias_post_op_index(accumulate)) | DNNL_ARG_SRC_1; }

// Adds a reorder from operand `arg` (described by src_md) into plan-owned f32 scratch laid out as
// `dst_md`, and returns dst_md, which the matmul then reads.
dnnl::memory::desc add_conversion(Plan& plan, const dnnl::engine& engine, int arg, const dnnl::memory::desc& src_md,
                                  const dnnl::memory::desc& dst_md, const Shape& dims) {
    std::vector<float>& scratch = plan.buffers.emplace_back(static_cast<size_t>(shape_numel(dims)));
    dnnl::reorder::primitive_desc reorder_pd(engine, src_md, engine, dst_md);
    Plan::Conversion conversion;
    conversion.arg = arg;
    conversion.primitive = dnnl::reorder(reorder_pd);
    conversion.src = unbound_memory(src_md, engine);
    conversion.dst = dnnl::memory(dst_md, engine, scratch.data());
    plan.args[arg] = conversion.dst;
    plan.conversions.push_back(std::move(conversion));
    return dst_md;
}

// A 2-D operand whose K dimension (a's columns, b's rows) steps through memory by a multiple of
// 2 KB: oneDNN 2.6's AVX2 sgemm packs such an operand at about half its usual speed (cache-set
// conflicts; measured: dW = dY^T X of BERT's FFN, [1024, 4096] x [4096, 256], 81 GFLOP/s against
// 171 with a K-contiguous operand). Copying it K-contiguous first costs one pass over it.
bool k_stride_conflicts(int64_t k_stride, int64_t k) { return k >= 256 && k_stride != 1 && k_stride % 512 == 0; }

void build_matmul(Plan& plan, const dnnl::engine& engine, const MatmulLayout& layout) {
    const dt input_type = layout.bf16_inputs ? dt::bf16 : dt::f32;
    dnnl::memory::desc a_md = strided_md(layout.a_dims, layout.a_strides, input_type);
    dnnl::memory::desc b_md = strided_md(layout.b_dims, layout.b_strides, input_type);
    const dnnl::memory::desc c_md = strided_md(layout.c_dims, layout.c_strides, dt::f32);

    // oneDNN 2.x scales after adding its built-in bias (alpha * (a@b + bias)); the interface
    // wants alpha * a@b + bias, so the bias is a binary post-op that runs after the scale.
    Shape bias_dims(layout.c_dims.size(), 1), bias_strides(layout.c_dims.size(), 1);
    bias_dims.back() = layout.c_dims.back();
    bias_strides.back() = layout.bias_stride;
    normalise_strides(bias_dims, bias_strides);
    const dnnl::memory::desc bias_md = strided_md(bias_dims, bias_strides, dt::f32);

    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    if (layout.scaled) attr.set_output_scales(0, {DNNL_RUNTIME_F32_VAL});
    dnnl::post_ops post_ops;
    if (layout.accumulate) post_ops.append_sum(1.0f);
    if (layout.has_bias) post_ops.append_binary(dnnl::algorithm::binary_add, bias_md);
    attr.set_post_ops(post_ops);

    if (!layout.bf16_inputs && layout.a_dims.size() == 2) {
        const int64_t K = layout.a_dims[1];
        if (k_stride_conflicts(layout.a_strides[1], K))  // a [M, K] -> row-major
            a_md = add_conversion(plan, engine, DNNL_ARG_SRC, a_md, contiguous_md(layout.a_dims, dt::f32), layout.a_dims);
        if (k_stride_conflicts(layout.b_strides[0], K))  // b [K, N] -> column-major
            b_md = add_conversion(plan, engine, DNNL_ARG_WEIGHTS, b_md, strided_md(layout.b_dims, {1, K}, dt::f32),
                                  layout.b_dims);
    }
    dnnl::matmul::primitive_desc matmul_pd;
    try {
        matmul_pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_md, b_md, c_md), attr, engine);
    } catch (const dnnl::error&) {
        if (!layout.bf16_inputs) throw;
        // bf16 matmul needs avx512_core or newer; elsewhere convert the operands to f32 once per
        // call (the same bf16 values, f32 accumulation: identical results).
        a_md = add_conversion(plan, engine, DNNL_ARG_SRC, a_md, contiguous_md(layout.a_dims, dt::f32), layout.a_dims);
        b_md = add_conversion(plan, engine, DNNL_ARG_WEIGHTS, b_md, contiguous_md(layout.b_dims, dt::f32),
                              layout.b_dims);
        matmul_pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_md, b_md, c_md), attr, engine);
    }
    plan.primitive = dnnl::matmul(matmul_pd);
    plan.scratchpad_bytes = matmul_pd.scratchpad_desc().get_size();
    if (plan.scratchpad_bytes > 0) plan.args[DNNL_ARG_SCRATCHPAD] = unbound_memory(matmul_pd.scratchpad_desc(), engine);
    if (!plan.args.count(DNNL_ARG_SRC)) plan.args[DNNL_ARG_SRC] = unbound_memory(a_md, engine);
    if (!plan.args.count(DNNL_ARG_WEIGHTS)) plan.args[DNNL_ARG_WEIGHTS] = unbound_memory(b_md, engine);
    plan.args[DNNL_ARG_DST] = unbound_memory(c_md, engine);
    if (layout.scaled)
        plan.args[DNNL_ARG_ATTR_OUTPUT_SCALES] = dnnl::memory(contiguous_md({1}, dt::f32), engine, &plan.scalar);
    if (layout.has_bias) plan.args[bias_arg(layout.accumulate)] = unbound_memory(bias_md, engine);
}

}  // namespace

void OneDnnBackend::matmul(const Tensor& c, const Tensor& a, const Tensor& b, const Tensor* bias, float alpha,
                           bool accumulate) {
    Tensor a16, b16;
    const bool rounded = round_matmul_operands(a, b, &a16, &b16);
    const Tensor& a_in = rounded ? a16 : a;
    const Tensor& b_in = rounded ? b16 : b;
    // A bf16 linear layer's product on AMX (HostBackend::multiply_on_amx) where the CPU has it:
    // oneDNN 2.6.3's runs these long, thin products well below the AMX peak.
    if (multiply_on_amx(c, a_in, b_in, bias, alpha, accumulate)) return;
    multiply_onednn(c, a_in, b_in, bias, alpha, accumulate);
}

void OneDnnBackend::matmul_add(const Tensor& c, const Tensor& a, const Tensor& b, const Tensor* bias,
                               const Tensor& addend) {
    // On AMX the tiles start from addend (a residual), read once; elsewhere Backend's copy and
    // accumulate.
    Tensor a16, b16;
    const bool rounded = round_matmul_operands(a, b, &a16, &b16);
    if (multiply_on_amx(c, rounded ? a16 : a, rounded ? b16 : b, bias, 1.0f, false, &addend)) return;
    Backend::matmul_add(c, a, b, bias, addend);
}

void OneDnnBackend::multiply_onednn(const Tensor& c, const Tensor& a, const Tensor& b, const Tensor* bias,
                                    float alpha, bool accumulate) {
    MatmulLayout layout;
    if (!describe_matmul(c, a, b, bias, alpha, accumulate, &layout)) {
        HostBackend::multiply(c, a, b, bias, alpha, accumulate);
        return;
    }
    std::unique_lock<std::mutex> lock(mutex_);
    Plan& plan = find_or_build(matmul_key(layout), [&](Plan& new_plan, const dnnl::engine& engine) {
        build_matmul(new_plan, engine, layout);
    });
    if (!plan.supported) {
        lock.unlock();
        HostBackend::multiply(c, a, b, bias, alpha, accumulate);
        return;
    }
    plan.scalar = alpha;
    plan.bind(DNNL_ARG_SRC, a.raw());
    plan.bind(DNNL_ARG_WEIGHTS, b.raw());
    plan.bind(DNNL_ARG_DST, c.raw());
    if (bias) plan.bind(bias_arg(accumulate), bias->raw());
    execute(plan, "matmul");
}

}  // namespace lab::onednn
