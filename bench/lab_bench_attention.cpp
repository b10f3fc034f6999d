// lab_bench_attention: times one attention core, forward + backward, at growing sequence lengths:
// the fused kernel (lab::attention::fused_attention, Backend::attention) and the composite
// reference (lab::attention::softmax_attention, which materialises the [T, T] scores). Prints one
// JSON line per (implementation, length) in the format of bench/torch_attention.py, so that
// bench/attention.sh can put the two side by side.
#include <omp.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cmath>
#include <iostream>
#include <sstream>

#include "bench_main.h"
#include "lab/attention.h"
#include "lab/autograd.h"
#include "lab/error.h"
#include "lab/ops.h"
#include "lab/registry.h"

namespace po = boost::program_options;

namespace {

std::vector<int64_t> parse_lengths(const std::string& text) {
    std::vector<int64_t> out;
    std::stringstream in(text);
    std::string item;
    while (std::getline(in, item, ',')) {
        size_t used = 0;
        long long value = 0;
        try {
            value = std::stoll(item, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        if (used != item.size() || value < 1)
            throw lab::ConfigError("--seq-lens: '" + item + "' is not a positive integer (e.g. 512,1024,4096)");
        out.push_back(value);
    }
    return out;
}

int run(int argc, char** argv) {
    int64_t batch, heads, head_dim, reps, threads;
    std::string lengths_text, backend_name, plugin_dir;
    bool non_causal = false;
    po::options_description desc("lab_bench_attention: time attention forward + backward");
    desc.add_options()("help", "show this help")
        ("seq-lens", po::value(&lengths_text)->default_value("512,1024,2048,4096"), "sequence lengths T")
        ("batch", po::value(&batch)->default_value(1), "B")
        ("heads", po::value(&heads)->default_value(4), "H")
        ("head-dim", po::value(&head_dim)->default_value(64), "D")
        ("non-causal", po::bool_switch(&non_causal), "no causal mask")
        ("reps", po::value(&reps)->default_value(3), "timed repetitions per length (the fastest counts)")
        ("threads", po::value(&threads)->default_value(2), "OpenMP threads")
        ("backend", po::value(&backend_name)->default_value("onednn"), "backend plugin")
        ("plugin-dir", po::value(&plugin_dir)->default_value(LAB_PLUGIN_DIR), "where the plugins are");
    if (!lab_bench::parse_options(argc, argv, desc)) return 0;
    omp_set_num_threads(static_cast<int>(threads));
    lab::Registry registry;
    registry.load_directory(plugin_dir);
    auto backend = registry.factory<lab::BackendFactory>("backend", backend_name)(
        lab::plugin_options(registry, "backend", backend_name, {}));
    lab::Backend& be = *backend;

    for (int64_t T : parse_lengths(lengths_text)) {
        const lab::Shape shape{batch, heads, T, head_dim};
        lab::Generator gen(7, 1);
        auto input = [&] {
            lab::Tensor t = lab::Tensor::empty(be, shape);
            lab::ops::fill_normal(t, 0.0f, 1.0f, gen.next(static_cast<uint64_t>(t.numel())));
            t.set_requires_grad(true);
            return t;
        };
        lab::Tensor q = input(), k = input(), v = input(), dout = input();
        lab::AttentionCoreArgs args;
        args.causal = !non_causal;
        args.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
        for (const char* impl : {"fused", "composite"}) {
            const bool fused = impl[0] == 'f';
            double best_ms = 1e300, peak_mb = 0;
            for (int64_t rep = 0; rep <= reps; ++rep) {  // rep 0 warms up
                be.synchronize();
                const size_t before = be.stats().memory.bytes_in_use;
                be.reset_peak_memory();
                auto start = std::chrono::steady_clock::now();
                lab::Tensor out = fused ? lab::attention::fused_attention(q, k, v, args)
                                        : lab::attention::softmax_attention(q, k, v, args);
                lab::backward(out, dout.detach());
                be.synchronize();
                const double ms =
                    std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
                if (rep > 0) best_ms = std::min(best_ms, ms);
                peak_mb = static_cast<double>(be.stats().memory.peak_bytes_in_use - before) / (1024.0 * 1024.0);
                for (lab::Tensor* t : {&q, &k, &v}) t->set_grad(lab::Tensor());
            }
            std::cout << "{\"impl\": \"labrun-" << impl << "\", \"seq_len\": " << T << ", \"ms\": " << best_ms
                      << ", \"peak_mb\": " << peak_mb << ", \"threads\": " << threads << "}" << std::endl;
        }
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) { return lab_bench::main_with_errors("lab_bench_attention", run, argc, argv); }
