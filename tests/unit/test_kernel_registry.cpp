// The kernel registry (lab/kernels.h): which kernel a call runs (the backend's own, picked by
// its supports predicate; else the host kernel, directly on host memory or through host copies of
// a device's operands), and the errors for unknown operations and mismatched argument types.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "lab/error.h"
#include "lab/host_backend.h"
#include "lab/kernels.h"
#include "lab/tensor.h"

using namespace lab;
using Catch::Matchers::Contains;

namespace {

// x = alpha * x, reading `bias` (added to x) that the kernel must not write back.
struct ScaleArgs {
    Tensor x, bias;
    float alpha = 1;
    template <class F>
    void for_each_tensor(F&& f) {
        f(x, KernelAccess::read_write);
        f(bias, KernelAccess::read);
    }
};
constexpr KernelOp<ScaleArgs> kScale{"test.scale"};

struct OtherArgs {
    Tensor x;
    template <class F>
    void for_each_tensor(F&& f) {
        f(x, KernelAccess::read_write);
    }
};

// Host memory that says it is a device's: what a new GPU backend looks like to the registry
// before it has kernels of its own (its copy_to_host / copy_from_host are HostBackend's memcpy).
class FakeDevice : public HostBackend {
public:
    std::string name() const override { return "fake_device"; }
    DeviceKind device_kind() const override { return DeviceKind::cuda; }
};

// The host reference: x = alpha * x + bias; it then scribbles on its copy of `bias` (a read
// operand), which must not reach the caller's tensor. Records the backend it ran on.
const Backend* host_ran_on = nullptr;
void scale_host(Backend& backend, const ScaleArgs& a) {
    host_ran_on = &backend;
    float* x = a.x.data<float>();
    float* bias = a.bias.data<float>();
    for (int64_t i = 0; i < a.x.numel(); ++i) {
        x[i] = a.alpha * x[i] + bias[i];
        bias[i] = -1;
    }
}

void add_host(KernelRegistry& kernels) { kernels.add(kScale, kHostKernel, nullptr, scale_host); }

}  // namespace

TEST_CASE("kernel registry picks the backend's kernel whose supports predicate takes the call", "[kernels]") {
    KernelRegistry kernels;
    add_host(kernels);
    // Two kernels for `reference`: the first takes even sizes only, the second everything of size 3.
    kernels.add(kScale, "reference",
                [](const Backend&, const ScaleArgs& a) { return a.x.numel() % 2 == 0; },
                [](Backend&, const ScaleArgs& a) { a.x.fill_(100.0); });
    kernels.add(kScale, "reference",
                [](const Backend&, const ScaleArgs& a) { return a.x.numel() == 3; },
                [](Backend&, const ScaleArgs& a) { a.x.fill_(300.0); });
    HostBackend be;
    REQUIRE(kernels.backends("test.scale") == std::vector<std::string>{"host", "reference", "reference"});
    REQUIRE(kernels.operations() == std::vector<std::string>{"test.scale"});

    ScaleArgs even{Tensor::from_floats(be, {2}, {1, 2}), Tensor::zeros(be, {2}), 2.0f};
    kernels.run(kScale, be, even);
    REQUIRE(even.x.to_floats() == std::vector<float>{100, 100});

    ScaleArgs three{Tensor::from_floats(be, {3}, {1, 2, 3}), Tensor::zeros(be, {3}), 2.0f};
    kernels.run(kScale, be, three);
    REQUIRE(three.x.to_floats() == std::vector<float>{300, 300, 300});

    // Size 5: neither takes it, the host kernel runs on the backend's own tensors.
    host_ran_on = nullptr;
    ScaleArgs five{Tensor::from_floats(be, {5}, {1, 2, 3, 4, 5}), Tensor::zeros(be, {5}), 2.0f};
    kernels.run(kScale, be, five);
    REQUIRE(five.x.to_floats() == std::vector<float>{2, 4, 6, 8, 10});
    REQUIRE(host_ran_on == &be);
    const KernelCounts counts = kernels.counts("test.scale");
    REQUIRE(counts.backend == 2);
    REQUIRE(counts.host == 1);
    REQUIRE(counts.through_host == 0);
}

