// The JSON that `labdb runs`, `show`, `compare` and `ablate` print with --json, as functions of an
// open database. The commands print it (or a table made from it) and `labdb serve` answers its API
// requests with the same functions, so the terminal and the dashboard always show the same runs,
// the same run states ("dead" included) and the same statistics.
//
// Bad requests throw UsageError (exit code 2, HTTP 400) and unknown runs, sweeps, parameters or
// metrics NotFoundError (exit code 3, HTTP 404), with messages that name the option as the
// command line spells it.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "database.h"
#include "lab/results.h"
#include "run_lookup.h"

namespace labdb {

// Which runs `labdb runs` lists; every field left empty means "no filter".
struct RunFilter {
    std::optional<std::string> experiment;
    std::optional<std::string> status;  // running, finished, failed, interrupted or dead
    std::optional<std::string> sweep;
    std::vector<std::pair<std::string, std::string>> where;  // parameter key = value, all required
    std::optional<int64_t> limit;                            // the newest N runs that pass the rest
};

// "key=value" -> (key, value); UsageError naming --where otherwise.
std::pair<std::string, std::string> parse_where(const std::string& text);

// `labdb runs --json`: one object per run, oldest first: id, uid, name, experiment, status,
// started_at, wall_s, steps, last_val_loss, best_val_loss, sweep.
nlohmann::json runs_json(const Database& database, const RunFilter& filter);

// `labdb show --json`: run (every column of its runs row, status as run_state), params, plugins,
// metrics (last and best), artifacts and texts (the last of each name).
nlohmann::json show_json(const Database& database, const RunRef& run);

// A run of `labdb compare`; the runs compared may come from different databases (labdb serve).
struct ComparedRun {
    const Database* database = nullptr;
    RunRef run;
};
// `labdb compare --json`: one object per run with the parameters that differ between the runs
// (every parameter with `all_params`; null where a run lacks one) and each metric's last and best.
nlohmann::json compare_json(const std::vector<ComparedRun>& runs, bool all_params);

// What `labdb ablate` groups and compares.
struct AblateRequest {
    std::optional<std::string> experiment, sweep;  // at most one; neither: the whole database
    std::vector<std::string> by;                   // parameter keys, at least one
    std::string metric;
    bool use_best = false;                      // each run's best value instead of its last
    std::optional<std::string> baseline;        // "VALUE[,VALUE2...]" in `by` order
    std::vector<std::string> costs;             // cost metric columns; empty: the default two
};

// What `labdb curves` draws.
struct CurvesRequest {
    std::vector<std::string> metrics;  // at least one
    std::string x_axis = "step";       // step or time
    std::vector<std::string> by;       // group by these parameters; empty: one line per run
    std::string band = "std";          // with `by`: std, minmax or none
};
// `labdb curves --json`: the series of `runs` of `database` (labels, run ids, points; with `by`
// the group values and the band ends). UsageError for a bad request, NotFoundError for a `by` key
// or a metric that none of the runs has.
nlohmann::ordered_json curves_json(const Database& database, const std::vector<RunRef>& runs,
                                   const CurvesRequest& request);

struct Ablation {
    nlohmann::json groups;  // `labdb ablate --json`: one object per group
    size_t left_out = 0;    // finished runs without a finite value of the metric
    // Which way the metric improves, as the runs declared it; with MetricGoal::none no group is best.
    lab::MetricGoal goal = lab::MetricGoal::none;
};
Ablation ablate_json(const Database& database, const AblateRequest& request);

}  // namespace labdb
