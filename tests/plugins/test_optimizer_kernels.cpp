// The kernels of optimizer/adamw and optimizer/sgd (adamw.step, sgd.step in the kernel registry):
// their host kernels against steps computed by hand, the optimizers running them through the
// registry, and the copy through host memory giving a device backend the host kernel's exact bits.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "lab/error.h"
#include "lab/host_backend.h"
#include "lab/kernels.h"
#include "lab/registry.h"
#include "optimizers/adamw/adamw_kernels.h"
#include "optimizers/sgd/sgd_kernels.h"
#include "plugin_test_support.h"

using namespace lab;
using adamw::AdamWStep;
using adamw::kAdamWStep;
using sgd::kSgdStep;
using sgd::SgdStep;

namespace {

// The two optimizer plugins alone, loaded once.
Registry& optimizers() {
    static std::unique_ptr<Registry> registry = [] {
        auto loaded = std::make_unique<Registry>();
        for (const char* file : {"optimizer_adamw.so", "optimizer_sgd.so"})
            loaded->load_library(std::filesystem::path(LAB_PLUGIN_DIR) / file);
        return loaded;
    }();
    return *registry;
}

void require_close(const std::vector<float>& got, const std::vector<double>& want, double tol) {
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < got.size(); ++i) {
        INFO("element " << i << ": got " << got[i] << ", want " << want[i]);
        REQUIRE(std::abs(got[i] - want[i]) <= tol * (1.0 + std::abs(want[i])));
    }
}

// Host memory that says it is a device's (see tests/unit/test_kernel_registry.cpp).
class FakeDevice : public HostBackend {
public:
    std::string name() const override { return "fake_device"; }
    DeviceKind device_kind() const override { return DeviceKind::cuda; }
};

}  // namespace

TEST_CASE("adamw.step and sgd.step host kernels match hand-computed steps", "[optimizer]") {
    const KernelRegistry& kernels = optimizers().kernels();
    HostBackend be;
    // First AdamW step without decay moves each weight by lr * sign(g) (mhat/sqrt(vhat) = g/|g|).
    Tensor w = Tensor::from_floats(be, {3}, {0.5f, -1.0f, 2.0f});
    Tensor m = Tensor::zeros(be, {3}), v = Tensor::zeros(be, {3});
    kernels.run(kAdamWStep, be,
                AdamWStep{{{w, Tensor::from_floats(be, {3}, {0.2f, -3.0f, 1e-2f}), m, v, 0.0f}}, 0.1f, 0.9f, 0.999f,
                          0.0f, 1});
    require_close(w.to_floats(), {0.4, -0.9, 1.9}, 1e-6);

    // Two steps with decay against the formula in double.
    std::vector<double> wd = {0.5, -1.0, 2.0}, md(3, 0.0), vd(3, 0.0);
    w = Tensor::from_floats(be, {3}, {0.5f, -1.0f, 2.0f});
    m = Tensor::zeros(be, {3});
    v = Tensor::zeros(be, {3});
    const double lr = 0.01, b1 = 0.9, b2 = 0.95, eps = 1e-8, decay = 0.1;
    const std::vector<std::vector<float>> grads = {{0.3f, -0.2f, 0.05f}, {-0.1f, -0.4f, 0.5f}};
    for (int t = 1; t <= 2; ++t) {
        kernels.run(kAdamWStep, be,
                    AdamWStep{{{w, Tensor::from_floats(be, {3}, grads[t - 1]), m, v, float(decay)}}, float(lr),
                              float(b1), float(b2), float(eps), t});
        for (int i = 0; i < 3; ++i) {
            const double g = grads[t - 1][i];
            wd[i] -= lr * decay * wd[i];
            md[i] = b1 * md[i] + (1 - b1) * g;
            vd[i] = b2 * vd[i] + (1 - b2) * g * g;
            wd[i] -= lr * (md[i] / (1 - std::pow(b1, t))) / (std::sqrt(vd[i] / (1 - std::pow(b2, t))) + eps);
        }
    }
    require_close(w.to_floats(), wd, 1e-6);
    require_close(m.to_floats(), md, 1e-6);
    require_close(v.to_floats(), vd, 1e-6);
    REQUIRE_THROWS_AS(kernels.run(kAdamWStep, be, AdamWStep{{{w, w, m, v, 0.0f}}, 0.1f, 0.9f, 0.999f, 0.0f, 0}),
                      ShapeError);  // steps count from 1

    // SGD, momentum 0.9, weight decay 0.1, lr 0.1, g = 0.5: w 1 -> 0.94 -> 0.8266 (PyTorch convention).
    Tensor ws = Tensor::from_floats(be, {1}, {1.0f}), buf = Tensor::zeros(be, {1});
    Tensor g = Tensor::from_floats(be, {1}, {0.5f});
    kernels.run(kSgdStep, be, SgdStep{{{ws, g, buf}}, 0.1f, 0.9f, 0.1f, false});
    REQUIRE(ws.item() == Approx(0.94).epsilon(1e-6));
    kernels.run(kSgdStep, be, SgdStep{{{ws, g, buf}}, 0.1f, 0.9f, 0.1f, false});
    REQUIRE(ws.item() == Approx(0.8266).epsilon(1e-6));
    REQUIRE(buf.item() == Approx(1.134).epsilon(1e-6));
    // Nesterov: step = d + mu * buf = 0.6 + 0.54.
    ws = Tensor::from_floats(be, {1}, {1.0f});
    buf = Tensor::zeros(be, {1});
    kernels.run(kSgdStep, be, SgdStep{{{ws, g, buf}}, 0.1f, 0.9f, 0.1f, true});
    REQUIRE(ws.item() == Approx(0.886).epsilon(1e-6));
    // Plain SGD needs no buffer.
    ws = Tensor::from_floats(be, {1}, {1.0f});
    kernels.run(kSgdStep, be, SgdStep{{{ws, g, Tensor()}}, 0.1f, 0.0f, 0.0f, false});
    REQUIRE(ws.item() == Approx(0.95).epsilon(1e-6));
    REQUIRE_THROWS_AS(kernels.run(kSgdStep, be, SgdStep{{{ws, g, Tensor()}}, 0.1f, 0.9f, 0.0f, false}), ShapeError);
}

