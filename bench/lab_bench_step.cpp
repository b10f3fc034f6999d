// lab_bench_step: times the training steps of an experiment file exactly as labrun takes them
// (lab::build_training_stack + lab::train_step: the task's batches, loss, backward, clipping,
// the optimizer), without a results database. Prints one JSON line: ms/step, tokens/s, and the
// backend's allocations and primitive builds during the timed steps (0 and 0 in the steady state).
//
//   lab_bench_step experiments/bert_mlm.ini [section.key=value ...] [--steps 5] [--warmup 3]
#include <omp.h>

#include <boost/program_options.hpp>
#include <chrono>
#include <cstdlib>
#include <iostream>

#include "bench_main.h"
#include "lab/config.h"
#include "lab/error.h"
#include "lab/registry.h"
#include "lab/trainer.h"

namespace po = boost::program_options;

namespace {

int run(int argc, char** argv) {
    int64_t steps, warmup, threads;
    std::string plugin_dir, data_dir;
    std::vector<std::string> args;
    po::options_description desc(
        "lab_bench_step EXPERIMENT.ini [section.key=value ...]: time an experiment's training steps\nOptions");
    desc.add_options()("help", "show this help")
        ("steps", po::value(&steps)->default_value(5), "timed steps")
        ("warmup", po::value(&warmup)->default_value(3), "untimed steps first (caches, primitives)")
        ("threads", po::value(&threads)->default_value(2), "OpenMP threads")
        ("data-dir", po::value(&data_dir), "what ${data} expands to (default: $LAB_DATA, else data)")
        ("plugin-dir", po::value(&plugin_dir)->default_value(LAB_PLUGIN_DIR), "plugin folder");
    po::options_description hidden;
    hidden.add_options()("args", po::value(&args));
    po::positional_options_description positional;
    positional.add("args", -1);
    po::options_description all;
    all.add(desc).add(hidden);
    po::variables_map vm;
    po::store(po::command_line_parser(argc, argv).options(all).positional(positional).run(), vm);
    po::notify(vm);
    if (vm.count("help") || args.empty()) {
        std::cout << desc;
        return args.empty() && !vm.count("help") ? 2 : 0;
    }
    if (steps < 1 || warmup < 0) throw lab::ConfigError("--steps must be >= 1 and --warmup >= 0");
    omp_set_num_threads(static_cast<int>(threads));

    lab::ConfigEnv env;
    const char* lab_data = std::getenv("LAB_DATA");
    env.data_dir = vm.count("data-dir") ? data_dir : (lab_data ? lab_data : "data");
    lab::Registry registry;
    registry.load_directory(plugin_dir);
    lab::RawConfig raw = lab::load_config(args[0], {args.begin() + 1, args.end()}, env);
    std::vector<lab::RunSpec> specs = lab::resolve_runs(raw, registry);
    if (specs.size() != 1)
        throw lab::ConfigError(args[0] + " is a sweep of " + std::to_string(specs.size()) +
                               " runs; time one of them by fixing the swept keys with overrides");
    const lab::RunSpec& spec = specs.front();
    lab::RunEnvironment run_env;
    run_env.data_dir = env.data_dir;
    run_env.quiet = true;
    lab::TrainingStack stack = lab::build_training_stack(spec, registry, run_env);

    int64_t step = 1;
    for (; step <= warmup; ++step) lab::train_step(stack, step);
    const lab::BackendStats before = stack.backend->stats();
    int64_t tokens = 0;
    float loss = 0;
    auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < steps; ++i, ++step) {
        lab::StepResult r = lab::train_step(stack, step);
        tokens += r.tokens;
        loss = r.loss;
    }
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const lab::BackendStats after = stack.backend->stats();
    int64_t params = 0;
    for (const auto& [name, p] : stack.params) params += p.numel();
    std::cout << "{\"impl\":\"labrun-" << spec.plugins.at("backend").plugin << "\",\"experiment\":\"" << spec.name
              << "\",\"model\":\"" << spec.plugins.at("model").plugin << "\",\"task\":\""
              << spec.plugins.at("task").plugin << "\",\"batch\":" << stack.train.batch
              << ",\"seq_len\":" << stack.train.seq_len << ",\"params\":" << params
              << ",\"ms_per_step\":" << 1000.0 * seconds / static_cast<double>(steps)
              << ",\"tokens_per_s\":" << static_cast<double>(tokens) / seconds << ",\"threads\":" << threads
              << ",\"steps\":" << steps << ",\"warmup\":" << warmup << ",\"loss\":" << loss
              << ",\"allocs_per_step\":"
              << static_cast<double>(after.memory.device_allocs - before.memory.device_allocs) / static_cast<double>(steps)
              << ",\"primitives_built\":" << (after.primitives_created - before.primitives_created)
              << ",\"peak_mb\":" << static_cast<double>(after.memory.peak_bytes_in_use) / (1024.0 * 1024.0)
              << ",\"device\":\"" << stack.backend->device_info() << "\"}\n";
    return 0;
}

}  // namespace

int main(int argc, char** argv) { return lab_bench::main_with_errors("lab_bench_step", run, argc, argv); }
