// The backend conformance suite: one table of kernel cases for every operation of lab/backend.h
// (but the optimizer updates), each run on every backend plugin of the build against
// lab::HostBackend (tests/backend_ops.h says how). One test case per family of ops, so that CTest
// runs the families side by side; within one, a section per backend and case.
//
// Kernels the host checks against double-precision references stay in
// tests/unit/test_host_backend.cpp; backend-specific behaviour (options, primitive caches, device
// errors) stays in each backend's own tests.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "backend_ops.h"

namespace {

using lab::Backend;
using lab::DType;
using lab::Shape;
using lab::Tensor;
using lab_test::random_values;
using lab_test::ops::exact_output;
using lab_test::ops::flag;
using lab_test::ops::input;
using lab_test::ops::number;
using lab_test::ops::OpCase;
using lab_test::ops::Output;
using lab_test::ops::output;
using lab_test::ops::tolerance;
using lab_test::ops::view_of;

// An operand layout over a logical shape: storage and strides (empty: contiguous).
struct Layout {
    std::string name;
    Shape storage, strides;
};

const std::vector<DType> kAllDtypes = {DType::f32, DType::bf16, DType::f16, DType::i32, DType::i64, DType::u8};

// ---- matmul ----

std::string describe(const lab_test::MatmulCase& c) {
    return "a" + lab::shape_str(c.a_shape) + (c.a_transposed ? "^T" : "") + " @ b" + lab::shape_str(c.b_shape) +
           (c.b_transposed ? "^T" : "") + (c.b_expanded ? " (b stride-0 batch)" : "") + " " +
           lab::dtype_name(c.dtype) + (c.inputs == DType::bf16 ? " (matmul inputs bf16)" : "") +
           flag(c.bias, "bias") + flag(c.alpha != 1.0f, "alpha " + number(c.alpha)) +
           flag(c.accumulate, "accumulate");
}

double flops(const lab_test::MatmulCase& c) {
    double product = 2;
    for (int64_t d : c.a_shape) product *= static_cast<double>(d);
    return product * static_cast<double>(c.b_shape.back());
}

OpCase matmul_case(const lab_test::MatmulCase& c) {
    const bool bf16 = c.dtype == DType::bf16 || c.inputs == DType::bf16;
    return {"matmul " + describe(c), tolerance(bf16 ? DType::bf16 : DType::f32, c.a_shape.back()), flops(c) > 1e9,
            [c](Backend& be) {
                const lab_test::MatmulValues values(c);
                const lab_test::MatmulValues::Operands operands = values.operands(be);
                values.multiply(be, operands);
                return std::vector<Output>{output("c", operands.out)};
            }};
}

// c = gelu_tanh(pre), pre = a @ b (+ bias); alpha and accumulate do not apply.
OpCase matmul_gelu_case(const lab_test::MatmulCase& c) {
    const bool bf16 = c.dtype == DType::bf16 || c.inputs == DType::bf16;
    return {"matmul_gelu_tanh " + describe(c), tolerance(bf16 ? DType::bf16 : DType::f32, c.a_shape.back()), false,
            [c](Backend& be) {
                const lab_test::MatmulValues values(c);
                const lab_test::MatmulValues::Operands operands = values.operands(be);
                Tensor pre = Tensor::zeros(be, values.c_shape());
                be.set_matmul_inputs(c.inputs);
                be.matmul_gelu_tanh(operands.out, pre, operands.a, operands.b, c.bias ? &operands.bias : nullptr);
                return std::vector<Output>{output("c", operands.out), output("pre", pre)};
            }};
}

// matmul_add: c = a @ b (+ bias) + addend, the addend contiguous or a transposed view.
OpCase matmul_add_case(const lab_test::MatmulCase& c, bool transposed_addend) {
    const bool bf16 = c.dtype == DType::bf16 || c.inputs == DType::bf16;
    return {"matmul_add " + describe(c) + (transposed_addend ? ", addend a transposed view" : ""),
            tolerance(bf16 ? DType::bf16 : DType::f32, c.a_shape.back()), false, [c, transposed_addend](Backend& be) {
                const lab_test::MatmulValues values(c);
                const lab_test::MatmulValues::Operands operands = values.operands(be);
                const Shape shape = values.c_shape();
                const int64_t M = shape[0], N = shape[1];
                const std::vector<float> addend_values = random_values(M * N, 131, -2.0f, 2.0f);
                const Tensor addend = transposed_addend
                                          ? lab::ops::transpose(Tensor::from_floats(be, {N, M}, addend_values), 0, 1)
                                          : Tensor::from_floats(be, shape, addend_values);
                be.set_matmul_inputs(c.inputs);
                be.matmul_add(operands.out, operands.a, operands.b, c.bias ? &operands.bias : nullptr, addend);
                return std::vector<Output>{output("c", operands.out)};
            }};
}

}  // namespace

