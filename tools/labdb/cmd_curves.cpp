// labdb curves: learning curves of runs as one SVG or PNG chart (rendered by chart.h), one line
// per run, or with --by one mean line and spread band per group of runs; --json prints the series.
#include <algorithm>
#include <cmath>
#include <iostream>
#include <map>
#include <optional>

#include "chart.h"
#include "cli.h"
#include "command_json.h"
#include "run_data.h"
#include "run_labels.h"
#include "run_lookup.h"

namespace labdb {
namespace {

const char* kUsage =
    "usage: labdb curves --metric NAME [--metric NAME2 ...] RUN... -o FILE.svg|FILE.png [--log-y] [--x step|time]\n"
    "                    [--by KEY [--by KEY2 ...] [--band std|minmax|none]] [--json]\n"
    "\n"
    "Draws one line per (run, metric): the metric's logged values against the step (or, with\n"
    "--x time, the seconds since the run started). NaN values are left out. The file type follows\n"
    "the extension of -o: .svg or .png (PNG needs a labdb built with Cairo; .svg always works).\n"
    "The legend names each run by the parameters whose values differ among the runs drawn\n"
    "(\"attention.type=sigmoid experiment.seed=2\"; a parameter that only some runs have, such as an\n"
    "option of a plugin only they use, only where it tells runs apart), or by \"run ID NAME\" when\n"
    "none differs; with several metrics the metric name follows.\n"
    "\n"
    "--by KEY groups the runs by their values of the parameters KEY... and draws one line per group\n"
    "(and metric): the mean over the group's runs at each step that every run of the group logged,\n"
    "with a shaded band for their spread: --band std (default) is mean +- the sample standard\n"
    "deviation (n-1; no band where n = 1), minmax the range from the lowest to the highest run,\n"
    "none no band. The legend names the group and its runs: \"attention.type=softmax (n=2)\"; a run\n"
    "without a KEY counts as KEY=(unset). --by needs --x step.\n"
    "\n"
    "--json prints the series drawn (labels, run ids, points; with --by the group values and the\n"
    "band ends, null where there is none) as one JSON object on stdout; -o is optional then.";

std::string lower_extension(const std::filesystem::path& file) {
    std::string extension = file.extension().string();
    std::transform(extension.begin(), extension.end(), extension.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return extension;
}

std::string join(const std::vector<std::string>& items, const std::string& separator) {
    std::string text;
    for (const std::string& item : items) text += (text.empty() ? "" : separator) + item;
    return text;
}

enum class Band { std_dev, min_max, none };

// A line of the chart with what --json tells about it.
struct Curve {
    Series series;
    std::string metric;
    std::vector<int64_t> runs;
    std::map<std::string, std::string> group;  // --by key -> value; empty without --by
};

// One value per step: the row written last wins where a step was logged twice.
std::map<int64_t, double> values_by_step(const std::vector<SeriesPoint>& points) {
    std::map<int64_t, double> values;
    for (const SeriesPoint& point : points) values[point.step] = point.value;
    return values;
}

// The mean of the runs at every step all of them logged, and the band of their spread.
Series group_series(const std::vector<std::map<int64_t, double>>& runs, Band band) {
    Series series;
    for (const auto& [step, first_value] : runs.front()) {
        std::vector<double> values;
        for (const auto& run : runs) {
            const auto found = run.find(step);
            if (found == run.end()) break;
            values.push_back(found->second);
        }
        if (values.size() != runs.size()) continue;
        const double n = static_cast<double>(values.size());
        double sum = 0;
        for (double value : values) sum += value;
        const double mean = sum / n;
        series.x.push_back(static_cast<double>(step));
        series.y.push_back(mean);
        if (band == Band::min_max) {
            series.band_lo.push_back(*std::min_element(values.begin(), values.end()));
            series.band_hi.push_back(*std::max_element(values.begin(), values.end()));
        } else if (band == Band::std_dev) {
            double squares = 0;
            for (double value : values) squares += (value - mean) * (value - mean);
            const double std_dev = values.size() >= 2 ? std::sqrt(squares / (n - 1)) : NAN;
            series.band_lo.push_back(mean - std_dev);
            series.band_hi.push_back(mean + std_dev);
        }
    }
    return series;
}

using Json = nlohmann::ordered_json;  // keys in the order written, as a reader expects them

Json number_or_null(double value) { return std::isfinite(value) ? Json(value) : Json(); }

Json to_json(const std::vector<Curve>& curves, const CurvesRequest& request) {
    const std::vector<std::string>& by = request.by;
    Json series = Json::array();
    for (const Curve& curve : curves) {
        Json points = Json::array();
        for (size_t i = 0; i < curve.series.x.size(); ++i) {
            Json point = {{"x", curve.series.x[i]}, {"y", curve.series.y[i]}};
            if (!curve.series.band_lo.empty()) {
                point["band_lo"] = number_or_null(curve.series.band_lo[i]);
                point["band_hi"] = number_or_null(curve.series.band_hi[i]);
            }
            points.push_back(point);
        }
        Json entry = {{"label", curve.series.label}, {"metric", curve.metric}, {"runs", curve.runs}};
        if (!by.empty()) entry["group"] = curve.group;
        entry["points"] = points;
        series.push_back(entry);
    }
    Json result = {{"metrics", request.metrics}, {"x", request.x_axis}};
    if (!by.empty()) {
        result["by"] = by;
        result["band"] = request.band;
    }
    result["series"] = series;
    return result;
}

// The lines to draw: one per (run, metric), or with request.by one mean line (and band) per
// (group, metric). Throws UsageError for a bad request and NotFoundError for a --by key or a metric
// none of the runs has; a run without a metric is left out with a warning on stderr.
std::vector<Curve> compute_curves(const Database& database, const std::vector<RunRef>& runs,
                                  const CurvesRequest& request) {
    const std::string& x_axis = request.x_axis;
    if (x_axis != "step" && x_axis != "time") {
        throw UsageError("--x '" + x_axis + "' is neither step nor time; hint: --x step or --x time");
    }
    const std::vector<std::string>& by = request.by;
    const std::string& band_name = request.band;
    const Band band = band_name == "std" ? Band::std_dev : band_name == "minmax" ? Band::min_max : Band::none;
    if (band_name != "std" && band_name != "minmax" && band_name != "none")
        throw UsageError("--band '" + band_name + "' is none of std, minmax, none; hint: --band std");
    if (!by.empty() && x_axis != "step")
        throw UsageError("--by averages the runs of a group at equal steps and needs --x step; hint: drop --x time");
    const std::vector<std::string>& metrics = request.metrics;
    if (metrics.empty()) throw UsageError("curves needs --metric NAME; hint: e.g. --metric val/loss");
    std::vector<std::map<std::string, std::string>> params;
    for (const RunRef& run : runs) {
        const auto pairs = run_params(database, run.id);
        params.emplace_back(pairs.begin(), pairs.end());
    }
    for (const std::string& key : by) {
        const bool known = std::any_of(params.begin(), params.end(), [&](const auto& p) { return p.count(key) > 0; });
        if (known) continue;
        std::vector<std::string> keys;
        for (const auto& run_params : params)
            for (const auto& [name, value] : run_params) keys.push_back(name);
        const std::vector<std::string> near = closest_matches(key, keys, 5, false);
        throw NotFoundError("--by '" + key + "': none of the runs has this parameter; closest: " +
                            (near.empty() ? std::string("(the runs have no parameters)") : join(near, ", ")) +
                            "; hint: `labdb show RUN` lists a run's parameters");
    }

    std::vector<Curve> curves;
    std::vector<bool> metric_found(metrics.size(), false);
    const auto metric_suffix = [&](const std::string& metric) { return metrics.size() > 1 ? " " + metric : ""; };
    const auto warn_missing = [](const RunRef& run, const std::string& metric) {
        std::cerr << "labdb: warning: run " << describe_run(run) << " has no value of '" << metric << "'\n";
    };
    if (by.empty()) {
        const std::vector<std::string> labels = run_labels(runs, params);
        for (size_t r = 0; r < runs.size(); ++r) {
            for (size_t m = 0; m < metrics.size(); ++m) {
                const std::vector<SeriesPoint> points = metric_series(database, runs[r].id, metrics[m]);
                if (points.empty()) {
                    warn_missing(runs[r], metrics[m]);
                    continue;
                }
                metric_found[m] = true;
                Curve curve;
                curve.series.label = labels[r] + metric_suffix(metrics[m]);
                curve.metric = metrics[m];
                curve.runs = {runs[r].id};
                // On a log axis the renderer draws values <= 0 as gaps.
                for (const SeriesPoint& point : points) {
                    curve.series.x.push_back(x_axis == "step" ? static_cast<double>(point.step) : point.time_s);
                    curve.series.y.push_back(point.value);
                }
                curves.push_back(std::move(curve));
            }
        }
    } else {
        // Groups in the order of their values, so that a chart of the same runs always looks alike.
        std::map<std::vector<std::string>, std::vector<size_t>> groups;
        for (size_t r = 0; r < runs.size(); ++r) {
            std::vector<std::string> key_values;
            for (const std::string& key : by) {
                const auto found = params[r].find(key);
                key_values.push_back(found == params[r].end() ? kUnsetParam : found->second);
            }
            groups[key_values].push_back(r);
        }
        for (const auto& [key_values, members] : groups) {
            std::map<std::string, std::string> group;
            for (size_t k = 0; k < by.size(); ++k) group[by[k]] = key_values[k];
            for (size_t m = 0; m < metrics.size(); ++m) {
                Curve curve;
                std::vector<std::map<int64_t, double>> member_values;
                for (size_t r : members) {
                    const std::vector<SeriesPoint> points = metric_series(database, runs[r].id, metrics[m]);
                    if (points.empty()) {
                        warn_missing(runs[r], metrics[m]);
                        continue;
                    }
                    member_values.push_back(values_by_step(points));
                    curve.runs.push_back(runs[r].id);
                }
                if (member_values.empty()) continue;
                metric_found[m] = true;
                curve.series = group_series(member_values, band);
                curve.series.label = param_assignments(by, group) + " (n=" + std::to_string(member_values.size()) +
                                     ")" + metric_suffix(metrics[m]);
                if (curve.series.x.empty())
                    std::cerr << "labdb: warning: the runs of " << curve.series.label << " share no step of '"
                              << metrics[m] << "'\n";
                curve.metric = metrics[m];
                curve.group = group;
                curves.push_back(std::move(curve));
            }
        }
    }
    for (size_t m = 0; m < metrics.size(); ++m) {
        if (metric_found[m]) continue;
        const std::vector<std::string> near = closest_matches(metrics[m], metric_names(database), 5, false);
        throw NotFoundError("none of the runs has a value of the metric '" + metrics[m] + "'; the database has: " +
                            join(near, ", ") + (near.empty() ? "no metrics at all" : "") +
                            "; hint: `labdb show RUN` lists a run's metrics");
    }

    return curves;
}

}  // namespace

int command_curves(const std::vector<std::string>& args, const GlobalOptions& global) {
    po::options_description options("curves options");
    options.add_options()
        ("metric,m", po::value<std::vector<std::string>>()->composing(), "metric to draw (repeatable), e.g. val/loss")
        ("output,o", po::value<std::string>(), "chart file: .svg or .png")
        ("log-y", po::bool_switch(), "logarithmic y axis")
        ("x", po::value<std::string>()->default_value("step"), "x axis: step or time (seconds since the run started)")
        ("by", po::value<std::vector<std::string>>()->composing(),
         "group runs by this parameter (repeatable): one mean line and band per group")
        ("band", po::value<std::string>()->default_value("std"), "with --by: std (mean +- std), minmax or none")
        ("json", po::bool_switch(), "print the series as JSON on stdout");
    const CommandLine command_line = parse_runs_command_line(kUsage, options, args, global);
    if (command_line.help) return kExitOk;
    const po::variables_map& values = command_line.values;

    if (!values.count("metric")) throw UsageError("curves needs --metric NAME; hint: e.g. --metric val/loss");
    if (!values.count("run")) throw UsageError("curves needs at least one run; hint: `labdb runs` lists the runs");
    const bool json = values["json"].as<bool>();
    if (!values.count("output") && !json)
        throw UsageError("curves needs -o FILE.svg or -o FILE.png (or --json to print the series)");
    std::optional<std::filesystem::path> output;
    if (values.count("output")) {
        output = values["output"].as<std::string>();
        const std::string extension = lower_extension(*output);
        if (extension != ".svg" && extension != ".png") {
            throw UsageError("-o '" + output->string() + "' has neither a .svg nor a .png extension; hint: the " +
                             "extension chooses the chart format, e.g. -o curves.svg");
        }
        if (extension == ".png" && !png_charts_available()) {
            throw UsageError("-o '" + output->string() + "': this labdb was built without PNG charts (Cairo was " +
                             "not found when it was configured); hint: write an SVG chart, e.g. -o " +
                             std::filesystem::path(*output).replace_extension(".svg").string() + ", or install libcairo2-dev and rebuild labdb");
        }
    }
    CurvesRequest request;
    request.metrics = values["metric"].as<std::vector<std::string>>();
    request.x_axis = values["x"].as<std::string>();
    if (values.count("by")) request.by = values["by"].as<std::vector<std::string>>();
    request.band = values["band"].as<std::string>();
    if (!values["band"].defaulted() && request.by.empty())
        throw UsageError("--band draws the spread of a group of runs and needs --by KEY; hint: e.g. --by attention.type");

    const Database database(command_line.db, Database::Mode::read_only);
    const std::vector<RunRef> runs = resolve_runs(database, values["run"].as<std::vector<std::string>>());
    const std::vector<Curve> curves = compute_curves(database, runs, request);
    const std::vector<std::string>& metrics = request.metrics;
    const std::string& x_axis = request.x_axis;

    if (output) {
        Chart chart;
        chart.title = join(metrics, ", ");
        chart.x_label = x_axis == "step" ? "step" : "time (s)";
        chart.y_label = join(metrics, ", ");
        chart.log_y = values["log-y"].as<bool>();
        for (const Curve& curve : curves) chart.series.push_back(curve.series);
        write_chart(chart, *output);
        // With --json, stdout holds the JSON alone.
        (json ? std::cerr : std::cout) << "wrote " << output->string() << " (" << chart.series.size() << " series)\n";
    }
    if (json) std::cout << to_json(curves, request).dump(2, ' ', false, Json::error_handler_t::replace) << "\n";
    return kExitOk;
}

Json curves_json(const Database& database, const std::vector<RunRef>& runs, const CurvesRequest& request) {
    return to_json(compute_curves(database, runs, request), request);
}

}  // namespace labdb
