// labdb compare: runs side by side, one column per run.
#include <cmath>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>

#include "cli.h"
#include "command_json.h"
#include "run_data.h"
#include "run_lookup.h"
#include "text_table.h"

namespace labdb {
namespace {

const char* kUsage =
    "usage: labdb compare RUN RUN... [--all] [--json]\n"
    "\n"
    "Shows runs side by side, one column per run: the parameters whose values differ between the\n"
    "runs (a parameter missing from a run counts as different; --all shows every parameter), then\n"
    "for each metric logged by any of them the last value and, where the run declared which way the\n"
    "metric improves (losses: min, accuracies: max; counts and the learning rate: none), the best\n"
    "value, each with its step.\n"
    "--json prints an array with one object per run: id, uid, name, experiment, status, params (the\n"
    "same keys as the table; null where the run lacks the key) and metrics (name -> last,\n"
    "last_step, best, best_step).";

nlohmann::json number_or_null(double value) { return std::isnan(value) ? nlohmann::json() : nlohmann::json(value); }

// The parameters and metric summaries of the runs, in the order given.
struct ComparedData {
    std::vector<std::map<std::string, std::string>> params_per_run;
    std::vector<std::map<std::string, MetricSummary>> metrics_per_run;
    std::set<std::string> metric_names_seen;
};

ComparedData read_compared(const std::vector<ComparedRun>& runs) {
    ComparedData data;
    for (const ComparedRun& compared : runs) {
        const auto params = run_params(*compared.database, compared.run.id);
        data.params_per_run.emplace_back(params.begin(), params.end());
        std::map<std::string, MetricSummary> metrics;
        for (MetricSummary& summary : metric_summaries(*compared.database, compared.run.id)) {
            data.metric_names_seen.insert(summary.name);
            metrics.emplace(summary.name, std::move(summary));
        }
        data.metrics_per_run.push_back(std::move(metrics));
    }
    return data;
}

}  // namespace

nlohmann::json compare_json(const std::vector<ComparedRun>& runs, bool all_params) {
    const ComparedData data = read_compared(runs);
    const std::vector<std::string> keys = param_keys(data.params_per_run, all_params);
    nlohmann::json rows = nlohmann::json::array();
    for (size_t r = 0; r < runs.size(); ++r) {
        const RunRef& run = runs[r].run;
        nlohmann::json row = {{"id", run.id},
                              {"uid", run.uid},
                              {"name", run.name},
                              {"experiment", run.experiment},
                              {"status", run.status}};
        row["params"] = nlohmann::json::object();
        for (const std::string& key : keys) {
            const auto found = data.params_per_run[r].find(key);
            row["params"][key] = found == data.params_per_run[r].end() ? nlohmann::json() : nlohmann::json(found->second);
        }
        row["metrics"] = nlohmann::json::object();
        for (const auto& [name, summary] : data.metrics_per_run[r]) {
            row["metrics"][name] = {{"last", number_or_null(summary.last)},
                                    {"last_step", summary.last_step},
                                    {"best", summary.best ? nlohmann::json(*summary.best) : nlohmann::json()},
                                    {"best_step", summary.best ? nlohmann::json(summary.best_step) : nlohmann::json()},
                                    {"goal", lab::metric_goal_name(summary.goal)}};
        }
        rows.push_back(std::move(row));
    }
    return rows;
}

int command_compare(const std::vector<std::string>& args, const GlobalOptions& global) {
    po::options_description options("compare options");
    options.add_options()
        ("all", po::bool_switch(), "show every parameter, not only those that differ")
        ("json", po::bool_switch(), "print a JSON array of objects instead of a table");
    const CommandLine command_line = parse_runs_command_line(kUsage, options, args, global);
    if (command_line.help) return kExitOk;
    const std::vector<std::string> specs =
        command_line.values.count("run") ? command_line.values["run"].as<std::vector<std::string>>()
                                         : std::vector<std::string>{};
    if (specs.empty()) {
        throw UsageError("compare needs at least one run (two or more to see differences); hint: " +
                         std::string("labdb compare 3 4, or `labdb runs` to list the runs"));
    }

    const Database database(command_line.db, Database::Mode::read_only);
    const std::vector<RunRef> runs = resolve_runs(database, specs);
    const bool all_params = command_line.values["all"].as<bool>();
    std::vector<ComparedRun> compared;
    for (const RunRef& run : runs) compared.push_back({&database, run});
    if (command_line.values["json"].as<bool>()) {
        std::cout << json_text(compare_json(compared, all_params)) << "\n";
        return kExitOk;
    }

    const ComparedData data = read_compared(compared);
    const auto& [params_per_run, metrics_per_run, metric_names_seen] = data;
    const std::vector<std::string> keys = param_keys(params_per_run, all_params);
    std::vector<std::string> headers = {""};
    for (const RunRef& run : runs) headers.push_back(std::to_string(run.id) + " " + run.name);
    TextTable table(headers);
    const size_t columns = runs.size();
    for (size_t column = 1; column <= columns; ++column) table.align_right(column);

    table.add_row({all_params ? "params" : "params (differing)"});
    for (const std::string& key : keys) {
        std::vector<std::string> row = {"  " + key};
        for (const auto& params : params_per_run) {
            const auto found = params.find(key);
            row.push_back(found == params.end() ? "-" : one_line(found->second));
        }
        table.add_row(std::move(row));
    }
    if (keys.empty()) table.add_row({"  (none: the runs have the same parameters)"});

    table.add_row({"metrics"});
    for (const std::string& name : metric_names_seen) {
        std::vector<std::string> last_row = {"  " + name + " last"};
        // A best row only where a run declared which way the metric improves (not for counts, the
        // learning rate, or metrics of files that predate metric_goals).
        lab::MetricGoal goal = lab::MetricGoal::none;
        for (const auto& metrics : metrics_per_run) {
            const auto found = metrics.find(name);
            if (found != metrics.end() && goal == lab::MetricGoal::none) goal = found->second.goal;
        }
        const char* best_label = goal == lab::MetricGoal::maximize ? " best (max)" : " best (min)";
        std::vector<std::string> best_row = {"  " + name + best_label};
        for (const auto& metrics : metrics_per_run) {
            const auto found = metrics.find(name);
            if (found == metrics.end()) {
                last_row.push_back("-");
                best_row.push_back("-");
                continue;
            }
            const MetricSummary& summary = found->second;
            last_row.push_back(format_number(summary.last) + " @" + std::to_string(summary.last_step));
            best_row.push_back(summary.best ? format_number(*summary.best) + " @" + std::to_string(summary.best_step)
                                            : std::string("-"));
        }
        table.add_row(std::move(last_row));
        if (goal != lab::MetricGoal::none) table.add_row(std::move(best_row));
    }
    if (metric_names_seen.empty()) table.add_row({"  (no metrics logged)"});
    table.print(std::cout);
    return kExitOk;
}

}  // namespace labdb
