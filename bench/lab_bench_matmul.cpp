// lab_bench_matmul: the matmul throughput a backend reaches on large square products, fp32 and
// bf16 inputs (f32 accumulation), through the same Backend::matmul a training step calls. It is
// the peak that bench/run.sh divides a training step's model FLOP/s by (model FLOP utilisation).
// Prints one JSON line per dtype: the best GFLOP/s over the sizes and repeats.
#include <omp.h>

#include <boost/program_options.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "bench_main.h"
#include "lab/config.h"
#include "lab/error.h"
#include "lab/ops.h"
#include "lab/registry.h"
#include "lab/rng.h"

namespace po = boost::program_options;

namespace {

// c[M, N] = a[M, K] @ b[K, N] with a and/or b given as transposed views ("t": the operand is
// stored [K, M] or [N, K], as the backward's dW = dy^T @ x reads dy): the GFLOP/s of the best call.
double gflops_shape(lab::Backend& backend, int64_t M, int64_t K, int64_t N, bool ta, bool tb, lab::DType dtype,
                    int repeats) {
    lab::Tensor a = lab::Tensor::empty(backend, ta ? lab::Shape{K, M} : lab::Shape{M, K});
    lab::Tensor b = lab::Tensor::empty(backend, tb ? lab::Shape{N, K} : lab::Shape{K, N});
    lab::ops::fill_normal(a, 0.0f, 1.0f, lab::RngKey{1, 0, 0});
    lab::ops::fill_normal(b, 0.0f, 1.0f, lab::RngKey{2, 0, 0});
    if (dtype != lab::DType::f32) {
        a = a.to(dtype);
        b = b.to(dtype);
    }
    if (ta) a = lab::ops::transpose(a, 0, 1);
    if (tb) b = lab::ops::transpose(b, 0, 1);
    lab::Tensor c = lab::Tensor::empty(backend, {M, N});
    backend.matmul(c, a, b, nullptr, 1.0f, false);
    double best = 1e30;
    for (int r = 0; r < repeats; ++r) {
        auto t0 = std::chrono::steady_clock::now();
        backend.matmul(c, a, b, nullptr, 1.0f, false);
        backend.synchronize();
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return 2.0 * double(M) * double(K) * double(N) / best / 1e9;
}

// Best GFLOP/s of the square c = a @ b over `repeats` timed calls after one untimed call.
double gflops(lab::Backend& backend, int64_t n, lab::DType dtype, int repeats) {
    return gflops_shape(backend, n, n, n, false, false, dtype, repeats);
}

int run(int argc, char** argv) {
    std::string backend_name, plugin_dir, sizes_text;
    int64_t threads;
    int repeats;
    bool skip_bf16;
    std::vector<std::string> shapes;
    po::options_description desc("lab_bench_matmul: a backend's matmul peak (GFLOP/s), fp32 and bf16 inputs\nOptions");
    desc.add_options()("help", "show this help")
        ("sizes", po::value(&sizes_text)->default_value("1024,2048,3072"), "square sizes n (n x n @ n x n)")
        ("repeats", po::value(&repeats)->default_value(5), "timed calls per size (the best counts)")
        ("threads", po::value(&threads)->default_value(2), "OpenMP threads")
        ("no-bf16", po::bool_switch(&skip_bf16), "fp32 only")
        ("shape", po::value(&shapes)->composing(),
         "M,K,N,LAYOUT instead of the square sizes (repeatable): c[M,N] = a[M,K] @ b[K,N], LAYOUT nn, tn, nt "
         "or tt (t: that operand is a transposed view, as the backward's dW = dy^T @ x reads dy)")
        ("backend", po::value(&backend_name)->default_value("onednn"), "backend plugin")
        ("plugin-dir", po::value(&plugin_dir)->default_value(LAB_PLUGIN_DIR), "plugin folder");
    if (!lab_bench::parse_options(argc, argv, desc)) return 0;
    std::vector<int64_t> sizes;
    std::stringstream list(sizes_text);
    for (std::string item; std::getline(list, item, ',');) {
        try {
            sizes.push_back(std::stoll(item));
        } catch (const std::exception&) {
            throw lab::ConfigError("--sizes: '" + item + "' is not a number");
        }
        if (sizes.back() < 1) throw lab::ConfigError("--sizes: sizes must be positive");
    }
    if (sizes.empty() || repeats < 1) throw lab::ConfigError("--sizes needs a size and --repeats must be >= 1");
    omp_set_num_threads(static_cast<int>(threads));

    lab::Registry registry;
    registry.load_directory(plugin_dir);
    auto backend = registry.factory<lab::BackendFactory>("backend", backend_name)(
        lab::plugin_options(registry, "backend", backend_name, {}));
    std::vector<lab::DType> dtypes{lab::DType::f32};
    if (!skip_bf16) dtypes.push_back(lab::DType::bf16);
    if (!shapes.empty()) {
        for (const std::string& text : shapes) {
            int64_t M = 0, K = 0, N = 0;
            char layout[3] = {};
            int used = 0;
            if (std::sscanf(text.c_str(), "%ld,%ld,%ld,%2s%n", &M, &K, &N, layout, &used) != 4 ||
                static_cast<size_t>(used) != text.size() || M < 1 || K < 1 || N < 1 ||
                (layout[0] != 'n' && layout[0] != 't') || (layout[1] != 'n' && layout[1] != 't'))
                throw lab::ConfigError("--shape '" + text + "': expected M,K,N,LAYOUT with positive sizes and LAYOUT "
                                       "one of nn, tn, nt, tt");
            for (lab::DType dtype : dtypes)
                std::cout << "{\"impl\":\"labrun-" << backend_name << "\",\"bench\":\"matmul_shape\",\"shape\":\""
                          << text << "\",\"dtype\":\"" << lab::dtype_name(dtype) << "\",\"gflops\":"
                          << gflops_shape(*backend, M, K, N, layout[0] == 't', layout[1] == 't', dtype, repeats)
                          << "}\n";
        }
        return 0;
    }
    for (lab::DType dtype : dtypes) {
        double best = 0;
        int64_t best_n = 0;
        for (int64_t n : sizes) {
            double g = gflops(*backend, n, dtype, repeats);
            if (g > best) best = g, best_n = n;
        }
        std::cout << "{\"impl\":\"labrun-" << backend_name << "\",\"bench\":\"matmul\",\"dtype\":\""
                  << lab::dtype_name(dtype) << "\",\"gflops\":" << best << ",\"n\":" << best_n
                  << ",\"threads\":" << threads << ",\"device\":\"" << backend->device_info() << "\"}\n";
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) { return lab_bench::main_with_errors("lab_bench_matmul", run, argc, argv); }
