// labdb ablate: finished runs grouped by the values of some parameters, with the mean, spread and
// range of one metric per group and, against a baseline group, the difference of the means with a
// 95% confidence interval (paired over seeds where the groups share them, Welch's otherwise).
#include <algorithm>
#include <charconv>
#include <cmath>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>

#include "cli.h"
#include "command_json.h"
#include "run_data.h"
#include "run_lookup.h"
#include "text_table.h"

namespace labdb {
namespace {

const char* kUsage =
    "usage: labdb ablate [--experiment NAME | --sweep ID] --by KEY [--by KEY2 ...] --metric NAME\n"
    "                    [--last | --best] [--baseline VALUE[,VALUE2...]] [--cost METRIC ...] [--json]\n"
    "\n"
    "Groups the finished runs (of one experiment or sweep, or of the whole database) by the values of\n"
    "the parameters KEY... (as `labdb show` names them, e.g. attention.type, model.layers) and prints\n"
    "per group: n (runs), mean, sample standard deviation (n-1; \"-\" for one run), min and max of the\n"
    "metric's last value per run (--best: its best value, the lowest or the highest as the runs declared\n"
    "the metric's goal). The best group (by that goal; none for a metric without one) is marked with *. --baseline names a group by its values in --by order,\n"
    "comma separated; every other group then gets delta = mean - baseline mean and a 95% confidence\n"
    "interval of delta: paired over seeds (experiment.seed) when both groups ran the same seeds,\n"
    "Welch's unpaired interval otherwise. Runs without a finite value of the metric are left out.\n"
    "Cost columns (--cost, repeatable; default perf/tokens_per_s and perf/peak_mem_mb, which every run\n"
    "records) give the group mean of each run's mean value, or of its maximum for metrics named *peak*.\n"
    "--json prints an array with one object per group.";

// A run as the ablation sees it.
struct AblationRun {
    int64_t id = 0;
    std::string seed;
    double value = 0;
};

struct Group {
    std::vector<std::optional<std::string>> values;  // one per --by key; nullopt where the run lacks it
    std::vector<AblationRun> runs;
    std::vector<std::optional<double>> costs;  // one per cost metric: mean over the runs that logged it
    double mean = 0, min = 0, max = 0;
    std::optional<double> std_dev;  // sample standard deviation, for n >= 2
};

// The comparison of one group with the baseline group.
struct Delta {
    double delta = 0;
    std::string method;             // "paired" or "welch"
    std::optional<double> df;       // degrees of freedom of the t quantile
    std::optional<double> low, high;  // 95% interval; absent when a group has too few runs
};

// Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom, hard-coded because the
// libraries we use have no t distribution; beyond 30 the normal quantile is close enough.
double t_quantile_95(double df) {
    static const double kTable[30] = {12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
                                      2.201,  2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
                                      2.080,  2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042};
    // Welch's df is fractional: rounding down takes the wider (conservative) quantile.
    const auto whole = static_cast<int64_t>(std::floor(df));
    if (whole < 1) return kTable[0];
    if (whole > 30) return 1.96;
    return kTable[whole - 1];
}

double mean_of(const std::vector<double>& values) {
    double sum = 0;
    for (double value : values) sum += value;
    return sum / static_cast<double>(values.size());
}

// Sample variance (n - 1); needs two or more values.
double variance_of(const std::vector<double>& values) {
    const double mean = mean_of(values);
    double squares = 0;
    for (double value : values) squares += (value - mean) * (value - mean);
    return squares / static_cast<double>(values.size() - 1);
}

std::vector<double> values_of(const Group& group) {
    std::vector<double> values;
    for (const AblationRun& run : group.runs) values.push_back(run.value);
    return values;
}

// Parameter values that are numbers order as numbers (layers 2 < 4 < 16), the rest as text.
std::optional<double> as_number(const std::string& text) {
    double number = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), number);
    if (error != std::errc() || end != text.data() + text.size()) return std::nullopt;
    return number;
}

