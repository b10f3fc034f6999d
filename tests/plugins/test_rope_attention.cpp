// Rotary position embeddings (AttentionShape::rope) in every softmax-family attention plugin:
// MultiHeadAttention rotates q and k before the plugin's core, so softmax (composite and fused),
// gqa, local and alibi all get it unchanged. For each: a causal pass over the whole sequence
// equals token-by-token and chunked decoding through the KV cache (new keys at the cache's
// length), rope changes the outputs (it is applied) except at position 0 (where it is the
// identity), shifting every position leaves the output unchanged (scores depend on i - j only),
// and gradients match finite differences; the oneDNN backend computes what the reference does.
// The rotation itself is checked against PyTorch in tests/unit/test_rope.cpp.
#include <catch2/catch.hpp>

#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "attention_test_support.h"
#include "gradcheck.h"
#include "lab/attention.h"
#include "lab/autograd.h"
#include "lab/error.h"
#include "lab/host_backend.h"
#include "lab/ops.h"
#include "lab/registry.h"

using lab::Tensor;
using lab_test::OptionMap;

namespace {

constexpr int64_t kHidden = 32, kHeads = 4;  // D = 8: four rotated pairs per head

struct Variant {
    std::string name;
    OptionMap options;
    std::string describe() const {
        std::string s = "attention/" + name;
        for (const auto& [key, value] : options) s += " " + key + "=" + value;
        return s;
    }
};

// The softmax family, each path of each plugin; gqa with grouped and with a single key head.
const std::vector<Variant> kVariants = {
    {"softmax", {{"fused", "false"}}}, {"softmax", {{"fused", "true"}}},
    {"gqa", {{"kv_heads", "2"}}},      {"gqa", {{"kv_heads", "1"}, {"fused", "true"}}},
    {"local", {{"window", "4"}}},      {"local", {{"window", "4"}, {"fused", "false"}}},
    {"alibi", {}},                     {"alibi", {{"fused", "true"}}},
};

struct RopeFixture : lab_test::AttentionFixture {
    RopeFixture() : AttentionFixture(5) {}

    // The variant with rope on or off, parameters N(0, 0.4^2) drawn from `seed`: the default
    // N(0, 0.02) makes every score near 0, and near-uniform attention hides where the keys are.
    std::shared_ptr<lab::Attention> make(const Variant& v, bool rope, uint32_t seed = 3, float base = 10000.0f) {
        lab::AttentionShape shape;
        shape.hidden = kHidden;
        shape.heads = kHeads;
        shape.rope = rope;
        shape.rope_base = base;
        lab::Options opts = lab::plugin_options(registry, "attention", v.name, v.options, "test");
        auto attention = registry.factory<lab::AttentionFactory>("attention", v.name)(opts, shape, ctx);
        lab_test::randomize(*attention, seed, 0.4f);
        return attention;
    }
};

// Rows [begin, end) of x [1, T, C] as a new [1, end - begin, C] tensor.
Tensor rows(lab::Backend& backend, const std::vector<float>& x, int64_t begin, int64_t end) {
    return Tensor::from_floats(backend, {1, end - begin, kHidden},
                               {x.begin() + begin * kHidden, x.begin() + end * kHidden});
}

std::vector<float> run(lab::Attention& attention, const Tensor& x, bool causal, int64_t position_offset = 0,
                       lab::KvCache* cache = nullptr) {
    lab::NoGradGuard no_grad;
    lab::AttentionContext context;
    context.causal = causal;
    context.kv_cache = cache;
    context.position_offset = position_offset;
    return attention.forward(x, context).to_floats();
}

// Feeds x [1, T, C] through a fresh KV cache in chunks of the given sizes, starting at
// position_offset; returns the outputs of all positions in order.
std::vector<float> decode(lab::Attention& attention, lab::Backend& backend, const std::vector<float>& x,
                          const std::vector<int64_t>& chunks, int64_t position_offset = 0) {
    lab::KvCache cache;
    std::vector<float> out;
    int64_t at = 0;
    for (int64_t n : chunks) {
        std::vector<float> part = run(attention, rows(backend, x, at, at + n), true, position_offset, &cache);
        out.insert(out.end(), part.begin(), part.end());
        at += n;
        CHECK(cache.length() == at);
    }
    return out;
}

float max_abs(const std::vector<float>& a) {
    float m = 0.0f;
    for (float v : a) m = std::max(m, std::fabs(v));
    return m;
}

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b, int64_t first_row = 0) {
    REQUIRE(a.size() == b.size());
    float worst = 0.0f;
    for (size_t i = static_cast<size_t>(first_row * kHidden); i < a.size(); ++i)
        worst = std::max(worst, std::fabs(a[i] - b[i]));
    return worst;
}

}  // namespace

