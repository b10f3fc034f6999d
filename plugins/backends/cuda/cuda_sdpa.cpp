// CudaBackend::cudnn_attention and cudnn_attention_backward: cuDNN's fused scaled-dot-product
// attention (its flash-attention engines), described as graphs through cuDNN's header-only C++
// frontend and cached by shape.
//
// When it applies: mixed precision (matmul_inputs() == bf16), no dropout, no window, no ALiBi
// slopes, head size D a multiple of 8 up to 128, causal only with T <= S, and a key padding mask
// only when each row is visible keys followed by padding (BERT's padded batches), with at least
// one visible key, and (with causal) T == S.
// In mixed precision the matmuls already multiply bf16-rounded operands with f32 accumulation;
// cuDNN's bf16 engines do the same for q k^T and P v (P rounded to bf16, as PyTorch's autocast
// SDPA does), with the softmax in f32. In f32 precision the backend's own f32 kernels run
// (cuda_attention.cu), since rounding q, k, v to bf16 there would change the results. Dropout is
// ours alone: cuDNN's Philox stream differs from lab/rng.h, and the mask must equal the CPU's.
//
// Masks: cuDNN's causal diagonal is "top left" (query i sees keys j <= i) or "bottom right"
// (j <= i + S - T), the latter being our alignment with the last keys; it equals top left when
// T == S, and cuDNN has it only for T <= S. For T > S the first T - S queries see no key, which our
// contract defines (zero output, lse = -inf) and cuDNN does not, so those calls fall back.
//
// Padding: cuDNN's padding mask hides keys j >= seq_len_kv[b] (and queries i >= seq_len_q[b]),
// so a mask that is padding from some key on is exactly seq_len_kv[b] = its visible keys, with
// seq_len_q[b] = T (every query computed, as our contract says). padding_lengths
// (cuda_attention.cu) derives both on the GPU and tells whether every row has that form; the
// answer costs one synchronisation per mask tensor, remembered for as long as that tensor lives
// (every layer of a step, forward and backward, shares one mask). With causal the lengths would
// move cuDNN's bottom-right diagonal, so causal with padding goes to cuDNN only when T == S (top
// left, which does not depend on lengths).
//
// Stats: cuDNN's forward "Stats" output is max + ln(sum exp(s - max)) over each query's visible
// scores s = scale * q . k, the natural-log log-sum-exp in f32, [B, H, T, 1] with packed strides:
// exactly our lse [B, H, T]. The forward writes it into lse directly and the backward reads lse as
// its Stats input (P = exp(s - Stats)), so a forward by our kernels and a backward by cuDNN (or the
// other way round) agree on what lse means.
//
// Operands: q, k, v (and o, dout) are converted to packed bf16 [B, N, L, D] copies, the results
// (bf16) converted back into o, dq, dk, dv with CudaBackend::copy, which writes any row order.
// So every graph sees packed tensors and a graph is fixed by the sizes, causality and scale.
//
// A graph that cuDNN reports unsupported on this GPU is remembered as such for its key, and the
// caller runs the backend's own kernels. The backward asks for cuDNN's deterministic algorithm
// (no atomic dQ accumulation), so that two identical steps agree bit for bit as on the CPU; where
// cuDNN has none, the backward falls back to our kernels, which are deterministic too.
#include <cudnn_frontend.h>

#include <bit>
#include <compare>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>

#include "cuda_backend.h"
#include "cuda_check.h"
#include "lab/error.h"

namespace lab::cuda {

namespace fe = cudnn_frontend;

class SdpaGraphs {
public:
    // Everything that shapes one graph (the operands are always packed, bf16, with f32 stats).
    struct Key {
        bool backward = false;
        int64_t B = 0, H = 0, Hkv = 0, T = 0, S = 0, D = 0;
        bool causal = false;
        bool padding = false;     // seq_len_q / seq_len_kv inputs
        uint32_t scale_bits = 0;  // the scale's bits: map keys need the strict order floats lack
        auto operator<=>(const Key&) const = default;
    };
    struct Entry {
        std::shared_ptr<fe::graph::Graph> graph;  // null: cuDNN cannot run this key here
        int64_t workspace_bytes = 0;
    };

