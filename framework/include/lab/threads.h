// CPU threads: the one setting ([backend] threads, declared by the CPU backends; [experiment]
// threads is its old spelling, an alias resolved by run/config_resolve.cpp) and the one place it is applied.
//
// 0 means "the default": OpenMP's own thread count (all cores, or OMP_NUM_THREADS, which
// `labrun --jobs` sets for each run it starts), except for data-parallel ranks, which share the
// cores of their node (threads_per_rank).
#pragma once
#include <cstdint>

namespace lab {

// The cores this process may run on: its CPU affinity mask (taskset, Slurm, an MPI launcher's
// binding), else every core of the machine. At least 1. What labrun --jobs divides among its runs.
int available_cores();

// OpenMP threads of one data-parallel rank when none is set: the cores of its affinity mask when a
// launcher bound it to fewer than the machine has (the launcher divided them already), else the
// machine's cores divided among `ranks_on_node`.
int threads_per_rank(int ranks_on_node);

// Applies `threads` (> 0: exactly that many OpenMP threads; 0: the default above: for a
// data-parallel rank, `ranks_on_node` > 0, threads_per_rank(ranks_on_node)). Throws ConfigError for
// a negative count. The one function that sets OpenMP's thread count: backends, the trainer and
// evaluation all call it (a run's setting: run_threads in lab/config.h).
void set_threads(int64_t threads, int ranks_on_node = 0);

}  // namespace lab