bool value_less(const std::optional<std::string>& a, const std::optional<std::string>& b) {
    if (!a || !b) return !a && b;  // runs lacking the key first
    const std::optional<double> number_a = as_number(*a), number_b = as_number(*b);
    if (number_a && number_b && *number_a != *number_b) return *number_a < *number_b;
    if (number_a.has_value() != number_b.has_value()) return number_a.has_value();
    return *a < *b;
}

std::string value_text(const std::optional<std::string>& value) { return value ? one_line(*value) : "-"; }

std::string group_name(const Group& group) {
    std::string name;
    for (const auto& value : group.values) name += (name.empty() ? "" : ",") + value_text(value);
    return name;
}

std::string joined(const std::vector<std::string>& names) {
    std::string text;
    for (const std::string& name : names) text += (text.empty() ? "" : ", ") + name;
    return text;
}

std::vector<std::string> split_commas(const std::string& text) {
    std::vector<std::string> parts;
    std::stringstream stream(text);
    std::string part;
    while (std::getline(stream, part, ',')) parts.push_back(part);
    if (!text.empty() && text.back() == ',') parts.emplace_back();
    return parts;
}

Delta compare_with_baseline(const Group& group, const Group& baseline) {
    Delta result;
    result.delta = group.mean - baseline.mean;
    // Paired when each group ran each seed once and both ran the same seeds: the per-seed
    // difference then removes the seed-to-seed variation both groups share.
    std::map<std::string, double> group_by_seed, baseline_by_seed;
    for (const AblationRun& run : group.runs) group_by_seed.emplace(run.seed, run.value);
    for (const AblationRun& run : baseline.runs) baseline_by_seed.emplace(run.seed, run.value);
    const bool unique_seeds =
        group_by_seed.size() == group.runs.size() && baseline_by_seed.size() == baseline.runs.size();
    bool same_seeds = unique_seeds && group_by_seed.size() == baseline_by_seed.size();
    for (auto a = group_by_seed.begin(), b = baseline_by_seed.begin(); same_seeds && a != group_by_seed.end(); ++a, ++b) {
        same_seeds = a->first == b->first;
    }
    if (same_seeds) {
        result.method = "paired";
        std::vector<double> differences;
        for (const auto& [seed, value] : group_by_seed) differences.push_back(value - baseline_by_seed.at(seed));
        if (differences.size() < 2) return result;
        const double df = static_cast<double>(differences.size() - 1);
        const double half_width =
            t_quantile_95(df) * std::sqrt(variance_of(differences) / static_cast<double>(differences.size()));
        result.df = df;
        result.low = result.delta - half_width;
        result.high = result.delta + half_width;
        return result;
    }
    result.method = "welch";
    if (group.runs.size() < 2 || baseline.runs.size() < 2) return result;
    const double n_group = static_cast<double>(group.runs.size()), n_baseline = static_cast<double>(baseline.runs.size());
    const double a = variance_of(values_of(group)) / n_group, b = variance_of(values_of(baseline)) / n_baseline;
    // Welch-Satterthwaite; with no spread at all it is undefined and the interval has zero width.
    const double df = a + b > 0 ? (a + b) * (a + b) / (a * a / (n_group - 1) + b * b / (n_baseline - 1))
                                : std::min(n_group, n_baseline) - 1;
    const double half_width = t_quantile_95(df) * std::sqrt(a + b);
    result.df = df;
    result.low = result.delta - half_width;
    result.high = result.delta + half_width;
    return result;
}

