// Parity of the CUDA backend's fused attention (Backend::attention and attention_backward) with
// lab::HostBackend's: causal and not, T != S (queries aligned with the last keys), sliding
// windows, key padding masks (a batch whose keys are all padding: zero output, lse = -inf), ALiBi
// slopes, dropout (the same Philox mask), grouped key/value heads (Hkv = 1, 2), head sizes 32, 64
// and 128, q/k/v as strided views of one packed QKV tensor and o/dout as [B, T, H, D] rows: the
// layouts the attention plugins pass. f32 runs the backend's own kernels (relative 1e-4).
//
// precision bf16 (Backend::set_matmul_inputs(bf16)) sends the cases cuDNN takes (no dropout,
// window or slopes; padding only at the end of each row) to cuDNN's fused attention, which multiplies bf16 q, k, v and
// probabilities: those are compared at 1e-2 with the host's f32 kernel fed the same bf16-rounded
// q, k, v and dout, so only cuDNN's own roundings count. The backend counts a cuDNN graph as a
// plan built (BackendStats::primitives_created), which tells which path ran.
#include <catch2/catch.hpp>

#include <cmath>

#include "cuda_test_support.h"
#include "lab/backend.h"

using lab::Backend;
using lab::DType;
using lab::Shape;
using lab::Tensor;
using namespace lab_test::cuda;

