#include "run_data.h"

#include <array>
#include <cmath>
#include <limits>
#include <map>
#include <set>

namespace labdb {

namespace {

// metric_goals.goal as written by lab::metric_goal_name (the table's CHECK admits nothing else).
lab::MetricGoal goal_of(const std::string& text) {
    for (lab::MetricGoal goal : {lab::MetricGoal::minimize, lab::MetricGoal::maximize}) {
        if (text == lab::metric_goal_name(goal)) return goal;
    }
    return lab::MetricGoal::none;
}

// The goals run `run` declared, by metric name; empty for files without metric_goals.
std::map<std::string, lab::MetricGoal> declared_goals(const Database& database, int64_t run) {
    std::map<std::string, lab::MetricGoal> goals;
    if (!database.has_table("metric_goals")) return goals;
    Statement query(database, "SELECT name, goal FROM metric_goals WHERE run_id = ?1", "read the metric goals of a run");
    query.bind(1, run);
    while (query.step()) goals[query.column_text(0)] = goal_of(query.column_text(1));
    return goals;
}

}  // namespace

lab::MetricGoal metric_goal(const Database& database, const std::vector<int64_t>& runs, const std::string& name) {
    if (!database.has_table("metric_goals")) return lab::MetricGoal::none;
    Statement query(database, "SELECT goal FROM metric_goals WHERE run_id = ?1 AND name = ?2",
                    "read the goal of a metric");
    for (int64_t run : runs) {
        query.reset();
        query.bind(1, run).bind(2, name);
        if (query.step()) return goal_of(query.column_text(0));
    }
    return lab::MetricGoal::none;
}

std::vector<std::pair<std::string, std::string>> run_params(const Database& database, int64_t run) {
    Statement query(database, "SELECT key, value FROM params WHERE run_id = ?1 ORDER BY key", "read the params of a run");
    query.bind(1, run);
    std::vector<std::pair<std::string, std::string>> params;
    while (query.step()) params.emplace_back(query.column_text(0), query.column_text(1));
    return params;
}

std::vector<MetricSummary> metric_summaries(const Database& database, int64_t run) {
    const std::map<std::string, lab::MetricGoal> goals = declared_goals(database, run);
    Statement query(database, "SELECT name, step, value FROM metrics WHERE run_id = ?1 ORDER BY name, step, rowid",
                    "read the metrics of a run");
    query.bind(1, run);
    std::vector<MetricSummary> summaries;
    while (query.step()) {
        const std::string name = query.column_text(0);
        if (summaries.empty() || summaries.back().name != name) {
            MetricSummary summary;
            summary.name = name;
            const auto declared = goals.find(name);
            if (declared != goals.end()) summary.goal = declared->second;
            summaries.push_back(summary);
        }
        MetricSummary& summary = summaries.back();
        const int64_t step = query.column_int(1);
        const double value = query.column_double(2);
        ++summary.count;
        summary.last_step = step;
        summary.last = value;
        if (std::isnan(value)) continue;
        if (summary.goal == lab::MetricGoal::none) continue;
        const bool maximize = summary.goal == lab::MetricGoal::maximize;
        const bool better = !summary.best || (maximize ? value > *summary.best : value < *summary.best);
        if (better) {
            summary.best = value;
            summary.best_step = step;
        }
    }
    return summaries;
}

std::vector<PluginRow> run_plugins(const Database& database, int64_t run) {
    // plugins.abi exists from schema version 5; an older file read as it is has none.
    const std::string abi = database.has_column("plugins", "abi") ? "abi" : "NULL";
    Statement query(database,
                    "SELECT kind, name, version, file, sha256, " + abi +
                        " FROM plugins WHERE run_id = ?1 ORDER BY kind, name, rowid",
                    "read the plugins of a run");
    query.bind(1, run);
    std::vector<PluginRow> plugins;
    while (query.step()) {
        plugins.push_back({query.column_text(0), query.column_text(1), query.column_text(2), query.column_text(3),
                           query.column_text(4), query.column_optional_text(5)});
    }
    return plugins;
}

std::vector<std::pair<std::string, std::string>> run_artifacts(const Database& database, int64_t run) {
    Statement query(database, "SELECT kind, path FROM artifacts WHERE run_id = ?1 ORDER BY rowid",
                    "read the artifacts of a run");
    query.bind(1, run);
    std::vector<std::pair<std::string, std::string>> artifacts;
    while (query.step()) artifacts.emplace_back(query.column_text(0), query.column_text(1));
    return artifacts;
}

std::vector<TextSample> last_texts(const Database& database, int64_t run) {
    // The window picks, per name, the row with the highest step and among equal steps the one
    // written last: the same rule as "last value" everywhere else.
    Statement query(database,
                    "SELECT name, step, text FROM ("
                    " SELECT name, step, text, ROW_NUMBER() OVER (PARTITION BY name ORDER BY step DESC, rowid DESC)"
                    " AS position FROM texts WHERE run_id = ?1)"
                    " WHERE position = 1 ORDER BY name",
                    "read the text samples of a run");
    query.bind(1, run);
    std::vector<TextSample> texts;
    while (query.step()) texts.push_back({query.column_text(0), query.column_int(1), query.column_text(2)});
    return texts;
}

std::vector<SeriesPoint> metric_series(const Database& database, int64_t run, const std::string& name,
                                       std::optional<int64_t> after_step) {
    Statement query(database,
                    "SELECT step, time, value FROM metrics WHERE run_id = ?1 AND name = ?2 AND value IS NOT NULL"
                    " AND step > ?3 ORDER BY step, rowid",
                    "read a metric series");
    query.bind(1, run).bind(2, name).bind(3, after_step.value_or(std::numeric_limits<int64_t>::min()));
    std::vector<SeriesPoint> points;
    while (query.step()) points.push_back({query.column_int(0), query.column_double(1), query.column_double(2)});
    return points;
}

std::vector<std::string> metric_names(const Database& database) {
    Statement query(database, "SELECT DISTINCT name FROM metrics ORDER BY name", "list the metric names");
    std::vector<std::string> names;
    while (query.step()) names.push_back(query.column_text(0));
    return names;
}

std::vector<std::string> param_keys(const std::vector<std::map<std::string, std::string>>& params_per_run, bool all) {
    std::set<std::string> keys;
    for (const auto& params : params_per_run) {
        for (const auto& [key, value] : params) keys.insert(key);
    }
    std::vector<std::string> selected;
    for (const std::string& key : keys) {
        bool differs = false;
        const std::string* first = nullptr;
        for (const auto& params : params_per_run) {
            const auto found = params.find(key);
            if (found == params.end()) {
                differs = true;
                break;
            }
            if (first == nullptr) {
                first = &found->second;
            } else if (*first != found->second) {
                differs = true;
                break;
            }
        }
        if (all || differs) selected.push_back(key);
    }
    return selected;
}

}  // namespace labdb
