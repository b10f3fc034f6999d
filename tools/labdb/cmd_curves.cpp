// labdb curves: learning curves of runs as one SVG or PNG chart (rendered by chart.h).
#include <algorithm>
#include <iostream>

#include "chart.h"
#include "cli.h"
#include "run_data.h"
#include "run_lookup.h"

namespace labdb {
namespace {

const char* kUsage =
    "usage: labdb curves --metric NAME [--metric NAME2 ...] RUN... -o FILE.svg|FILE.png [--log-y] [--x step|time]\n"
    "\n"
    "Draws one line per (run, metric): the metric's logged values against the step (or, with\n"
    "--x time, the seconds since the run started). NaN values are left out. The file type follows\n"
    "the extension of -o: .svg or .png.";

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

}  // namespace

int command_curves(const std::vector<std::string>& args, const GlobalOptions& global) {
    po::options_description options("curves options");
    options.add_options()
        ("metric,m", po::value<std::vector<std::string>>()->composing(), "metric to draw (repeatable), e.g. val/loss")
        ("output,o", po::value<std::string>(), "chart file: .svg or .png")
        ("log-y", po::bool_switch(), "logarithmic y axis")
        ("x", po::value<std::string>()->default_value("step"), "x axis: step or time (seconds since the run started)");
    po::options_description hidden;
    hidden.add_options()("run", po::value<std::vector<std::string>>(), "runs");
    po::positional_options_description positional;
    positional.add("run", -1);
    const CommandLine command_line = parse_command_line(kUsage, options, hidden, positional, args, global);
    if (command_line.help) return kExitOk;
    const po::variables_map& values = command_line.values;

    if (!values.count("metric")) throw UsageError("curves needs --metric NAME; hint: e.g. --metric val/loss");
    if (!values.count("run")) throw UsageError("curves needs at least one run; hint: `labdb runs` lists the runs");
    if (!values.count("output")) throw UsageError("curves needs -o FILE.svg or -o FILE.png");
    const std::filesystem::path output = values["output"].as<std::string>();
    const std::string extension = lower_extension(output);
    if (extension != ".svg" && extension != ".png") {
        throw UsageError("-o '" + output.string() + "' has neither a .svg nor a .png extension; hint: the " +
                         "extension chooses the chart format, e.g. -o curves.svg");
    }
    const std::string x_axis = values["x"].as<std::string>();
    if (x_axis != "step" && x_axis != "time") {
        throw UsageError("--x '" + x_axis + "' is neither step nor time; hint: --x step or --x time");
    }
    const std::vector<std::string> metrics = values["metric"].as<std::vector<std::string>>();

    const Database database(command_line.db, Database::Mode::read_only);
    const std::vector<RunRef> runs = resolve_runs(database, values["run"].as<std::vector<std::string>>());

    Chart chart;
    chart.title = join(metrics, ", ");
    chart.x_label = x_axis == "step" ? "step" : "time (s)";
    chart.y_label = join(metrics, ", ");
    chart.log_y = values["log-y"].as<bool>();
    std::vector<bool> metric_found(metrics.size(), false);
    for (const RunRef& run : runs) {
        for (size_t m = 0; m < metrics.size(); ++m) {
            const std::vector<SeriesPoint> points = metric_series(database, run.id, metrics[m]);
            if (points.empty()) {
                std::cerr << "labdb: warning: run " << describe_run(run) << " has no value of '" << metrics[m]
                          << "'\n";
                continue;
            }
            metric_found[m] = true;
            Series series;
            series.label = "run " + std::to_string(run.id) + " " + run.name + " " + metrics[m];
            // On a log axis the renderer draws values <= 0 as gaps.
            for (const SeriesPoint& point : points) {
                series.x.push_back(x_axis == "step" ? static_cast<double>(point.step) : point.time_s);
                series.y.push_back(point.value);
            }
            chart.series.push_back(std::move(series));
        }
    }
    for (size_t m = 0; m < metrics.size(); ++m) {
        if (metric_found[m]) continue;
        const std::vector<std::string> near = closest_matches(metrics[m], metric_names(database), 5, false);
        throw NotFoundError("none of the runs has a value of the metric '" + metrics[m] + "'; the database has: " +
                            join(near, ", ") + (near.empty() ? "no metrics at all" : "") +
                            "; hint: `labdb show RUN` lists a run's metrics");
    }
    write_chart(chart, output);
    std::cout << "wrote " << output.string() << " (" << chart.series.size() << " series)\n";
    return kExitOk;
}

}  // namespace labdb
