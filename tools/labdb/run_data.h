// What the commands read about one run: its parameters, a summary of each metric (last and best
// value with their steps), plugins, artifacts, text samples and metric series for charts.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "database.h"
#include "lab/results.h"

namespace labdb {

// What labdb shows for runs.world_size where it is NULL (rows written before schema version 4, and
// merged from such files): labrun trained every run in one process then.
inline constexpr int64_t kWorldSizeBeforeVersion4 = 1;

// Which way metric `name` improves, as the runs' recorders declared it (table metric_goals, schema
// version 3): the goal of the first of `runs` that declared one. MetricGoal::none when none did
// (files of older labruns, metrics recorded without a goal): labdb then shows no best value.
lab::MetricGoal metric_goal(const Database& database, const std::vector<int64_t>& runs, const std::string& name);

struct MetricSummary {
    std::string name;
    int64_t count = 0;  // rows logged, NULL (NaN) values included
    // The last row: the highest step, and among equal steps the one written last (as run_summary).
    int64_t last_step = 0;
    double last = 0;  // NaN when the last value was NaN
    // Which way the metric improves, as the run declared it; the best non-NaN value (the lowest for
    // minimize, the highest for maximize, none for MetricGoal::none) and the first step it was reached.
    lab::MetricGoal goal = lab::MetricGoal::none;
    std::optional<double> best;
    int64_t best_step = 0;
};

struct PluginRow {
    std::string kind, name, version, file, sha256;
    std::optional<std::string> abi;  // the plugin's SDK ABI tag; none for rows before schema version 5
};

struct TextSample {
    std::string name;
    int64_t step = 0;
    std::string text;
};

struct SeriesPoint {
    int64_t step = 0;
    double time_s = 0;
    double value = 0;
};

// (key, value) sorted by key.
std::vector<std::pair<std::string, std::string>> run_params(const Database& database, int64_t run);
// One summary per metric name, sorted by name.
std::vector<MetricSummary> metric_summaries(const Database& database, int64_t run);
std::vector<PluginRow> run_plugins(const Database& database, int64_t run);
// (kind, path) in the order they were recorded.
std::vector<std::pair<std::string, std::string>> run_artifacts(const Database& database, int64_t run);
// The last sample of each text name (highest step, latest written), sorted by name.
std::vector<TextSample> last_texts(const Database& database, int64_t run);
// The rows of one metric in step order; NaN (NULL) values are left out. With `after_step`, only the
// rows of later steps (what a live chart has not fetched yet).
std::vector<SeriesPoint> metric_series(const Database& database, int64_t run, const std::string& name,
                                       std::optional<int64_t> after_step = std::nullopt);
// Every metric name logged by any run in the database (sorted).
std::vector<std::string> metric_names(const Database& database);

// The differences between runs' parameters: the keys whose value differs between the runs (a key
// missing from some run counts as differing), or every key when `all` is set, in key order.
std::vector<std::string> param_keys(const std::vector<std::map<std::string, std::string>>& params_per_run, bool all);

}  // namespace labdb