namespace {

// some: a few padded keys at the end of each row and one in the middle; suffix: padding only at
// the end (BERT's padded batches, which cuDNN takes as sequence lengths); whole_batch: batch 1
// all padding.
enum class Padding { none, some, suffix, whole_batch };

struct AttentionCase {
    std::string name;
    int64_t B = 2, H = 4, Hkv = 4, T = 64, S = 64, D = 32;
    bool causal = false;
    int64_t window = 0;
    Padding padding = Padding::none;
    bool alibi = false;
    float dropout = 0.0f;
    bool packed = false;  // q, k, v: views of one [B, T, H + 2 Hkv, D] tensor (needs T == S)
};

// One case's inputs as host values, and the kernel's tensors made from them on a backend.
struct Inputs {
    std::vector<float> q, k, v, dout;  // storage order: packed [B, T, W, D] or [B, H, T, D] / [B, Hkv, S, D]
    std::vector<int64_t> padding;      // [B, S]
    std::vector<float> slopes;         // [H]
};

struct Operands {
    Tensor qkv, q, k, v;         // qkv: the packed storage when packed
    Tensor o_storage, o, lse;    // o: a [B, H, T, D] view of o_storage [B, T, H, D]
    Tensor dout_storage, dout;   // the same layout as o
    Tensor mask, slopes;
    lab::AttentionKernelArgs args;
};

Inputs make_inputs(const AttentionCase& c, bool round_to_bf16) {
    Inputs in;
    const int64_t W = c.H + 2 * c.Hkv;
    if (c.packed) {
        REQUIRE(c.T == c.S);
        in.q = random_values(c.B * c.T * W * c.D, 901, -2.0f, 2.0f);  // the whole packed tensor
    } else {
        in.q = random_values(c.B * c.H * c.T * c.D, 901, -2.0f, 2.0f);
        in.k = random_values(c.B * c.Hkv * c.S * c.D, 902, -2.0f, 2.0f);
        in.v = random_values(c.B * c.Hkv * c.S * c.D, 903);
    }
    in.dout = random_values(c.B * c.T * c.H * c.D, 904);
    if (round_to_bf16)
        for (std::vector<float>* values : {&in.q, &in.k, &in.v, &in.dout}) *values = rounded_to_bf16(*values);
    if (c.padding != Padding::none) {
        in.padding.assign(static_cast<size_t>(c.B * c.S), 0);
        for (int64_t b = 0; b < c.B; ++b)
            for (int64_t j = 0; j < c.S; ++j) {
                const bool tail = j >= c.S - 3 * (b + 1);
                const bool padded = c.padding == Padding::whole_batch ? b == 1
                                    : c.padding == Padding::suffix    ? tail
                                                                      : tail || j == 2;
                in.padding[static_cast<size_t>(b * c.S + j)] = padded ? 1 : 0;
            }
    }
    if (c.alibi)
        for (int64_t h = 0; h < c.H; ++h)
            in.slopes.push_back(std::pow(2.0f, -8.0f * static_cast<float>(h + 1) / static_cast<float>(c.H)));
    return in;
}

Operands make_operands(Backend& be, const AttentionCase& c, const Inputs& in) {
    Operands op;
    const int64_t W = c.H + 2 * c.Hkv, B = c.B, H = c.H, T = c.T, S = c.S, D = c.D;
    if (c.packed) {
        op.qkv = Tensor::from_floats(be, {B, T, W, D}, in.q);
        const Shape strides = {T * W * D, D, W * D, 1};
        op.q = op.qkv.view({B, H, T, D}, strides, 0);
        op.k = op.qkv.view({B, c.Hkv, S, D}, strides, H * D);
        op.v = op.qkv.view({B, c.Hkv, S, D}, strides, (H + c.Hkv) * D);
    } else {
        op.q = Tensor::from_floats(be, {B, H, T, D}, in.q);
        op.k = Tensor::from_floats(be, {B, c.Hkv, S, D}, in.k);
        op.v = Tensor::from_floats(be, {B, c.Hkv, S, D}, in.v);
    }
    const Shape row_strides = {T * H * D, D, H * D, 1};
    op.o_storage = Tensor::zeros(be, {B, T, H, D});
    op.o = op.o_storage.view({B, H, T, D}, row_strides, 0);
    op.lse = Tensor::zeros(be, {B, H, T});
    op.dout_storage = Tensor::from_floats(be, {B, T, H, D}, in.dout);
    op.dout = op.dout_storage.view({B, H, T, D}, row_strides, 0);
    op.args.scale = 1.0f / std::sqrt(static_cast<float>(D));
    op.args.causal = c.causal;
    op.args.window = c.window;
    if (!in.padding.empty()) {
        op.mask = Tensor::from_ints(be, {B, S}, in.padding, DType::u8);
        op.args.key_padding_mask = &op.mask;
    }
    if (!in.slopes.empty()) {
        op.slopes = Tensor::from_floats(be, {H}, in.slopes);
        op.args.slopes = &op.slopes;
    }
    op.args.dropout = c.dropout;
    op.args.dropout_key = lab::RngKey{3, 5, 64};
    return op;
}

struct Result {
    std::vector<float> o, lse, dq, dk, dv;  // o in [B, T, H, D] storage order
};

// Forward on `be`; then the backward from `saved_o` and `saved_lse` (the host's, so that only the
// backward kernel differs), or from this forward's when they are empty.
Result run_attention(Backend& be, const AttentionCase& c, const Inputs& in, const std::vector<float>& saved_o = {},
                     const std::vector<float>& saved_lse = {}) {
    Operands op = make_operands(be, c, in);
    be.attention(op.o, op.lse, op.q, op.k, op.v, op.args);
    Result r;
    r.o = op.o_storage.to_floats();
    r.lse = op.lse.to_floats();
    if (!saved_o.empty()) {
        op.o_storage.copy_(Tensor::from_floats(be, op.o_storage.shape(), saved_o));
        op.lse.copy_(Tensor::from_floats(be, op.lse.shape(), saved_lse));
    }
    Tensor dq = Tensor::zeros(be, {c.B, c.H, c.T, c.D});
    Tensor dk = Tensor::zeros(be, {c.B, c.Hkv, c.S, c.D});
    Tensor dv = Tensor::zeros(be, {c.B, c.Hkv, c.S, c.D});
    be.attention_backward(dq, dk, dv, op.dout, op.q, op.k, op.v, op.o, op.lse, op.args);
    r.dq = dq.to_floats();
    r.dk = dk.to_floats();
    r.dv = dv.to_floats();
    return r;
}

void compare(const std::string& name, const Result& got, const Result& want, double tolerance) {
    expect_close(name + " o", got.o, want.o, tolerance);
    expect_close(name + " lse", got.lse, want.lse, tolerance);
    expect_close(name + " dq", got.dq, want.dq, tolerance);
    expect_close(name + " dk", got.dk, want.dk, tolerance);
    expect_close(name + " dv", got.dv, want.dv, tolerance);
}

std::string describe(const AttentionCase& c) {
    return c.name + " B" + std::to_string(c.B) + " H" + std::to_string(c.H) + "/" + std::to_string(c.Hkv) + " T" +
           std::to_string(c.T) + " S" + std::to_string(c.S) + " D" + std::to_string(c.D);
}

}  // namespace

