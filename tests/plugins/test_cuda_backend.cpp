// What is particular to the CUDA backend plugin (build/plugins/backend_cuda.so): its registration
// and options, its error without a device, cuBLASLt's plan cache, and the optimizer updates. Its
// kernels' agreement with lab::HostBackend is checked by the conformance suite that runs on every
// backend plugin (test_backend_ops*.cpp).
//
// Without a GPU (or without the plugin) every case that needs a device passes with a
// "skipped: <reason>" warning; the plugin's registration and its no-device error are checked
// wherever the plugin was built.
#include <catch2/catch.hpp>

#include <optional>

#include "cuda_test_support.h"
#include "lab/backend.h"
#include "lab/kernels.h"
#include "optimizers/adamw/adamw_kernels.h"
#include "optimizers/sgd/sgd_kernels.h"

using lab::Backend;
using lab::DType;
using lab::Shape;
using lab::Tensor;
using lab_test::MatmulCase;
using lab_test::MatmulValues;
using namespace lab_test::cuda;

TEST_CASE("cuda plugin registers backend 'cuda' with validated options", "[cuda]") {
    if (!std::filesystem::is_regular_file(cuda_plugin_file())) {
        WARN("skipped: " << cuda_plugin_file().string() << " was not built (no CUDA toolkit, or LAB_WITH_CUDA=OFF)");
        return;
    }
    // The plugin alone in a registry of its own: it loads (ABI tag, entry point) without a GPU.
    lab::Registry registry;
    registry.load_library(cuda_plugin_file());
    const lab::PluginInfo& info = registry.find("backend", "cuda");
    CHECK(info.kind == "backend");
    CHECK(info.name == "cuda");
    CHECK_FALSE(info.version.empty());
    CHECK_FALSE(info.description.empty());
    CHECK(std::filesystem::path(info.file).filename() == "backend_cuda.so");

    struct Expected {
        const char* name;
        lab::OptionType type;
        const char* default_value;
    };
    for (const Expected& e : {Expected{"device", lab::OptionType::integer, "0"},
                              Expected{"tf32", lab::OptionType::boolean, "false"},
                              Expected{"cudnn_attention", lab::OptionType::boolean, "true"}}) {
        INFO("option " << e.name);
        const lab::OptionSpec* spec = info.schema.find(e.name);
        REQUIRE(spec != nullptr);
        CHECK(spec->type == e.type);
        CHECK(spec->default_value == std::optional<std::string>(e.default_value));
        CHECK_FALSE(spec->help.empty());
    }
    // Options are validated before the factory runs, so these need no device either.
    auto options = [&](const std::map<std::string, std::string>& values) {
        return lab::plugin_options(registry, "backend", "cuda", values, "test");
    };
    CHECK(options({}).get_int("device") == 0);
    CHECK(options({{"device", "1"}, {"tf32", "true"}, {"cudnn_attention", "false"}}).get_bool("tf32"));
    CHECK_THROWS_AS(options({{"device", "-1"}}), lab::ConfigError);
    CHECK_THROWS_AS(options({{"tf32", "maybe"}}), lab::ConfigError);
    CHECK_THROWS_AS(options({{"devices", "0"}}), lab::ConfigError);
}

TEST_CASE("cuda backend without a device throws DeviceUnavailableError saying why", "[cuda]") {
    if (!std::filesystem::is_regular_file(cuda_plugin_file())) {
        WARN("skipped: " << cuda_plugin_file().string() << " was not built (no CUDA toolkit, or LAB_WITH_CUDA=OFF)");
        return;
    }
    std::shared_ptr<Backend> cuda;
    std::string message;
    try {
        cuda = make_backend("cuda");
    } catch (const lab::DeviceUnavailableError& e) {
        message = e.what();
    }
    if (!cuda) {
        // No usable device here: the message names the backend, says so, and gives the runtime's
        // own reason with its error name (e.g. "CUDA driver version is insufficient for CUDA
        // runtime version (cudaErrorInsufficientDriver, from cudaGetDeviceCount)").
        std::printf("[cuda] no device: %s\n", message.c_str());
        CHECK(message.find("backend cuda") != std::string::npos);
        CHECK(message.find("no CUDA device") != std::string::npos);
        CHECK(message.find("cudaError") != std::string::npos);
        // It is a BackendError too (what labrun reports as a failed run), and a device index
        // cannot make a missing device appear.
        CHECK_THROWS_AS(make_backend("cuda"), lab::BackendError);
        CHECK_THROWS_AS(make_backend("cuda", {{"device", "7"}}), lab::DeviceUnavailableError);
        return;
    }
    // A device is there: the backend says which, and an index past the last device is refused.
    const std::string info = cuda->device_info();
    std::printf("[cuda] device_info: %s\n", info.c_str());
    CHECK(cuda->name() == "cuda");
    CHECK(cuda->device_kind() == lab::DeviceKind::cuda);
    CHECK(info.find("sm_") != std::string::npos);
    CHECK(info.find("NVIDIA") != std::string::npos);  // the device name, as cudaDeviceProp::name gives it
    for (const auto& [library, version] : cuda->library_versions())
        std::printf("[cuda] library %s %s\n", library.c_str(), version.c_str());
    CHECK_FALSE(cuda->library_versions().empty());
    try {
        make_backend("cuda", {{"device", "4096"}});
        FAIL("device = 4096 was accepted");
    } catch (const lab::DeviceUnavailableError& e) {
        CHECK(std::string(e.what()).find("4096") != std::string::npos);
    }
}

