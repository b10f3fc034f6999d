// Rotary position embeddings (ops::rotary, attention::rotary_tables / rotary_embedding): the
// rotation and its gradient against PyTorch (tests/fixtures/rope/golden.safetensors, written by
// tools/fixtures/make_rope_fixture.py as Hugging Face Llama writes RoPE), finite differences
// through the op, and the refusals. The attention layers' use of it is tested in
// tests/plugins/test_rope_attention.cpp.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "gradcheck.h"
#include "lab/attention.h"
#include "lab/autograd.h"
#include "lab/error.h"
#include "lab/host_backend.h"
#include "lab/ops.h"
#include "lab/safetensors.h"
#include "test_support.h"

using lab::Tensor;

namespace {

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    REQUIRE(a.size() == b.size());
    float worst = 0.0f;
    for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(a[i] - b[i]));
    return worst;
}

Tensor leaf(const Tensor& t) {
    Tensor l = Tensor::from_floats(t.backend(), t.shape(), t.to_floats());
    l.set_requires_grad(true);
    return l;
}

}  // namespace

TEST_CASE("rope: rotation and gradients match PyTorch's Llama rotate_half in float64", "[rope]") {
    lab::HostBackend backend;
    lab::Metadata metadata;
    lab::TensorMap golden =
        lab::load_safetensors(lab_test::kFixturesDir / "rope" / "golden.safetensors", backend, &metadata);
    const nlohmann::json cases = nlohmann::json::parse(metadata.at("cases"));
    REQUIRE(cases.size() == 3);
    for (const auto& [name, c] : cases.items()) {
        const int64_t offset = c.at("offset").get<int64_t>();
        const float base = c.at("base").get<float>();
        auto at = [&](const std::string& key) { return golden.at(name + "." + key); };
        Tensor q = leaf(at("q")), k = leaf(at("k"));  // [B, H, T, D], [B, Hkv, T, D]
        Tensor q_rot = lab::attention::rotary_embedding(q, offset, base);
        Tensor k_rot = lab::attention::rotary_embedding(k, offset, base);
        lab::backward(q_rot, at("grad_q_rot"));
        lab::backward(k_rot, at("grad_k_rot"));
        const float q_diff = max_abs_diff(q_rot.to_floats(), at("q_rot").to_floats());
        const float k_diff = max_abs_diff(k_rot.to_floats(), at("k_rot").to_floats());
        const float dq_diff = max_abs_diff(q.grad().to_floats(), at("grad_q").to_floats());
        const float dk_diff = max_abs_diff(k.grad().to_floats(), at("grad_k").to_floats());
        WARN("rope vs PyTorch, case " << name << " (q " << lab::shape_str(q.shape()) << ", k "
                                      << lab::shape_str(k.shape()) << ", offset " << offset << ", base " << base
                                      << "): max |diff| q_rot " << q_diff << ", k_rot " << k_diff << ", grad_q "
                                      << dq_diff << ", grad_k " << dk_diff);
        // Each output is x1 cos - x2 sin with |x| < 5 and the tables rounded once from double: a
        // few f32 roundings of values below 10, i.e. a few times 1e-6. A wrong pairing, a position
        // off by one or a wrong frequency moves outputs by O(1); an f32 angle product alone would
        // be off by ~1e-4 at the "far" case's positions (~3000).
        CHECK(q_diff < 1e-5f);
        CHECK(k_diff < 1e-5f);
        CHECK(dq_diff < 1e-5f);
        CHECK(dk_diff < 1e-5f);
    }
}

TEST_CASE("rope: the tables hold cos and sin of (first + t) * base^(-2i / D)", "[rope]") {
    lab::HostBackend backend;
    const int64_t D = 6, T = 3, first = 4;
    lab::attention::RotaryTables tables = lab::attention::rotary_tables(backend, D, 100.0f, first, T);
    REQUIRE(tables.cos.shape() == lab::Shape{T, D / 2});
    REQUIRE(tables.sin.shape() == lab::Shape{T, D / 2});
    std::vector<float> cos = tables.cos.to_floats(), sin = tables.sin.to_floats();
    for (int64_t t = 0; t < T; ++t)
        for (int64_t i = 0; i < D / 2; ++i) {
            const double angle = static_cast<double>(first + t) * std::pow(100.0, -2.0 * static_cast<double>(i) / D);
            CHECK(cos[static_cast<size_t>(t * D / 2 + i)] == Approx(std::cos(angle)).margin(1e-7));
            CHECK(sin[static_cast<size_t>(t * D / 2 + i)] == Approx(std::sin(angle)).margin(1e-7));
        }
}

TEST_CASE("rope: ops::rotary's gradient matches finite differences, strided input included", "[rope][gradcheck]") {
    lab::HostBackend backend;
    lab::attention::RotaryTables tables = lab::attention::rotary_tables(backend, 8, 10000.0f, 3, 5);
    // Contiguous [B, H, T, D], and a transposed view as MultiHeadAttention hands q over.
    lab::testing::gradcheck(
        "rotary", [&](const std::vector<Tensor>& in) { return lab::ops::rotary(in[0], tables.cos, tables.sin); },
        {lab::testing::random_input(backend, {2, 3, 5, 8}, 41)});
    lab::testing::gradcheck(
        "rotary of a transposed view",
        [&](const std::vector<Tensor>& in) {
            return lab::ops::rotary(lab::ops::transpose(in[0], 1, 2), tables.cos, tables.sin);
        },
        {lab::testing::random_input(backend, {2, 5, 3, 8}, 42)});
}

TEST_CASE("rope: a rotation keeps norms, and position 0 is the identity", "[rope]") {
    lab::HostBackend backend;
    Tensor x = lab::testing::random_input(backend, {1, 2, 4, 8}, 43);
    std::vector<float> in = x.to_floats();
    CHECK(max_abs_diff(lab::attention::rotary_embedding(lab::ops::slice(x, 2, 0, 1), 0, 10000.0f).to_floats(),
                       lab::ops::slice(x, 2, 0, 1).contiguous_copy().to_floats()) == 0.0f);
    std::vector<float> out = lab::attention::rotary_embedding(x, 7, 10000.0f).to_floats();
    // Each pair (i, i + D/2) of each row keeps its length.
    for (int64_t row = 0; row < 8; ++row)
        for (int64_t i = 0; i < 4; ++i) {
            auto at = [&](const std::vector<float>& v, int64_t c) { return v[static_cast<size_t>(row * 8 + c)]; };
            const double before = std::hypot(at(in, i), at(in, i + 4)), after = std::hypot(at(out, i), at(out, i + 4));
            CHECK(after == Approx(before).margin(1e-5));
        }
}

TEST_CASE("rope: odd head sizes and mismatched tables are refused with the shapes", "[rope]") {
    lab::HostBackend backend;
    Tensor odd = lab::testing::random_input(backend, {1, 1, 3, 5}, 44);
    CHECK_THROWS_WITH(lab::attention::rotary_embedding(odd, 0, 10000.0f), Catch::Contains("head size 5"));
    lab::attention::RotaryTables tables = lab::attention::rotary_tables(backend, 8, 10000.0f, 0, 4);
    Tensor x = lab::testing::random_input(backend, {1, 1, 3, 8}, 45);
    CHECK_THROWS_AS(lab::ops::rotary(x, tables.cos, tables.sin), lab::ShapeError);
    CHECK_THROWS_WITH(lab::ops::rotary(x, tables.cos, tables.sin), Catch::Contains("[T, D/2] = [3, 4]"));
}
