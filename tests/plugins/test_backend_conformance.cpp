// What is particular to the oneDNN backend plugin (build/plugins/backend_onednn.so) and the
// reference plugin: their registration and options, and oneDNN's primitive cache. Every kernel it
// overrides is checked against lab::HostBackend by the conformance suite that runs on every backend
// plugin (test_backend_ops*.cpp); here, where each kernel runs: the first call on a fresh backend
// builds at least one oneDNN primitive (so the kernel really ran on oneDNN, or, for layouts
// documented as host fallbacks, builds none), and an identical second call builds nothing and is
// served from the cache.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend_compare.h"
#include "lab/error.h"
#include "lab/host_backend.h"
#include "lab/registry.h"

namespace {

using lab::Backend;
using lab::DType;
using lab::Shape;
using lab::Tensor;
using lab_test::MatmulCase;
using lab_test::MatmulValues;
using lab_test::random_values;

std::string onednn_plugin_file() { return std::string(LAB_PLUGIN_DIR) + "/backend_onednn.so"; }

// False (with a warning) in a build configured with LAB_WITH_ONEDNN=OFF, where the plugin does
// not exist and the oneDNN cases have nothing to test.
bool onednn_plugin_built() {
    if (std::filesystem::is_regular_file(onednn_plugin_file())) return true;
    WARN("skipped: " << onednn_plugin_file() << " was not built (LAB_WITH_ONEDNN=OFF or oneDNN missing)");
    return false;
}
#define REQUIRE_ONEDNN_PLUGIN() \
    if (!onednn_plugin_built()) return

lab::Registry& plugin_registry() {
    static std::unique_ptr<lab::Registry> registry = [] {
        auto loaded = std::make_unique<lab::Registry>();
        if (std::filesystem::is_regular_file(onednn_plugin_file())) loaded->load_library(onednn_plugin_file());
        loaded->load_library(std::string(LAB_PLUGIN_DIR) + "/backend_reference.so");
        return loaded;
    }();
    return *registry;
}

std::shared_ptr<Backend> make_backend(const std::string& name,
                                      const std::map<std::string, lab::OptionValue>& raw = {}) {
    const lab::PluginInfo& info = plugin_registry().find("backend", name);
    const lab::Options options = lab::Options::validate("backend", "backend/" + name, info.schema, raw);
    return plugin_registry().factory<lab::BackendFactory>("backend", name)(options);
}

// Where a kernel call is expected to run. `either`: oneDNN where its build for this CPU has an
// optimised kernel, the host where it has only its reference one (the backend refuses those:
// OneDnnBackend::reject_reference), e.g. softmax backward, which oneDNN 2.6 optimises for AVX-512
// but not for AVX2.
enum class Where { onednn, host, either };

// Runs `call` twice on a fresh oneDNN backend. The first call builds primitives for a oneDNN
// layout (none for a host fallback); the second builds nothing and, for oneDNN layouts, is a
// cache hit. Returns the number of primitives the first call built.
uint64_t run_twice_and_check_cache(Backend& backend, const std::function<void()>& call, Where where) {
    const lab::BackendStats before = backend.stats();
    call();
    const lab::BackendStats first = backend.stats();
    call();
    const lab::BackendStats second = backend.stats();
    const uint64_t built = first.primitives_created - before.primitives_created;
    if (where == Where::onednn || (where == Where::either && built > 0)) {
        CHECK(built >= 1);
        CHECK(second.primitive_cache_hits > first.primitive_cache_hits);
    } else {
        CHECK(built == 0);
    }
    CHECK(second.primitives_created == first.primitives_created);
    return built;
}

}  // namespace

TEST_CASE("onednn plugin registers backend 'onednn' with a validated threads option", "[onednn]") {
    REQUIRE_ONEDNN_PLUGIN();
    const lab::PluginInfo& info = plugin_registry().find("backend", "onednn");
    CHECK(info.kind == "backend");
    CHECK_FALSE(info.version.empty());
    const lab::OptionSpec* threads = info.schema.find("threads");
    REQUIRE(threads != nullptr);
    CHECK(threads->type == lab::OptionType::integer);
    CHECK(threads->default_value == std::optional<std::string>("0"));

    std::shared_ptr<Backend> backend = make_backend("onednn");
    CHECK(backend->name() == "onednn");
    CHECK(backend->device_kind() == lab::DeviceKind::cpu);
    CHECK(backend->device_info().find("oneDNN 2.") != std::string::npos);
    std::printf("[onednn] device_info: %s\n", backend->device_info().c_str());

    CHECK(make_backend("onednn", {{"threads", {"1", "test"}}})->name() == "onednn");
    CHECK_THROWS_AS(make_backend("onednn", {{"threads", {"-1", "test"}}}), lab::ConfigError);
    CHECK_THROWS_AS(make_backend("onednn", {{"thread", {"2", "test"}}}), lab::ConfigError);
}

