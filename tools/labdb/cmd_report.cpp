// labdb report: one self-contained HTML file about a sweep or an experiment. Everything is
// inline (CSS, SVG charts), so the file can be mailed or attached and opened anywhere offline.
#include <algorithm>
#include <cmath>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "chart.h"
#include "cli.h"
#include "lab/results.h"
#include "output_file.h"
#include "run_data.h"
#include "run_labels.h"
#include "run_lookup.h"
#include "text_table.h"

namespace labdb {
namespace {

const char* kUsage =
    "usage: labdb report SWEEP_OR_EXPERIMENT -o report.html\n"
    "\n"
    "Writes one self-contained HTML file (inline CSS and SVG, no external resources) about the runs\n"
    "of a sweep (its id, where the database records sweeps) or else of an experiment (its name):\n"
    "a table of the runs with the parameters that differ and the final and best metrics, learning\n"
    "curves of val/loss and train/loss (each run named by the parameters that differ, as in `labdb\n"
    "curves`), the last text sample of each run, and the provenance (code revision, backend, device,\n"
    "threads, data-parallel world size and communicator, host, plugins).";

constexpr const char* kStyle = R"css(
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.subtitle { color: #666; margin-top: 0; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
tr.best td { background: #eaf6ea; font-weight: 600; }
.status-failed, .status-interrupted { color: #b00020; }
pre { background: #f7f7f7; border: 1px solid #e4e4e4; padding: 0.6em; white-space: pre-wrap; word-break: break-word; }
.chart { margin: 1em 0; }
.chart svg { max-width: 100%; height: auto; }
code { font-size: 0.95em; }
.note { color: #666; font-style: italic; }
)css";

std::string escape_html(const std::string& text) {
    std::string escaped;
    escaped.reserve(text.size());
    for (char c : text) {
        switch (c) {
            case '&': escaped += "&amp;"; break;
            case '<': escaped += "&lt;"; break;
            case '>': escaped += "&gt;"; break;
            case '"': escaped += "&quot;"; break;
            case '\'': escaped += "&#39;"; break;
            default: escaped += c;
        }
    }
    return escaped;
}

// What the report shows of each run, read once.
struct ReportRun {
    RunRef ref;
    std::map<std::string, std::string> params;
    std::map<std::string, MetricSummary> metrics;
    std::vector<PluginRow> plugins;
    std::vector<TextSample> texts;
    std::map<std::string, std::string> provenance;  // column of kProvenance -> value, NULL columns left out
    std::optional<double> wall_s;
    std::string error;
};

// The runs of a sweep (when the schema records sweeps and the id matches) or else of an experiment.
std::pair<std::string, std::vector<RunRef>> select_runs(const Database& database, const std::string& target) {
    std::vector<RunRef> runs;
    auto collect = [&](const std::string& sql, const std::string& purpose) {
        Statement query(database, sql, purpose);
        query.bind(1, target);
        while (query.step()) {
            runs.push_back({query.column_int(0), query.column_text(1), query.column_text(2), query.column_text(3),
                            query.column_text(4)});
        }
    };
    const bool has_sweeps = database.has_column("runs", "sweep");
    if (has_sweeps) {
        collect("SELECT id, uid, name, experiment, status FROM runs WHERE sweep = ?1 ORDER BY id",
                "select the runs of a sweep");
        if (!runs.empty()) {
        std::set<std::string> experiments;
        for (const RunRef& run : runs) experiments.insert(run.experiment);
        std::string names;
        for (const std::string& name : experiments) names += (names.empty() ? "" : ", ") + name;
        return {"sweep " + target + " (experiment " + names + ")", runs};
    }
    }
    collect("SELECT id, uid, name, experiment, status FROM runs WHERE experiment = ?1 ORDER BY id",
            "select the runs of an experiment");
    if (!runs.empty()) return {"experiment " + target, runs};

    std::vector<std::string> known;
    {
        Statement query(database, "SELECT DISTINCT experiment FROM runs ORDER BY experiment", "list the experiments");
        while (query.step()) known.push_back(query.column_text(0));
    }
    if (has_sweeps) {
        Statement query(database, "SELECT DISTINCT sweep FROM runs WHERE sweep IS NOT NULL ORDER BY sweep",
                        "list the sweeps");
        while (query.step()) known.push_back(query.column_text(0));
    }
    std::string candidates;
    for (const std::string& name : closest_matches(target, known, 8, false)) {
        candidates += (candidates.empty() ? "" : ", ") + name;
    }
    throw NotFoundError("'" + target + "' is neither " + (has_sweeps ? "a sweep id nor " : "") +
                        "an experiment name in '" + database.file().string() + "'; known: " +
                        (candidates.empty() ? "(no runs at all)" : candidates) +
                        "; hint: `labdb runs` lists experiments and sweeps");
}

// The runs columns the provenance table shows, in this order, where the file's schema has them.
const std::vector<std::string> kProvenance = {"code_revision", "backend", "device", "precision", "threads",
                                              "world_size", "communicator", "libraries", "host", "started_at",
                                              "ended_at"};

ReportRun read_report_run(const Database& database, const RunRef& ref) {
    ReportRun run;
    run.ref = ref;
    for (auto& [key, value] : run_params(database, ref.id)) run.params.emplace(key, value);
    for (MetricSummary& summary : metric_summaries(database, ref.id)) run.metrics.emplace(summary.name, summary);
    run.plugins = run_plugins(database, ref.id);
    run.texts = last_texts(database, ref.id);
    // Provenance columns of whichever schema version the file has.
    std::vector<std::string> present;
    for (const std::string& column : kProvenance) {
        if (database.has_column("runs", column)) present.push_back(column);
    }
    std::string sql = "SELECT wall_s, error";
    for (const std::string& column : present) sql += ", " + quote_identifier(column);
    Statement query(database, sql + " FROM runs WHERE id = ?1", "read the provenance of a run");
    query.bind(1, ref.id);
    if (query.step()) {
        run.wall_s = query.column_optional_double(0);
        run.error = query.column_text(1);
        for (size_t c = 0; c < present.size(); ++c) {
            if (!query.is_null(static_cast<int>(c) + 2)) {
                run.provenance[present[c]] = query.column_text(static_cast<int>(c) + 2);
            } else if (present[c] == "world_size") {
                run.provenance[present[c]] = std::to_string(kWorldSizeBeforeVersion4);
            }
        }
    }
    return run;
}

std::string number_cell(const std::optional<double>& value) {
    return "<td class=\"number\">" + escape_html(format_number(value)) + "</td>";
}

// The metrics the runs table shows: last and best of every val/ metric, the last train/loss.
std::vector<std::string> headline_metrics(const std::vector<ReportRun>& runs) {
    std::set<std::string> names;
    for (const ReportRun& run : runs) {
        for (const auto& [name, summary] : run.metrics) {
            if (name.rfind("val/", 0) == 0 || name == "train/loss") names.insert(name);
        }
    }
    return {names.begin(), names.end()};
}

void write_runs_table(std::ostream& html, const std::vector<ReportRun>& runs) {
    std::vector<std::map<std::string, std::string>> params_per_run;
    for (const ReportRun& run : runs) params_per_run.push_back(run.params);
    const std::vector<std::string> keys = runs.size() > 1 ? param_keys(params_per_run, false) : std::vector<std::string>{};
    const std::vector<std::string> metrics = headline_metrics(runs);

    // The run with the lowest best val/loss is marked, the question a sweep is usually run for.
    int64_t best_run = -1;
    double best_loss = INFINITY;
    for (const ReportRun& run : runs) {
        const auto found = run.metrics.find("val/loss");
        if (found != run.metrics.end() && found->second.best && *found->second.best < best_loss) {
            best_loss = *found->second.best;
            best_run = run.ref.id;
        }
    }

    html << "<table>\n<tr><th>id</th><th>name</th><th>status</th><th>wall</th>";
    for (const std::string& key : keys) html << "<th>" << escape_html(key) << "</th>";
    for (const std::string& name : metrics) {
        html << "<th>" << escape_html(name) << " final</th>";
        if (name != "train/loss") html << "<th>" << escape_html(name) << " best</th>";
    }
    html << "</tr>\n";
    for (const ReportRun& run : runs) {
        html << (run.ref.id == best_run ? "<tr class=\"best\">" : "<tr>");
        html << "<td class=\"number\">" << run.ref.id << "</td><td>" << escape_html(run.ref.name) << "</td>";
        html << "<td class=\"status-" << escape_html(run.ref.status) << "\">" << escape_html(run.ref.status) << "</td>";
        html << "<td class=\"number\">" << (run.wall_s ? escape_html(format_duration(*run.wall_s)) : "-") << "</td>";
        for (const std::string& key : keys) {
            const auto found = run.params.find(key);
            html << "<td>" << (found == run.params.end() ? "-" : escape_html(found->second)) << "</td>";
        }
        for (const std::string& name : metrics) {
            const auto found = run.metrics.find(name);
            const bool present = found != run.metrics.end();
            html << number_cell(present && !std::isnan(found->second.last) ? std::optional(found->second.last)
                                                                           : std::nullopt);
            if (name != "train/loss") html << number_cell(present ? found->second.best : std::nullopt);
        }
        html << "</tr>\n";
    }
    html << "</table>\n";
    if (keys.empty() && runs.size() > 1) html << "<p class=\"note\">The runs have the same parameters.</p>\n";
    if (best_run >= 0) html << "<p class=\"note\">Highlighted: the run with the lowest val/loss.</p>\n";
}

void write_chart_section(std::ostream& html, const Database& database, const std::vector<ReportRun>& runs,
                         const std::string& metric) {
    html << "<h3>" << escape_html(metric) << "</h3>\n";
    Chart chart;
    chart.title = metric;
    chart.x_label = "step";
    chart.y_label = metric;
    // Every chart of the report names a run alike: by what differs among all the report's runs.
    std::vector<RunRef> refs;
    std::vector<std::map<std::string, std::string>> params;
    for (const ReportRun& run : runs) {
        refs.push_back(run.ref);
        params.push_back(run.params);
    }
    const std::vector<std::string> labels = run_labels(refs, params);
    for (size_t r = 0; r < runs.size(); ++r) {
        const ReportRun& run = runs[r];
        const std::vector<SeriesPoint> points = metric_series(database, run.ref.id, metric);
        if (points.empty()) continue;
        Series series;
        series.label = labels[r];
        for (const SeriesPoint& point : points) {
            series.x.push_back(static_cast<double>(point.step));
            series.y.push_back(point.value);
        }
        chart.series.push_back(std::move(series));
    }
    if (chart.series.empty()) {
        html << "<p class=\"note\">No run logged " << escape_html(metric) << ".</p>\n";
        return;
    }
    // An XML prolog or doctype in front of <svg> is not allowed inside an HTML body.
    const std::string svg = render_svg(chart);
    const size_t start = svg.find("<svg");
    html << "<div class=\"chart\">\n" << (start == std::string::npos ? svg : svg.substr(start)) << "\n</div>\n";
}

void write_samples(std::ostream& html, const std::vector<ReportRun>& runs) {
    bool any = false;
    for (const ReportRun& run : runs) {
        for (const TextSample& text : run.texts) {
            any = true;
            html << "<h3>run " << run.ref.id << " " << escape_html(run.ref.name) << ": " << escape_html(text.name)
                 << " at step " << text.step << "</h3>\n<pre>" << escape_html(text.text) << "</pre>\n";
        }
    }
    if (!any) html << "<p class=\"note\">No run recorded text samples.</p>\n";
}

void write_provenance(std::ostream& html, const std::vector<ReportRun>& runs) {
    std::vector<std::string> columns;
    for (const std::string& column : kProvenance) {
        const bool any = std::any_of(runs.begin(), runs.end(),
                                     [&](const ReportRun& run) { return run.provenance.count(column) > 0; });
        if (any) columns.push_back(column);
    }
    html << "<table>\n<tr><th>id</th><th>name</th>";
    for (const std::string& column : columns) html << "<th>" << escape_html(column) << "</th>";
    html << "</tr>\n";
    for (const ReportRun& run : runs) {
        html << "<tr><td class=\"number\">" << run.ref.id << "</td><td>" << escape_html(run.ref.name) << "</td>";
        for (const std::string& column : columns) {
            const auto found = run.provenance.find(column);
            html << "<td><code>" << (found == run.provenance.end() ? "-" : escape_html(found->second))
                 << "</code></td>";
        }
        html << "</tr>\n";
    }
    html << "</table>\n";

    // Plugins: one row per distinct build of a plugin, with the runs that used it, so that a
    // change of plugin code within a sweep stands out.
    // The SDK ABI tag is "-" for rows recorded before schema version 5.
    std::map<std::tuple<std::string, std::string, std::string, std::string, std::string, std::string>,
             std::vector<int64_t>>
        uses;
    for (const ReportRun& run : runs) {
        for (const PluginRow& plugin : run.plugins) {
            uses[{plugin.kind, plugin.name, plugin.version, plugin.file, plugin.sha256, plugin.abi.value_or("-")}]
                .push_back(run.ref.id);
        }
    }
    if (uses.empty()) {
        html << "<p class=\"note\">No plugins recorded.</p>\n";
        return;
    }
    html << "<h3>plugins</h3>\n<table>\n<tr><th>kind</th><th>name</th><th>version</th><th>file</th><th>sha256</th>"
            "<th>abi</th><th>runs</th></tr>\n";
    for (const auto& [plugin, run_ids] : uses) {
        const auto& [kind, name, version, file, sha256, abi] = plugin;
        std::string ids;
        for (int64_t id : run_ids) ids += (ids.empty() ? "" : ", ") + std::to_string(id);
        html << "<tr><td>" << escape_html(kind) << "</td><td>" << escape_html(name) << "</td><td>"
             << escape_html(version) << "</td><td><code>" << escape_html(file) << "</code></td><td><code>"
             << escape_html(sha256.substr(0, 12)) << "</code></td><td><code>" << escape_html(abi)
             << "</code></td><td>" << (run_ids.size() == runs.size() ? std::string("all") : ids) << "</td></tr>\n";
    }
    html << "</table>\n";
}

void write_errors(std::ostream& html, const std::vector<ReportRun>& runs) {
    bool any = false;
    for (const ReportRun& run : runs) {
        if (run.error.empty()) continue;
        if (!any) html << "<h2>Errors</h2>\n";
        any = true;
        html << "<h3>run " << run.ref.id << " " << escape_html(run.ref.name) << " (" << escape_html(run.ref.status)
             << ")</h3>\n<pre>" << escape_html(run.error) << "</pre>\n";
    }
}

}  // namespace

int command_report(const std::vector<std::string>& args, const GlobalOptions& global) {
    po::options_description options("report options");
    options.add_options()("output,o", po::value<std::string>(), "the HTML file to write");
    po::options_description hidden;
    hidden.add_options()("target", po::value<std::string>(), "sweep id or experiment name");
    po::positional_options_description positional;
    positional.add("target", 1);
    const CommandLine command_line = parse_command_line(kUsage, options, hidden, positional, args, global);
    if (command_line.help) return kExitOk;
    if (!command_line.values.count("target")) {
        throw UsageError("report needs a sweep id or an experiment name; hint: `labdb runs` lists them");
    }
    if (!command_line.values.count("output")) throw UsageError("report needs -o FILE.html");
    const std::string target = command_line.values["target"].as<std::string>();

    const Database database(command_line.db, Database::Mode::read_only);
    const auto [title, refs] = select_runs(database, target);
    std::vector<ReportRun> runs;
    for (const RunRef& ref : refs) runs.push_back(read_report_run(database, ref));
    std::map<std::string, int> statuses;
    for (const ReportRun& run : runs) ++statuses[run.ref.status];
    std::string status_text;
    for (const auto& [status, count] : statuses) {
        status_text += (status_text.empty() ? "" : ", ") + std::to_string(count) + " " + status;
    }

    const std::filesystem::path output = command_line.values["output"].as<std::string>();
    write_file_atomically(output, [&](std::ostream& html) {
        html << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>labdb report: "
             << escape_html(title) << "</title>\n<style>" << kStyle << "</style>\n</head>\n<body>\n";
        html << "<h1>" << escape_html(title) << "</h1>\n<p class=\"subtitle\">" << runs.size() << " run"
             << (runs.size() == 1 ? "" : "s") << " (" << escape_html(status_text) << ") from <code>"
             << escape_html(database.file().string()) << "</code>, report written " << escape_html(lab::utc_now_iso())
             << "</p>\n";
        html << "<h2>Runs</h2>\n";
        write_runs_table(html, runs);
        html << "<h2>Learning curves</h2>\n";
        write_chart_section(html, database, runs, "val/loss");
        write_chart_section(html, database, runs, "train/loss");
        html << "<h2>Samples</h2>\n";
        write_samples(html, runs);
        write_errors(html, runs);
        html << "<h2>Provenance</h2>\n";
        write_provenance(html, runs);
        html << "</body>\n</html>\n";
    });
    std::cout << "wrote " << output.string() << " (" << runs.size() << " runs of " << title << ")\n";
    return kExitOk;
}

}  // namespace labdb