TEST_CASE("cuda attention forward and backward match the host backend (f32 kernels)", "[cuda]") {
    CUDA_BACKEND_OR_SKIP(cuda);
    lab::HostBackend host;
    auto make = [](std::string name) {
        AttentionCase c;
        c.name = std::move(name);
        return c;
    };
    std::vector<AttentionCase> cases;
    for (int64_t D : {32, 64, 128})
        for (bool causal : {false, true}) {
            AttentionCase c = make(std::string(causal ? "causal" : "full") + " packed qkv");
            c.D = D, c.causal = causal, c.packed = true, c.T = c.S = 77;  // not a multiple of any tile
            cases.push_back(c);
        }
    {
        AttentionCase c = make("causal T < S (queries aligned with the last keys)");
        c.causal = true, c.T = 16, c.S = 80;
        cases.push_back(c);
        c.name = "full T < S", c.causal = false, c.T = 33, c.S = 70;
        cases.push_back(c);
        c.name = "causal T > S (the first queries see no key)", c.causal = true, c.T = 40, c.S = 24;
        cases.push_back(c);
    }
    {
        AttentionCase c = make("causal window 8 packed");
        c.causal = true, c.window = 8, c.T = c.S = 100, c.packed = true;
        cases.push_back(c);
        c.name = "full window 10", c.causal = false, c.window = 10, c.packed = false;
        cases.push_back(c);
    }
    {
        AttentionCase c = make("key padding");
        c.padding = Padding::some, c.T = c.S = 50, c.D = 64;
        cases.push_back(c);
        c.name = "causal key padding packed", c.causal = true, c.packed = true;
        cases.push_back(c);
        c.name = "key padding, batch 1 all padding", c.causal = false, c.packed = false;
        c.padding = Padding::whole_batch;
        cases.push_back(c);
    }
    {
        AttentionCase c = make("alibi causal");
        c.alibi = true, c.causal = true, c.T = c.S = 96, c.packed = true;
        cases.push_back(c);
        c.name = "alibi full T < S", c.causal = false, c.T = 20, c.S = 96, c.packed = false;
        cases.push_back(c);
    }
    {
        AttentionCase c = make("dropout 0.1 causal packed");
        c.dropout = 0.1f, c.causal = true, c.T = c.S = 64, c.packed = true;
        cases.push_back(c);
        c.name = "dropout 0.3 full, key padding", c.dropout = 0.3f, c.causal = false, c.packed = false;
        c.padding = Padding::some;
        cases.push_back(c);
    }
    for (int64_t Hkv : {1, 2}) {
        AttentionCase c = make("gqa causal packed");
        c.Hkv = Hkv, c.causal = true, c.packed = true, c.T = c.S = 70, c.D = 64;
        cases.push_back(c);
        c.name = "gqa full, key padding", c.causal = false, c.padding = Padding::some, c.packed = false;
        cases.push_back(c);
    }
    {
        AttentionCase c = make("long causal packed");
        c.B = 1, c.H = 2, c.Hkv = 2, c.T = c.S = 1024, c.D = 128, c.causal = true, c.packed = true;
        cases.push_back(c);
    }
    for (const AttentionCase& c : cases) {
        const Inputs in = make_inputs(c, false);
        const Result want = run_attention(host, c, in);
        const uint64_t plans = cuda->stats().primitives_created;
        const Result got = run_attention(*cuda, c, in, want.o, want.lse);
        CHECK(cuda->stats().primitives_created == plans);  // f32 attention builds no cuDNN graph
        compare("attention " + describe(c), got, want, kF32Tolerance);
        if (c.padding == Padding::whole_batch) {
            // Batch 1 sees no key: its output is exactly zero and its lse -inf, on the GPU too.
            const size_t half = got.o.size() / 2;
            CHECK(std::all_of(got.o.begin() + static_cast<std::ptrdiff_t>(half), got.o.end(),
                              [](float x) { return x == 0.0f; }));
            CHECK(std::all_of(got.lse.begin() + static_cast<std::ptrdiff_t>(got.lse.size() / 2), got.lse.end(),
                              [](float x) { return std::isinf(x) && x < 0; }));
            CHECK(std::all_of(got.dq.begin() + static_cast<std::ptrdiff_t>(got.dq.size() / 2), got.dq.end(),
                              [](float x) { return x == 0.0f; }));
        }
    }
}