TEST_CASE("backend ops: copy and fill match the host backend bit for bit on every backend", "[backend_ops]") {
    std::vector<OpCase> cases;
    const Shape shape = {6, 7};
    const std::vector<Layout> layouts = {{"contiguous", shape, {}},
                                         {"transposed", {7, 6}, {1, 6}},
                                         {"broadcast rows", {1, 7}, {0, 1}},
                                         {"column broadcast", {6, 1}, {1, 0}}};
    for (DType from : kAllDtypes)
        for (DType to : kAllDtypes)
            cases.push_back({std::string("copy [6, 7] ") + lab::dtype_name(from) + " -> " + lab::dtype_name(to) +
                                 " from contiguous, transposed and broadcast sources",
                             0, false, [=](Backend& be) {
                                 // Integers 0..100 where an integer type is involved (every type
                                 // holds them exactly); fractions of either sign between floats.
                                 const bool integral = lab::is_integer(from) || lab::is_integer(to);
                                 std::vector<Output> outputs;
                                 for (const Layout& layout : layouts) {
                                     std::vector<float> values =
                                         random_values(lab::shape_numel(layout.storage), 201, integral ? 0.0f : -3.0f,
                                                       integral ? 100.0f : 3.0f);
                                     if (integral)
                                         for (float& v : values) v = std::floor(v);
                                     const Tensor source =
                                         view_of(be, layout.storage, values, shape, layout.strides, from);
                                     const Tensor out = Tensor::zeros(be, shape, to);
                                     be.copy(out, source);
                                     outputs.push_back(exact_output(layout.name, out));
                                 }
                                 return outputs;
                             }});
    for (DType to : {DType::f32, DType::bf16, DType::i64})
        cases.push_back({std::string("copy [6, 7] f32 -> ") + lab::dtype_name(to) + " into a transposed destination",
                         0, false, [=](Backend& be) {
                             const Tensor src = input(be, shape, random_values(42, 202, 0.0f, 50.0f));
                             const Tensor storage = Tensor::zeros(be, {7, 6}, to);
                             be.copy(storage.view(shape, {1, 6}, 0), src);
                             return std::vector<Output>{exact_output("dst storage", storage)};
                         }});
    cases.push_back({"copy f32 [4, 5, 6][1:4, :, 2:4] permuted to [3, 2, 5] (strides 30, 1, 6; offset 32)", 0, false,
                     [](Backend& be) {
                         const Tensor big = input(be, {4, 5, 6}, random_values(120, 203));
                         const Tensor out = Tensor::zeros(be, {3, 2, 5});
                         be.copy(out, big.view({3, 2, 5}, {30, 1, 6}, 32));
                         return std::vector<Output>{exact_output("out", out)};
                     }});
    for (DType dtype : kAllDtypes)
        cases.push_back({std::string("fill [5, 33] ") + lab::dtype_name(dtype) + " with 0, 7, -1.5, 1e-3", 0, false,
                         [=](Backend& be) {
                             std::vector<Output> outputs;
                             for (double value : {0.0, 7.0, -1.5, 1e-3}) {
                                 if (lab::is_integer(dtype) && value != std::floor(value)) continue;
                                 if (dtype == DType::u8 && value < 0) continue;
                                 const Tensor t = Tensor::zeros(be, {5, 33}, dtype);
                                 be.fill(t, value);
                                 outputs.push_back(exact_output("value " + number(value), t));
                             }
                             return outputs;
                         }});
    cases.push_back({"fill [1048576] f32 with 0.25", 0, false, [](Backend& be) {
                         const Tensor t = Tensor::zeros(be, {1 << 20});
                         be.fill(t, 0.25);
                         return std::vector<Output>{exact_output("t", t)};
                     }});
    lab_test::ops::run_on_every_backend(cases);
}

