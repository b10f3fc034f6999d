// labdb export: metric rows in long format (one row per logged value) or, with --wide, one row per
// (run, step) with the run's parameters and every metric as columns, for spreadsheets and pandas.
#include <algorithm>
#include <cmath>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "cli.h"
#include "lab/error.h"
#include "output_file.h"
#include "run_data.h"
#include "run_lookup.h"
#include "text_table.h"

namespace labdb {
namespace {

const char* kUsage =
    "usage: labdb export [RUN...] --format csv|json [--wide] [-o FILE]\n"
    "\n"
    "Writes every metric row of the runs named (all runs when none is named) in long format:\n"
    "run_id, run_name, step, name, value, time (seconds since the run started), ordered by run,\n"
    "metric name and step. Long is the default because it holds every logged row as it is and its\n"
    "columns never change with the runs exported.\n"
    "\n"
    "--wide writes one row per (run, step) instead, ordered by run and step: run_id, run_name, one\n"
    "column param.KEY per parameter of any exported run (sorted by key; empty/null where a run lacks\n"
    "it), step, time (the latest time logged at that step), then one column per metric name (sorted),\n"
    "empty/null where the run logged no value of it at that step (where a step was logged twice, the\n"
    "row written last). `pandas.read_csv(file)` gives the table with numeric columns as numbers, ready\n"
    "for groupby over param.* columns; JSON parameter values are strings, as stored.\n"
    "\n"
    "A NaN value is an empty CSV field and a JSON null. CSV fields are quoted per RFC 4180 (a field\n"
    "with a comma, a double quote or a line break is enclosed in double quotes, its quotes doubled);\n"
    "lines end with \\n. JSON is one array of objects. Numbers are written with all the digits needed\n"
    "to read back the stored double. Output goes to stdout unless -o is given.";

constexpr const char* kParamPrefix = "param.";

std::string csv_field(const std::string& text) {
    if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
    std::string quoted = "\"";
    for (char c : text) {
        if (c == '"') quoted += '"';
        quoted += c;
    }
    return quoted + "\"";
}

// The frame both exports stream their rows in (rather than building one document: an export of a
// long study can be large): CSV's header line, or a JSON array of objects, one a line.
class TableStream {
 public:
    TableStream(std::ostream& out, bool csv) : out_(out), csv_(csv) {}
    void begin(const std::vector<std::string>& columns) {
        if (!csv_) {
            out_ << "[";
            return;
        }
        for (size_t c = 0; c < columns.size(); ++c) out_ << (c ? "," : "") << csv_field(columns[c]);
        out_ << '\n';
    }
    void json_row(const nlohmann::ordered_json& object) {
        out_ << (rows_ == 0 ? "\n  " : ",\n  ")
             << object.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
        ++rows_;
    }
    void finish() {
        if (!csv_) out_ << (rows_ == 0 ? "]\n" : "\n]\n");
    }

 protected:
    std::ostream& out_;
    bool csv_;

 private:
    int64_t rows_ = 0;
};

// The long format: one row per metric value.
class RowWriter : public TableStream {
 public:
    RowWriter(std::ostream& out, bool csv) : TableStream(out, csv) {
        begin({"run_id", "run_name", "step", "name", "value", "time"});
    }
    void write(const Statement& row) {
        const int64_t run_id = row.column_int(0), step = row.column_int(2);
        const std::string run_name = row.column_text(1), name = row.column_text(3);
        const double value = row.column_double(4), time_s = row.column_double(5);
        if (csv_) {
            out_ << run_id << ',' << csv_field(run_name) << ',' << step << ',' << csv_field(name) << ','
                 << (std::isnan(value) ? std::string() : format_exact(value)) << ',' << format_exact(time_s) << '\n';
            return;
        }
        // Ordered, so that the keys read in the same order as the CSV columns.
        const nlohmann::ordered_json object = {
            {"run_id", run_id}, {"run_name", run_name}, {"step", step}, {"name", name},
            {"value", std::isnan(value) ? nlohmann::ordered_json() : nlohmann::ordered_json(value)}, {"time", time_s}};
        json_row(object);
    }
};

// The wide table: columns fixed before the first row, rows streamed run by run.
class WideWriter : public TableStream {
 public:
    WideWriter(std::ostream& out, bool csv, std::vector<std::string> param_keys, std::vector<std::string> metrics)
        : TableStream(out, csv), param_keys_(std::move(param_keys)), metrics_(std::move(metrics)) {
        columns_ = {"run_id", "run_name"};
        for (const std::string& key : param_keys_) columns_.push_back(kParamPrefix + key);
        columns_.push_back("step");
        columns_.push_back("time");
        const std::set<std::string> fixed(columns_.begin(), columns_.end());
        for (const std::string& metric : metrics_) {
            if (fixed.count(metric))
                throw lab::DataError("export --wide: the metric '" + metric + "' has the name of another column; " +
                                     "hint: export it in the long format (without --wide)");
            columns_.push_back(metric);
        }
        begin(columns_);
    }

