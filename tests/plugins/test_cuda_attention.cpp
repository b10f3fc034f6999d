// The CUDA backend's fused attention (Backend::attention and attention_backward) where it is
// particular to cuda; the f32 kernels' agreement with lab::HostBackend on the cases of
// attention_compare.h is checked by the conformance suite (test_backend_ops_attention.cpp), and
// here only that f32 builds no cuDNN graph and masks a batch with no visible key exactly.
//
// precision bf16 (Backend::set_matmul_inputs(bf16)) sends the cases cuDNN takes (no dropout,
// window or slopes; padding only at the end of each row) to cuDNN's fused attention, which multiplies bf16 q, k, v and
// probabilities: those are compared at 1e-2 with the host's f32 kernel fed the same bf16-rounded
// q, k, v and dout, so only cuDNN's own roundings count. The backend counts a cuDNN graph as a
// plan built (BackendStats::primitives_created), which tells which path ran.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>

#include "attention_compare.h"
#include "cuda_test_support.h"
#include "lab/backend.h"

using lab::Backend;
using lab::DType;
using lab::Shape;
using lab::Tensor;
using namespace lab_test::cuda;
using namespace lab_test::attention;

namespace {

void compare(const std::string& name, const Result& got, const Result& want, double tolerance) {
    expect_close(name + " o", got.o, want.o, tolerance);
    expect_close(name + " lse", got.lse, want.lse, tolerance);
    expect_close(name + " dq", got.dq, want.dq, tolerance);
    expect_close(name + " dk", got.dk, want.dk, tolerance);
    expect_close(name + " dv", got.dv, want.dv, tolerance);
}

}  // namespace

// Their agreement with the host is the conformance suite's (test_backend_ops_attention.cpp);
// here, what is particular to the cuda backend's f32 path.
TEST_CASE("cuda attention in f32 runs its own kernels (no cuDNN graph) and zeroes a batch with no visible key",
          "[cuda]") {
    CUDA_BACKEND_OR_SKIP(cuda);
    for (const AttentionCase& c : f32_attention_cases()) {
        INFO("attention " << describe(c));
        const Inputs in = make_inputs(c, false);
        const uint64_t plans = cuda->stats().primitives_created;
        const Result got = run_attention(*cuda, c, in);
        CHECK(cuda->stats().primitives_created == plans);  // f32 attention builds no cuDNN graph
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