    SdpaGraphs() = default;
    SdpaGraphs(const SdpaGraphs&) = delete;
    SdpaGraphs& operator=(const SdpaGraphs&) = delete;
    ~SdpaGraphs() {
        // A destructor cannot report a failure, and there is nothing to do about one at teardown.
        if (handle_ != nullptr) (void)cudnnDestroy(handle_);
    }

    // The cuDNN handle, created on first use and bound to `stream` (all of the backend's work is
    // queued there, so cuDNN's kernels are ordered with ours).
    cudnnHandle_t handle(cudaStream_t stream) {
        if (handle_ == nullptr) {
            cudnnHandle_t created = nullptr;
            LAB_CUDA_CHECK(cudnnCreate(&created));
            try {
                LAB_CUDA_CHECK(cudnnSetStream(created, stream));
            } catch (...) {
                (void)cudnnDestroy(created);
                throw;
            }
            handle_ = created;
        }
        return handle_;
    }

    std::map<Key, Entry> entries;

    // The sequence lengths of the last key padding mask seen, while that mask tensor lives.
    struct Lengths {
        std::weak_ptr<Storage> storage;
        int64_t offset = 0, T = 0;
        bool usable = false;
        Tensor seq_q, seq_kv;  // i32 [B]
    };
    Lengths lengths;

private:
    cudnnHandle_t handle_ = nullptr;
};

void SdpaGraphsDeleter::operator()(SdpaGraphs* graphs) const { delete graphs; }

namespace {

// The uids of the graphs' user tensors, by which execute() is handed their addresses.
enum SdpaUid : int64_t { kQ = 1, kK, kV, kO, kStats, kDO, kDQ, kDK, kDV, kSeqQ, kSeqKV };

// Throws BackendError naming the frontend call and the frontend's message.
void check_frontend(const fe::error_t& status, const char* call, const char* file, int line) {
    if (status.is_bad()) throw_call_failed(call, "cuDNN frontend: " + status.err_msg, file, line);
}
#define LAB_CUDNN_FE_CHECK(call) ::lab::cuda::check_frontend((call), #call, __FILE__, __LINE__)

// One step of building a graph: true when it succeeded, false when the frontend says that no
// engine of this cuDNN runs the graph on this GPU (a size, head size or mask outside cuDNN's
// support surface; CUDNN_BACKEND_API_FAILED is how the backend's refusal to finalise an
// unsupported operation graph arrives). Any other failure throws.
bool build_step(const fe::error_t& status, const char* step, int line) {
    if (status.is_good()) return true;
    switch (status.code) {
        case fe::error_code_t::GRAPH_NOT_SUPPORTED:
        case fe::error_code_t::GRAPH_EXECUTION_PLAN_CREATION_FAILED:
        case fe::error_code_t::HEURISTIC_QUERY_FAILED:
        case fe::error_code_t::CUDNN_BACKEND_API_FAILED:
            return false;
        default:
            throw_call_failed(step, "cuDNN frontend: " + status.err_msg, __FILE__, line);
    }
}

// Whether cuDNN's fused attention computes this call as AttentionKernelArgs defines it (see the
// top of this file).
bool sdpa_applies(DType matmul_inputs, const Tensor& q, const Tensor& k, const AttentionKernelArgs& args) {
    const int64_t T = q.size(2), S = k.size(2), D = q.size(3);
    const bool padding = args.key_padding_mask != nullptr;
    return matmul_inputs == DType::bf16 && !(args.dropout > 0.0f) && args.window <= 0 && args.slopes == nullptr &&
           D > 0 && D % 8 == 0 && D <= 128 && q.numel() > 0 && k.numel() > 0 &&
           (!args.causal || (padding ? T == S : T <= S));
}

// The sequence lengths that say what args.key_padding_mask says, or false when they cannot (see
// the top of this file). Computed once per mask tensor.
bool sequence_lengths(CudaBackend& backend, SdpaGraphs& graphs, const Tensor& mask, int64_t T, Tensor* seq_q,
                      Tensor* seq_kv) {
    SdpaGraphs::Lengths& cached = graphs.lengths;
    if (cached.storage.lock() != mask.storage() || cached.offset != mask.offset() || cached.T != T) {
        const int64_t B = mask.size(0);
        cached.seq_q = Tensor::empty(backend, {B}, DType::i32);
        cached.seq_kv = Tensor::empty(backend, {B}, DType::i32);
        cached.usable = padding_lengths(backend, mask, T, cached.seq_q, cached.seq_kv);
        cached.storage = mask.storage();
        cached.offset = mask.offset();
        cached.T = T;
    }
    *seq_q = cached.seq_q;
    *seq_kv = cached.seq_kv;
    return cached.usable;
}

SdpaGraphs::Key make_key(bool backward, const Tensor& q, const Tensor& k, const AttentionKernelArgs& args) {
    SdpaGraphs::Key key;
    key.backward = backward;
    key.B = q.size(0), key.H = q.size(1), key.T = q.size(2), key.D = q.size(3);
    key.Hkv = k.size(1), key.S = k.size(2);
    key.causal = args.causal;
    key.padding = args.key_padding_mask != nullptr;
    key.scale_bits = std::bit_cast<uint32_t>(args.scale);
    return key;
}

// A packed [B, N, L, D] bf16 tensor of the graph (the io type).
std::shared_ptr<fe::graph::Tensor_attributes> head_tensor(fe::graph::Graph& graph, const char* name, int64_t uid,
                                                          int64_t B, int64_t N, int64_t L, int64_t D) {
    return graph.tensor(fe::graph::Tensor_attributes()
                            .set_name(name)
                            .set_uid(uid)
                            .set_dim({B, N, L, D})
                            .set_stride({N * L * D, L * D, D, 1}));
}

void describe_output(fe::graph::Tensor_attributes& t, const char* name, int64_t uid, int64_t B, int64_t N, int64_t L,
                     int64_t D) {
    t.set_name(name).set_uid(uid).set_output(true).set_dim({B, N, L, D}).set_stride({N * L * D, L * D, D, 1});
}

// The masks: the causal diagonal through query i and key i + S - T (top left when T == S), and
// the padding mask as sequence lengths, i32 [B, 1, 1, 1] inputs of the graph.
template <class Attributes>
void set_masks(fe::graph::Graph& graph, Attributes& attributes, const SdpaGraphs::Key& key) {
    if (key.causal) {
        attributes
            .set_diagonal_alignment(key.T == key.S ? fe::DiagonalAlignment_t::TOP_LEFT
                                                   : fe::DiagonalAlignment_t::BOTTOM_RIGHT)
            .set_diagonal_band_right_bound(0);
    }
    if (key.padding) {
        auto length = [&](const char* name, int64_t uid) {
            return graph.tensor(fe::graph::Tensor_attributes()
                                    .set_name(name)
                                    .set_uid(uid)
                                    .set_dim({key.B, 1, 1, 1})
                                    .set_stride({1, 1, 1, 1})
                                    .set_data_type(fe::DataType_t::INT32));
        };
        attributes.set_padding_mask(true)
            .set_seq_len_q(length("seq_q", kSeqQ))
            .set_seq_len_kv(length("seq_kv", kSeqKV));
    }
}

// The forward or backward graph of `key`, built into execution plans; null when cuDNN reports it
// unsupported here.
SdpaGraphs::Entry build_graph(const SdpaGraphs::Key& key, cudnnHandle_t handle, int sm_version) {
    auto graph = std::make_shared<fe::graph::Graph>();
    graph->set_io_data_type(fe::DataType_t::BFLOAT16)
        .set_intermediate_data_type(fe::DataType_t::FLOAT)
        .set_compute_data_type(fe::DataType_t::FLOAT)
        .set_sm_version(sm_version);
    const float scale = std::bit_cast<float>(key.scale_bits);
    auto q = head_tensor(*graph, "q", kQ, key.B, key.H, key.T, key.D);
    auto k = head_tensor(*graph, "k", kK, key.B, key.Hkv, key.S, key.D);
    auto v = head_tensor(*graph, "v", kV, key.B, key.Hkv, key.S, key.D);
    if (!key.backward) {
        fe::graph::SDPA_attributes attributes;
        attributes.set_name("sdpa").set_generate_stats(true).set_attn_scale(scale);
        set_masks(*graph, attributes, key);
        auto [o, stats] = graph->sdpa(q, k, v, attributes);
        describe_output(*o, "o", kO, key.B, key.H, key.T, key.D);
        stats->set_name("stats").set_uid(kStats).set_output(true).set_data_type(fe::DataType_t::FLOAT);
        stats->set_dim({key.B, key.H, key.T, 1}).set_stride({key.H * key.T, key.T, 1, 1});
    } else {
        auto o = head_tensor(*graph, "o", kO, key.B, key.H, key.T, key.D);
        auto dout = head_tensor(*graph, "dout", kDO, key.B, key.H, key.T, key.D);
        auto stats = graph->tensor(fe::graph::Tensor_attributes()
                                       .set_name("stats")
                                       .set_uid(kStats)
                                       .set_data_type(fe::DataType_t::FLOAT)
                                       .set_dim({key.B, key.H, key.T, 1})
                                       .set_stride({key.H * key.T, key.T, 1, 1}));
        fe::graph::SDPA_backward_attributes attributes;
        attributes.set_name("sdpa_backward").set_attn_scale(scale).set_deterministic_algorithm(true);
        set_masks(*graph, attributes, key);
        auto [dq, dk, dv] = graph->sdpa_backward(q, k, v, o, dout, stats, attributes);
        describe_output(*dq, "dq", kDQ, key.B, key.H, key.T, key.D);
        describe_output(*dk, "dk", kDK, key.B, key.Hkv, key.S, key.D);
        describe_output(*dv, "dv", kDV, key.B, key.Hkv, key.S, key.D);
    }

    SdpaGraphs::Entry unsupported;
    if (!build_step(graph->validate(), "graph->validate()", __LINE__)) return unsupported;
    if (!build_step(graph->build_operation_graph(handle), "graph->build_operation_graph(handle)", __LINE__))
        return unsupported;
    if (!build_step(graph->create_execution_plans({fe::HeurMode_t::A}), "graph->create_execution_plans({A})",
                    __LINE__))
        return unsupported;
    if (!build_step(graph->check_support(), "graph->check_support()", __LINE__)) return unsupported;
    if (!build_step(graph->build_plans(fe::BuildPlanPolicy_t::HEURISTICS_CHOICE), "graph->build_plans()", __LINE__))
        return unsupported;
    SdpaGraphs::Entry entry;
    LAB_CUDNN_FE_CHECK(graph->get_workspace_size(entry.workspace_bytes));
    entry.graph = std::move(graph);
    return entry;
}

// The graph for a call of this shape: built on first use (counted), from the cache afterwards.
// Null graph: cuDNN does not run it here.
const SdpaGraphs::Entry& find_graph(CudaBackend& backend, SdpaGraphs& graphs, const SdpaGraphs::Key& key) {
    const auto found = graphs.entries.find(key);
    if (found != graphs.entries.end()) {
        if (found->second.graph) backend.count_plan_reused();
        return found->second;
    }
    const int sm_version = backend.properties().major * 10 + backend.properties().minor;
    SdpaGraphs::Entry entry = build_graph(key, graphs.handle(backend.stream()), sm_version);
    if (entry.graph) backend.count_plan_built();
    return graphs.entries.emplace(key, std::move(entry)).first->second;
}

// The graph that computes this call, with the padding lengths it reads (set when there is a key
// padding mask), or null when cuDNN does not take the call (the caller runs its own kernels).
const SdpaGraphs::Entry* prepare(CudaBackend& backend, SdpaGraphs& graphs, bool backward, const Tensor& q,
                                 const Tensor& k, const AttentionKernelArgs& args, Tensor* seq_q, Tensor* seq_kv) {
    if (!sdpa_applies(backend.matmul_inputs(), q, k, args)) return nullptr;
    if (args.key_padding_mask && !sequence_lengths(backend, graphs, *args.key_padding_mask, q.size(2), seq_q, seq_kv))
        return nullptr;
    const SdpaGraphs::Entry& entry = find_graph(backend, graphs, make_key(backward, q, k, args));
    return entry.graph ? &entry : nullptr;
}

// Runs a prepared graph on the tensors named by `pointers` (by uid), the padding lengths when
// given, and a workspace of the size the graph asked for.
void execute(CudaBackend& backend, SdpaGraphs& graphs, const SdpaGraphs::Entry& entry,
             std::unordered_map<int64_t, void*> pointers, const Tensor& seq_q, const Tensor& seq_kv) {
    if (seq_q.defined()) pointers.insert({{kSeqQ, seq_q.raw()}, {kSeqKV, seq_kv.raw()}});
    Tensor workspace;
    if (entry.workspace_bytes > 0) workspace = Tensor::empty(backend, {entry.workspace_bytes}, DType::u8);
    LAB_CUDNN_FE_CHECK(entry.graph->execute(graphs.handle(backend.stream()), pointers,
                                            workspace.defined() ? workspace.raw() : nullptr));
}

}  // namespace

// [attention] fused = auto: cuDNN's flash-attention engines (bf16) over the composite's
// [B, H, T, S] matmuls and softmax, where sdpa_applies would take the call (padding is checked
// per call: a mask that is not a suffix falls back to the backend's own fused kernel). In f32,
// and where cuDNN does not apply, the composite's cuBLAS matmuls stay.
bool CudaBackend::prefers_fused_attention(int64_t T, int64_t S, int64_t D, const AttentionKernelArgs& args) const {
    const bool padding = args.key_padding_mask != nullptr;
    return settings_.cudnn_attention && matmul_inputs() == DType::bf16 && !(args.dropout > 0.0f) &&
           args.window <= 0 && args.slopes == nullptr && D > 0 && D % 8 == 0 && D <= 128 &&
           (!args.causal || (padding ? T == S : T <= S));
}

bool CudaBackend::cudnn_attention(const Tensor& o, const Tensor& lse, const Tensor& q, const Tensor& k,
                                  const Tensor& v, const AttentionKernelArgs& args) {
    if (!sdpa_) sdpa_.reset(new SdpaGraphs);
    Tensor seq_q, seq_kv;
    const SdpaGraphs::Entry* entry = prepare(*this, *sdpa_, false, q, k, args, &seq_q, &seq_kv);
    if (entry == nullptr) return false;
    const Tensor q16 = q.to(DType::bf16), k16 = k.to(DType::bf16), v16 = v.to(DType::bf16);
    const Tensor o16 = Tensor::empty(*this, q.shape(), DType::bf16);
    execute(*this, *sdpa_, *entry,
            {{kQ, q16.raw()}, {kK, k16.raw()}, {kV, v16.raw()}, {kO, o16.raw()}, {kStats, lse.raw()}}, seq_q, seq_kv);
    copy(o, o16);
    return true;
}

bool CudaBackend::cudnn_attention_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout,
                                           const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                                           const Tensor& lse, const AttentionKernelArgs& args) {
    if (!sdpa_) sdpa_.reset(new SdpaGraphs);
    Tensor seq_q, seq_kv;
    const SdpaGraphs::Entry* entry = prepare(*this, *sdpa_, true, q, k, args, &seq_q, &seq_kv);
    if (entry == nullptr) return false;
    const Tensor q16 = q.to(DType::bf16), k16 = k.to(DType::bf16), v16 = v.to(DType::bf16);
    const Tensor o16 = o.to(DType::bf16), dout16 = dout.to(DType::bf16);
    const Tensor dq16 = Tensor::empty(*this, dq.shape(), DType::bf16);
    const Tensor dk16 = Tensor::empty(*this, dk.shape(), DType::bf16);
    const Tensor dv16 = Tensor::empty(*this, dv.shape(), DType::bf16);
    execute(*this, *sdpa_, *entry,
            {{kQ, q16.raw()}, {kK, k16.raw()}, {kV, v16.raw()}, {kO, o16.raw()}, {kDO, dout16.raw()},
             {kStats, lse.raw()}, {kDQ, dq16.raw()}, {kDK, dk16.raw()}, {kDV, dv16.raw()}},
            seq_q, seq_kv);
    copy(dq, dq16);
    copy(dk, dk16);
    copy(dv, dv16);
    return true;
}

}  // namespace lab::cuda