    // One row: the run, its parameters, the step and its time, and a value (NaN: none) per metric.
    void write(const RunRef& run, const std::map<std::string, std::string>& params, int64_t step, double time_s,
               const std::vector<double>& values) {
        if (csv_) {
            out_ << run.id << ',' << csv_field(run.name);
            for (const std::string& key : param_keys_) {
                const auto found = params.find(key);
                out_ << ',' << (found == params.end() ? std::string() : csv_field(found->second));
            }
            out_ << ',' << step << ',' << format_exact(time_s);
            for (double value : values) out_ << ',' << (std::isnan(value) ? std::string() : format_exact(value));
            out_ << '\n';
            return;
        }
        nlohmann::ordered_json object = {{"run_id", run.id}, {"run_name", run.name}};
        for (const std::string& key : param_keys_) {
            const auto found = params.find(key);
            object[kParamPrefix + key] = found == params.end() ? nlohmann::ordered_json() : nlohmann::ordered_json(found->second);
        }
        object["step"] = step;
        object["time"] = time_s;
        for (size_t m = 0; m < metrics_.size(); ++m)
            object[metrics_[m]] = std::isnan(values[m]) ? nlohmann::ordered_json() : nlohmann::ordered_json(values[m]);
        json_row(object);
    }

 private:
    std::vector<std::string> param_keys_, metrics_, columns_;
};

void write_wide(std::ostream& out, const Database& database, const std::vector<RunRef>& runs, bool csv) {
    std::vector<std::map<std::string, std::string>> params;
    std::set<std::string> keys, metrics;
    Statement names(database, "SELECT DISTINCT name FROM metrics WHERE run_id = ?1", "list the metrics of a run");
    for (const RunRef& run : runs) {
        const auto pairs = run_params(database, run.id);
        params.emplace_back(pairs.begin(), pairs.end());
        for (const auto& [key, value] : pairs) keys.insert(key);
        names.reset();
        names.bind(1, run.id);
        while (names.step()) metrics.insert(names.column_text(0));
    }
    const std::vector<std::string> metric_columns(metrics.begin(), metrics.end());
    std::map<std::string, size_t> metric_index;
    for (size_t m = 0; m < metric_columns.size(); ++m) metric_index[metric_columns[m]] = m;
    WideWriter writer(out, csv, {keys.begin(), keys.end()}, metric_columns);

    Statement rows(database, "SELECT step, name, value, time FROM metrics WHERE run_id = ?1 ORDER BY step, rowid",
                   "export the metrics of a run");
    for (size_t r = 0; r < runs.size(); ++r) {
        rows.reset();
        rows.bind(1, runs[r].id);
        std::optional<int64_t> step;
        double time_s = 0;
        std::vector<double> values(metric_columns.size(), NAN);
        const auto flush = [&] {
            if (step) writer.write(runs[r], params[r], *step, time_s, values);
            std::fill(values.begin(), values.end(), NAN);
        };
        while (rows.step()) {
            const int64_t row_step = rows.column_int(0);
            if (step != row_step) {
                flush();
                step = row_step;
                time_s = rows.column_double(3);
            }
            values[metric_index.at(rows.column_text(1))] = rows.column_double(2);
            time_s = std::max(time_s, rows.column_double(3));
        }
        flush();
    }
    writer.finish();
}

}  // namespace

int command_export(const std::vector<std::string>& args, const GlobalOptions& global) {
    po::options_description options("export options");
    options.add_options()
        ("format", po::value<std::string>(), "csv or json")
        ("wide", po::bool_switch(), "one row per (run, step): param.KEY columns and a column per metric")
        ("output,o", po::value<std::string>(), "output file (default: stdout)");
    const CommandLine command_line = parse_runs_command_line(kUsage, options, args, global);
    if (command_line.help) return kExitOk;
    const po::variables_map& values = command_line.values;
    if (!values.count("format")) throw UsageError("export needs --format csv or --format json");
    const std::string format = values["format"].as<std::string>();
    if (format != "csv" && format != "json") {
        throw UsageError("--format '" + format + "' is neither csv nor json; hint: --format csv or --format json");
    }

    const Database database(command_line.db, Database::Mode::read_only);
    // Resolved before any output so that a bad run name leaves no partial file.
    std::vector<RunRef> runs;
    if (values.count("run")) runs = resolve_runs(database, values["run"].as<std::vector<std::string>>());
    const bool wide = values["wide"].as<bool>();
    if (wide && runs.empty()) runs = all_runs(database);

    const std::string select =
        "SELECT m.run_id, r.name, m.step, m.name, m.value, m.time FROM metrics AS m JOIN runs AS r ON r.id = m.run_id";
    auto write_rows = [&](std::ostream& out) {
        if (wide) {
            write_wide(out, database, runs, format == "csv");
            return;
        }
        RowWriter writer(out, format == "csv");
        if (runs.empty()) {
            Statement query(database, select + " ORDER BY m.run_id, m.name, m.step, m.rowid", "export the metrics");
            while (query.step()) writer.write(query);
        } else {
            Statement query(database, select + " WHERE m.run_id = ?1 ORDER BY m.name, m.step, m.rowid",
                            "export the metrics of a run");
            for (const RunRef& run : runs) {
                query.reset();
                query.bind(1, run.id);
                while (query.step()) writer.write(query);
            }
        }
        writer.finish();
    };
    if (values.count("output")) {
        write_file_atomically(values["output"].as<std::string>(), write_rows);
    } else {
        write_rows(std::cout);
        std::cout.flush();
        if (!std::cout) throw lab::Error("export: writing to stdout failed; hint: check the pipe or the disk");
    }
    return kExitOk;
}

}  // namespace labdb
