// The backend conformance harness (tests/plugins/test_backend_ops.cpp holds the table of cases),
// in the manner of ggml's test-backend-ops: every case runs on every backend plugin the build has
// and on lab::HostBackend with the same inputs, and the outputs must agree.
//
// A case is one kernel call with its inputs: run(backend) makes the inputs from seeded values on
// `backend`, calls the kernel and returns the outputs read back to the host. The backends are the
// registry's kind "backend" plugins (reference, onednn, cuda where built), found, not named, so a
// new backend plugin runs every case by being built. One that cannot run here (cuda without a
// device: DeviceUnavailableError) is left out with a warning saying why.
//
// For each case and backend:
//  - every output is within the case's tolerance of the host's (max |got - want| / max |want|),
//    or bit for bit equal where the output is exact (conversions, fills, dropout masks);
//  - an identical second call builds no new primitive (kernels and plans are cached by shape).
// Each comparison prints one line with its measured difference; a failure names the backend, the
// case (op, shapes, layouts, dtypes, epilogue) and the output.
#pragma once
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "backend_compare.h"
#include "lab/error.h"
#include "lab/host_backend.h"
#include "lab/registry.h"

namespace lab_test::ops {

// One output of a case, read back to the host. `bytes` is set for an exact output, which must
// equal the host's bit for bit; the others are compared by value.
struct Output {
    std::string name;
    std::vector<float> values;
    std::vector<uint8_t> bytes;
    size_t element_size = 0;  // of bytes
};

inline Output output(const std::string& name, const lab::Tensor& t) { return {name, t.to_floats(), {}}; }
inline Output output(const std::string& name, std::vector<float> values) { return {name, std::move(values), {}}; }
// `t` contiguous; its raw bytes in its own dtype.
inline Output exact_output(const std::string& name, const lab::Tensor& t) {
    std::vector<uint8_t> bytes(static_cast<size_t>(t.numel()) * lab::dtype_size(t.dtype()));
    t.backend().copy_to_host(bytes.data(), t);
    return {name, {}, std::move(bytes), lab::dtype_size(t.dtype())};
}

struct OpCase {
    std::string label;  // "matmul a[5, 7]^T @ b[7, 3] f32, bias, alpha 0.5": op, shapes, layouts, dtypes, epilogue
    double tolerance = 0;
    // Left to device backends: sizes a CPU backend gains nothing from that would cost the CI seconds.
    bool large = false;
    std::function<std::vector<Output>(lab::Backend&)> run;
};

// Inputs of another dtype are converted by the host and handed over as bytes, so that a case
// tests one kernel and not also the backend's conversions.
inline lab::Tensor input(lab::Backend& be, const lab::Shape& shape, const std::vector<float>& values,
                         lab::DType dtype = lab::DType::f32) {
    if (dtype == lab::DType::f32) return lab::Tensor::from_floats(be, shape, values);
    static lab::HostBackend host;
    const lab::Tensor converted = lab::Tensor::from_floats(host, shape, values).to(dtype);
    return lab::Tensor::from_host(be, shape, dtype, converted.raw());
}

// A view of `shape` with `strides` over a storage of `storage_shape` holding `values` in order;
// the storage itself when strides is empty.
inline lab::Tensor view_of(lab::Backend& be, const lab::Shape& storage_shape, const std::vector<float>& values,
                           const lab::Shape& shape, const lab::Shape& strides, lab::DType dtype = lab::DType::f32) {
    const lab::Tensor storage = input(be, storage_shape, values, dtype);
    return strides.empty() ? storage : storage.view(shape, strides, 0);
}

// Label pieces: ", text" when on; a number without trailing zeros.
inline std::string flag(bool on, const std::string& text) { return on ? ", " + text : ""; }
inline std::string number(double v) {
    std::string text = std::to_string(v);
    text.erase(text.find_last_not_of('0') + 1);
    if (text.back() == '.') text.pop_back();
    return text;
}

// Relative tolerances (max |got - want| / max |want| over a tensor) by the dtype the kernel
// computes in and the length of its longest sum. f32: a backend sums in another order than the
// host (blocked matmuls, tree reductions, online softmax), which moves results by a few ulps
// times the depth of the sum: a correct kernel shows about 1e-6 up to a few thousand terms and
// 1e-5 beyond, while an indexing or masking mistake shows 1e-2 or more. bf16: operands keep 8
// bits of mantissa (2^-9 = 2e-3 relative each), so sums of them differ by a few 1e-3.
inline double tolerance(lab::DType dtype, int64_t sum_length = 1) {
    if (dtype == lab::DType::bf16) return 1e-2;
    return sum_length > 4096 ? 1e-4 : 1e-5;
}

using lab_test::plugin_registry;  // backend_compare.h

// A backend plugin made with its default options, or why it cannot run here.
struct BackendUnderTest {
    std::string name;
    std::shared_ptr<lab::Backend> backend;  // null when unavailable
    std::string unavailable;                // DeviceUnavailableError's message
};

// Every registered backend plugin, made once. Errors other than DeviceUnavailableError are real
// failures and propagate.
inline const std::vector<BackendUnderTest>& backends_under_test() {
    static const std::vector<BackendUnderTest> backends = [] {
        std::vector<BackendUnderTest> made;
        lab::Registry& registry = plugin_registry();
        for (const std::string& name : registry.names("backend")) {
            BackendUnderTest b{name, nullptr, ""};
            try {
                b.backend = registry.factory<lab::BackendFactory>("backend", name)(
                    lab::plugin_options(registry, "backend", name, {}, "test_backend_ops"));
            } catch (const lab::DeviceUnavailableError& e) {
                b.unavailable = e.what();
            }
            made.push_back(std::move(b));
        }
        return made;
    }();
    return backends;
}

// The host's outputs of a case, computed once per label (each backend compares with the same).
inline const std::vector<Output>& host_outputs(const OpCase& c) {
    static lab::HostBackend host;
    static std::map<std::string, std::vector<Output>> computed;
    auto found = computed.find(c.label);
    if (found == computed.end()) {
        found = computed.emplace(c.label, c.run(host)).first;
        host.set_matmul_inputs(lab::DType::f32);
    }
    return found->second;
}

inline size_t differing_elements(const Output& got, const Output& want) {
    const size_t width = want.element_size;
    if (got.bytes.size() != want.bytes.size()) return std::max(got.bytes.size(), want.bytes.size()) / width;
    size_t count = 0;
    for (size_t i = 0; i < got.bytes.size(); i += width)
        count += std::memcmp(&got.bytes[i], &want.bytes[i], width) != 0;
    return count;
}

inline void check_case(const std::string& backend_name, lab::Backend& backend, const OpCase& c) {
    const std::vector<Output>& want = host_outputs(c);
    const std::vector<Output> got = c.run(backend);
    const uint64_t built = backend.stats().primitives_created;
    c.run(backend);
    const uint64_t rebuilt = backend.stats().primitives_created - built;
    // Cases that set matmul inputs (precision bf16) leave the backend as the next case expects it.
    backend.set_matmul_inputs(lab::DType::f32);
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < got.size(); ++i) {
        const std::string what = c.label + ": " + want[i].name;
        if (!want[i].bytes.empty()) {
            const size_t count = want[i].bytes.size() / want[i].element_size;
            const size_t differing = differing_elements(got[i], want[i]);
            std::printf("[%s] %-90s %zu of %zu elements differ\n", backend_name.c_str(), what.c_str(), differing,
                        count);
            INFO("backend " << backend_name << ", " << what << ": " << differing << " of " << count
                            << " elements differ bitwise from the host backend's");
            CHECK(differing == 0);
        } else {
            const double difference = lab_test::relative_difference(got[i].values, want[i].values);
            std::printf("[%s] %-90s max rel diff %.2e (tol %.0e)\n", backend_name.c_str(), what.c_str(), difference,
                        c.tolerance);
            INFO("backend " << backend_name << ", " << what << ": max relative difference " << difference
                            << " from the host backend (tolerance " << c.tolerance << ")");
            CHECK(difference <= c.tolerance);
        }
    }
    INFO("backend " << backend_name << ", " << c.label << ": an identical second call built " << rebuilt
                    << " new primitives (expected none: plans are cached by shape)");
    CHECK(rebuilt == 0);
}