TEST_CASE("cuda optimizer updates match the host backend over several steps", "[cuda]") {
    CUDA_BACKEND_OR_SKIP(cuda);
    lab::HostBackend host;
    // The optimizer plugins' kernels (lab/kernels.h): on `host` their host kernels, on `cuda` the
    // kernels they register for backend "cuda" (never the copy through host memory, checked below).
    const lab::KernelRegistry& kernels = plugin_registry().kernels();
    // Each side carries its own state from step to step, so differences would compound.
    struct State {
        Twin w, g, m, v;
    };
    auto state = [&](int64_t count, uint32_t seed) {
        return State{twin(*cuda, host, {count}, random_values(count, seed)),
                     twin(*cuda, host, {count}, random_values(count, seed + 1)),
                     twin_zeros(*cuda, host, {count}), twin_zeros(*cuda, host, {count})};
    };
    SECTION("adamw.step, one parameter at a time") {
        const lab::KernelCounts before = kernels.counts("adamw.step");
        for (int64_t count : {int64_t{1}, int64_t{1000}, int64_t{100003}}) {
            State s = state(count, 801);
            for (int64_t t = 1; t <= 4; ++t) {
                const auto step = [&](Tensor Twin::*side) {
                    return lab::adamw::AdamWStep{{{s.w.*side, s.g.*side, s.m.*side, s.v.*side, 0.1f}},
                                                 1e-3f, 0.9f, 0.99f, 1e-8f, t};
                };
                kernels.run(lab::adamw::kAdamWStep, host, step(&Twin::host));
                kernels.run(lab::adamw::kAdamWStep, *cuda, step(&Twin::cuda));
            }
            const std::string name = "adamw.step [" + std::to_string(count) + "] after 4 steps";
            expect_close(name + " w", s.w.cuda, s.w.host, kF32Tolerance);
            expect_close(name + " m", s.m.cuda, s.m.host, kF32Tolerance);
            expect_close(name + " v", s.v.cuda, s.v.host, kF32Tolerance);
        }
        const lab::KernelCounts after = kernels.counts("adamw.step");
        CHECK(after.backend - before.backend == 12);
        CHECK(after.through_host == before.through_host);
    }
    SECTION("adamw.step over many parameters against the host kernel") {
        const std::vector<int64_t> sizes = {1, 7, 768, 65 * 128, 100003, 3 * 1024};
        std::vector<State> states;
        lab::adamw::AdamWStep on_host, on_cuda;
        for (size_t i = 0; i < sizes.size(); ++i) {
            states.push_back(state(sizes[i], 810 + 2 * static_cast<uint32_t>(i)));
            const float decay = i % 2 == 0 ? 0.1f : 0.0f;  // decayed matrices, undecayed biases/norms
            const State& s = states.back();
            on_host.params.push_back({s.w.host, s.g.host, s.m.host, s.v.host, decay});
            on_cuda.params.push_back({s.w.cuda, s.g.cuda, s.m.cuda, s.v.cuda, decay});
        }
        for (int64_t t = 1; t <= 5; ++t) {
            const float lr = 1e-3f * static_cast<float>(t);  // a warm-up: lr changes each step
            for (lab::adamw::AdamWStep* step : {&on_host, &on_cuda}) {
                step->lr = lr;
                step->beta1 = 0.9f;
                step->beta2 = 0.95f;
                step->eps = 1e-8f;
                step->t = t;
            }
            kernels.run(lab::adamw::kAdamWStep, host, on_host);
            kernels.run(lab::adamw::kAdamWStep, *cuda, on_cuda);
        }
        for (size_t i = 0; i < states.size(); ++i) {
            const std::string name = "adamw.step param " + std::to_string(i) + " [" + std::to_string(sizes[i]) +
                                     "] after 5 steps";
            expect_close(name + " w", states[i].w.cuda, states[i].w.host, kF32Tolerance);
            expect_close(name + " m", states[i].m.cuda, states[i].m.host, kF32Tolerance);
            expect_close(name + " v", states[i].v.cuda, states[i].v.host, kF32Tolerance);
        }
    }
    SECTION("sgd.step with and without momentum, nesterov, weight decay") {
        struct Case {
            float momentum, weight_decay;
            bool nesterov;
        };
        const lab::KernelCounts before = kernels.counts("sgd.step");
        for (const Case& c : {Case{0.0f, 0.0f, false}, Case{0.0f, 0.01f, false}, Case{0.9f, 0.0f, false},
                              Case{0.9f, 0.01f, true}}) {
            State s = state(10007, 830);
            const Twin none{Tensor(), Tensor()};
            const Twin& buf = c.momentum > 0 ? s.m : none;
            for (int step = 0; step < 4; ++step) {
                kernels.run(lab::sgd::kSgdStep, host,
                            lab::sgd::SgdStep{{{s.w.host, s.g.host, buf.host}}, 0.05f, c.momentum, c.weight_decay,
                                              c.nesterov});
                kernels.run(lab::sgd::kSgdStep, *cuda,
                            lab::sgd::SgdStep{{{s.w.cuda, s.g.cuda, buf.cuda}}, 0.05f, c.momentum, c.weight_decay,
                                              c.nesterov});
            }
            const std::string name = "sgd.step momentum " + std::to_string(c.momentum).substr(0, 3) + " wd " +
                                     std::to_string(c.weight_decay).substr(0, 4) + (c.nesterov ? " nesterov" : "");
            expect_close(name + " w", s.w.cuda, s.w.host, kF32Tolerance);
            if (c.momentum > 0) expect_close(name + " buf", s.m.cuda, s.m.host, kF32Tolerance);
        }
        const lab::KernelCounts after = kernels.counts("sgd.step");
        CHECK(after.backend - before.backend == 16);
        CHECK(after.through_host == before.through_host);
    }
}

