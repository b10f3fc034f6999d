// labdb export: metric rows in long format for spreadsheets and scripts.
#include <cmath>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "output_file.h"
#include "run_lookup.h"
#include "text_table.h"

namespace labdb {
namespace {

const char* kUsage =
    "usage: labdb export [RUN...] --format csv|json [-o FILE]\n"
    "\n"
    "Writes every metric row of the runs named (all runs when none is named) in long format:\n"
    "run_id, run_name, step, name, value, time (seconds since the run started), ordered by run,\n"
    "metric name and step. A NaN value is an empty CSV field and a JSON null. CSV fields are quoted\n"
    "per RFC 4180 (a field with a comma, a double quote or a line break is enclosed in double quotes,\n"
    "its quotes doubled); lines end with \\n. JSON is one array of objects. Numbers are written with\n"
    "all the digits needed to read back the stored double. Output goes to stdout unless -o is given.";

std::string csv_field(const std::string& text) {
    if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
    std::string quoted = "\"";
    for (char c : text) {
        if (c == '"') quoted += '"';
        quoted += c;
    }
    return quoted + "\"";
}

// Streams rows rather than building one document: an export of a long study can be large.
class RowWriter {
 public:
    RowWriter(std::ostream& out, bool csv) : out_(out), csv_(csv) {
        if (csv_) {
            out_ << "run_id,run_name,step,name,value,time\n";
        } else {
            out_ << "[";
        }
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
        out_ << (rows_ == 0 ? "\n  " : ",\n  ")
             << object.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
        ++rows_;
    }
    void finish() {
        if (!csv_) out_ << (rows_ == 0 ? "]\n" : "\n]\n");
    }

 private:
    std::ostream& out_;
    bool csv_;
    int64_t rows_ = 0;
};

}  // namespace

int command_export(const std::vector<std::string>& args, const GlobalOptions& global) {
    po::options_description options("export options");
    options.add_options()
        ("format", po::value<std::string>(), "csv or json")
        ("output,o", po::value<std::string>(), "output file (default: stdout)");
    po::options_description hidden;
    hidden.add_options()("run", po::value<std::vector<std::string>>(), "runs");
    po::positional_options_description positional;
    positional.add("run", -1);
    const CommandLine command_line = parse_command_line(kUsage, options, hidden, positional, args, global);
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

    const std::string select =
        "SELECT m.run_id, r.name, m.step, m.name, m.value, m.time FROM metrics AS m JOIN runs AS r ON r.id = m.run_id";
    auto write_rows = [&](std::ostream& out) {
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