TEST_CASE("backend ops: matmul and matmul_gelu_tanh match the host backend on every backend", "[backend_ops]") {
    const DType bf16 = DType::bf16, f32 = DType::f32;
    // {name (unused: the label says it all), a, b, a^T, b^T, b stride-0, bias, alpha, accumulate, dtype, inputs}
    const std::vector<lab_test::MatmulCase> matmuls = {
        {"", {5, 7}, {7, 3}},
        {"", {5, 7}, {7, 3}, true},
        {"", {5, 7}, {7, 3}, false, true, false, true},
        {"", {6, 9}, {9, 4}, true, true, false, false, 0.5f, true},
        {"", {1, 7}, {7, 1}, false, false, false, true, 2.0f, true},
        {"", {3, 4, 6}, {3, 6, 5}},
        {"", {3, 4, 6}, {1, 6, 5}, false, false, false, true},
        {"", {1, 4, 6}, {3, 6, 5}, false, false, false, true, -1.5f},
        {"", {3, 4, 6}, {3, 6, 5}, false, false, true, false, 1.0f, true},
        {"", {2, 3, 8, 16}, {2, 3, 16, 8}, false, true, false, false, 0.25f},
        {"", {2, 3, 8, 8}, {2, 3, 8, 16}, false, false, false, false, 1.0f, true},
        {"", {2, 3, 4, 5}, {2, 1, 5, 6}, true},
        {"", {2, 3, 7, 5}, {2, 3, 5, 9}, false, true, true},
        {"", {2, 64, 96}, {1, 96, 80}, false, true, false, true, 0.5f, true},
        {"", {33, 17}, {17, 129}, false, false, false, true, 0.3f},
        // K strided by a multiple of 2 KB (oneDNN copies such operands K-contiguous first).
        {"", {512, 300}, {300, 8}, true, false, false, false, 1.0f, true},
        {"", {6, 300}, {300, 1024}, false, false, false, true, 0.5f},
        {"", {1024, 256}, {256, 1024}, true, false, false, false, 1.0f, true},
        // GPT-2 small's shapes: a linear layer, a weight gradient, the logits.
        {"", {512, 768}, {768, 2304}, false, true, false, true},
        {"", {768, 512}, {512, 3072}, true, false, false, false, 1.0f, true},
        {"", {256, 768}, {768, 50257}, false, true},
        {"", {5, 7}, {7, 3}, false, false, false, false, 1.0f, false, bf16},
        {"", {3, 4, 6}, {3, 6, 5}, false, true, false, true, 0.7f, true, bf16},
        {"", {2, 1, 8, 16}, {2, 3, 16, 8}, true, false, false, true, 1.0f, false, bf16},
        {"", {64, 768}, {768, 2304}, false, true, false, true, 1.0f, false, f32, bf16},
        {"", {768, 64}, {64, 768}, true, false, false, false, 1.0f, true, f32, bf16},
        {"", {2, 4, 64, 32}, {2, 4, 32, 64}, false, true, false, false, 0.125f, false, f32, bf16},
        {"", {3, 40, 96}, {1, 96, 80}, false, false, false, true, 1.0f, false, f32, bf16},
    };
    std::vector<OpCase> cases;
    for (const lab_test::MatmulCase& c : matmuls) cases.push_back(matmul_case(c));
    // The GELU fusion: linear layers (b^T, bias), batched and broadcast operands, bf16.
    const std::vector<lab_test::MatmulCase> fused = {
        {"", {6, 32}, {32, 48}, false, true, false, true},
        {"", {5, 7}, {7, 3}},
        {"", {2, 5, 16}, {1, 16, 24}, false, false, false, true},
        {"", {16, 12}, {12, 20}, true, false, false, true},
        {"", {64, 768}, {768, 3072}, false, true, false, true},
        {"", {4, 8, 16}, {4, 16, 8}, false, false, false, true, 1.0f, false, bf16},
        {"", {64, 256}, {256, 512}, false, true, false, true, 1.0f, false, f32, bf16},
    };
    for (const lab_test::MatmulCase& c : fused) cases.push_back(matmul_gelu_case(c));
    // The residual projection: 2-D linear layers (b^T, bias), f32 and bf16 inputs; the large ones
    // take the AMX kernel where the CPU has it, the tiles starting from the addend.
    const std::vector<lab_test::MatmulCase> residual = {
        {"", {6, 32}, {32, 48}, false, true, false, true},
        {"", {16, 12}, {12, 20}, true, false, false, false},
        {"", {256, 384}, {384, 256}, false, true, false, true, 1.0f, false, f32, bf16},
        {"", {512, 256}, {256, 384}, false, true, false, false, 1.0f, false, f32, bf16},
    };
    for (const lab_test::MatmulCase& c : residual)
        for (bool transposed_addend : {false, true}) cases.push_back(matmul_add_case(c, transposed_addend));
    lab_test::ops::run_on_every_backend(cases);
}