TEST_CASE("reference plugin registers the HostBackend as backend 'reference'", "[onednn]") {
    std::shared_ptr<Backend> reference = make_backend("reference", {{"threads", {"2", "test"}}});
    CHECK(reference->name() == "reference");
    Tensor a = Tensor::from_floats(*reference, {2, 2}, {1, 2, 3, 4});
    Tensor b = Tensor::from_floats(*reference, {2, 2}, {5, 6, 7, 8});
    Tensor c = Tensor::zeros(*reference, {2, 2});
    reference->matmul(c, a, b, nullptr, 1.0f, false);
    CHECK(c.to_floats() == std::vector<float>{19, 22, 43, 50});
    CHECK_THROWS_AS(make_backend("reference", {{"threads", {"-3", "test"}}}), lab::ConfigError);
}

TEST_CASE("onednn matmul: alpha is a runtime argument and bad shapes still throw", "[onednn]") {
    REQUIRE_ONEDNN_PLUGIN();
    std::shared_ptr<Backend> onednn = make_backend("onednn");
    Tensor a = Tensor::from_floats(*onednn, {2, 3}, random_values(6, 21));
    Tensor b = Tensor::from_floats(*onednn, {3, 4}, random_values(12, 22));
    Tensor c = Tensor::zeros(*onednn, {2, 4});
    onednn->matmul(c, a, b, nullptr, 1.0f, false);
    const std::vector<float> unscaled = c.to_floats();
    const uint64_t built = onednn->stats().primitives_created;
    CHECK(built == 1);
    onednn->matmul(c, a, b, nullptr, -3.0f, false);
    CHECK(onednn->stats().primitives_created == built);
    const std::vector<float> scaled = c.to_floats();
    for (size_t i = 0; i < scaled.size(); ++i) CHECK(scaled[i] == Approx(-3.0f * unscaled[i]).epsilon(1e-6));

    Tensor wrong = Tensor::zeros(*onednn, {2, 5});
    CHECK_THROWS_AS(onednn->matmul(wrong, a, b, nullptr, 1.0f, false), lab::ShapeError);
}

