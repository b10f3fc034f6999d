// Helpers of the CUDA backend's parity tests (tests/plugins/test_cuda_*.cpp): the plugin loaded
// through a lab::Registry, the backend made or the test skipped with the reason, and the
// comparisons against lab::HostBackend that print one line per tensor with its measured difference.
//
// A test that needs a GPU starts with
//     CUDA_BACKEND_OR_SKIP(cuda);   // std::shared_ptr<lab::Backend> cuda, or WARN("skipped: ...") and return
// On a machine without the plugin (no CUDA toolkit at configure time) or without a usable device
// (no GPU, no driver, "CUDA driver version is insufficient ...") every such test passes with one
// warning that says which; on a GPU machine the same tests are strict.
#pragma once
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend_compare.h"
#include "lab/error.h"
#include "lab/host_backend.h"
#include "lab/registry.h"

namespace lab_test::cuda {

// Relative tolerances, max |got - want| / max |want| over a tensor. f32: the GPU sums in another
// order than the host (tree reductions, tiled matmuls without TF32, online softmax), which moves
// results by a few f32 ulps times the depth of the sum; 1e-4 leaves two orders of magnitude above
// what a correct kernel shows and is far below what any indexing or masking mistake produces.
// bf16: operands are rounded to 8 bits of mantissa (2^-9 = 2e-3 relative each), so sums of them
// differ by a few 1e-3.
constexpr double kF32Tolerance = 1e-4;
constexpr double kBf16Tolerance = 1e-2;

inline std::filesystem::path cuda_plugin_file() { return std::filesystem::path(LAB_PLUGIN_DIR) / "backend_cuda.so"; }

using lab_test::plugin_registry;  // backend_compare.h

inline std::shared_ptr<lab::Backend> make_backend(const std::string& name,
                                                  const std::map<std::string, std::string>& options = {}) {
    lab::Registry& registry = plugin_registry();
    return registry.factory<lab::BackendFactory>("backend", name)(
        lab::plugin_options(registry, "backend", name, options, "test"));
}

// Why the cuda backend cannot run here ("" when it can): the plugin was not built, or its factory
// threw DeviceUnavailableError (whose message says why). Any other error is a real failure and
// propagates.
inline std::string cuda_unavailable_reason(std::shared_ptr<lab::Backend>* made,
                                           const std::map<std::string, std::string>& options = {}) {
    if (!std::filesystem::is_regular_file(cuda_plugin_file()))
        return cuda_plugin_file().string() + " was not built (no CUDA toolkit, or LAB_WITH_CUDA=OFF)";
    try {
        *made = make_backend("cuda", options);
    } catch (const lab::DeviceUnavailableError& e) {
        return e.what();
    }
    return "";
}

// The cuda backend, or nullptr after a WARN("skipped: <reason>").
inline std::shared_ptr<lab::Backend> cuda_backend_or_skip(const std::map<std::string, std::string>& options = {}) {
    std::shared_ptr<lab::Backend> made;
    const std::string reason = cuda_unavailable_reason(&made, options);
    if (!reason.empty()) {
        WARN("skipped: " << reason);
        return nullptr;
    }
    return made;
}
#define CUDA_BACKEND_OR_SKIP(name)                                                      \
    std::shared_ptr<lab::Backend> name = lab_test::cuda::cuda_backend_or_skip();        \
    if (!name) return

using lab_test::random_values;        // backend_compare.h
using lab_test::relative_difference;  // backend_compare.h
using lab_test::rounded_to_bf16;      // backend_compare.h

inline void expect_close(const std::string& what, const std::vector<float>& got, const std::vector<float>& want,
                         double tolerance) {
    const double difference = relative_difference(got, want);
    std::printf("[cuda] %-74s max rel diff %.2e (tol %.0e)\n", what.c_str(), difference, tolerance);
    INFO(what << ": max relative difference " << difference << " (tolerance " << tolerance << ")");
    CHECK(difference <= tolerance);
}

inline void expect_close(const std::string& what, const lab::Tensor& got, const lab::Tensor& want, double tolerance) {
    expect_close(what, got.to_floats(), want.to_floats(), tolerance);
}

// The same values as a contiguous f32 tensor on each backend.
struct Twin {
    lab::Tensor cuda, host;
};
inline Twin twin(lab::Backend& cuda, lab::Backend& host, const lab::Shape& shape, const std::vector<float>& values) {
    return {lab::Tensor::from_floats(cuda, shape, values), lab::Tensor::from_floats(host, shape, values)};
}
inline Twin twin_zeros(lab::Backend& cuda, lab::Backend& host, const lab::Shape& shape,
                       lab::DType dtype = lab::DType::f32) {
    return {lab::Tensor::zeros(cuda, shape, dtype), lab::Tensor::zeros(host, shape, dtype)};
}
inline Twin twin_ints(lab::Backend& cuda, lab::Backend& host, const lab::Shape& shape,
                      const std::vector<int64_t>& values, lab::DType dtype) {
    return {lab::Tensor::from_ints(cuda, shape, values, dtype), lab::Tensor::from_ints(host, shape, values, dtype)};
}

// A view of `shape` with `strides` (and `offset`) over a storage of `storage_shape` holding
// `values` in order, on `backend`; the storage itself when strides is empty.
inline lab::Tensor make_view(lab::Backend& backend, const lab::Shape& storage_shape, const std::vector<float>& values,
                             const lab::Shape& shape, const lab::Shape& strides, int64_t offset = 0) {
    lab::Tensor storage = lab::Tensor::from_floats(backend, storage_shape, values);
    if (strides.empty()) return storage;
    return storage.view(shape, strides, offset);
}

}  // namespace lab_test::cuda