TEST_CASE("backend ops: unary ops and their backward match the host backend on every backend", "[backend_ops]") {
    using lab::UnaryOp;
    const std::vector<UnaryOp> ops = {UnaryOp::relu, UnaryOp::gelu, UnaryOp::gelu_tanh, UnaryOp::tanh,
                                      UnaryOp::sigmoid, UnaryOp::exp, UnaryOp::log, UnaryOp::sqrt,
                                      UnaryOp::neg, UnaryOp::square, UnaryOp::scale, UnaryOp::add_scalar};
    std::vector<OpCase> cases;
    for (UnaryOp op : ops) {
        const bool positive_only = op == UnaryOp::log || op == UnaryOp::sqrt;
        const float low = positive_only ? 0.05f : -3.0f;
        const float alpha = op == UnaryOp::add_scalar ? -1.25f : 0.37f;
        const uint32_t seed = 31 + static_cast<uint32_t>(op);
        const std::string name = std::string("unary ") + lab::unary_op_name(op);
        for (const Shape& shape : {Shape{7}, Shape{4, 250}, Shape{3, 100003}})
            cases.push_back({name + " " + lab::shape_str(shape) + " f32, alpha " + number(alpha), tolerance(DType::f32),
                             false, [=](Backend& be) {
                                 const Tensor x =
                                     input(be, shape, random_values(lab::shape_numel(shape), seed, low, 3.0f));
                                 const Tensor y = Tensor::zeros(be, shape);
                                 be.unary(op, y, x, alpha);
                                 return std::vector<Output>{output("y", y)};
                             }});
        // unary_bf16: the same op rounded to bf16 as it is written (a backend's own kernel or
        // Backend's default); a value next to a rounding boundary may round either way.
        cases.push_back({"unary_bf16 " + std::string(lab::unary_op_name(op)) + " [3, 1711] f32 -> bf16, alpha " +
                             number(alpha),
                         tolerance(DType::bf16), false, [=](Backend& be) {
                             const Shape shape{3, 1711};
                             const Tensor x =
                                 input(be, shape, random_values(lab::shape_numel(shape), seed + 7, low, 3.0f));
                             const Tensor y = Tensor::zeros(be, shape, DType::bf16);
                             be.unary_bf16(op, y, x, alpha);
                             return std::vector<Output>{output("y", y)};
                         }});
        cases.push_back({name + " [100] f32 in place (y is x), alpha 0.5", tolerance(DType::f32), false,
                         [=](Backend& be) {
                             const Tensor x =
                                 input(be, {100}, random_values(100, 41, positive_only ? 0.05f : -2.0f, 2.0f));
                             be.unary(op, x, x, 0.5f);
                             return std::vector<Output>{output("x", x)};
                         }});
        if (op == UnaryOp::scale || op == UnaryOp::add_scalar) continue;  // no derivative kernel: see backend.h
        // y = op(x) from the host on both sides, so only the backward kernel differs; without y
        // the backend recomputes it where its derivative reads y.
        for (const Shape& shape : {Shape{3, 171}, Shape{3, 1711}})
            for (bool with_y : {true, false})
                cases.push_back(
                    {"unary_backward " + std::string(lab::unary_op_name(op)) + " " + lab::shape_str(shape) + " f32" +
                         (with_y ? ", y given" : ", no y"),
                     tolerance(DType::f32), false, [=](Backend& be) {
                         static lab::HostBackend host;
                         const int64_t count = lab::shape_numel(shape);
                         const std::vector<float> x_values =
                             random_values(count, 51 + static_cast<uint32_t>(op), low, 3.0f);
                         const Tensor y_host = Tensor::zeros(host, shape);
                         host.unary(op, y_host, Tensor::from_floats(host, shape, x_values), 0.0f);
                         const Tensor x = input(be, shape, x_values);
                         const Tensor y = with_y ? input(be, shape, y_host.to_floats()) : Tensor();
                         const Tensor dy = input(be, shape, random_values(count, 71 + static_cast<uint32_t>(op)));
                         const Tensor dx = Tensor::zeros(be, shape);
                         be.unary_backward(op, dx, dy, x, y);
                         return std::vector<Output>{output("dx", dx)};
                     }});
        // unary_backward_bf16: the same derivative rounded to bf16 as it is written (a backend's
        // own kernel or Backend's default), from a contiguous and a transposed layout.
        for (bool transposed : {false, true})
            cases.push_back({"unary_backward_bf16 " + std::string(lab::unary_op_name(op)) + " [3, 1711] f32 -> bf16" +
                                 (transposed ? ", dy and x transposed views" : ""),
                             tolerance(DType::bf16), false, [=](Backend& be) {
                                 const Shape shape{3, 1711};
                                 const int64_t count = lab::shape_numel(shape);
                                 auto laid_out = [&](const std::vector<float>& values) {
                                     if (!transposed) return input(be, shape, values);
                                     return lab::ops::transpose(input(be, {1711, 3}, values), 0, 1);
                                 };
                                 const uint32_t seed_x = 57 + static_cast<uint32_t>(op);
                                 const Tensor x = laid_out(random_values(count, seed_x, low, 3.0f));
                                 const Tensor dy = laid_out(random_values(count, 77 + static_cast<uint32_t>(op)));
                                 const Tensor dx = Tensor::zeros(be, shape, DType::bf16);
                                 be.unary_backward_bf16(op, dx, dy, x, Tensor());
                                 return std::vector<Output>{output("dx", dx)};
                             }});
    }
    lab_test::ops::run_on_every_backend(cases);
}