TEST_CASE("onednn runs its kernels on oneDNN and the documented layouts on the host", "[onednn]") {
    REQUIRE_ONEDNN_PLUGIN();
    SECTION("matmul: f32 and bf16, transposed, broadcast, K-strided operands, epilogues") {
        const std::vector<MatmulCase> cases = {
            {"2d", {5, 7}, {7, 3}},
            {"2d a^T b^T alpha accumulate", {6, 9}, {9, 4}, true, true, false, false, 0.5f, true},
            {"3d broadcast b bias", {3, 4, 6}, {1, 6, 5}, false, false, false, true},
            {"3d stride-0 expanded b", {3, 4, 6}, {3, 6, 5}, false, false, true, false, 1.0f, true},
            {"4d broadcast heads", {2, 3, 4, 5}, {2, 1, 5, 6}, true},
            {"2d a^T with K stride 512", {512, 300}, {300, 8}, true, false, false, false, 1.0f, true},
            {"bf16 3d b^T bias alpha accumulate", {3, 4, 6}, {3, 6, 5}, false, true, false, true, 0.7f, true,
             DType::bf16},
        };
        for (const MatmulCase& c : cases) {
            INFO("matmul " << c.name);
            std::shared_ptr<Backend> onednn = make_backend("onednn");
            const MatmulValues values(c);
            const MatmulValues::Operands operands = values.operands(*onednn);
            run_twice_and_check_cache(*onednn, [&] { values.multiply(*onednn, operands); }, Where::onednn);
        }
    }
    SECTION("unary and unary_backward, y given or not") {
        using lab::UnaryOp;
        for (UnaryOp op : {UnaryOp::relu, UnaryOp::gelu, UnaryOp::gelu_tanh, UnaryOp::tanh, UnaryOp::sigmoid,
                           UnaryOp::exp, UnaryOp::log, UnaryOp::sqrt, UnaryOp::neg, UnaryOp::square, UnaryOp::scale,
                           UnaryOp::add_scalar}) {
            // A fresh backend for each call: the backward with and without y may share a primitive
            // (and neg's backward is its forward's), which a second call would find cached.
            for (int call = 0; call < 3; ++call) {
                const bool with_y = call == 1;
                INFO((call == 0 ? "unary " : "unary_backward ") << lab::unary_op_name(op)
                                                                 << (with_y ? ", y given" : ""));
                if (call > 0 && (op == UnaryOp::scale || op == UnaryOp::add_scalar)) break;
                std::shared_ptr<Backend> onednn = make_backend("onednn");
                const Tensor x = Tensor::from_floats(*onednn, {4, 250}, random_values(1000, 31, 0.05f, 3.0f));
                const Tensor dy = Tensor::from_floats(*onednn, {4, 250}, random_values(1000, 71));
                // Only where the call runs is checked here, so y need not be op(x).
                const Tensor y = Tensor::from_floats(*onednn, {4, 250}, random_values(1000, 51, 0.05f, 3.0f));
                const Tensor dx = Tensor::zeros(*onednn, {4, 250});
                run_twice_and_check_cache(*onednn, [&] {
                    if (call == 0) onednn->unary(op, y, x, 0.37f);
                    else onednn->unary_backward(op, dx, dy, x, with_y ? y : Tensor());
                }, Where::onednn);
            }
        }
    }
    SECTION("binary: a broadcast first operand of sub/div, two broadcast operands or a transposed one on the host") {
        using lab::BinaryOp;
        const Shape shape = {4, 5, 6};
        struct Layout {
            std::string name;
            Shape storage, strides;  // empty strides: contiguous
            bool broadcast;          // has stride-0 dims
        };
        const Layout full{"full", shape, {}, false}, row{"row [6]", {6}, {0, 0, 1}, true};
        const Layout column{"column [4,5,1]", {4, 5, 1}, {5, 1, 0}, true}, scalar{"scalar [1]", {1}, {0, 0, 0}, true};
        const Layout transposed{"transposed", {6, 5, 4}, {1, 4, 20}, false};
        const Layout outer{"outer [4,1,1]", {4, 1, 1}, {1, 0, 0}, true};
        const std::vector<std::pair<Layout, Layout>> cases = {
            {full, full}, {full, row},          {full, column}, {transposed, scalar},    {row, full},
            {scalar, full}, {column, transposed}, {outer, row},  {transposed, transposed}};
        for (BinaryOp op : {BinaryOp::add, BinaryOp::sub, BinaryOp::mul, BinaryOp::div}) {
            for (const auto& [a, b] : cases) {
                std::shared_ptr<Backend> onednn = make_backend("onednn");
                auto operand = [&](const Layout& layout) {
                    const Tensor storage = Tensor::from_floats(
                        *onednn, layout.storage, random_values(lab::shape_numel(layout.storage), 81, 0.5f, 2.0f));
                    return layout.strides.empty() ? storage : storage.view(shape, layout.strides, 0);
                };
                const Tensor a_view = operand(a), b_view = operand(b), c = Tensor::zeros(*onednn, shape);
                const bool commutes = op == BinaryOp::add || op == BinaryOp::mul;
                // oneDNN 2.6 has only its reference kernel for permuted strides.
                const bool transposed_operand = a.name == transposed.name || b.name == transposed.name;
                const bool on_onednn = (!a.broadcast || (!b.broadcast && commutes)) && !transposed_operand;
                INFO("binary " << lab::binary_op_name(op) << " " << a.name << ", " << b.name << " expected on "
                               << (on_onednn ? "oneDNN" : "the host"));
                run_twice_and_check_cache(*onednn, [&] { onednn->binary(op, c, a_view, b_view); },
                                          on_onednn ? Where::onednn : Where::host);
            }
        }
    }
    SECTION("softmax, layer norm and their backward") {
        for (bool log : {false, true}) {
            INFO((log ? "log_softmax" : "softmax"));
            std::shared_ptr<Backend> onednn = make_backend("onednn");
            const Tensor x = Tensor::from_floats(*onednn, {3, 5, 33}, random_values(495, 91, -4.0f, 4.0f));
            const Tensor dy = Tensor::from_floats(*onednn, {3, 5, 33}, random_values(495, 92));
            const Tensor y = Tensor::zeros(*onednn, {3, 5, 33}), dx = Tensor::zeros(*onednn, {3, 5, 33});
            run_twice_and_check_cache(*onednn, [&] { onednn->softmax(y, x, log); }, Where::onednn);
            run_twice_and_check_cache(*onednn, [&] { onednn->softmax_backward(dx, dy, y, log); }, Where::either);
        }
        for (bool affine : {true, false}) {
            INFO("layer_norm" << (affine ? " gamma beta" : ""));
            std::shared_ptr<Backend> onednn = make_backend("onednn");
            const Tensor x = Tensor::from_floats(*onednn, {6, 32}, random_values(192, 101, -2.0f, 2.0f));
            const Tensor gamma = Tensor::full(*onednn, {32}, 1.5), beta = Tensor::full(*onednn, {32}, 0.5);
            const Tensor dgamma = Tensor::zeros(*onednn, {32}), dbeta = Tensor::zeros(*onednn, {32});
            const Tensor y = Tensor::zeros(*onednn, {6, 32}), dx = Tensor::zeros(*onednn, {6, 32});
            const Tensor dy = Tensor::from_floats(*onednn, {6, 32}, random_values(192, 115));
            const Tensor mean = Tensor::zeros(*onednn, {6}), rstd = Tensor::zeros(*onednn, {6});
            run_twice_and_check_cache(*onednn, [&] {
                onednn->layer_norm(y, mean, rstd, x, affine ? &gamma : nullptr, affine ? &beta : nullptr, 1e-5f);
            }, Where::onednn);
            run_twice_and_check_cache(*onednn, [&] {
                onednn->layer_norm_backward(dx, affine ? &dgamma : nullptr, affine ? &dbeta : nullptr, dy, x, mean,
                                            rstd, affine ? &gamma : nullptr);
            }, Where::onednn);
        }
    }
}

