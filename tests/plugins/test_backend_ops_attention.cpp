// The backend conformance suite, continued (test_backend_ops.cpp has the dense kernels): fused
// attention, embedding, cross entropy, masked_fill and dropout, each case run on every backend
// plugin of the build against lab::HostBackend (tests/backend_ops.h).
#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

#include "attention_compare.h"
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

std::string rng_key_str(const lab::RngKey& key) {
    return "key (" + std::to_string(key.seed) + ", " + std::to_string(key.stream) + ", " + std::to_string(key.offset) +
           ")";
}

}  // namespace

TEST_CASE("backend ops: fused attention forward and backward match the host backend on every backend",
          "[backend_ops]") {
    namespace attention = lab_test::attention;
    std::vector<OpCase> cases;
    for (const attention::AttentionCase& c : attention::f32_attention_cases()) {
        const char* padding[] = {"", ", key padding", ", key padding (suffix)", ", key padding (batch 1 all)"};
        const std::string label = "attention " + attention::describe(c) + " f32" + flag(c.causal, "causal") +
                                  flag(c.window > 0, "window " + std::to_string(c.window)) +
                                  padding[static_cast<int>(c.padding)] + flag(c.alibi, "alibi") +
                                  flag(c.dropout > 0, "dropout " + number(c.dropout)) +
                                  flag(c.packed, "packed qkv views") + ", o/dout [B, T, H, D] rows";
        // One backend's forward against the host's; the backward from the host's o and lse, so
        // that only the backward kernel differs.
        cases.push_back({label, tolerance(DType::f32, c.S), c.T * c.S * c.D * c.B * c.H > (int64_t{1} << 26),
                         [c, label](Backend& be) {
                             static lab::HostBackend host;
                             static std::map<std::string, attention::Result> host_forward;  // by label
                             const attention::Inputs in = attention::make_inputs(c, false);
                             auto want = host_forward.find(label);
                             if (want == host_forward.end())
                                 want = host_forward.emplace(label, attention::run_attention(host, c, in)).first;
                             const attention::Result got =
                                 attention::run_attention(be, c, in, want->second.o, want->second.lse);
                             return std::vector<Output>{output("o", got.o), output("lse", got.lse),
                                                        output("dq", got.dq), output("dk", got.dk),
                                                        output("dv", got.dv)};
                         }});
    }
    lab_test::ops::run_on_every_backend(cases);
}

TEST_CASE("backend ops: embedding and cross entropy, forward and backward, match the host backend on every backend",
          "[backend_ops]") {
    std::vector<OpCase> cases;
    for (DType id_type : {DType::i32, DType::i64}) {
        const int64_t V = 50, C = 24, N = 300;  // N > V: ids repeat, so the backward's adds collide
        const std::string ids_name = std::string(lab::dtype_name(id_type)) + " ids";
        auto ids = [=](Backend& be) {
            std::vector<int64_t> values(static_cast<size_t>(N));
            for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<int64_t>((i * 37 + 11) % V);
            return Tensor::from_ints(be, {N}, values, id_type);
        };
        // A gather moves values without arithmetic: bit for bit.
        cases.push_back({"embedding table [50, 24] f32, " + ids_name + " [300]", 0, false, [=](Backend& be) {
                             const Tensor table = input(be, {V, C}, random_values(V * C, 401));
                             const Tensor y = Tensor::zeros(be, {N, C});
                             be.embedding(y, ids(be), table);
                             return std::vector<Output>{exact_output("y", y)};
                         }});
        cases.push_back({"embedding_backward dtable [50, 24] f32 += dy [300, 24], " + ids_name + " (repeated)",
                         tolerance(DType::f32, N / V + 1), false, [=](Backend& be) {
                             const Tensor dtable = input(be, {V, C}, random_values(V * C, 402));
                             const Tensor dy = input(be, {N, C}, random_values(N * C, 403));
                             be.embedding_backward(dtable, dy, ids(be));
                             return std::vector<Output>{output("dtable", dtable)};
                         }});
    }
    for (int64_t V : {int64_t{65}, int64_t{50257}})
        for (DType target_type : {DType::i32, DType::i64}) {
            const int64_t N = 24;
            const std::string name = "[" + std::to_string(N) + ", " + std::to_string(V) + "] f32, " +
                                     lab::dtype_name(target_type) + " targets, rows 3 and 17 ignored (-100)";
            auto targets = [=](Backend& be) {
                std::vector<int64_t> values(static_cast<size_t>(N));
                for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<int64_t>((i * 7919) % V);
                values[3] = values[17] = -100;
                return Tensor::from_ints(be, {N}, values, target_type);
            };
            const std::vector<float> logits_values = random_values(N * V, 501, -6.0f, 6.0f);
            cases.push_back({"cross_entropy " + name, tolerance(DType::f32, V), false, [=](Backend& be) {
                                 const Tensor logits = input(be, {N, V}, logits_values);
                                 const Tensor loss = Tensor::zeros(be, {N}), lse = Tensor::zeros(be, {N});
                                 be.cross_entropy(loss, lse, logits, targets(be), -100);
                                 return std::vector<Output>{output("loss", loss), output("lse", lse)};
                             }});
            // The backward from the host's lse, so that only the backward kernel differs.
            cases.push_back({"cross_entropy_backward " + name, tolerance(DType::f32, V), false, [=](Backend& be) {
                                 static lab::HostBackend host;
                                 const Tensor lse_host = Tensor::zeros(host, {N});
                                 host.cross_entropy(Tensor::zeros(host, {N}), lse_host,
                                                    input(host, {N, V}, logits_values), targets(host), -100);
                                 const Tensor dlogits = Tensor::zeros(be, {N, V});
                                 be.cross_entropy_backward(dlogits, input(be, {N}, random_values(N, 502, 0.5f, 1.5f)),
                                                           input(be, {N, V}, logits_values),
                                                           input(be, {N}, lse_host.to_floats()), targets(be), -100);
                                 return std::vector<Output>{output("dlogits", dlogits)};
                             }});
        }
    lab_test::ops::run_on_every_backend(cases);
}