TEST_CASE("backend ops: binary ops, forward and through autograd, match the host backend on every backend",
          "[backend_ops]") {
    using lab::BinaryOp;
    const Shape shape = {4, 5, 6};
    const Layout full{"full", shape, {}};
    const Layout row{"row [6]", {6}, {0, 0, 1}};
    const Layout column{"column [4, 5, 1]", {4, 5, 1}, {5, 1, 0}};
    const Layout scalar{"scalar [1]", {1}, {0, 0, 0}};
    const Layout transposed{"transposed", {6, 5, 4}, {1, 4, 20}};
    const Layout outer{"outer [4, 1, 1]", {4, 1, 1}, {1, 0, 0}};
    const std::vector<std::pair<Layout, Layout>> layouts = {
        {full, full}, {full, row},    {full, column},  {transposed, scalar},     {row, full},
        {column, transposed}, {outer, row}, {scalar, full}, {transposed, transposed}};
    std::vector<OpCase> cases;
    for (BinaryOp op : {BinaryOp::add, BinaryOp::sub, BinaryOp::mul, BinaryOp::div}) {
        const std::string name = std::string("binary ") + lab::binary_op_name(op);
        for (const auto& [a, b] : layouts)
            cases.push_back({name + " [4, 5, 6] f32, a " + a.name + ", b " + b.name, tolerance(DType::f32), false,
                             [=, a = a, b = b](Backend& be) {
                                 const Tensor a_view = view_of(be, a.storage,
                                     random_values(lab::shape_numel(a.storage), 81, -2.0f, 2.0f), shape, a.strides);
                                 // b in [0.5, 2], away from 0 for div.
                                 const Tensor b_view = view_of(be, b.storage,
                                     random_values(lab::shape_numel(b.storage), 82, 0.5f, 2.0f), shape, b.strides);
                                 const Tensor c = Tensor::zeros(be, shape);
                                 be.binary(op, c, a_view, b_view);
                                 return std::vector<Output>{output("c", c)};
                             }});
        // Operands that both have size-1 dims, forward and backward through lab::ops
        // (backend_compare.h): the layouts linear attention makes at T = 1. Regression: oneDNN
        // once read dst [3,4,1,4] as permuted (size-1 dims given the largest stride), left most of
        // it unwritten, and linear attention's gradients at T = 1 were wrong.
        for (const lab_test::BinaryGradCase& c : lab_test::size_one_binary_cases())
            cases.push_back({name + " " + c.name + " f32 through lab::ops, forward and backward", tolerance(DType::f32),
                             false, [=](Backend& be) {
                                 const lab_test::BinaryGrads grads = lab_test::binary_with_grads(be, c, op);
                                 std::vector<Output> outputs = {output("out", grads.out),
                                                                output(c.one_leaf ? "d leaf" : "da", grads.da)};
                                 if (!c.one_leaf) outputs.push_back(output("db", grads.db));
                                 return outputs;
                             }});
    }
    cases.push_back({"binary div [1000, 771] f32 contiguous", tolerance(DType::f32), false, [](Backend& be) {
                         const Tensor a = input(be, {1000, 771}, random_values(771000, 83));
                         const Tensor b = input(be, {1000, 771}, random_values(771000, 84, 0.5f, 2.0f));
                         const Tensor c = Tensor::zeros(be, {1000, 771});
                         be.binary(BinaryOp::div, c, a, b);
                         return std::vector<Output>{output("c", c)};
                     }});
    lab_test::ops::run_on_every_backend(cases);
}