TEST_CASE("the optimizer plugins register their kernels and step through the registry", "[optimizer]") {
    Registry& registry = optimizers();
    const std::vector<std::string> adamw_backends = registry.kernels().backends("adamw.step");
    REQUIRE(!adamw_backends.empty());
    REQUIRE(adamw_backends.front() == kHostKernel);
    REQUIRE(registry.kernels().backends("sgd.step").front() == kHostKernel);

    HostBackend be;
    BuildContext ctx;
    lab_test::seed_context(ctx, be, registry, 1);
    for (const std::string name : {"adamw", "sgd"}) {
        Tensor p = Tensor::from_floats(be, {2}, {1.0f, -1.0f});
        p.set_requires_grad(true);
        p.set_grad(Tensor::from_floats(be, {2}, {0.5f, -0.5f}));
        auto optimizer = registry.factory<OptimizerFactory>("optimizer", name)(
            plugin_options(registry, "optimizer", name, {{"lr", "0.1"}}, "test"), NamedTensors{{"p", p}}, ctx);
        const KernelCounts before = registry.kernels().counts(name + ".step");
        optimizer->step(0.1);
        const KernelCounts after = registry.kernels().counts(name + ".step");
        INFO("optimizer/" << name);
        REQUIRE(after.host == before.host + 1);  // the reference backend has no kernel of its own
        const std::vector<float> moved = p.to_floats();
        REQUIRE(moved[0] < 1.0f);  // a step against the gradient
        REQUIRE(moved[1] > -1.0f);
    }

    // Without the registry in the build context the optimizers cannot find their kernels.
    BuildContext bare;
    bare.backend = &be;
    REQUIRE_THROWS_WITH(registry.factory<OptimizerFactory>("optimizer", "adamw")(
                            plugin_options(registry, "optimizer", "adamw", {}, "test"), NamedTensors{}, bare),
                        Catch::Contains("registry"));
}

TEST_CASE("adamw.step through host copies gives a device backend the host kernel's bits", "[optimizer]") {
    const KernelRegistry& kernels = optimizers().kernels();
    HostBackend host;
    FakeDevice device;
    std::vector<float> w0(70000), g0(70000);  // above the host kernel's OpenMP threshold
    for (size_t i = 0; i < w0.size(); ++i) {
        w0[i] = std::sin(0.01f * static_cast<float>(i));
        g0[i] = std::cos(0.03f * static_cast<float>(i));
    }
    auto make = [&](Backend& be) {
        return AdamWStep{{{Tensor::from_floats(be, {70000}, w0), Tensor::from_floats(be, {70000}, g0),
                           Tensor::zeros(be, {70000}), Tensor::zeros(be, {70000}), 0.1f}},
                         1e-3f, 0.9f, 0.95f, 1e-8f, 1};
    };
    AdamWStep on_host = make(host), on_device = make(device);
    const KernelCounts before = kernels.counts("adamw.step");
    for (int64_t t = 1; t <= 3; ++t) {
        on_host.t = on_device.t = t;
        kernels.run(kAdamWStep, host, on_host);
        kernels.run(kAdamWStep, device, on_device);
    }
    const KernelCounts after = kernels.counts("adamw.step");
    REQUIRE(after.through_host == before.through_host + 3);
    REQUIRE(after.host == before.host + 3);
    REQUIRE(on_device.params[0].w.to_floats() == on_host.params[0].w.to_floats());
    REQUIRE(on_device.params[0].m.to_floats() == on_host.params[0].m.to_floats());
    REQUIRE(on_device.params[0].v.to_floats() == on_host.params[0].v.to_floats());
    REQUIRE(on_device.params[0].g.to_floats() == g0);  // read, never written back
}