// The ids of the finished runs of the experiment or sweep (or of the whole database).
std::vector<int64_t> finished_runs(const Database& database, const AblateRequest& request) {
    std::string sql = "SELECT id FROM runs WHERE status = 'finished'";
    std::string target;
    if (request.experiment) {
        sql += " AND experiment = ?1";
        target = *request.experiment;
    } else if (request.sweep) {
        if (!database.has_column("runs", "sweep")) {
            throw NotFoundError("'" + database.file().string() + "' records no sweeps (schema version " +
                                std::to_string(database.user_version()) + "); hint: select the runs with --experiment");
        }
        sql += " AND sweep = ?1";
        target = *request.sweep;
    }
    Statement query(database, sql + " ORDER BY id", "select the finished runs");
    if (request.experiment || request.sweep) query.bind(1, target);
    std::vector<int64_t> ids;
    while (query.step()) ids.push_back(query.column_int(0));
    if (ids.empty()) {
        const std::string where = request.experiment ? " of experiment '" + target + "'"
                                  : request.sweep    ? " of sweep '" + target + "'"
                                                     : "";
        throw NotFoundError("no finished runs" + where + " in '" + database.file().string() +
                            "'; hint: `labdb runs` lists the runs with their status, experiment and sweep");
    }
    return ids;
}

// The metric's last or best value of a run; nullopt when the run has no finite value of it.
std::optional<double> run_value(const Database& database, int64_t run, const std::string& metric, bool best) {
    for (const MetricSummary& summary : metric_summaries(database, run)) {
        if (summary.name != metric) continue;
        if (best) return summary.best;
        if (std::isfinite(summary.last)) return summary.last;
        return std::nullopt;
    }
    return std::nullopt;
}

// A run's cost figure: the mean of its logged values, or the maximum for a high-water mark
// ("peak" in the name). nullopt when the run did not log the metric.
std::optional<double> run_cost(const Database& database, int64_t run, const std::string& metric) {
    const bool peak = metric.find("peak") != std::string::npos;
    Statement query(database,
                    std::string("SELECT ") + (peak ? "MAX" : "AVG") +
                        "(value), COUNT(value) FROM metrics WHERE run_id = ?1 AND name = ?2",
                    "read a cost metric");
    query.bind(1, run);
    query.bind(2, metric);
    if (!query.step() || query.column_int(1) == 0) return std::nullopt;
    return query.column_double(0);
}

nlohmann::json optional_number(const std::optional<double>& value) {
    return value ? nlohmann::json(*value) : nlohmann::json();
}

// The table of `labdb ablate`, made from the rows of ablate_json.
void print_ablation_table(const nlohmann::json& rows, const AblateRequest& request, lab::MetricGoal goal,
                          std::ostream& out) {
    const std::vector<std::string>& keys = request.by;
    const std::vector<std::string> cost_metrics =
        !request.costs.empty() ? request.costs : std::vector<std::string>{"perf/tokens_per_s", "perf/peak_mem_mb"};
    const bool has_baseline = !rows.empty() && rows[0].contains("baseline");
    auto number = [](const nlohmann::json& value) {
        return value.is_null() ? std::string("-") : format_number(value.get<double>());
    };
    std::vector<std::string> headers = keys;
    for (const char* header : {"n", "mean", "std", "min", "max"}) headers.emplace_back(header);
    if (has_baseline) {
        for (const char* header : {"delta", "95% CI", "method"}) headers.emplace_back(header);
    }
    for (const std::string& cost : cost_metrics) headers.push_back(cost);
    headers.emplace_back("best");
    TextTable table(headers);
    for (size_t column = keys.size(); column + 1 < headers.size(); ++column)
        if (headers[column] != "method") table.align_right(column);
    for (const nlohmann::json& group : rows) {
        std::vector<std::string> row;
        for (const std::string& key : keys) {
            const nlohmann::json& value = group["group"][key];
            row.push_back(value.is_null() ? "-" : one_line(value.get<std::string>()));
        }
        row.push_back(std::to_string(group["n"].get<size_t>()));
        for (const char* field : {"mean", "std", "min", "max"}) row.push_back(number(group[field]));
        if (has_baseline) {
            if (group["baseline"].get<bool>()) {
                row.insert(row.end(), {"(baseline)", "", ""});
            } else {
                row.push_back(number(group["delta"]));
                row.push_back(group["ci_low"].is_null()
                                  ? std::string("-")
                                  : "[" + number(group["ci_low"]) + ", " + number(group["ci_high"]) + "]");
                row.push_back(group["ci_method"].get<std::string>());
            }
        }
        for (const std::string& cost : cost_metrics) row.push_back(number(group["cost"][cost]));
        row.push_back(group["best"].get<bool>() ? "*" : "");
        table.add_row(std::move(row));
    }
    out << request.metric << " (" << (request.use_best ? "best" : "last") << " value per run, "
        << (goal == lab::MetricGoal::maximize   ? "higher is better"
            : goal == lab::MetricGoal::minimize ? "lower is better"
                                                : "no declared goal, so no best group")
        << ")\n";
    table.print(out);
}

}  // namespace

