#include "lab/threads.h"

#include <omp.h>
#include <sched.h>

#include <algorithm>
#include <string>
#include <thread>

#include "lab/error.h"

namespace lab {

namespace {

int machine_cores() { return static_cast<int>(std::max(1u, std::thread::hardware_concurrency())); }

}  // namespace

int available_cores() {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
    return machine_cores();
}

int threads_per_rank(int ranks_on_node) {
    const int cores = machine_cores(), allowed = available_cores();
    if (allowed < cores) return allowed;
    return std::max(1, cores / std::max(1, ranks_on_node));
}

void set_threads(int64_t threads, int ranks_on_node) {
    if (threads < 0)
        throw ConfigError("[backend] threads = " + std::to_string(threads) +
                          " is negative; use 0 for the default (all cores) or a positive thread count");
    if (threads > 0)
        omp_set_num_threads(static_cast<int>(threads));
    else if (ranks_on_node > 0)
        omp_set_num_threads(threads_per_rank(ranks_on_node));
}

}  // namespace lab
