// The fused attention kernel's cases and their inputs, laid out the same way on any backend
// (Backend::attention and attention_backward): shared by the conformance suite
// (test_backend_ops_attention.cpp) and the cuda backend's cuDNN tests (test_cuda_attention.cpp).
// q/k/v are contiguous or strided views of one packed QKV tensor, o and dout [B, H, T, D] views
// of [B, T, H, D] rows: the layouts the attention plugins pass.
#pragma once
#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "backend_compare.h"
#include "lab/backend.h"
#include "lab/tensor.h"

namespace lab_test::attention {

using lab::Backend;
using lab::DType;
using lab::Shape;
using lab::Tensor;

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

inline Inputs make_inputs(const AttentionCase& c, bool round_to_bf16) {
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

inline Operands make_operands(Backend& be, const AttentionCase& c, const Inputs& in) {
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
inline Result run_attention(Backend& be, const AttentionCase& c, const Inputs& in,
                            const std::vector<float>& saved_o = {}, const std::vector<float>& saved_lse = {}) {
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

inline std::string describe(const AttentionCase& c) {
    return c.name + " B" + std::to_string(c.B) + " H" + std::to_string(c.H) + "/" + std::to_string(c.Hkv) + " T" +
           std::to_string(c.T) + " S" + std::to_string(c.S) + " D" + std::to_string(c.D);
}


// The f32 cases: causal and not, T != S (queries aligned with the last keys), sliding windows, key
// padding (a batch whose keys are all padding: zero output, lse = -inf), ALiBi slopes, dropout
// (the same Philox mask), grouped key/value heads (Hkv = 1, 2), head sizes 32, 64 and 128, packed
// QKV views; T = 77 and 100 are multiples of no tile size.
inline std::vector<AttentionCase> f32_attention_cases() {
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
    return cases;
}

}  // namespace lab_test::attention