// Tolerance: decoding and shifting change only the order of f32 summation and which rounded
// cos/sin table entries (each rounded once from double) meet, so results agree to a few f32 ulps
// of the outputs' scale. With these parameters outputs reach |15|; measured worst differences are
// 1.1e-5, below 1e-6 of max |output|. close() allows 5e-6 of it (about 7e-5 here); every bug
// these tests look for (a key at the wrong position, a query not rotated, positions restarting at
// 0 per chunk) moves outputs by 1e-2 or more.
bool close(const std::vector<float>& got, const std::vector<float>& want) {
    const float diff = max_abs_diff(got, want), bound = 5e-6f * std::max(1.0f, max_abs(want));
    INFO("max |diff| " << diff << ", bound " << bound << " (5e-6 * max |output| " << max_abs(want) << ")");
    CHECK(diff <= bound);
    return diff <= bound;
}

TEST_CASE("rope attention: causal full pass equals token-by-token and chunked KV-cache decoding", "[rope][attention]") {
    RopeFixture f;
    const int64_t T = 11;
    const std::vector<float> x = lab::testing::normal_floats(static_cast<size_t>(T * kHidden), 21);
    for (const Variant& v : kVariants) {
        INFO(v.describe());
        auto attention = f.make(v, true);
        const std::vector<float> full = run(*attention, rows(f.backend, x, 0, T), true);
        const std::vector<float> one_by_one = decode(*attention, f.backend, x, std::vector<int64_t>(T, 1));
        const std::vector<float> chunked = decode(*attention, f.backend, x, {4, 1, 6});
        CHECK(close(one_by_one, full));
        CHECK(close(chunked, full));
        // Decoding from a shifted start equals the full pass from that start, too.
        const std::vector<float> shifted_full = run(*attention, rows(f.backend, x, 0, T), true, 50);
        CHECK(close(decode(*attention, f.backend, x, {2, 7, 2}, 50), shifted_full));
    }
}

TEST_CASE("rope attention: rope changes every output but position 0's", "[rope][attention]") {
    RopeFixture f;
    const int64_t T = 8;
    const Tensor x = rows(f.backend, lab::testing::normal_floats(static_cast<size_t>(T * kHidden), 22), 0, T);
    for (const Variant& v : kVariants) {
        INFO(v.describe());
        auto with = f.make(v, true), without = f.make(v, false);
        REQUIRE(with->named_parameters().size() == without->named_parameters().size());  // rope adds no parameter
        const std::vector<float> a = run(*with, x, true), b = run(*without, x, true);
        // Position 0 is rotated by angle 0 and, causally, sees only key 0: nothing changes.
        std::vector<float> a0(a.begin(), a.begin() + kHidden), b0(b.begin(), b.begin() + kHidden);
        CHECK(max_abs_diff(a0, b0) < 1e-6f);
        for (int64_t t = 1; t < T; ++t) {
            std::vector<float> at(a.begin() + t * kHidden, a.begin() + (t + 1) * kHidden),
                bt(b.begin() + t * kHidden, b.begin() + (t + 1) * kHidden);
            INFO("position " << t);
            CHECK(max_abs_diff(at, bt) > 1e-2f);
        }
        // A different base is a different rotation.
        auto other_base = f.make(v, true, 3, 100.0f);
        CHECK(max_abs_diff(run(*other_base, x, true), a, 1) > 1e-2f);
    }
}

TEST_CASE("rope attention: shifting every position leaves the output unchanged", "[rope][attention]") {
    // RoPE's scores depend on i - j only (Su et al. 2021, eq. 16), and so do the masks, windows
    // and ALiBi biases: moving the whole sequence to start at position s changes nothing.
    RopeFixture f;
    const int64_t T = 9;
    const Tensor x = rows(f.backend, lab::testing::normal_floats(static_cast<size_t>(T * kHidden), 23), 0, T);
    for (const Variant& v : kVariants) {
        auto attention = f.make(v, true);
        for (bool causal : {true, false}) {
            const std::vector<float> base = run(*attention, x, causal);
            for (int64_t shift : {int64_t{1}, int64_t{37}, int64_t{1000}}) {
                INFO(v.describe() << ", causal " << causal << ", shift " << shift);
                CHECK(close(run(*attention, x, causal, shift), base));
            }
        }
    }
    // Not a vacuous property: keys and queries at different shifts (the cache's bug if new
    // queries were rotated from 0 while keys continue) change the output.
    auto attention = f.make(kVariants[0], true);
    lab::KvCache cache;
    run(*attention, rows(f.backend, lab::testing::normal_floats(static_cast<size_t>(3 * kHidden), 24), 0, 3), true, 0,
        &cache);
    const std::vector<float> after_cache = run(*attention, x, true, 0, &cache);  // keys 0 .. 11, queries 3 .. 11
    CHECK(cache.length() == 3 + T);
    std::vector<float> alone = run(*attention, x, true);
    CHECK(max_abs_diff(after_cache, alone) > 1e-2f);
}

