// labdb compare: runs side by side, one column per run.
#include <cmath>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>

#include "cli.h"
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
    "for each metric logged by any of them the last value and the best value (the lowest, or the\n"
    "highest for accuracy-like metrics), each with its step.\n"
    "--json prints an array with one object per run: id, uid, name, experiment, status, params (the\n"
    "same keys as the table; null where the run lacks the key) and metrics (name -> last,\n"
    "last_step, best, best_step).";

nlohmann::json number_or_null(double value) { return std::isnan(value) ? nlohmann::json() : nlohmann::json(value); }

}  // namespace

int command_compare(const std::vector<std::string>& args, const GlobalOptions& global) {
    po::options_description options("compare options");
    options.add_options()
        ("all", po::bool_switch(), "show every parameter, not only those that differ")
        ("json", po::bool_switch(), "print a JSON array of objects instead of a table");
    po::options_description hidden;
    hidden.add_options()("run", po::value<std::vector<std::string>>(), "runs");
    po::positional_options_description positional;
    positional.add("run", -1);
    const CommandLine command_line = parse_command_line(kUsage, options, hidden, positional, args, global);
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
    std::vector<std::map<std::string, std::string>> params_per_run;
    std::vector<std::map<std::string, MetricSummary>> metrics_per_run;
    std::set<std::string> metric_names_seen;
    for (const RunRef& run : runs) {
        const auto params = run_params(database, run.id);
        params_per_run.emplace_back(params.begin(), params.end());
        std::map<std::string, MetricSummary> metrics;
        for (MetricSummary& summary : metric_summaries(database, run.id)) {
            metric_names_seen.insert(summary.name);
            metrics.emplace(summary.name, std::move(summary));
        }
        metrics_per_run.push_back(std::move(metrics));
    }
    const std::vector<std::string> keys = param_keys(params_per_run, command_line.values["all"].as<bool>());

    if (command_line.values["json"].as<bool>()) {
        nlohmann::json rows = nlohmann::json::array();
        for (size_t r = 0; r < runs.size(); ++r) {
            nlohmann::json row = {{"id", runs[r].id},
                                  {"uid", runs[r].uid},
                                  {"name", runs[r].name},
                                  {"experiment", runs[r].experiment},
                                  {"status", runs[r].status}};
            row["params"] = nlohmann::json::object();
            for (const std::string& key : keys) {
                const auto found = params_per_run[r].find(key);
                row["params"][key] = found == params_per_run[r].end() ? nlohmann::json() : nlohmann::json(found->second);
            }
            row["metrics"] = nlohmann::json::object();
            for (const auto& [name, summary] : metrics_per_run[r]) {
                row["metrics"][name] = {
                    {"last", number_or_null(summary.last)},
                    {"last_step", summary.last_step},
                    {"best", summary.best ? nlohmann::json(*summary.best) : nlohmann::json()},
                    {"best_step", summary.best ? nlohmann::json(summary.best_step) : nlohmann::json()},
                    {"best_is", summary.best_is_max ? "max" : "min"}};
            }
            rows.push_back(std::move(row));
        }
        std::cout << json_text(rows) << "\n";
        return kExitOk;
    }

    std::vector<std::string> headers = {""};
    for (const RunRef& run : runs) headers.push_back(std::to_string(run.id) + " " + run.name);
    TextTable table(headers);
    const size_t columns = runs.size();
    for (size_t column = 1; column <= columns; ++column) table.align_right(column);

    table.add_row({command_line.values["all"].as<bool>() ? "params" : "params (differing)"});
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
        std::vector<std::string> best_row = {"  " + name + (higher_is_better(name) ? " best (max)" : " best")};
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
        table.add_row(std::move(best_row));
    }
    if (metric_names_seen.empty()) table.add_row({"  (no metrics logged)"});
    table.print(std::cout);
    return kExitOk;
}

}  // namespace labdb