TEST_CASE("backend ops: an embedding id out of range is refused with ShapeError on every backend", "[backend_ops]") {
    for (const lab_test::ops::BackendUnderTest& b : lab_test::ops::backends_under_test()) {
        if (!b.backend) continue;  // the other test cases warn about it
        Backend& be = *b.backend;
        std::vector<int64_t> ids(300);
        for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>((i * 37 + 11) % 50);
        const Tensor table = input(be, {50, 24}, random_values(50 * 24, 401));
        for (DType id_type : {DType::i32, DType::i64})
            for (int64_t bad : {int64_t{50}, int64_t{-1}}) {
                INFO("backend " << b.name << ", " << lab::dtype_name(id_type) << " id " << bad << " of V = 50");
                std::vector<int64_t> wrong = ids;
                wrong[123] = bad;
                const Tensor y = Tensor::zeros(be, {300, 24});
                CHECK_THROWS_AS(be.embedding(y, Tensor::from_ints(be, {300}, wrong, id_type), table), lab::ShapeError);
                // The error left the backend usable.
                be.embedding(y, Tensor::from_ints(be, {300}, ids, id_type), table);
                CHECK(y.to_floats()[24 * 5] == table.to_floats()[24 * ids[5]]);
            }
    }
}

TEST_CASE("backend ops: masked_fill and dropout match the host backend on every backend (the same mask for a key)",
          "[backend_ops]") {
    std::vector<OpCase> cases;
    const Shape shape = {4, 5, 6};
    struct Layout {
        std::string name;
        Shape storage, strides;
    };
    for (const Layout& layout : {Layout{"contiguous", shape, {}}, Layout{"transposed", {6, 5, 4}, {1, 4, 20}},
                                 Layout{"broadcast [1, 1, 6]", {6}, {0, 0, 1}},
                                 Layout{"broadcast [4, 5, 1]", {4, 5}, {5, 1, 0}}})
        // A selection moves values without arithmetic: bit for bit.
        cases.push_back({"masked_fill [4, 5, 6] f32 with -3.5, u8 mask " + layout.name, 0, false, [=](Backend& be) {
                             std::vector<int64_t> flags(static_cast<size_t>(lab::shape_numel(layout.storage)));
                             for (size_t i = 0; i < flags.size(); ++i) flags[i] = (i * 2654435761u >> 7) % 3 == 0;
                             const Tensor storage = Tensor::from_ints(be, layout.storage, flags, DType::u8);
                             const Tensor mask =
                                 layout.strides.empty() ? storage : storage.view(shape, layout.strides, 0);
                             const Tensor y = Tensor::zeros(be, shape);
                             be.masked_fill(y, input(be, shape, random_values(120, 601)), mask, -3.5f);
                             return std::vector<Output>{exact_output("y", y)};
                         }});
    for (float p : {0.1f, 0.5f})
        for (lab::RngKey key : {lab::RngKey{1, 2, 0}, lab::RngKey{1234, 3, 4096}, lab::RngKey{7, 1, 5}})
            for (const Shape& dropout_shape : {Shape{13}, Shape{1000, 37}}) {
                const std::string name =
                    lab::shape_str(dropout_shape) + " f32, p " + number(p) + ", " + rng_key_str(key);
                const int64_t count = lab::shape_numel(dropout_shape);
                // The mask must be the host's bit for bit: philox_uniform(key, i) is integer arithmetic.
                cases.push_back({"dropout " + name, tolerance(DType::f32), false, [=](Backend& be) {
                                     const Tensor y = Tensor::zeros(be, dropout_shape);
                                     const Tensor keep = Tensor::zeros(be, dropout_shape, DType::u8);
                                     be.dropout(y, keep, input(be, dropout_shape, random_values(count, 701)), p, key);
                                     return std::vector<Output>{exact_output("keep", keep), output("y", y)};
                                 }});
                cases.push_back({"dropout_backward " + name, tolerance(DType::f32), false, [=](Backend& be) {
                                     static lab::HostBackend host;
                                     const Tensor keep_host = Tensor::zeros(host, dropout_shape, DType::u8);
                                     host.dropout(Tensor::zeros(host, dropout_shape), keep_host,
                                                  input(host, dropout_shape, random_values(count, 701)), p, key);
                                     const Tensor dx = Tensor::zeros(be, dropout_shape);
                                     const Tensor keep =
                                         Tensor::from_ints(be, dropout_shape, keep_host.to_ints(), DType::u8);
                                     be.dropout_backward(dx, input(be, dropout_shape, random_values(count, 702)), keep,
                                                         p);
                                     return std::vector<Output>{output("dx", dx)};
                                 }});
            }
    lab_test::ops::run_on_every_backend(cases);
}