TEST_CASE("rope attention: gradients through the layer match finite differences", "[rope][attention][gradcheck]") {
    RopeFixture f;
    const int64_t T = 5;
    for (const Variant& v : kVariants) {
        auto attention = f.make(v, true);
        attention->eval();
        lab::AttentionContext context;
        context.causal = true;
        context.position_offset = 3;
        lab::testing::gradcheck(
            v.describe() + " with rope",
            [&](const std::vector<Tensor>& inputs) { return attention->forward(inputs[0], context); },
            {lab::testing::random_input(f.backend, {1, T, kHidden}, 25)});
    }
}

TEST_CASE("rope attention: odd head sizes, bases <= 1 and negative offsets are refused by name", "[rope][attention]") {
    RopeFixture f;
    lab::AttentionShape shape;
    shape.hidden = 12;
    shape.heads = 4;  // D = 3
    shape.rope = true;
    const auto& make = f.registry.factory<lab::AttentionFactory>("attention", "softmax");
    lab::Options opts = lab::plugin_options(f.registry, "attention", "softmax", {}, "test");
    CHECK_THROWS_WITH(make(opts, shape, f.ctx), Catch::Contains("head size hidden / heads = 3 is odd"));
    shape.heads = 2;
    shape.rope_base = 1.0f;
    CHECK_THROWS_WITH(make(opts, shape, f.ctx), Catch::Contains("rope_base"));
    shape.rope = false;  // without rope neither matters
    CHECK_NOTHROW(make(opts, shape, f.ctx));
    auto attention = f.make(kVariants[0], true);
    CHECK_THROWS_AS(run(*attention, rows(f.backend, std::vector<float>(kHidden, 0.5f), 0, 1), true, -1),
                    lab::ShapeError);
}

TEST_CASE("rope attention: the oneDNN backend rotates as the reference does, forward and backward",
          "[rope][attention][onednn]") {
    const std::string plugin = std::string(LAB_PLUGIN_DIR) + "/backend_onednn.so";
    RopeFixture f;  // reference backend (HostBackend)
    if (!f.registry.has("backend", "onednn")) {
        WARN("skipped: " << plugin << " was not built (LAB_WITH_ONEDNN=OFF or oneDNN missing)");
        return;
    }
    std::shared_ptr<lab::Backend> onednn = f.registry.factory<lab::BackendFactory>("backend", "onednn")(
        lab::plugin_options(f.registry, "backend", "onednn", {}, "test"));
    const int64_t T = 7;
    const std::vector<float> x = lab::testing::normal_floats(static_cast<size_t>(2 * T * kHidden), 26);
    for (const Variant& v : {kVariants[0], kVariants[2]}) {  // composite softmax, grouped kv heads
        INFO(v.describe());
        auto reference = f.make(v, true);
        lab::BuildContext ctx = f.ctx;
        ctx.backend = onednn.get();
        lab::AttentionShape shape;
        shape.hidden = kHidden;
        shape.heads = kHeads;
        shape.rope = true;
        auto other = f.registry.factory<lab::AttentionFactory>("attention", v.name)(
            lab::plugin_options(f.registry, "attention", v.name, v.options, "test"), shape, ctx);
        for (const auto& [name, t] : reference->state_dict())
            for (const auto& [other_name, o] : other->state_dict())
                if (other_name == name) o.copy_(Tensor::from_floats(*onednn, t.shape(), t.to_floats()));
        // Both backward passes seeded with the same upstream gradient; compare outputs and dx.
        auto forward_backward = [&](lab::Attention& attention, lab::Backend& backend) {
            Tensor input = Tensor::from_floats(backend, {2, T, kHidden}, x);
            input.set_requires_grad(true);
            lab::AttentionContext context;
            context.causal = true;
            context.position_offset = 5;
            Tensor out = attention.forward(input, context);
            lab::backward(out, Tensor::from_floats(backend, out.shape(), lab::testing::normal_floats(
                                                                              static_cast<size_t>(out.numel()), 27)));
            return std::make_pair(out.to_floats(), input.grad().to_floats());
        };
        auto [want, want_dx] = forward_backward(*reference, f.backend);
        auto [got, got_dx] = forward_backward(*other, *onednn);
        CHECK(close(got, want));
        CHECK(close(got_dx, want_dx));
    }
}
