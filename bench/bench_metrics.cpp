// lab_bench_metrics: what metric logging costs a training run. A log interval records 5 metrics
// (train/loss, train/lr, train/grad_norm, perf/tokens_per_s, perf/ms_per_step) with add_metric
// and writes them with flush() (one SQLite transaction, which also carries the run's heartbeat).
// This times that, averaged over many intervals on a fresh database, and sets it against a
// training step: the trainer logs every `log_every` steps, so each step pays flush_ms / log_every.
// Prints one JSON line.
//
//   lab_bench_metrics [--step-ms 40] [--log-every 10] [--intervals 200] [--warmup 5] [--db FILE]
//
// --step-ms defaults to 40 ms, the measured step of the `baby` GPT configuration
// (bench/README.md); pass the figure lab_bench_gpt prints for another model or machine.
#include <boost/program_options.hpp>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "bench_main.h"
#include "lab/results.h"

namespace fs = std::filesystem;
namespace po = boost::program_options;

namespace {

// A directory that is removed with everything in it when the benchmark ends.
struct TemporaryDirectory {
    fs::path path;
    TemporaryDirectory() {
        std::random_device entropy;
        path = fs::temp_directory_path() / ("lab_bench_metrics_" + std::to_string(entropy()));
        fs::create_directories(path);
    }
    ~TemporaryDirectory() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

double percentile(std::vector<double> values, double fraction) {
    std::sort(values.begin(), values.end());
    const size_t index = static_cast<size_t>(fraction * double(values.size() - 1) + 0.5);
    return values[std::min(index, values.size() - 1)];
}

int run(int argc, char** argv) {
    double step_ms = 40.0;
    int64_t log_every = 10, intervals = 200, warmup = 5;
    std::string db_option;
    po::options_description desc("lab_bench_metrics: the cost of metric logging relative to a training step");
    desc.add_options()("help", "show this help")
        ("step-ms", po::value(&step_ms)->default_value(step_ms), "milliseconds per training step to compare with")
        ("log-every", po::value(&log_every)->default_value(log_every), "training steps per log interval")
        ("intervals", po::value(&intervals)->default_value(intervals), "timed log intervals")
        ("warmup", po::value(&warmup)->default_value(warmup), "untimed log intervals first")
        ("db", po::value(&db_option), "database file (default: a fresh file in a temporary directory, removed after)");
    if (!lab_bench::parse_options(argc, argv, desc)) return 0;
    if (step_ms <= 0 || log_every < 1 || intervals < 1 || warmup < 0) {
        std::cerr << "lab_bench_metrics: error: need --step-ms > 0, --log-every >= 1, --intervals >= 1, --warmup >= 0\n";
        return 2;
    }

    TemporaryDirectory scratch;
    const fs::path db = db_option.empty() ? scratch.path / "bench.db" : fs::path(db_option);
    lab::ResultStore store(db);
    lab::RunRecord record;
    record.name = "bench_metrics";
    record.experiment = "bench_metrics";
    record.config_hash = "bench_metrics";
    record.config_text = "train.log_every = " + std::to_string(log_every) + "\n";
    const int64_t run_id = store.begin_run(record, {{"train.log_every", std::to_string(log_every)}});

    static const char* const kIntervalMetrics[] = {"train/loss", "train/lr", "train/grad_norm", "perf/tokens_per_s",
                                                   "perf/ms_per_step"};
    using Clock = std::chrono::steady_clock;
    std::vector<double> interval_ms;
    interval_ms.reserve(static_cast<size_t>(intervals));
    for (int64_t interval = 0; interval < warmup + intervals; ++interval) {
        const int64_t step = (interval + 1) * log_every;
        const auto start = Clock::now();
        for (size_t metric = 0; metric < std::size(kIntervalMetrics); ++metric)
            store.add_metric(run_id, step, kIntervalMetrics[metric], 1.0 / double(step) + double(metric));
        store.flush();
        const double elapsed_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
        if (interval >= warmup) interval_ms.push_back(elapsed_ms);
    }
    store.finish_run(run_id, lab::RunStatus::finished, "");

    const double flush_ms = std::accumulate(interval_ms.begin(), interval_ms.end(), 0.0) / double(interval_ms.size());
    const double per_step_overhead_ms = flush_ms / double(log_every);
    nlohmann::json result = {
        {"bench", "metrics"},
        {"db", db_option.empty() ? "temporary" : db_option},
        {"intervals", intervals},
        {"metrics_per_interval", std::size(kIntervalMetrics)},
        {"flush_ms", flush_ms},
        {"flush_ms_median", percentile(interval_ms, 0.5)},
        {"flush_ms_p99", percentile(interval_ms, 0.99)},
        {"step_ms", step_ms},
        {"log_every", log_every},
        {"per_step_overhead_ms", per_step_overhead_ms},
        {"overhead_percent", 100.0 * per_step_overhead_ms / step_ms},
    };
    std::cout << result.dump() << "\n";
    return 0;
}

}  // namespace

int main(int argc, char** argv) { return lab_bench::main_with_errors("lab_bench_metrics", run, argc, argv); }
