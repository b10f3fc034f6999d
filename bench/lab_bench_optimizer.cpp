// lab_bench_optimizer: times optimizer steps alone on a parameter set shaped like BERT-base (12
// layers, hidden 768, feed-forward 3072, vocabulary 30522, 512 positions: 197 tensors, 108.9 M
// parameters), with random gradients. Prints one JSON line: ms/step (median of the timed steps),
// parameters, and the memory traffic it implies (AdamW reads w, g, m, v and writes w, m, v:
// 28 bytes per parameter).
//
//   lab_bench_optimizer [--optimizer adamw] [--backend onednn] [--steps 10] [--warmup 2] [--threads 2]
#include <omp.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "bench_main.h"
#include "lab/error.h"
#include "lab/registry.h"
#include "lab/rng.h"

namespace po = boost::program_options;

namespace {

// BERT-base's parameter shapes (Hugging Face's BertModel without the pooler).
std::vector<std::pair<std::string, lab::Shape>> bert_base_shapes() {
    const int64_t C = 768, F = 3072, V = 30522, P = 512, L = 12;
    std::vector<std::pair<std::string, lab::Shape>> shapes = {
        {"embeddings.word", {V, C}}, {"embeddings.position", {P, C}}, {"embeddings.token_type", {2, C}},
        {"embeddings.ln.weight", {C}}, {"embeddings.ln.bias", {C}}};
    for (int64_t l = 0; l < L; ++l) {
        const std::string p = "layer." + std::to_string(l) + ".";
        for (const char* proj : {"query", "key", "value", "output"}) {
            shapes.push_back({p + proj + ".weight", {C, C}});
            shapes.push_back({p + proj + ".bias", {C}});
        }
        shapes.push_back({p + "ln1.weight", {C}});
        shapes.push_back({p + "ln1.bias", {C}});
        shapes.push_back({p + "ffn.up.weight", {C, F}});
        shapes.push_back({p + "ffn.up.bias", {F}});
        shapes.push_back({p + "ffn.down.weight", {F, C}});
        shapes.push_back({p + "ffn.down.bias", {C}});
        shapes.push_back({p + "ln2.weight", {C}});
        shapes.push_back({p + "ln2.bias", {C}});
    }
    return shapes;
}

int run(int argc, char** argv) {
    int64_t steps, warmup, threads;
    std::string optimizer_name, backend_name, plugin_dir;
    po::options_description desc("lab_bench_optimizer: time optimizer steps on BERT-base's parameters\nOptions");
    desc.add_options()("help", "show this help")
        ("optimizer", po::value(&optimizer_name)->default_value("adamw"), "optimizer plugin")
        ("backend", po::value(&backend_name)->default_value("onednn"), "backend plugin")
        ("steps", po::value(&steps)->default_value(10), "timed steps")
        ("warmup", po::value(&warmup)->default_value(2), "untimed steps first")
        ("threads", po::value(&threads)->default_value(2), "OpenMP threads")
        ("plugin-dir", po::value(&plugin_dir)->default_value(LAB_PLUGIN_DIR), "plugin folder");
    po::variables_map vm;
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
    if (vm.count("help")) {
        std::cout << desc;
        return 0;
    }
    if (steps < 1 || warmup < 0) throw lab::ConfigError("--steps must be >= 1 and --warmup >= 0");
    omp_set_num_threads(static_cast<int>(threads));

    lab::Registry registry;
    registry.load_directory(plugin_dir);
    auto backend = registry.factory<lab::BackendFactory>("backend", backend_name)(
        lab::plugin_options(registry, "backend", backend_name, {}, "lab_bench_optimizer"));
    lab::BuildContext ctx;
    ctx.backend = backend.get();
    ctx.registry = &registry;
    lab::Generator rng(1, lab::kStreamInit);
    lab::NamedTensors params;
    int64_t count = 0;
    for (const auto& [name, shape] : bert_base_shapes()) {
        lab::Tensor p = lab::Tensor::zeros(*backend, shape);
        const auto n = static_cast<size_t>(lab::shape_numel(shape));
        p.copy_(lab::Tensor::from_floats(*backend, shape, rng.normals(n, 0.02f)));
        p.set_requires_grad(true);
        p.set_grad(lab::Tensor::from_floats(*backend, shape, rng.normals(n, 1.0f)));
        params.emplace_back(name, p);
        count += p.numel();
    }
    auto optimizer = registry.factory<lab::OptimizerFactory>("optimizer", optimizer_name)(
        lab::plugin_options(registry, "optimizer", optimizer_name, {}, "lab_bench_optimizer"), params, ctx);
    for (int64_t i = 0; i < warmup; ++i) optimizer->step(1e-4);
    backend->synchronize();
    std::vector<double> ms;
    for (int64_t i = 0; i < steps; ++i) {
        const auto start = std::chrono::steady_clock::now();
        optimizer->step(1e-4);
        backend->synchronize();
        ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    }
    std::sort(ms.begin(), ms.end());
    const double median = ms[ms.size() / 2];
    std::printf("{\"optimizer\":\"%s\",\"backend\":\"%s\",\"threads\":%lld,\"tensors\":%zu,\"parameters\":%lld,"
                "\"ms_per_step\":%.2f,\"min_ms\":%.2f,\"max_ms\":%.2f,\"gb_per_s\":%.2f}\n",
                optimizer_name.c_str(), backend_name.c_str(), static_cast<long long>(threads), params.size(),
                static_cast<long long>(count), median, ms.front(), ms.back(), 28.0 * count / (median * 1e6));
    return 0;
}

}  // namespace

int main(int argc, char** argv) { return lab_bench::main_with_errors("lab_bench_optimizer", run, argc, argv); }