Ablation ablate_json(const Database& database, const AblateRequest& request) {
    if (request.experiment && request.sweep) {
        throw UsageError("--experiment and --sweep both select runs; hint: give one of them");
    }
    if (request.by.empty()) {
        throw UsageError("ablate needs at least one --by KEY; hint: e.g. --by attention.type --by model.layers");
    }
    if (request.metric.empty()) throw UsageError("ablate needs --metric NAME; hint: e.g. --metric val/loss");
    const std::vector<std::string>& keys = request.by;
    const std::string& metric = request.metric;
    const bool use_best = request.use_best;
    std::optional<std::vector<std::string>> baseline_values;
    if (request.baseline) {
        baseline_values = split_commas(*request.baseline);
        if (baseline_values->size() != keys.size()) {
            throw UsageError("--baseline '" + *request.baseline + "' has " +
                             std::to_string(baseline_values->size()) + " value(s) but there are " +
                             std::to_string(keys.size()) + " --by key(s); hint: give one value per --by key, " +
                             "comma separated, in --by order");
        }
    }

    const std::vector<int64_t> ids = finished_runs(database, request);

    std::vector<std::map<std::string, std::string>> params_per_run;
    std::set<std::string> known_keys;
    for (int64_t id : ids) {
        const auto params = run_params(database, id);
        params_per_run.emplace_back(params.begin(), params.end());
        for (const auto& [key, value] : params) known_keys.insert(key);
    }
    for (const std::string& key : keys) {
        if (known_keys.count(key)) continue;
        const std::vector<std::string> near =
            closest_matches(key, std::vector<std::string>(known_keys.begin(), known_keys.end()), 5, false);
        throw NotFoundError("no selected finished run has the parameter '" + key + "' (--by); closest: " +
                            (near.empty() ? "(the runs have no parameters)" : joined(near)) +
                            "; hint: `labdb show RUN` lists a run's parameters");
    }

    const lab::MetricGoal goal = metric_goal(database, ids, metric);
    if (use_best && goal == lab::MetricGoal::none) {
        throw UsageError("--best needs a metric whose runs declared which way it improves, and no selected run " +
                         std::string("declared a goal for '") + metric +
                         "' (a count, the learning rate, or a file older than schema version 3); hint: use --last");
    }
    std::map<std::vector<std::optional<std::string>>, Group> groups_by_values;
    size_t left_out = 0;
    for (size_t r = 0; r < ids.size(); ++r) {
        const std::optional<double> value = run_value(database, ids[r], metric, use_best);
        if (!value) {
            ++left_out;
            continue;
        }
        std::vector<std::optional<std::string>> group_values;
        for (const std::string& key : keys) {
            const auto found = params_per_run[r].find(key);
            group_values.push_back(found == params_per_run[r].end() ? std::nullopt
                                                                   : std::optional<std::string>(found->second));
        }
        const auto seed = params_per_run[r].find("experiment.seed");
        std::string seed_text;
        if (seed != params_per_run[r].end()) {
            seed_text = seed->second;
        } else {
            Statement query(database, "SELECT seed FROM runs WHERE id = ?1", "read the seed of a run");
            query.bind(1, ids[r]);
            if (query.step()) seed_text = query.column_text(0);
        }
        Group& group = groups_by_values[group_values];
        group.values = group_values;
        group.runs.push_back({ids[r], seed_text, *value});
    }
    if (groups_by_values.empty()) {
        std::set<std::string> logged;
        for (int64_t id : ids) {
            for (const MetricSummary& summary : metric_summaries(database, id)) logged.insert(summary.name);
        }
        if (!logged.count(metric)) {
            const std::vector<std::string> near =
                closest_matches(metric, std::vector<std::string>(logged.begin(), logged.end()), 5, false);
            throw NotFoundError("no selected finished run logged the metric '" + metric + "'; closest: " +
                                (near.empty() ? "(no metrics logged)" : joined(near)) +
                                "; hint: `labdb show RUN` lists a run's metrics");
        }
        throw NotFoundError("no selected finished run has a finite value of '" + metric +
                            "'; hint: the runs diverged (NaN); try --best, or `labdb show RUN`");
    }

    const std::vector<std::string> cost_metrics =
        !request.costs.empty() ? request.costs : std::vector<std::string>{"perf/tokens_per_s", "perf/peak_mem_mb"};
    std::vector<Group> groups;
    for (auto& [group_values, group] : groups_by_values) {
        for (const std::string& cost : cost_metrics) {
            std::vector<double> per_run;
            for (const AblationRun& run : group.runs)
                if (std::optional<double> value = run_cost(database, run.id, cost)) per_run.push_back(*value);
            group.costs.push_back(per_run.empty() ? std::nullopt : std::optional<double>(mean_of(per_run)));
        }
        const std::vector<double> run_values = values_of(group);
        group.mean = mean_of(run_values);
        group.min = *std::min_element(run_values.begin(), run_values.end());
        group.max = *std::max_element(run_values.begin(), run_values.end());
        if (run_values.size() >= 2) group.std_dev = std::sqrt(variance_of(run_values));
        groups.push_back(std::move(group));
    }
    std::sort(groups.begin(), groups.end(), [](const Group& a, const Group& b) {
        return std::lexicographical_compare(a.values.begin(), a.values.end(), b.values.begin(), b.values.end(),
                                            value_less);
    });

    // The best group only for a metric declared minimize or maximize.
    std::optional<size_t> best;
    if (goal != lab::MetricGoal::none && !groups.empty()) {
        best = 0;
        for (size_t g = 1; g < groups.size(); ++g) {
            const bool better = goal == lab::MetricGoal::maximize ? groups[g].mean > groups[*best].mean
                                                                   : groups[g].mean < groups[*best].mean;
            if (better) best = g;
        }
    }
    std::optional<size_t> baseline;
    if (baseline_values) {
        for (size_t g = 0; g < groups.size() && !baseline; ++g) {
            bool matches = true;
            for (size_t k = 0; k < keys.size(); ++k) {
                const auto& value = groups[g].values[k];
                matches = matches && (value ? *value == (*baseline_values)[k] : (*baseline_values)[k] == "-");
            }
            if (matches) baseline = g;
        }
        if (!baseline) {
            std::vector<std::string> names;
            for (const Group& group : groups) names.push_back(group_name(group));
            throw NotFoundError("--baseline '" + *request.baseline + "' names no group of " +
                                joined(keys) + "; the groups are: " + joined(names) +
                                "; hint: give one of them, values comma separated in --by order");
        }
    }
    std::vector<std::optional<Delta>> deltas(groups.size());
    if (baseline) {
        for (size_t g = 0; g < groups.size(); ++g) {
            if (g != *baseline) deltas[g] = compare_with_baseline(groups[g], groups[*baseline]);
        }
    }

    Ablation ablation;
    ablation.left_out = left_out;
    ablation.goal = goal;
    nlohmann::json& rows = ablation.groups;
    rows = nlohmann::json::array();
    {
        for (size_t g = 0; g < groups.size(); ++g) {
            const Group& group = groups[g];
            nlohmann::json row;
            row["group"] = nlohmann::json::object();
            for (size_t k = 0; k < keys.size(); ++k) {
                row["group"][keys[k]] = group.values[k] ? nlohmann::json(*group.values[k]) : nlohmann::json();
            }
            row["metric"] = metric;
            row["value"] = use_best ? "best" : "last";
            row["n"] = group.runs.size();
            row["mean"] = group.mean;
            row["std"] = optional_number(group.std_dev);
            row["min"] = group.min;
            row["max"] = group.max;
            row["best"] = g == best;
            for (size_t c = 0; c < cost_metrics.size(); ++c) row["cost"][cost_metrics[c]] = optional_number(group.costs[c]);
            row["runs"] = nlohmann::json::array();
            for (const AblationRun& run : group.runs) row["runs"].push_back(run.id);
            if (baseline) {
                row["baseline"] = g == *baseline;
                const std::optional<Delta>& delta = deltas[g];
                row["delta"] = delta ? nlohmann::json(delta->delta) : nlohmann::json();
                row["ci_low"] = delta ? optional_number(delta->low) : nlohmann::json();
                row["ci_high"] = delta ? optional_number(delta->high) : nlohmann::json();
                row["ci_method"] = delta ? nlohmann::json(delta->method) : nlohmann::json();
                row["df"] = delta ? optional_number(delta->df) : nlohmann::json();
            }
            rows.push_back(std::move(row));
        }
    }
    return ablation;
}