TEST_CASE("onednn steady state: a repeated training step builds no new primitive", "[onednn]") {
    REQUIRE_ONEDNN_PLUGIN();
    // One MLP block step [B*T, C] -> [B*T, 4C] -> [B*T, C] with layer norm, softmax over the
    // output and every backward kernel, run three times with a changing alpha.
    std::shared_ptr<Backend> onednn = make_backend("onednn");
    Backend& be = *onednn;
    const int64_t N = 16, C = 32, H = 128;
    Tensor x = Tensor::from_floats(be, {N, C}, random_values(N * C, 121));
    Tensor w1 = Tensor::from_floats(be, {C, H}, random_values(C * H, 122));
    Tensor b1 = Tensor::from_floats(be, {H}, random_values(H, 123));
    Tensor w2 = Tensor::from_floats(be, {H, C}, random_values(H * C, 124));
    Tensor gamma = Tensor::full(be, {C}, 1.0), beta = Tensor::zeros(be, {C});
    Tensor dgamma = Tensor::zeros(be, {C}), dbeta = Tensor::zeros(be, {C});
    Tensor ln = Tensor::zeros(be, {N, C}), mean = Tensor::zeros(be, {N}), rstd = Tensor::zeros(be, {N});
    Tensor h = Tensor::zeros(be, {N, H}), g = Tensor::zeros(be, {N, H}), out = Tensor::zeros(be, {N, C});
    Tensor p = Tensor::zeros(be, {N, C}), dp = Tensor::full(be, {N, C}, 0.1), dout = Tensor::zeros(be, {N, C});
    Tensor dg = Tensor::zeros(be, {N, H}), dh = Tensor::zeros(be, {N, H}), dln = Tensor::zeros(be, {N, C});
    Tensor dx = Tensor::zeros(be, {N, C}), dw2 = Tensor::zeros(be, {H, C});
    const Tensor w2_t = w2.view({C, H}, {1, C}, 0);
    const Tensor g_t = g.view({H, N}, {1, H}, 0);
    Tensor residual = Tensor::zeros(be, {N, C});

    std::vector<uint64_t> built;
    uint64_t hits_per_step = 0;
    for (int step = 0; step < 3; ++step) {
        const uint64_t hits_before = be.stats().primitive_cache_hits;
        const float alpha = 1.0f / float(step + 1);
        be.layer_norm(ln, mean, rstd, x, &gamma, &beta, 1e-5f);
        be.matmul(h, ln, w1, &b1, 1.0f, false);
        be.unary(lab::UnaryOp::gelu, g, h, 0.0f);
        be.matmul(out, g, w2, nullptr, alpha, false);
        be.binary(lab::BinaryOp::add, residual, out, x);
        be.softmax(p, residual, true);
        be.softmax_backward(dout, dp, p, true);
        be.matmul(dw2, g_t, dout, nullptr, 1.0f, true);
        be.matmul(dg, dout, w2_t, nullptr, alpha, false);
        be.unary_backward(lab::UnaryOp::gelu, dh, dg, h, g);
        be.unary(lab::UnaryOp::scale, dh, dh, alpha);
        be.matmul(dln, dh, w1.view({H, C}, {1, H}, 0), nullptr, 1.0f, false);
        be.layer_norm_backward(dx, &dgamma, &dbeta, dln, x, mean, rstd, &gamma);
        built.push_back(be.stats().primitives_created);
        if (step == 2) hits_per_step = be.stats().primitive_cache_hits - hits_before;
    }
    std::printf("[onednn] steady state: %llu primitives after step 1, %llu after step 3, %llu cache hits per step\n",
                static_cast<unsigned long long>(built[0]), static_cast<unsigned long long>(built[2]),
                static_cast<unsigned long long>(hits_per_step));
    // One primitive per distinct kernel configuration above: 13, or 12 where oneDNN has only its
    // reference softmax backward for this CPU and the host kernel serves it.
    CHECK((built[0] == 13 || built[0] == 12));
    CHECK(built[1] == built[0]);
    CHECK(built[2] == built[0]);
    CHECK(hits_per_step == 13);  // every call finds its cached plan, host fallbacks included
    for (float v : dx.to_floats()) CHECK(std::isfinite(v));
}