TEST_CASE("cuda attention under precision bf16 runs cuDNN where it applies and matches the host", "[cuda]") {
    CUDA_BACKEND_OR_SKIP(cuda);
    cuda->set_matmul_inputs(DType::bf16);
    lab::HostBackend host;  // f32 attention, fed the same bf16-rounded inputs
    struct Bf16Case {
        AttentionCase c;
        bool cudnn;  // expected to run on cuDNN (a graph built on first use)
    };
    std::vector<Bf16Case> cases;
    for (int64_t D : {64, 128})
        for (bool causal : {false, true}) {
            AttentionCase c;
            c.name = std::string("cudnn ") + (causal ? "causal" : "full") + " packed qkv";
            c.B = 2, c.H = 4, c.Hkv = 4, c.T = c.S = 256, c.D = D, c.causal = causal, c.packed = true;
            cases.push_back({c, true});
        }
    for (bool causal : {false, true}) {
        // Keys padded at the end of each row: cuDNN's padding mask with sequence lengths.
        AttentionCase c;
        c.name = std::string("cudnn ") + (causal ? "causal" : "full") + " right-padded keys";
        c.T = c.S = 128, c.D = 64, c.causal = causal, c.padding = Padding::suffix;
        cases.push_back({c, true});
    }
    {
        // Padding that lengths cannot say (a padded key before visible ones, a row of padding
        // only): the backend's own kernels, with the same values.
        AttentionCase c;
        c.name = "bf16 key padding with a hole", c.T = c.S = 128, c.D = 64, c.padding = Padding::some;
        cases.push_back({c, false});
        c.name = "bf16 batch 1 all padding", c.padding = Padding::whole_batch;
        cases.push_back({c, false});
    }
    {
        // Shapes cuDNN may or may not take (grouped heads, bottom-right causal alignment): the
        // values must match whichever path the backend chooses.
        AttentionCase c;
        c.name = "bf16 gqa causal packed", c.Hkv = 2, c.T = c.S = 128, c.D = 64, c.causal = true, c.packed = true;
        cases.push_back({c, false});
        c.name = "bf16 causal T < S", c.Hkv = 4, c.T = 64, c.S = 192, c.packed = false;
        cases.push_back({c, false});
    }
    for (const Bf16Case& bc : cases) {
        const AttentionCase& c = bc.c;
        const Inputs in = make_inputs(c, true);
        const Result want = run_attention(host, c, in);
        const lab::BackendStats before = cuda->stats();
        const Result got = run_attention(*cuda, c, in, want.o, want.lse);
        const lab::BackendStats first = cuda->stats();
        const uint64_t built = first.primitives_created - before.primitives_created;
        std::printf("[cuda] %s: %llu cuDNN graphs built\n", describe(c).c_str(), static_cast<unsigned long long>(built));
        if (bc.cudnn) {
            CHECK(built >= 2);  // a forward and a backward graph
            // The same shapes again: served from the graph cache.
            run_attention(*cuda, c, in, want.o, want.lse);
            CHECK(cuda->stats().primitives_created == first.primitives_created);
            CHECK(cuda->stats().primitive_cache_hits >= first.primitive_cache_hits + 2);
        }
        compare("attention " + describe(c), got, want, kBf16Tolerance);
    }
}

