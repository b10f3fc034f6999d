// Softmax / log-softmax and layer norm, forward and backward, on oneDNN primitives. All of them
// normalise over the last dim: x [..., C] is seen as [N, C] with N the product of the others.
//
// Layer norm statistics: oneDNN keeps mean and VARIANCE, the Backend interface keeps mean and
// rstd = 1 / sqrt(var + eps). The forward writes the variance into `rstd` and converts it in
// place; the backward (which is not told eps) hands oneDNN var' = 1 / rstd^2 with epsilon 0, so
// that oneDNN's 1 / sqrt(var' + 0) is the saved rstd again.
#include <bit>
#include <cmath>
#include <initializer_list>
#include <mutex>
#include <vector>

#include "lab/error.h"
#include "onednn_backend.h"

namespace lab::onednn {

namespace {

using dt = dnnl::memory::data_type;
using dnnl::normalization_flags;
using dnnl::prop_kind;

bool is_dense_f32(const Tensor& t) { return t.defined() && t.dtype() == DType::f32 && t.is_contiguous(); }

// [N, C] view of contiguous f32 tensors of one shape (rank >= 1, not empty); false otherwise.
bool rows_and_columns(std::initializer_list<const Tensor*> tensors, int64_t* rows, int64_t* columns) {
    const Tensor& first = **tensors.begin();
    for (const Tensor* t : tensors)
        if (!is_dense_f32(*t) || t->shape() != first.shape()) return false;
    if (first.dim() < 1 || first.numel() == 0) return false;
    *columns = first.size(-1);
    *rows = first.numel() / *columns;
    return true;
}

// A contiguous f32 vector of `n` elements (mean, rstd, gamma, beta and their gradients).
bool is_vector(const Tensor* t, int64_t n) { return t && is_dense_f32(*t) && t->numel() == n; }

// Hands the work to OpenMP only when there is enough of it to pay for waking the threads.
constexpr int64_t kParallelGrain = 1 << 14;

// ---- softmax ----

dnnl::algorithm softmax_algorithm(bool log) {
    return log ? dnnl::algorithm::softmax_log : dnnl::algorithm::softmax_accurate;
}

void build_softmax(Plan& plan, const dnnl::engine& engine, bool log, int64_t rows, int64_t columns) {
    const dnnl::memory::desc md = contiguous_md({rows, columns}, dt::f32);
    dnnl::softmax_v2_forward::primitive_desc pd(
        dnnl::softmax_v2_forward::desc(prop_kind::forward_training, softmax_algorithm(log), md, md, 1), engine);
    OneDnnBackend::reject_reference(pd);
    plan.primitive = dnnl::softmax_v2_forward(pd);
    plan.args[DNNL_ARG_SRC] = unbound_memory(md, engine);
    plan.args[DNNL_ARG_DST] = unbound_memory(md, engine);
}

void build_softmax_backward(Plan& plan, const dnnl::engine& engine, bool log, int64_t rows, int64_t columns) {
    const dnnl::memory::desc md = contiguous_md({rows, columns}, dt::f32);
    dnnl::softmax_v2_forward::primitive_desc hint_pd(
        dnnl::softmax_v2_forward::desc(prop_kind::forward_training, softmax_algorithm(log), md, md, 1), engine);
    dnnl::softmax_v2_backward::primitive_desc pd(
        dnnl::softmax_v2_backward::desc(softmax_algorithm(log), md, md, md, 1), engine, hint_pd);
    OneDnnBackend::reject_reference(pd);
    plan.primitive = dnnl::softmax_v2_backward(pd);
    plan.args[DNNL_ARG_DST] = unbound_memory(md, engine);
    plan.args[DNNL_ARG_DIFF_DST] = unbound_memory(md, engine);
    plan.args[DNNL_ARG_DIFF_SRC] = unbound_memory(md, engine);
}

// ---- layer norm ----

normalization_flags norm_flags(bool scale, bool shift) {
    normalization_flags flags = normalization_flags::none;
    if (scale) flags = flags | normalization_flags::use_scale;
    if (shift) flags = flags | normalization_flags::use_shift;
    return flags;
}

void build_layer_norm(Plan& plan, const dnnl::engine& engine, int64_t rows, int64_t columns, bool has_gamma,
                      bool has_beta, float eps) {
    const dnnl::memory::desc x_md = contiguous_md({rows, columns}, dt::f32);
    const dnnl::memory::desc stat_md = contiguous_md({rows}, dt::f32);
    const dnnl::memory::desc channel_md = contiguous_md({columns}, dt::f32);
    dnnl::layer_normalization_forward::primitive_desc pd(
        dnnl::layer_normalization_forward::desc(prop_kind::forward_training, x_md, stat_md, eps,
                                                norm_flags(has_gamma, has_beta)),
        engine);
    OneDnnBackend::reject_reference(pd);
    plan.primitive = dnnl::layer_normalization_forward(pd);
    plan.args[DNNL_ARG_SRC] = unbound_memory(x_md, engine);
    plan.args[DNNL_ARG_DST] = unbound_memory(x_md, engine);
    plan.args[DNNL_ARG_MEAN] = unbound_memory(stat_md, engine);
    plan.args[DNNL_ARG_VARIANCE] = unbound_memory(stat_md, engine);
    if (has_gamma) plan.args[DNNL_ARG_SCALE] = unbound_memory(channel_md, engine);
    if (has_beta) plan.args[DNNL_ARG_SHIFT] = unbound_memory(channel_md, engine);
}

// What a layer-norm backward call computes; the plan's scratch buffers follow this order.
struct NormBackwardLayout {
    int64_t rows = 0, columns = 0;
    bool has_gamma = false, want_dgamma = false, want_dbeta = false;
    bool uses_scale() const { return has_gamma || want_dgamma; }
};
enum NormScratch : size_t { kVariance, kDiffScale, kDiffShift, kOnes, kZeros, kNormScratchCount };

void build_layer_norm_backward(Plan& plan, const dnnl::engine& engine, const NormBackwardLayout& layout) {
    const dnnl::memory::desc x_md = contiguous_md({layout.rows, layout.columns}, dt::f32);
    const dnnl::memory::desc stat_md = contiguous_md({layout.rows}, dt::f32);
    const dnnl::memory::desc channel_md = contiguous_md({layout.columns}, dt::f32);
    const normalization_flags flags = norm_flags(layout.uses_scale(), layout.want_dbeta);
    // oneDNN 2.6 has no backward_data layer norm with a scale, so any scale or shift means the full
    // backward, whose diff_scale/diff_shift land in scratch when the caller did not ask for them.
    const bool with_weights = layout.uses_scale() || layout.want_dbeta;
    const prop_kind kind = with_weights ? prop_kind::backward : prop_kind::backward_data;
    constexpr float kEpsilon = 0.0f;  // see the top of this file

    dnnl::layer_normalization_forward::primitive_desc hint_pd(
        dnnl::layer_normalization_forward::desc(prop_kind::forward_training, x_md, stat_md, kEpsilon, flags),
        engine);
    dnnl::layer_normalization_backward::primitive_desc pd(
        dnnl::layer_normalization_backward::desc(kind, x_md, x_md, stat_md, kEpsilon, flags), engine, hint_pd);
    OneDnnBackend::reject_reference(pd);
    plan.primitive = dnnl::layer_normalization_backward(pd);

    const auto columns = static_cast<size_t>(layout.columns);
    plan.buffers.resize(kNormScratchCount);
    plan.buffers[kVariance].assign(static_cast<size_t>(layout.rows), 0.0f);
    plan.args[DNNL_ARG_SRC] = unbound_memory(x_md, engine);
    plan.args[DNNL_ARG_MEAN] = unbound_memory(stat_md, engine);
    plan.args[DNNL_ARG_VARIANCE] = dnnl::memory(stat_md, engine, plan.buffers[kVariance].data());
    plan.args[DNNL_ARG_DIFF_DST] = unbound_memory(x_md, engine);
    plan.args[DNNL_ARG_DIFF_SRC] = unbound_memory(x_md, engine);
    // oneDNN overwrites diff_scale/diff_shift; the interface accumulates, so they land in scratch.
    if (layout.uses_scale()) {
        if (layout.has_gamma) {
            plan.args[DNNL_ARG_SCALE] = unbound_memory(channel_md, engine);
        } else {
            // dgamma without gamma: the normalisation ran with gamma = 1.
            plan.buffers[kOnes].assign(columns, 1.0f);
            plan.args[DNNL_ARG_SCALE] = dnnl::memory(channel_md, engine, plan.buffers[kOnes].data());
        }
        plan.buffers[kDiffScale].assign(columns, 0.0f);
        plan.args[DNNL_ARG_DIFF_SCALE] = dnnl::memory(channel_md, engine, plan.buffers[kDiffScale].data());
    }
    if (layout.want_dbeta) {
        // With use_shift oneDNN's backward requires a shift argument although dx does not
        // depend on beta; it reads plan-owned zeros.
        plan.buffers[kZeros].assign(columns, 0.0f);
        plan.args[DNNL_ARG_SHIFT] = dnnl::memory(channel_md, engine, plan.buffers[kZeros].data());
        plan.buffers[kDiffShift].assign(columns, 0.0f);
        plan.args[DNNL_ARG_DIFF_SHIFT] = dnnl::memory(channel_md, engine, plan.buffers[kDiffShift].data());
    }
}

void accumulate_into(const Tensor& destination, const std::vector<float>& values) {
    float* out = destination.data<float>();
    for (size_t i = 0; i < values.size(); ++i) out[i] += values[i];
}

}  // namespace

void OneDnnBackend::softmax(const Tensor& y, const Tensor& x, bool log) {
    int64_t rows = 0, columns = 0;
    if (!rows_and_columns({&y, &x}, &rows, &columns)) {
        HostBackend::softmax(y, x, log);
        return;
    }
    const PlanKey key = PlanKey(PlanKind::softmax).push(log).push(rows).push(columns);
    std::unique_lock<std::mutex> lock(mutex_);
    Plan& plan = find_or_build(key, [&](Plan& new_plan, const dnnl::engine& engine) {
        build_softmax(new_plan, engine, log, rows, columns);
    });
    if (!plan.supported) {
        lock.unlock();
        HostBackend::softmax(y, x, log);
        return;
    }
    plan.bind(DNNL_ARG_SRC, x.raw());
    plan.bind(DNNL_ARG_DST, y.raw());
    execute(plan, log ? "log_softmax" : "softmax");
}

void OneDnnBackend::softmax_backward(const Tensor& dx, const Tensor& dy, const Tensor& y, bool log) {
    int64_t rows = 0, columns = 0;
    if (!rows_and_columns({&dx, &dy, &y}, &rows, &columns)) {
        HostBackend::softmax_backward(dx, dy, y, log);
        return;
    }
    const PlanKey key = PlanKey(PlanKind::softmax_backward).push(log).push(rows).push(columns);
    std::unique_lock<std::mutex> lock(mutex_);
    Plan& plan = find_or_build(key, [&](Plan& new_plan, const dnnl::engine& engine) {
        build_softmax_backward(new_plan, engine, log, rows, columns);
    });
    if (!plan.supported) {
        lock.unlock();
        HostBackend::softmax_backward(dx, dy, y, log);
        return;
    }
    plan.bind(DNNL_ARG_DST, y.raw());
    plan.bind(DNNL_ARG_DIFF_DST, dy.raw());
    plan.bind(DNNL_ARG_DIFF_SRC, dx.raw());
    execute(plan, log ? "log_softmax backward" : "softmax backward");
}

void OneDnnBackend::layer_norm(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                               const Tensor* gamma, const Tensor* beta, float eps) {
    int64_t rows = 0, columns = 0;
    const bool supported = rows_and_columns({&y, &x}, &rows, &columns) && is_vector(&mean, rows) &&
                           is_vector(&rstd, rows) && (!gamma || is_vector(gamma, columns)) &&
                           (!beta || is_vector(beta, columns)) && eps >= 0.0f && std::isfinite(eps);
    if (!supported) {
        HostBackend::layer_norm(y, mean, rstd, x, gamma, beta, eps);
        return;
    }
    const bool has_gamma = gamma != nullptr, has_beta = beta != nullptr;
    PlanKey key(PlanKind::layer_norm);
    key.push(rows).push(columns).push(has_gamma).push(has_beta).push(std::bit_cast<uint32_t>(eps));
    std::unique_lock<std::mutex> lock(mutex_);
    Plan& plan = find_or_build(key, [&](Plan& new_plan, const dnnl::engine& engine) {
        build_layer_norm(new_plan, engine, rows, columns, has_gamma, has_beta, eps);
    });
    if (!plan.supported) {
        lock.unlock();
        HostBackend::layer_norm(y, mean, rstd, x, gamma, beta, eps);
        return;
    }
    plan.bind(DNNL_ARG_SRC, x.raw());
    plan.bind(DNNL_ARG_DST, y.raw());
    plan.bind(DNNL_ARG_MEAN, mean.raw());
    plan.bind(DNNL_ARG_VARIANCE, rstd.raw());
    if (gamma) plan.bind(DNNL_ARG_SCALE, gamma->raw());
    if (beta) plan.bind(DNNL_ARG_SHIFT, beta->raw());
    execute(plan, "layer_norm");

    float* rstd_data = rstd.data<float>();  // holds the variance until here
#pragma omp parallel for if (rows > kParallelGrain)
    for (int64_t row = 0; row < rows; ++row) rstd_data[row] = 1.0f / std::sqrt(rstd_data[row] + eps);
}

void OneDnnBackend::layer_norm_backward(const Tensor& dx, const Tensor* dgamma, const Tensor* dbeta,
                                        const Tensor& dy, const Tensor& x, const Tensor& mean, const Tensor& rstd,
                                        const Tensor* gamma) {
    NormBackwardLayout layout;
    const bool supported = rows_and_columns({&dx, &dy, &x}, &layout.rows, &layout.columns) &&
                           is_vector(&mean, layout.rows) && is_vector(&rstd, layout.rows) &&
                           (!gamma || is_vector(gamma, layout.columns)) &&
                           (!dgamma || is_vector(dgamma, layout.columns)) &&
                           (!dbeta || is_vector(dbeta, layout.columns));
    if (!supported) {
        HostBackend::layer_norm_backward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma);
        return;
    }
    layout.has_gamma = gamma != nullptr;
    layout.want_dgamma = dgamma != nullptr;
    layout.want_dbeta = dbeta != nullptr;
    PlanKey key(PlanKind::layer_norm_backward);
    key.push(layout.rows).push(layout.columns).push(layout.has_gamma).push(layout.want_dgamma).push(layout.want_dbeta);
    std::unique_lock<std::mutex> lock(mutex_);
    Plan& plan = find_or_build(key, [&](Plan& new_plan, const dnnl::engine& engine) {
        build_layer_norm_backward(new_plan, engine, layout);
    });
    if (!plan.supported) {
        lock.unlock();
        HostBackend::layer_norm_backward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma);
        return;
    }
    const float* rstd_data = rstd.data<float>();
    float* variance = plan.buffers[kVariance].data();
    const int64_t rows = layout.rows;
#pragma omp parallel for if (rows > kParallelGrain)
    for (int64_t row = 0; row < rows; ++row) variance[row] = 1.0f / (rstd_data[row] * rstd_data[row]);

    plan.bind(DNNL_ARG_SRC, x.raw());
    plan.bind(DNNL_ARG_MEAN, mean.raw());
    plan.bind(DNNL_ARG_DIFF_DST, dy.raw());
    plan.bind(DNNL_ARG_DIFF_SRC, dx.raw());
    if (gamma) plan.bind(DNNL_ARG_SCALE, gamma->raw());
    execute(plan, "layer_norm backward");
    if (dgamma) accumulate_into(*dgamma, plan.buffers[kDiffScale]);
    if (dbeta) accumulate_into(*dbeta, plan.buffers[kDiffShift]);
}

}  // namespace lab::onednn
