// lab_bench_attention: times one attention core, forward + backward, at growing sequence lengths:
// the fused kernel (lab::attention::fused_attention, Backend::attention) and the composite
// reference (lab::attention::softmax_attention, which materialises the [T, T] scores). Prints one
// JSON line per (implementation, length) in the format of bench/torch_attention.py, so that
// bench/attention.sh can put the two side by side.
//
// Each line also gives TFLOP/s as FlashAttention's benchmarks count them: 4 B H T S D for the
// forward (two matmuls of 2 B H T S D), 2.5 times that for the backward (five matmuls, one of them
// recomputing the scores), both halved when causal; so a forward + backward is 3.5x the forward.
// On a GPU: --backend cuda --precision bf16 (cuDNN's fused attention) --impls fused (bench/gpu.sh).
#include <omp.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cmath>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

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
    int64_t batch, heads, head_dim, reps, threads, one_length = 0;
    std::string lengths_text, backend_name, plugin_dir, precision, impls_text;
    bool non_causal = false, cudnn_attention = true;
    po::options_description desc("lab_bench_attention: time attention forward + backward");
    desc.add_options()("help", "show this help")
        ("seq-lens", po::value(&lengths_text)->default_value("512,1024,2048,4096"), "sequence lengths T")
        ("seq-len", po::value(&one_length), "one sequence length T (instead of --seq-lens)")
        ("batch", po::value(&batch)->default_value(1), "B")
        ("heads", po::value(&heads)->default_value(4), "H")
        ("head-dim", po::value(&head_dim)->default_value(64), "D")
        ("non-causal", po::bool_switch(&non_causal), "no causal mask")
        ("reps", po::value(&reps)->default_value(3), "timed repetitions per length (the fastest counts)")
        ("threads", po::value(&threads)->default_value(2), "OpenMP threads")
        ("backend", po::value(&backend_name)->default_value("onednn"), "backend plugin")
        ("precision", po::value(&precision)->default_value("f32"),
         "f32, or bf16 (Backend::set_matmul_inputs: the cuda backend then runs cuDNN's bf16 fused attention)")
        ("impls", po::value(&impls_text)->default_value("fused,composite"),
         "what to time: fused (Backend::attention), composite (matmul + softmax), or both")
        ("cudnn-attention", po::value(&cudnn_attention)->default_value(true),
         "backend cuda only: cuDNN's fused attention where it applies (false: the backend's own kernels)")
        ("plugin-dir", po::value(&plugin_dir)->default_value(LAB_PLUGIN_DIR), "where the plugins are");
    if (!lab_bench::parse_options(argc, argv, desc)) return 0;
    if (precision != "f32" && precision != "bf16")
        throw lab::ConfigError("--precision '" + precision + "': expected f32 or bf16");
    std::vector<std::string> impls;
    {
        std::stringstream in(impls_text);
        for (std::string item; std::getline(in, item, ',');) {
            if (item != "fused" && item != "composite")
                throw lab::ConfigError("--impls: '" + item + "' is neither fused nor composite");
            impls.push_back(item);
        }
    }
    omp_set_num_threads(static_cast<int>(threads));
    lab::Registry registry;
    registry.load_directory(plugin_dir);
    std::map<std::string, std::string> backend_options;
    if (backend_name == "cuda") backend_options["cudnn_attention"] = cudnn_attention ? "true" : "false";
    auto backend = registry.factory<lab::BackendFactory>("backend", backend_name)(
        lab::plugin_options(registry, "backend", backend_name, backend_options));
    lab::Backend& be = *backend;
    be.set_matmul_inputs(precision == "bf16" ? lab::DType::bf16 : lab::DType::f32);
    const std::vector<int64_t> lengths = one_length > 0 ? std::vector<int64_t>{one_length} : parse_lengths(lengths_text);

    for (int64_t T : lengths) {
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
        // FlashAttention's count (S = T here): forward 4 B H T S D, backward 2.5x, causal half.
        const double forward_flops = 4.0 * static_cast<double>(batch * heads) * static_cast<double>(T) *
                                     static_cast<double>(T) * static_cast<double>(head_dim) * (non_causal ? 1.0 : 0.5);
        for (const std::string& impl : impls) {
            const bool fused = impl == "fused";
            double best_ms = 1e300, best_forward_ms = 1e300, peak_mb = 0;
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
                // The forward alone (no graph recorded), for forward TFLOP/s.
                {
                    lab::NoGradGuard no_grad;
                    be.synchronize();
                    auto forward_start = std::chrono::steady_clock::now();
                    lab::Tensor forward_out = fused ? lab::attention::fused_attention(q, k, v, args)
                                                    : lab::attention::softmax_attention(q, k, v, args);
                    be.synchronize();
                    const double forward_ms = std::chrono::duration<double, std::milli>(
                                                  std::chrono::steady_clock::now() - forward_start).count();
                    if (rep > 0) best_forward_ms = std::min(best_forward_ms, forward_ms);
                }
            }
            std::cout << "{\"impl\": \"labrun-" << impl << "\", \"seq_len\": " << T << ", \"ms\": " << best_ms
                      << ", \"peak_mb\": " << peak_mb << ", \"threads\": " << threads << ", \"backend\": \""
                      << backend_name << "\", \"precision\": \"" << precision << "\", \"batch\": " << batch
                      << ", \"heads\": " << heads << ", \"head_dim\": " << head_dim
                      << ", \"causal\": " << (non_causal ? "false" : "true")
                      << ", \"forward_ms\": " << best_forward_ms
                      << ", \"forward_tflops\": " << forward_flops / (best_forward_ms * 1e-3) / 1e12
                      << ", \"tflops\": " << 3.5 * forward_flops / (best_ms * 1e-3) / 1e12
                      << ", \"flops_convention\": \"FlashAttention: forward 4BHTSD, backward 2.5x forward, "
                      << (non_causal ? "not causal" : "halved for causal") << "\"}" << std::endl;
        }
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) { return lab_bench::main_with_errors("lab_bench_attention", run, argc, argv); }