TEST_CASE("kernel registry falls back to the host kernel on a host backend without kernels", "[kernels]") {
    KernelRegistry kernels;
    add_host(kernels);
    kernels.add(kScale, "cuda", nullptr, [](Backend&, const ScaleArgs& a) { a.x.fill_(-7.0); });
    HostBackend be;  // "reference": the cuda kernel is not its
    host_ran_on = nullptr;
    ScaleArgs args{Tensor::from_floats(be, {3}, {1, 2, 3}), Tensor::from_floats(be, {3}, {0.5f, 0.5f, 0.5f}), 3.0f};
    kernels.run(kScale, be, args);
    REQUIRE(args.x.to_floats() == std::vector<float>{3.5f, 6.5f, 9.5f});
    REQUIRE(host_ran_on == &be);
    REQUIRE(kernels.counts("test.scale").host == 1);
    REQUIRE(kernels.counts("test.scale").backend == 0);
}

TEST_CASE("kernel registry runs the host kernel on host copies for a device backend", "[kernels]") {
    KernelRegistry kernels;
    add_host(kernels);
    FakeDevice device;
    host_ran_on = nullptr;
    // x is a strided view (every other element of 6): written back through a staged copy.
    Tensor storage = Tensor::from_floats(device, {6}, {1, 0, 2, 0, 3, 0});
    ScaleArgs args{storage.view({3}, {2}, 0), Tensor::from_floats(device, {3}, {10, 20, 30}), 2.0f};
    kernels.run(kScale, device, args);
    REQUIRE(storage.to_floats() == std::vector<float>{12, 0, 24, 0, 36, 0});
    // The kernel ran on the registry's host backend, and its writes to the read operand stayed there.
    REQUIRE(host_ran_on == &KernelRegistry::host_backend());
    REQUIRE(host_ran_on != &device);
    REQUIRE(args.bias.to_floats() == std::vector<float>{10, 20, 30});
    KernelCounts counts = kernels.counts("test.scale");
    REQUIRE(counts.through_host == 1);
    REQUIRE(counts.host == 0);

    // Once the device has a kernel of its own, that one runs instead.
    kernels.add(kScale, "fake_device", nullptr, [](Backend&, const ScaleArgs& a) { a.x.fill_(5.0); });
    kernels.run(kScale, device, args);
    REQUIRE(storage.to_floats() == std::vector<float>{5, 0, 5, 0, 5, 0});
    counts = kernels.counts("test.scale");
    REQUIRE(counts.backend == 1);
    REQUIRE(counts.through_host == 1);
}

TEST_CASE("kernel registry refuses mismatched argument types, unknown operations, missing fallbacks",
          "[kernels]") {
    KernelRegistry kernels;
    add_host(kernels);
    HostBackend be;
    OtherArgs other{Tensor::zeros(be, {1})};

    // A kernel or a call with another argument type names the operation and both types.
    REQUIRE_THROWS_AS(kernels.add<OtherArgs>("test.scale", "cuda", nullptr, [](Backend&, const OtherArgs&) {}),
                      PluginError);
    REQUIRE_THROWS_WITH(kernels.add<OtherArgs>("test.scale", "cuda", nullptr, [](Backend&, const OtherArgs&) {}),
                        Contains("'test.scale'") && Contains("OtherArgs") && Contains("ScaleArgs"));
    REQUIRE_THROWS_AS(kernels.run("test.scale", be, other), PluginError);
    REQUIRE_THROWS_WITH(kernels.run("test.scale", be, other),
                        Contains("'test.scale'") && Contains("OtherArgs") && Contains("ScaleArgs"));
    REQUIRE(kernels.backends("test.scale") == std::vector<std::string>{"host"});  // nothing was added

    // An unknown operation lists the known ones.
    REQUIRE_THROWS_WITH(kernels.run("test.missing", be, other),
                        Contains("'test.missing'") && Contains("test.scale") && Contains("load the plugin"));
    REQUIRE_THROWS_AS(kernels.counts("test.missing"), PluginError);

    // One host kernel per operation; an empty kernel is refused.
    REQUIRE_THROWS_WITH(add_host(kernels), Contains("'test.scale'") && Contains("already has a host kernel"));
    REQUIRE_THROWS_WITH(kernels.add(kScale, "cuda", nullptr, KernelRegistry::Kernel<ScaleArgs>()),
                        Contains("'test.scale'") && Contains("empty"));

    // No kernel takes the call and there is no host kernel: a refusal naming the backend.
    kernels.add<OtherArgs>("test.device_only", "cuda", nullptr, [](Backend&, const OtherArgs&) {});
    REQUIRE_THROWS_WITH(kernels.run("test.device_only", be, other),
                        Contains("'test.device_only'") && Contains("'reference'") && Contains("no host kernel"));
}