// Their agreement with the host is the conformance suite's (test_backend_ops.cpp); here, that
// cuBLASLt plans are cached by shape: the first call builds one, an identical second call none,
// and the same plan gives the same bits.
TEST_CASE("cuda matmul builds one cuBLASLt plan per shape and reuses it bit for bit", "[cuda]") {
    CUDA_BACKEND_OR_SKIP(cuda);
    const std::vector<MatmulCase> cases = {
        {"2d b^T + bias", {5, 7}, {7, 3}, false, true, false, true},
        {"3d broadcast a [1,4,6] alpha", {1, 4, 6}, {3, 6, 5}, false, false, false, true, -1.5f},
        {"4d stride-0 expanded b^T", {2, 3, 7, 5}, {2, 3, 5, 9}, false, true, true},
        {"bf16 tensors 3d b^T bias alpha accumulate", {3, 4, 6}, {3, 6, 5}, false, true, false, true, 0.7f, true,
         DType::bf16},
        {"precision bf16: a^T accumulate", {768, 64}, {64, 768}, true, false, false, false, 1.0f, true, DType::f32,
         DType::bf16},
    };
    for (const MatmulCase& c : cases) {
        INFO("matmul " << c.name);
        const MatmulValues values(c);
        auto multiply = [&] {
            const MatmulValues::Operands ops = values.operands(*cuda);
            values.multiply(*cuda, ops);
            return ops.out.to_floats();
        };
        const lab::BackendStats before = cuda->stats();
        const std::vector<float> got = multiply();
        const lab::BackendStats first = cuda->stats();
        const std::vector<float> again = multiply();
        const lab::BackendStats second = cuda->stats();
        cuda->set_matmul_inputs(DType::f32);
        CHECK(first.primitives_created > before.primitives_created);
        CHECK(second.primitives_created == first.primitives_created);
        CHECK(second.primitive_cache_hits > first.primitive_cache_hits);
        CHECK(again == got);
    }
}

TEST_CASE("cuda matmul refuses bad shapes with ShapeError", "[cuda]") {
    CUDA_BACKEND_OR_SKIP(cuda);
    Tensor a = Tensor::from_floats(*cuda, {2, 3}, random_values(6, 21));
    Tensor b = Tensor::from_floats(*cuda, {3, 4}, random_values(12, 22));
    Tensor wrong = Tensor::zeros(*cuda, {2, 5});
    CHECK_THROWS_AS(cuda->matmul(wrong, a, b, nullptr, 1.0f, false), lab::ShapeError);
    Tensor inner = Tensor::from_floats(*cuda, {4, 4}, random_values(16, 23));
    Tensor c = Tensor::zeros(*cuda, {2, 4});
    CHECK_THROWS_AS(cuda->matmul(c, a, inner, nullptr, 1.0f, false), lab::ShapeError);
}