int command_ablate(const std::vector<std::string>& args, const GlobalOptions& global) {
    po::options_description options("ablate options");
    options.add_options()
        ("experiment", po::value<std::string>(), "only runs of this experiment")
        ("sweep", po::value<std::string>(), "only runs of this sweep (id)")
        ("by", po::value<std::vector<std::string>>()->composing(), "parameter key to group by (repeatable)")
        ("metric", po::value<std::string>(), "the metric compared, e.g. val/loss")
        ("last", po::bool_switch(), "use each run's last value of the metric (the default)")
        ("best", po::bool_switch(), "use each run's best value of the metric")
        ("baseline", po::value<std::string>(), "VALUE[,VALUE2...]: the group the others are compared with")
        ("cost", po::value<std::vector<std::string>>()->composing(),
         "cost metric column (repeatable; default perf/tokens_per_s and perf/peak_mem_mb)")
        ("json", po::bool_switch(), "print a JSON array of group objects instead of a table");
    const CommandLine command_line = parse_command_line(kUsage, options, {}, {}, args, global);
    if (command_line.help) return kExitOk;
    const po::variables_map& values = command_line.values;

    if (values["last"].as<bool>() && values["best"].as<bool>()) {
        throw UsageError("--last and --best exclude each other; hint: give one (--last is the default)");
    }
    AblateRequest request;
    if (values.count("experiment")) request.experiment = values["experiment"].as<std::string>();
    if (values.count("sweep")) request.sweep = values["sweep"].as<std::string>();
    if (values.count("by")) request.by = values["by"].as<std::vector<std::string>>();
    if (values.count("metric")) request.metric = values["metric"].as<std::string>();
    request.use_best = values["best"].as<bool>();
    if (values.count("baseline")) request.baseline = values["baseline"].as<std::string>();
    if (values.count("cost")) request.costs = values["cost"].as<std::vector<std::string>>();

    const Database database(command_line.db, Database::Mode::read_only);
    const Ablation ablation = ablate_json(database, request);
    if (ablation.left_out > 0) {
        std::cerr << "labdb: note: " << ablation.left_out << " finished run(s) left out: no finite value of "
                  << request.metric << "\n";
    }
    if (values["json"].as<bool>()) {
        std::cout << json_text(ablation.groups) << "\n";
        return kExitOk;
    }
    print_ablation_table(ablation.groups, request, ablation.goal, std::cout);
    return kExitOk;
}

}  // namespace labdb