// Runs every case on every backend plugin, one section per backend and case, so that a failure
// is reported with both names and the other cases still run.
inline void run_on_every_backend(const std::vector<OpCase>& cases) {
    std::set<std::string> labels;
    std::string repeated;
    for (const OpCase& c : cases)
        if (!labels.insert(c.label).second) repeated += "\n  " + c.label;
    INFO("case labels that appear twice (the host's outputs are kept by label):" << repeated);
    REQUIRE(repeated.empty());
    // Catch runs the test case once per section: say each thing once per test case.
    static std::set<std::string> said;
    for (const BackendUnderTest& b : backends_under_test()) {
        if (!b.backend) {
            // Not "skipped: " (which CTest reads as the whole test skipped): the other backends ran.
            if (said.insert(cases.front().label + b.name).second)
                WARN("backend " << b.name << " not tested here: " << b.unavailable);
            continue;
        }
        size_t left_to_devices = 0;
        for (const OpCase& c : cases) {
            if (c.large && b.backend->device_kind() == lab::DeviceKind::cpu) {
                ++left_to_devices;
                continue;
            }
            DYNAMIC_SECTION("backend " << b.name << ": " << c.label) { check_case(b.name, *b.backend, c); }
        }
        if (left_to_devices > 0 && said.insert(cases.front().label + b.name).second)
            std::printf("[%s] %zu large cases left to device backends\n", b.name.c_str(), left_to_devices);
    }
}

}  // namespace lab_test::ops