TEST_CASE("backend ops: reduce_sum and sum_squares match the host backend on every backend", "[backend_ops]") {
    struct Reduction {
        Shape x, y;
    };
    const std::vector<Reduction> reductions = {
        {{4, 5, 6}, {1, 5, 6}},     {{4, 5, 6}, {4, 1, 6}},   {{4, 5, 6}, {4, 5, 1}},
        {{4, 5, 6}, {1, 1, 1}},     {{4, 5, 6}, {4, 1, 1}},   {{4, 5, 6}, {1, 5, 1}},
        {{2, 3, 4, 5}, {2, 1, 4, 1}}, {{512, 768}, {1, 768}}, {{512, 3000}, {512, 1}},
        {{8, 64, 2304}, {1, 1, 2304}}, {{100000}, {1}}};
    std::vector<OpCase> cases;
    for (const Reduction& r : reductions)
        cases.push_back({"reduce_sum " + lab::shape_str(r.x) + " -> " + lab::shape_str(r.y) + " f32",
                         tolerance(DType::f32, lab::shape_numel(r.x) / lab::shape_numel(r.y)), false,
                         [r](Backend& be) {
                             const Tensor x = input(be, r.x, random_values(lab::shape_numel(r.x), 301));
                             const Tensor y = Tensor::zeros(be, r.y);
                             be.reduce_sum(y, x);
                             return std::vector<Output>{output("y", y)};
                         }});
    for (int64_t count : {int64_t{1}, int64_t{1000}, int64_t{100003}})
        for (bool accumulate : {false, true})
            cases.push_back({"sum_squares [" + std::to_string(count) + "] f32" +
                                 flag(accumulate, "accumulate into 2.5"),
                             tolerance(DType::f32, count), false, [=](Backend& be) {
                                 const Tensor x = input(be, {count}, random_values(count, 302));
                                 const Tensor out = input(be, {1}, {2.5f});
                                 be.sum_squares(out, x, accumulate);
                                 return std::vector<Output>{output("out", out)};
                             }});
    lab_test::ops::run_on_every_backend(cases);
}