TEST_CASE("cuda attention under precision bf16 keeps the f32 kernels where cuDNN does not apply", "[cuda]") {
    CUDA_BACKEND_OR_SKIP(cuda);
    cuda->set_matmul_inputs(DType::bf16);
    lab::HostBackend host;
    // Dropout, windows, ALiBi slopes and padding that sequence lengths cannot express are the
    // backend's own kernels, which stay f32 whatever the matmul precision (lab/backend.h: only
    // matmul rounds its operands).
    AttentionCase base;
    base.B = 2, base.H = 4, base.Hkv = 4, base.T = base.S = 128, base.D = 64, base.causal = true, base.packed = true;
    std::vector<AttentionCase> cases;
    AttentionCase c = base;
    c.name = "bf16 dropout 0.1", c.dropout = 0.1f;
    cases.push_back(c);
    c = base;
    c.name = "bf16 window 16", c.window = 16;
    cases.push_back(c);
    c = base;
    c.name = "bf16 alibi", c.alibi = true;
    cases.push_back(c);
    c = base;
    c.name = "bf16 key padding with a hole", c.padding = Padding::some, c.packed = false;
    cases.push_back(c);
    for (const AttentionCase& each : cases) {
        const Inputs in = make_inputs(each, true);
        const Result want = run_attention(host, each, in);
        const uint64_t plans = cuda->stats().primitives_created;
        const Result got = run_attention(*cuda, each, in, want.o, want.lse);
        CHECK(cuda->stats().primitives_created == plans);  // no cuDNN graph
        compare("attention " + describe(each), got, want, kF32Tolerance);
    }
    // cudnn_attention = false keeps every case on the backend's own kernels.
    std::shared_ptr<Backend> own = make_backend("cuda", {{"cudnn_attention", "false"}});
    own->set_matmul_inputs(DType::bf16);
    AttentionCase plain = base;
    plain.name = "bf16, cudnn_attention = false";
    const Inputs in = make_inputs(plain, true);
    const Result want = run_attention(host, plain, in);
    const uint64_t plans = own->stats().primitives_created;
    const Result got = run_attention(*own, plain, in, want.o, want.lse);
    CHECK(own->stats().primitives_created == plans);
    compare("attention " + describe(plain), got, want, kF32Tolerance);
}

TEST_CASE("cuda attention refuses bad arguments with ShapeError", "[cuda]") {
    CUDA_BACKEND_OR_SKIP(cuda);
    AttentionCase c;
    c.name = "bad";
    const Inputs in = make_inputs(c, false);
    Operands op = make_operands(*cuda, c, in);
    Tensor wrong_lse = Tensor::zeros(*cuda, {c.B, c.H, c.T + 1});
    CHECK_THROWS_AS(cuda->attention(op.o, wrong_lse, op.q, op.k, op.v, op.args), lab::ShapeError);
    Tensor k3 = Tensor::zeros(*cuda, {c.B, 3, c.S, c.D});  // 3 kv heads do not divide 4 query heads
    CHECK_THROWS_AS(cuda->attention(op.o, op.lse, op.q, k3, k3, op.args), lab::ShapeError);
    Tensor mask = Tensor::zeros(*cuda, {c.B, c.S + 1}, DType::u8);
    op.args.key_padding_mask = &mask;
    CHECK_THROWS_AS(cuda->attention(op.o, op.lse, op.q, op.k, op.v, op.args), lab::ShapeError);
}
