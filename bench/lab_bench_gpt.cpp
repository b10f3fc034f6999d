// lab_bench_gpt: times labrun's GPT training step (forward, backward, gradient clipping, AdamW)
// built from the same plugins an experiment uses, on random token batches. Prints one JSON line
// in the format of bench/torch_gpt_step.py so that bench/run.sh can put the two side by side.
// On a GPU (--backend cuda) it also reports model FLOP utilisation against the device's published
// dense peak for the chosen precision (bench/gpu.sh); on a CPU, bench/run.sh divides by the matmul
// peak it measures with lab_bench_matmul, unless --peak-tflops names one.
#include <omp.h>

#include <boost/program_options.hpp>
#include <chrono>
#include <ctime>
#include <cmath>
#include <iostream>
#include <sstream>

#include "bench_main.h"
#include "lab/autograd.h"
#include "lab/config.h"
#include "lab/error.h"
#include "lab/ops.h"
#include "lab/registry.h"
#include "lab/trainer.h"
#include "bench_gpt_model.h"

namespace po = boost::program_options;

namespace {

// The dense tensor-core peaks of an NVIDIA H100 SXM, which the H200 shares (the H200 adds memory,
// not FLOPs): what MFU on those GPUs is quoted against (PaLM, llm.c, nanoGPT use bf16's).
constexpr double kHopperBf16PeakTflops = 989.4;  // bf16 inputs, f32 accumulation
constexpr double kHopperTf32PeakTflops = 494.7;  // f32 matmuls on TF32 tensor cores ([backend] tf32 = true)
constexpr double kHopperF32PeakTflops = 66.9;    // f32 matmuls on the CUDA cores (tf32 = false)

struct Peak {
    double tflops = 0;   // 0: none known (no MFU printed)
    std::string source;  // what the number is
};

// --peak-tflops when given (> 0); on a CUDA device the Hopper peak for the precision; on a CPU none
// (bench/run.sh measures it).
Peak peak_for(const lab::Backend& backend, double given, const std::string& precision, bool tf32) {
    if (given > 0) return {given, "--peak-tflops"};
    if (backend.device_kind() != lab::DeviceKind::cuda) return {};
    if (precision == "bf16") return {kHopperBf16PeakTflops, "H100/H200 SXM dense bf16 tensor-core peak"};
    if (tf32) return {kHopperTf32PeakTflops, "H100/H200 SXM dense tf32 tensor-core peak"};
    return {kHopperF32PeakTflops, "H100/H200 SXM f32 (non-tensor-core) peak"};
}

// CPU seconds of every thread of this process so far. On a shared machine the wall clock of a step
// moves with the neighbours' load; its CPU time (with OMP_WAIT_POLICY=passive, so that waiting
// threads sleep instead of spinning) moves much less, which is what A/B comparisons of kernels need.
double process_cpu_seconds() {
    timespec t{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

int run(int argc, char** argv) {
    int64_t layers, heads, hidden, seq_len, batch, vocab, steps, warmup, threads;
    std::string backend_name, plugin_dir, precision, activation;
    bool bias, tf32;
    std::string fused_attention;
    double peak_tflops;
    po::options_description desc("lab_bench_gpt: time labrun's GPT training step");
    desc.add_options()("help", "show this help")
        ("layers", po::value(&layers)->default_value(4), "transformer blocks")
        ("heads", po::value(&heads)->default_value(4), "attention heads")
        ("hidden", po::value(&hidden)->default_value(128), "model width")
        ("seq-len", po::value(&seq_len)->default_value(64), "context length")
        ("batch", po::value(&batch)->default_value(12), "sequences per step")
        ("vocab", po::value(&vocab)->default_value(65), "vocabulary size")
        ("steps", po::value(&steps)->default_value(20), "timed steps")
        ("warmup", po::value(&warmup)->default_value(3), "untimed steps first")
        ("threads", po::value(&threads)->default_value(2), "OpenMP threads")
        ("bias", po::value(&bias)->default_value(false), "biases in linear layers and LayerNorms (default: none, as nanoGPT)")
        ("activation", po::value(&activation)->default_value("gelu"),
         "MLP nonlinearity: gelu (erf, nanoGPT's) or gelu_tanh (GPT-2's; one cuBLASLt call with the matmul on cuda)")
        ("fused-attention", po::value(&fused_attention)->default_value("auto"),
         "attention/softmax's fused option: true (the tiled kernel), false (the composite with the [T, T] scores) "
         "or auto (the default, as [attention] fused: whichever the backend expects to be faster)")
        ("backend", po::value(&backend_name)->default_value("onednn"), "backend plugin")
        ("precision", po::value(&precision)->default_value("f32"),
         "matmul inputs: f32, or bf16 (rounded to bf16, f32 accumulation: [experiment] precision = bf16)")
        ("tf32", po::value(&tf32)->default_value(false), "backend cuda only: f32 matmuls on TF32 tensor cores")
        ("peak-tflops", po::value(&peak_tflops)->default_value(0),
         "the peak that MFU is quoted against, TFLOP/s (0: a CUDA device's published peak for --precision; "
         "none on a CPU, where bench/run.sh measures one)")
        ("plugin-dir", po::value(&plugin_dir)->default_value(LAB_PLUGIN_DIR), "plugin folder");
    if (!lab_bench::parse_options(argc, argv, desc)) return 0;
    if (fused_attention != "auto" && fused_attention != "true" && fused_attention != "false")
        throw lab::ConfigError("--fused-attention '" + fused_attention + "': expected auto, true or false");
    if (precision != "f32" && precision != "bf16")
        throw lab::ConfigError("--precision '" + precision + "': expected f32 or bf16");
    omp_set_num_threads(static_cast<int>(threads));

    lab_bench::GptShape shape;
    shape.layers = layers;
    shape.heads = heads;
    shape.hidden = hidden;
    shape.vocab = vocab;
    shape.seq_len = seq_len;
    shape.batch = batch;
    shape.bias = bias;
    shape.fused_attention = fused_attention;
    shape.activation = activation;
    shape.backend = backend_name;
    if (backend_name == "cuda") shape.backend_options["tf32"] = tf32 ? "true" : "false";
    shape.plugin_dir = plugin_dir;
    auto gpt = lab_bench::make_bench_gpt(shape);
    lab::Registry& registry = gpt->registry;
    lab::Backend* backend = gpt->backend.get();
    backend->set_matmul_inputs(precision == "bf16" ? lab::DType::bf16 : lab::DType::f32);
    lab::BuildContext& ctx = gpt->ctx;
    lab::Model* model = gpt->model.get();
    lab::NamedTensors params = model->named_parameters();
    auto optimizer = registry.factory<lab::OptimizerFactory>("optimizer", "adamw")(
        lab::plugin_options(registry, "optimizer", "adamw", {{"lr", "1e-3"}, {"beta2", "0.99"}, {"weight_decay", "0.1"}}),
        params, ctx);

    lab::Generator data_rng(1, lab::kStreamData);
    auto step = [&]() {
        std::vector<int64_t> ids(static_cast<size_t>(batch * seq_len)), targets(ids.size());
        for (size_t i = 0; i < ids.size(); ++i) {
            ids[i] = static_cast<int64_t>(data_rng.uniform_int(static_cast<uint64_t>(vocab)));
            targets[i] = static_cast<int64_t>(data_rng.uniform_int(static_cast<uint64_t>(vocab)));
        }
        lab::ModelInputs in;
        in.ids = lab::Tensor::from_ints(*backend, {batch, seq_len}, ids, lab::DType::i32);
        lab::Tensor y = lab::Tensor::from_ints(*backend, {batch * seq_len}, targets, lab::DType::i32);
        lab::Tensor h = lab::ops::reshape(model->forward(in), {-1, hidden});
        lab::Tensor loss = lab::ops::cross_entropy(lab::ops::linear(h, model->embedding_weight()), y);
        lab::backward(loss);
        lab::clip_gradients(params, 1.0, *backend);
        {
            lab::NoGradGuard no_grad;
            optimizer->step(1e-3);
            optimizer->zero_grad();
        }
        return loss.item();
    };
    for (int64_t i = 0; i < warmup; ++i) step();
    // A GPU backend queues work: the clock is read only once the device has finished it.
    backend->synchronize();
    const lab::BackendStats before = backend->stats();
    auto t0 = std::chrono::steady_clock::now();
    const double cpu0 = process_cpu_seconds();
    float last_loss = 0;
    for (int64_t i = 0; i < steps; ++i) last_loss = step();
    backend->synchronize();
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double cpu_ms = 1000.0 * (process_cpu_seconds() - cpu0) / static_cast<double>(steps);
    const lab::BackendStats after = backend->stats();
    double ms = 1000.0 * seconds / static_cast<double>(steps);
    // Model FLOPs per step as nanoGPT's estimate_mfu (PaLM appendix B): 6 N per token for the
    // parameters' matmuls forward and backward (N without the position embedding, with the
    // tied output layer) plus 12 L C T per token for attention's QK^T and PV.
    int64_t n_params = 0;
    for (const auto& [name, p] : params)
        if (name != "wpe.weight") n_params += p.numel();
    const double flops_per_token = 6.0 * static_cast<double>(n_params) +
                                   12.0 * static_cast<double>(layers * hidden * seq_len);
    const double flops_per_step = flops_per_token * static_cast<double>(batch * seq_len);
    double tokens_per_s = static_cast<double>(batch * seq_len * steps) / seconds;
    const double model_flops_per_s = flops_per_step * static_cast<double>(steps) / seconds;
    const Peak peak = peak_for(*backend, peak_tflops, precision, tf32);
    std::ostringstream mfu;
    if (peak.tflops > 0)
        mfu << ",\"peak_tflops\":" << peak.tflops << ",\"peak_source\":\"" << peak.source
            << "\",\"mfu\":" << model_flops_per_s / (peak.tflops * 1e12);
    std::cout << "{\"impl\":\"labrun-" << backend_name << "\",\"config\":{\"layers\":" << layers << ",\"heads\":" << heads
              << ",\"hidden\":" << hidden << ",\"seq_len\":" << seq_len << ",\"batch\":" << batch << ",\"vocab\":" << vocab
              << ",\"bias\":" << (bias ? "true" : "false")
              << ",\"fused_attention\":\"" << fused_attention << "\"" << ",\"precision\":\"" << precision
              << "\"},\"ms_per_step\":" << ms << ",\"cpu_ms_per_step\":" << cpu_ms
              << ",\"tokens_per_s\":" << tokens_per_s << ",\"threads\":" << threads << ",\"steps\":" << steps
              << ",\"loss\":" << last_loss << ",\"params\":" << n_params
              << ",\"model_flops_per_step\":" << flops_per_step
              << ",\"model_gflops_per_s\":" << model_flops_per_s / 1e9 << mfu.str()
              << ",\"allocs_per_step\":" << static_cast<double>(after.memory.device_allocs - before.memory.device_allocs) / static_cast<double>(steps)
              << ",\"primitives_built\":" << (after.primitives_created - before.primitives_created)
              << ",\"peak_mb\":" << static_cast<double>(after.memory.peak_bytes_in_use) / (1024.0 * 1024.0) << ",\"device\":\"" << backend->device_info() << "\"}\n";
    return 0;
}

}  // namespace

int main(int argc, char** argv) { return lab_bench::main_with_errors("lab_bench_gpt", run, argc, argv); }