TEST_CASE("backend ops: softmax and layer norm, forward and backward, match the host backend on every backend",
          "[backend_ops]") {
    std::vector<OpCase> cases;
    for (const Shape& shape : {Shape{4, 10}, Shape{3, 5, 33}, Shape{2, 1000}, Shape{6, 50257}})
        for (bool log : {false, true}) {
            const std::string name = std::string(log ? "log_softmax " : "softmax ") + lab::shape_str(shape) + " f32";
            const int64_t count = lab::shape_numel(shape);
            const double tol = tolerance(DType::f32, shape.back());
            cases.push_back({name, tol, false, [=](Backend& be) {
                                 const Tensor x = input(be, shape, random_values(count, 91, -8.0f, 8.0f));
                                 const Tensor y = Tensor::zeros(be, shape);
                                 be.softmax(y, x, log);
                                 return std::vector<Output>{output("y", y)};
                             }});
            // The backward from the host's y on both sides, so only the backward kernel differs.
            cases.push_back({name + " backward", tol, false, [=](Backend& be) {
                                 static lab::HostBackend host;
                                 const Tensor y_host = Tensor::zeros(host, shape);
                                 host.softmax(y_host, input(host, shape, random_values(count, 91, -8.0f, 8.0f)), log);
                                 const Tensor y = input(be, shape, y_host.to_floats());
                                 const Tensor dy = input(be, shape, random_values(count, 92));
                                 const Tensor dx = Tensor::zeros(be, shape);
                                 be.softmax_backward(dx, dy, y, log);
                                 return std::vector<Output>{output("dx", dx)};
                             }});
        }

    struct Norm {
        Shape shape;
        bool gamma, beta;
        float offset;  // added to x: a large mean stresses the variance computation
    };
    struct Grads {
        bool dgamma, dbeta;
    };
    // Each forward case, and its backward with the parameter gradients its forward has and with
    // none; {4, 40} asks for dbeta alone.
    const std::vector<std::pair<Norm, std::vector<Grads>>> norms = {
        {{{6, 32}, true, true, 0.0f}, {{true, true}, {false, false}}},
        {{{2, 3, 100}, true, true, 5.0f}, {{true, true}, {false, false}}},
        {{{6, 32}, false, false, 0.0f}, {{true, false}, {false, false}}},
        {{{5, 17}, true, false, -2.0f}, {{true, false}, {false, false}}},
        {{{5, 17}, false, true, 1.0f}, {{true, true}, {false, false}}},
        {{{4, 40}, true, true, 0.0f}, {{false, true}}},
        {{{64, 768}, true, true, 0.0f}, {{true, true}, {false, false}}},
        {{{3, 4097}, true, true, 100.0f}, {{true, true}, {false, false}}}};
    for (const auto& [n, backward_grads] : norms) {
        const int64_t columns = n.shape.back(), rows = lab::shape_numel(n.shape) / columns;
        const double tol = tolerance(DType::f32, columns);
        const std::string name = "layer_norm " + lab::shape_str(n.shape) + " f32" + flag(n.gamma, "gamma") +
                                 flag(n.beta, "beta") + ", x offset " + number(n.offset);
        const auto x_values = [n = n, rows, columns] {
            std::vector<float> values = random_values(rows * columns, 101, -2.0f, 2.0f);
            for (float& v : values) v += n.offset;
            return values;
        };
        cases.push_back({name, tol, false, [=, n = n](Backend& be) {
                             const Tensor x = input(be, n.shape, x_values());
                             const Tensor gamma = input(be, {columns}, random_values(columns, 102, 0.5f, 1.5f));
                             const Tensor beta = input(be, {columns}, random_values(columns, 103));
                             const Tensor y = Tensor::zeros(be, n.shape);
                             const Tensor mean = Tensor::zeros(be, {rows}), rstd = Tensor::zeros(be, {rows});
                             be.layer_norm(y, mean, rstd, x, n.gamma ? &gamma : nullptr, n.beta ? &beta : nullptr,
                                           1e-5f);
                             return std::vector<Output>{output("y", y), output("mean", mean), output("rstd", rstd)};
                         }});
        // layer_norm_bf16: the same statistics, y rounded to bf16 as it is written.
        cases.push_back({"layer_norm_bf16 " + lab::shape_str(n.shape) + " f32 -> bf16" + flag(n.gamma, "gamma") +
                             flag(n.beta, "beta") + ", x offset " + number(n.offset),
                         std::max(tol, tolerance(DType::bf16)), false, [=, n = n](Backend& be) {
                             const Tensor x = input(be, n.shape, x_values());
                             const Tensor gamma = input(be, {columns}, random_values(columns, 102, 0.5f, 1.5f));
                             const Tensor beta = input(be, {columns}, random_values(columns, 103));
                             const Tensor y = Tensor::zeros(be, n.shape, DType::bf16);
                             const Tensor mean = Tensor::zeros(be, {rows}), rstd = Tensor::zeros(be, {rows});
                             be.layer_norm_bf16(y, mean, rstd, x, n.gamma ? &gamma : nullptr, n.beta ? &beta : nullptr,
                                                1e-5f);
                             return std::vector<Output>{output("y", y), output("mean", mean), output("rstd", rstd)};
                         }});
        // The backward from the host's mean and rstd; dgamma and dbeta accumulate into initial
        // values, and stay untouched when not asked for (both are outputs either way).
        for (const Grads g : backward_grads)
            for (bool add : {false, true})
                cases.push_back(
                    {std::string(add ? "layer_norm_backward_accumulate (dx +=) " : "layer_norm_backward ") +
                         lab::shape_str(n.shape) + " f32" + flag(n.gamma, "gamma") +
                         flag(g.dgamma, "dgamma +=") + flag(g.dbeta, "dbeta +=") + ", x offset " + number(n.offset),
                     tol, false, [=, n = n](Backend& be) {
                         static lab::HostBackend host;
                         const std::vector<float> x_host_values = x_values();
                         const Tensor mean_host = Tensor::zeros(host, {rows}), rstd_host = Tensor::zeros(host, {rows});
                         host.layer_norm(Tensor::zeros(host, n.shape), mean_host, rstd_host,
                                         input(host, n.shape, x_host_values), nullptr, nullptr, 1e-5f);
                         const Tensor x = input(be, n.shape, x_host_values);
                         const Tensor mean = input(be, {rows}, mean_host.to_floats());
                         const Tensor rstd = input(be, {rows}, rstd_host.to_floats());
                         const Tensor gamma = input(be, {columns}, random_values(columns, 112, 0.5f, 1.5f));
                         const Tensor dy = input(be, n.shape, random_values(rows * columns, 115));
                         const Tensor dx = add ? input(be, n.shape, random_values(rows * columns, 116))
                                               : Tensor::zeros(be, n.shape);
                         const Tensor dgamma = input(be, {columns}, random_values(columns, 113));
                         const Tensor dbeta = input(be, {columns}, random_values(columns, 114));
                         if (add)
                             be.layer_norm_backward_accumulate(dx, g.dgamma ? &dgamma : nullptr,
                                                               g.dbeta ? &dbeta : nullptr, dy, x, mean, rstd,
                                                               n.gamma ? &gamma : nullptr);
                         else
                             be.layer_norm_backward(dx, g.dgamma ? &dgamma : nullptr, g.dbeta ? &dbeta : nullptr, dy, x,
                                                    mean, rstd, n.gamma ? &gamma : nullptr);
                         return std::vector<Output>{output("dx", dx), output("dgamma", dgamma), output("dbeta", dbeta)};
                     }});
    }
    lab_test::ops::run_on_every_backend(cases);
}
