// The one thread setting (lab/threads.h): set_threads applies [backend] threads, available_cores
// reads the affinity mask that labrun --jobs and data-parallel ranks divide.
#include <catch2/catch.hpp>
#include <omp.h>
#include <sched.h>

#include <thread>

#include "lab/config.h"
#include "lab/error.h"
#include "lab/threads.h"

using Catch::Matchers::Contains;

TEST_CASE("set_threads applies [backend] threads, and 0 keeps OpenMP's count outside data parallelism", "[threads]") {
    const int before = omp_get_max_threads();
    lab::set_threads(3);
    CHECK(omp_get_max_threads() == 3);
    lab::set_threads(0);  // no communicator: OpenMP's count stays (OMP_NUM_THREADS of labrun --jobs)
    CHECK(omp_get_max_threads() == 3);
    lab::set_threads(1);
    CHECK(omp_get_max_threads() == 1);
    CHECK_THROWS_WITH(lab::set_threads(-2), Contains("[backend] threads = -2 is negative"));
    CHECK(omp_get_max_threads() == 1);
    omp_set_num_threads(before);
}

TEST_CASE("available_cores is the affinity mask, and ranks share the machine's cores", "[threads]") {
    cpu_set_t set;
    REQUIRE(sched_getaffinity(0, sizeof(set), &set) == 0);
    CHECK(lab::available_cores() == CPU_COUNT(&set));
    const int machine = static_cast<int>(std::thread::hardware_concurrency());
    if (CPU_COUNT(&set) < machine) {
        // A launcher bound this process to some cores: it divided them already.
        CHECK(lab::threads_per_rank(2) == CPU_COUNT(&set));
    } else {
        CHECK(lab::threads_per_rank(1) == machine);
        CHECK(lab::threads_per_rank(2) == std::max(1, machine / 2));
        CHECK(lab::threads_per_rank(4 * machine) == 1);
    }
}

TEST_CASE("run_threads reads [backend] threads, 0 for a backend without the option", "[threads]") {
    lab::RunSpec spec;
    CHECK(lab::run_threads(spec) == 0);
    lab::OptionSchema schema;
    schema.integer("threads", 0, "threads").at_least(0);
    spec.plugins["backend"].options = lab::Options::validate("backend", "backend/onednn", schema, {{"threads", {"6", "x"}}});
    CHECK(lab::run_threads(spec) == 6);
    spec.plugins["backend"].options = lab::Options::validate("backend", "backend/cuda", {}, {});
    CHECK(lab::run_threads(spec) == 0);
}
