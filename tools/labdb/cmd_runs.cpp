// labdb runs: one line per run, filtered by experiment, status and parameter values.
#include <algorithm>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "command_json.h"
#include "run_data.h"
#include "run_labels.h"
#include "run_lookup.h"
#include "text_table.h"

namespace labdb {
namespace {

const char* kUsage =
    "usage: labdb runs [--experiment NAME] [--status S] [--sweep ID] [--where key=value ...] [--limit N] [--json]\n"
    "\n"
    "Lists the runs of the database, oldest first: id, uid, name, status, start time, wall time,\n"
    "the last step logged, the last and the best (lowest) val/loss, the sweep the run belongs to and\n"
    "what that sweep varied (swept: the parameters whose values differ among the sweep's runs, with\n"
    "this run's values, e.g. attention.type=sigmoid experiment.seed=2).\n"
    "--where key=value keeps the runs whose parameter `key` (as in `labdb show`, e.g. model.layers)\n"
    "equals `value` exactly; several --where are all required. --sweep ID keeps the runs of one sweep.\n"
    "--limit N keeps the N newest runs.\n"
    "A run left \"running\" by a process that is gone (its pid on this host no longer exists, or no\n"
    "heartbeat for longer than the lease) shows as \"dead\"; the next labrun that opens the database\n"
    "records it \"interrupted\".";

// A key no run has is almost always a typo; say so instead of silently listing nothing.
void warn_unknown_key(const Database& database, const std::string& key) {
    {
        Statement query(database, "SELECT 1 FROM params WHERE key = ?1 LIMIT 1", "look up a parameter key");
        query.bind(1, key);
        if (query.step()) return;
    }
    Statement query(database, "SELECT DISTINCT key FROM params ORDER BY key", "list the parameter keys");
    std::vector<std::string> keys;
    while (query.step()) keys.push_back(query.column_text(0));
    const std::vector<std::string> near = closest_matches(key, keys, 3, true);
    std::cerr << "labdb: warning: no run has the parameter '" << key << "'";
    if (!near.empty()) {
        std::cerr << "; did you mean";
        for (size_t i = 0; i < near.size(); ++i) std::cerr << (i == 0 ? " '" : ", '") << near[i] << "'";
        std::cerr << "?";
    }
    std::cerr << "\n";
}

}  // namespace

std::pair<std::string, std::string> parse_where(const std::string& text) {
    const size_t equals = text.find('=');
    if (equals == std::string::npos || equals == 0) {
        throw UsageError("--where '" + text + "' is not of the form key=value; hint: name a parameter as " +
                         "`labdb show RUN` lists it, e.g. --where model.layers=4");
    }
    return {text.substr(0, equals), text.substr(equals + 1)};
}

nlohmann::json runs_json(const Database& database, const RunFilter& filter) {
    if (filter.status) {
        static const std::vector<std::string> kStatuses = {"running", "finished", "failed", "interrupted", kDeadStatus};
        if (std::find(kStatuses.begin(), kStatuses.end(), *filter.status) == kStatuses.end()) {
            throw UsageError("--status '" + *filter.status + "' is not a run status; hint: use running, finished, " +
                             "failed, interrupted or dead");
        }
    }
    if (filter.limit && *filter.limit < 1) {
        throw UsageError("--limit must be at least 1; hint: leave it out to list every run");
    }
    // A file of schema version 1 records no sweeps, so no run of it belongs to the one asked for.
    const bool has_sweep = database.has_column("runs", "sweep");
    if (filter.sweep && !has_sweep) return nlohmann::json::array();

    // Only fixed clauses and ?N placeholders are put together here; every value is bound below.
    std::string sql =
        "SELECT r.id, r.uid, r.name, r.experiment, r.started_at, r.wall_s,"
        " (SELECT MAX(m.step) FROM metrics AS m WHERE m.run_id = r.id),"
        " (SELECT m.value FROM metrics AS m WHERE m.run_id = r.id AND m.name = 'val/loss'"
        "  ORDER BY m.step DESC, m.rowid DESC LIMIT 1),"
        " (SELECT MIN(m.value) FROM metrics AS m WHERE m.run_id = r.id AND m.name = 'val/loss'),";
    sql += has_sweep ? " r.sweep, " : " NULL, ";
    sql += run_state_columns(database);
    sql += " FROM runs AS r WHERE 1 = 1";
    int next_parameter = 1;
    auto placeholder = [&] {
        std::string text = "?";
        text += std::to_string(next_parameter++);
        return text;
    };
    if (filter.experiment) sql += " AND r.experiment = " + placeholder();
    // A dead run is "running" in the file; run_state() tells the two apart below.
    if (filter.status) sql += " AND r.status = " + placeholder();
    if (filter.sweep) sql += " AND r.sweep = " + placeholder();
    for (size_t i = 0; i < filter.where.size(); ++i) {
        const std::string key = placeholder(), value = placeholder();
        sql += " AND EXISTS (SELECT 1 FROM params AS p WHERE p.run_id = r.id AND p.key = " + key +
               " AND p.value = " + value + ")";
    }
    sql += " ORDER BY r.id DESC";

    Statement query(database, sql, "list the runs");
    int parameter = 1;
    if (filter.experiment) query.bind(parameter++, *filter.experiment);
    if (filter.status) query.bind(parameter++, *filter.status == kDeadStatus ? "running" : *filter.status);
    if (filter.sweep) query.bind(parameter++, *filter.sweep);
    for (const auto& [key, value] : filter.where) {
        query.bind(parameter++, key);
        query.bind(parameter++, value);
    }

    // --limit counts the runs left after the status filter, so it is applied here and not in SQL.
    nlohmann::json rows = nlohmann::json::array();
    while ((!filter.limit || static_cast<int64_t>(rows.size()) < *filter.limit) && query.step()) {
        const std::string status = run_state(query, 10);
        if (filter.status && status != *filter.status) continue;
        nlohmann::json row;
        row["id"] = query.column_int(0);
        row["uid"] = query.column_text(1);
        row["name"] = query.column_text(2);
        row["experiment"] = query.column_text(3);
        row["status"] = status;
        row["started_at"] = query.column_text(4);
        row["wall_s"] = query.is_null(5) ? nlohmann::json() : nlohmann::json(query.column_double(5));
        row["steps"] = query.is_null(6) ? nlohmann::json() : nlohmann::json(query.column_int(6));
        row["last_val_loss"] = query.is_null(7) ? nlohmann::json() : nlohmann::json(query.column_double(7));
        row["best_val_loss"] = query.is_null(8) ? nlohmann::json() : nlohmann::json(query.column_double(8));
        row["sweep"] = query.is_null(9) ? nlohmann::json() : nlohmann::json(query.column_text(9));
        rows.push_back(std::move(row));
    }
    // Newest first was only for --limit; list in the order the runs were made.
    std::reverse(rows.begin(), rows.end());

    // What a sweep varied, per run of it: the parameters that tell its runs apart (label_keys over
    // every run of the sweep in the file, not only the ones listed), e.g.
    // "attention.type=sigmoid experiment.seed=2"; null for a run outside a sweep.
    std::map<std::string, std::vector<std::string>> swept_keys;
    std::map<int64_t, std::map<std::string, std::string>> member_params;  // every run of those sweeps
    for (nlohmann::json& row : rows) {
        row["swept"] = nlohmann::json();
        if (row["sweep"].is_null()) continue;
        const std::string sweep = row["sweep"].get<std::string>();
        if (!swept_keys.count(sweep)) {
            Statement members(database, "SELECT id FROM runs WHERE sweep = ?1 ORDER BY id", "list the runs of a sweep");
            members.bind(1, sweep);
            std::vector<std::map<std::string, std::string>> params_per_run;
            while (members.step()) {
                const int64_t member = members.column_int(0);
                const auto params = run_params(database, member);
                member_params[member] = {params.begin(), params.end()};
                params_per_run.push_back(member_params[member]);
            }
            swept_keys[sweep] = label_keys(params_per_run);
        }
        const std::string swept = param_assignments(swept_keys[sweep], member_params[row["id"].get<int64_t>()]);
        if (!swept.empty()) row["swept"] = swept;
    }
    return rows;
}

int command_runs(const std::vector<std::string>& args, const GlobalOptions& global) {
    po::options_description options("runs options");
    options.add_options()
        ("experiment", po::value<std::string>(), "only runs of this experiment")
        ("status", po::value<std::string>(), "only runs with this status: running, finished, failed, interrupted, dead")
        ("sweep", po::value<std::string>(), "only runs of this sweep (id)")
        ("where", po::value<std::vector<std::string>>()->composing(), "key=value: only runs with this parameter value")
        ("limit", po::value<int64_t>(), "only the N newest runs")
        ("json", po::bool_switch(), "print a JSON array of objects instead of a table");
    const CommandLine command_line = parse_command_line(kUsage, options, {}, {}, args, global);
    if (command_line.help) return kExitOk;
    const po::variables_map& values = command_line.values;

    RunFilter filter;
    if (values.count("experiment")) filter.experiment = values["experiment"].as<std::string>();
    if (values.count("status")) filter.status = values["status"].as<std::string>();
    if (values.count("sweep")) filter.sweep = values["sweep"].as<std::string>();
    if (values.count("limit")) filter.limit = values["limit"].as<int64_t>();
    if (values.count("where")) {
        for (const std::string& text : values["where"].as<std::vector<std::string>>())
            filter.where.push_back(parse_where(text));
    }

    const Database database(command_line.db, Database::Mode::read_only);
    for (const auto& [key, value] : filter.where) warn_unknown_key(database, key);
    const nlohmann::json rows = runs_json(database, filter);

    if (values["json"].as<bool>()) {
        std::cout << json_text(rows) << "\n";
        return kExitOk;
    }
    TextTable table({"id", "uid", "name", "status", "started", "wall", "steps", "last val/loss", "best val/loss",
                     "sweep", "swept"});
    for (size_t column : {0, 5, 6, 7, 8}) table.align_right(column);
    auto number = [](const nlohmann::json& value) {
        return value.is_null() ? std::string("-") : format_number(value.get<double>());
    };
    for (const nlohmann::json& row : rows) {
        table.add_row({std::to_string(row["id"].get<int64_t>()), row["uid"].get<std::string>().substr(0, 8),
                       row["name"].get<std::string>(), row["status"].get<std::string>(),
                       short_timestamp(row["started_at"].get<std::string>()),
                       row["wall_s"].is_null() ? "-" : format_duration(row["wall_s"].get<double>()),
                       row["steps"].is_null() ? "-" : std::to_string(row["steps"].get<int64_t>()),
                       number(row["last_val_loss"]), number(row["best_val_loss"]),
                       row["sweep"].is_null() ? "-" : row["sweep"].get<std::string>(),
                       row["swept"].is_null() ? "-" : row["swept"].get<std::string>()});
    }
    table.print(std::cout);
    if (rows.empty()) std::cout << "(no runs match)\n";
    return kExitOk;
}

}  // namespace labdb
