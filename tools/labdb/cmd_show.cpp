// labdb show: everything recorded about one run.
#include <algorithm>
#include <cmath>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli.h"
#include "command_json.h"
#include "run_data.h"
#include "run_lookup.h"
#include "text_table.h"

namespace labdb {
namespace {

const char* kUsage =
    "usage: labdb show RUN [--json]\n"
    "\n"
    "Prints everything recorded about one run: every column of its runs row, its parameters, the\n"
    "plugins that produced it (kind, name, version, file, sha256, abi: the SDK ABI tag it was built\n"
    "with, - for runs recorded before schema version 5), the last and the best value of\n"
    "each metric with their steps, its artifacts and the last text sample of each name.\n"
    "RUN is a numeric id, a unique uid prefix (4 or more hex digits) or a run name.\n"
    "The status of a run left \"running\" by a process that is gone shows as \"dead\" (as in\n"
    "`labdb runs`); the next labrun that opens the database records it \"interrupted\".\n"
    "world_size (data-parallel ranks) and communicator (\"mpi\", \"nccl\"; - for one process) follow\n"
    "threads; a run recorded before schema version 4 has world_size 1, as labrun then trained in one\n"
    "process.\n"
    "--json prints one JSON object with the same content.";

nlohmann::json optional_number(const std::optional<double>& value) {
    return value ? nlohmann::json(*value) : nlohmann::json();
}

// The runs row as (column, value) pairs in schema order: every column the file has, so the
// columns of newer schema versions show too.
std::vector<std::pair<std::string, nlohmann::json>> runs_row(const Database& database, int64_t run) {
    Statement query(database, "SELECT * FROM runs WHERE id = ?1", "read a run");
    query.bind(1, run);
    std::vector<std::pair<std::string, nlohmann::json>> row;
    if (!query.step()) return row;
    for (int column = 0; column < query.column_count(); ++column) {
        nlohmann::json value;
        switch (query.column_type(column)) {
            case SQLITE_NULL: break;
            case SQLITE_INTEGER: value = query.column_int(column); break;
            case SQLITE_FLOAT: value = query.column_double(column); break;
            default: value = query.column_text(column); break;
        }
        row.emplace_back(query.column_name(column), std::move(value));
    }
    return row;
}

// runs_row as labdb shows it: the state (run_state), not the stored status (a dead run is
// "running" in the file); world_size 1 where it is NULL (kWorldSizeBeforeVersion4); world_size and
// communicator, appended by migration 4, moved next to threads, the other facts about how the run
// was computed.
std::vector<std::pair<std::string, nlohmann::json>> run_columns(const Database& database, const RunRef& run) {
    std::vector<std::pair<std::string, nlohmann::json>> row = runs_row(database, run.id);
    for (auto& [name, value] : row) {
        if (name == "status") value = run.status;
        if (name == "world_size" && value.is_null()) value = kWorldSizeBeforeVersion4;
    }
    const auto named = [&](const std::string& name) {
        return std::find_if(row.begin(), row.end(), [&](const auto& column) { return column.first == name; });
    };
    for (const char* moved : {"communicator", "world_size"}) {
        const auto threads = named("threads");
        const auto column = named(moved);
        if (threads == row.end() || column == row.end() || column < threads) continue;
        std::rotate(threads + 1, column, column + 1);
    }
    return row;
}

std::string cell(const nlohmann::json& value) {
    if (value.is_null()) return "-";
    if (value.is_string()) return value.get<std::string>();
    if (value.is_number_float()) return format_exact(value.get<double>());
    return json_text(value, -1);
}

}  // namespace

nlohmann::json show_json(const Database& database, const RunRef& run) {
    nlohmann::json shown;
    shown["run"] = nlohmann::json::object();
    for (const auto& [name, value] : run_columns(database, run)) shown["run"][name] = value;
    shown["params"] = nlohmann::json::object();
    for (const auto& [key, value] : run_params(database, run.id)) shown["params"][key] = value;
    shown["plugins"] = nlohmann::json::array();
    for (const PluginRow& plugin : run_plugins(database, run.id)) {
        shown["plugins"].push_back({{"kind", plugin.kind}, {"name", plugin.name}, {"version", plugin.version},
                                    {"file", plugin.file}, {"sha256", plugin.sha256},
                                    {"abi", plugin.abi ? nlohmann::json(*plugin.abi) : nlohmann::json()}});
    }
    shown["metrics"] = nlohmann::json::array();
    for (const MetricSummary& metric : metric_summaries(database, run.id)) {
        shown["metrics"].push_back({{"name", metric.name},
                                    {"count", metric.count},
                                    {"last", optional_number(std::isnan(metric.last) ? std::nullopt
                                                                                     : std::optional(metric.last))},
                                    {"last_step", metric.last_step},
                                    {"best", optional_number(metric.best)},
                                    {"best_step", metric.best ? nlohmann::json(metric.best_step) : nlohmann::json()},
                                    {"goal", lab::metric_goal_name(metric.goal)}});
    }
    shown["artifacts"] = nlohmann::json::array();
    for (const auto& [kind, path] : run_artifacts(database, run.id)) {
        shown["artifacts"].push_back({{"kind", kind}, {"path", path}});
    }
    shown["texts"] = nlohmann::json::array();
    for (const TextSample& text : last_texts(database, run.id)) {
        shown["texts"].push_back({{"name", text.name}, {"step", text.step}, {"text", text.text}});
    }
    return shown;
}

int command_show(const std::vector<std::string>& args, const GlobalOptions& global) {
    po::options_description options("show options");
    options.add_options()("json", po::bool_switch(), "print a JSON object instead of text");
    po::options_description hidden;
    hidden.add_options()("run", po::value<std::string>(), "the run");
    po::positional_options_description positional;
    positional.add("run", 1);
    const CommandLine command_line = parse_command_line(kUsage, options, hidden, positional, args, global);
    if (command_line.help) return kExitOk;
    if (!command_line.values.count("run")) {
        throw UsageError("show needs the run to show\n" + std::string(kUsage).substr(0, std::string(kUsage).find('\n')) +
                         "\nhint: `labdb runs` lists the runs");
    }
    const Database database(command_line.db, Database::Mode::read_only);
    const RunRef run = resolve_run(database, command_line.values["run"].as<std::string>());

    const nlohmann::json shown = show_json(database, run);
    if (command_line.values["json"].as<bool>()) {
        std::cout << json_text(shown) << "\n";
        return kExitOk;
    }

    std::ostream& out = std::cout;
    out << "run " << describe_run(run) << "\n";
    // The columns in schema order (a JSON object orders them by name). The resolved configuration
    // is long and repeats the params; it comes last.
    const std::vector<std::pair<std::string, nlohmann::json>> row = run_columns(database, run);
    size_t name_width = 0;
    for (const auto& [name, value] : row) name_width = std::max(name_width, name.size());
    for (const auto& [name, value] : row) {
        if (name == "config") continue;
        out << "  " << name << std::string(name_width - name.size(), ' ') << "  " << one_line(cell(value)) << "\n";
    }

    out << "\nparams\n";
    size_t key_width = 0;
    for (const auto& [key, value] : shown["params"].items()) key_width = std::max(key_width, key.size());
    for (const auto& [key, value] : shown["params"].items()) {
        out << "  " << key << std::string(key_width - key.size(), ' ') << " = " << value.get<std::string>() << "\n";
    }
    if (shown["params"].empty()) out << "  (none)\n";

    out << "\nplugins\n";
    TextTable plugins({"kind", "name", "version", "file", "sha256", "abi"});
    for (const nlohmann::json& plugin : shown["plugins"]) {
        plugins.add_row({plugin["kind"], plugin["name"], plugin["version"], plugin["file"],
                         plugin["sha256"].get<std::string>().substr(0, 12),
                         plugin["abi"].is_null() ? std::string("-") : plugin["abi"].get<std::string>()});
    }
    if (plugins.empty()) {
        out << "  (none)\n";
    } else {
        plugins.print(out, "  ");
    }

    out << "\nmetrics\n";
    TextTable metrics({"name", "rows", "last", "at step", "best", "at step"});
    for (size_t column : {1, 2, 3, 4, 5}) metrics.align_right(column);
    for (const nlohmann::json& metric : shown["metrics"]) {
        metrics.add_row({metric["name"].get<std::string>() + (metric["goal"] == "max" ? " (max)" : ""),
                         std::to_string(metric["count"].get<int64_t>()),
                         metric["last"].is_null() ? "nan" : format_number(metric["last"].get<double>()),
                         std::to_string(metric["last_step"].get<int64_t>()),
                         metric["best"].is_null() ? "-" : format_number(metric["best"].get<double>()),
                         metric["best_step"].is_null() ? "-" : std::to_string(metric["best_step"].get<int64_t>())});
    }
    if (metrics.empty()) {
        out << "  (none)\n";
    } else {
        metrics.print(out, "  ");
    }

    out << "\nartifacts\n";
    for (const nlohmann::json& artifact : shown["artifacts"]) {
        out << "  " << artifact["kind"].get<std::string>() << "  " << artifact["path"].get<std::string>() << "\n";
    }
    if (shown["artifacts"].empty()) out << "  (none)\n";

    out << "\ntexts (the last of each name)\n";
    for (const nlohmann::json& text : shown["texts"]) {
        out << "  " << text["name"].get<std::string>() << " at step " << text["step"].get<int64_t>() << ":\n";
        std::istringstream lines(text["text"].get<std::string>());
        for (std::string line; std::getline(lines, line);) out << "    " << line << "\n";
    }
    if (shown["texts"].empty()) out << "  (none)\n";

    const nlohmann::json& config = shown["run"]["config"];
    if (config.is_string()) {
        out << "\nconfig\n";
        std::istringstream lines(config.get<std::string>());
        for (std::string line; std::getline(lines, line);) out << "  " << line << "\n";
    }
    return kExitOk;
}

}  // namespace labdb
