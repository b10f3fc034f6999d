// labdb runs: one line per run, filtered by experiment, status and parameter values.
#include <algorithm>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "run_lookup.h"
#include "text_table.h"

namespace labdb {
namespace {

const char* kUsage =
    "usage: labdb runs [--experiment NAME] [--status S] [--where key=value ...] [--limit N] [--json]\n"
    "\n"
    "Lists the runs of the database, oldest first: id, uid, name, status, start time, wall time,\n"
    "the last step logged, the last and the best (lowest) val/loss, and the sweep the run belongs to.\n"
    "--where key=value keeps the runs whose parameter `key` (as in `labdb show`, e.g. model.layers)\n"
    "equals `value` exactly; several --where are all required. --limit N keeps the N newest runs.\n"
    "A run left \"running\" by a process that is gone (its pid on this host no longer exists, or no\n"
    "heartbeat for longer than the lease) shows as \"dead\"; the next labrun that opens the database\n"
    "records it \"interrupted\".";

struct WhereClause {
    std::string key, value;
};

WhereClause parse_where(const std::string& text) {
    const size_t equals = text.find('=');
    if (equals == std::string::npos || equals == 0) {
        throw UsageError("--where '" + text + "' is not of the form key=value; hint: name a parameter as " +
                         "`labdb show RUN` lists it, e.g. --where model.layers=4");
    }
    return {text.substr(0, equals), text.substr(equals + 1)};
}

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

int command_runs(const std::vector<std::string>& args, const GlobalOptions& global) {
    po::options_description options("runs options");
    options.add_options()
        ("experiment", po::value<std::string>(), "only runs of this experiment")
        ("status", po::value<std::string>(), "only runs with this status: running, finished, failed, interrupted, dead")
        ("where", po::value<std::vector<std::string>>()->composing(), "key=value: only runs with this parameter value")
        ("limit", po::value<int64_t>(), "only the N newest runs")
        ("json", po::bool_switch(), "print a JSON array of objects instead of a table");
    const CommandLine command_line = parse_command_line(kUsage, options, {}, {}, args, global);
    if (command_line.help) return kExitOk;
    const po::variables_map& values = command_line.values;

    std::vector<WhereClause> wheres;
    if (values.count("where")) {
        for (const std::string& text : values["where"].as<std::vector<std::string>>()) wheres.push_back(parse_where(text));
    }
    const bool by_status = values.count("status") != 0;
    const std::string wanted_status = by_status ? values["status"].as<std::string>() : "";
    if (by_status) {
        static const std::vector<std::string> kStatuses = {"running", "finished", "failed", "interrupted", kDeadStatus};
        if (std::find(kStatuses.begin(), kStatuses.end(), wanted_status) == kStatuses.end()) {
            throw UsageError("--status '" + wanted_status + "' is not a run status; hint: use running, finished, " +
                             "failed, interrupted or dead");
        }
    }
    if (values.count("limit") && values["limit"].as<int64_t>() < 1) {
        throw UsageError("--limit must be at least 1; hint: leave it out to list every run");
    }

    const Database database(command_line.db, Database::Mode::read_only);
    for (const WhereClause& where : wheres) warn_unknown_key(database, where.key);

    // Only fixed clauses and ?N placeholders are put together here; every value is bound below.
    const bool has_sweep = database.has_column("runs", "sweep");
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
    if (values.count("experiment")) sql += " AND r.experiment = " + placeholder();
    // A dead run is "running" in the file; run_state() tells the two apart below.
    if (by_status) sql += " AND r.status = " + placeholder();
    for (size_t i = 0; i < wheres.size(); ++i) {
        const std::string key = placeholder(), value = placeholder();
        sql += " AND EXISTS (SELECT 1 FROM params AS p WHERE p.run_id = r.id AND p.key = " + key +
               " AND p.value = " + value + ")";
    }
    sql += " ORDER BY r.id DESC";

    Statement query(database, sql, "list the runs");
    int parameter = 1;
    if (values.count("experiment")) query.bind(parameter++, values["experiment"].as<std::string>());
    if (by_status) query.bind(parameter++, wanted_status == kDeadStatus ? "running" : wanted_status);
    for (const WhereClause& where : wheres) {
        query.bind(parameter++, where.key);
        query.bind(parameter++, where.value);
    }

    // --limit counts the runs left after the status filter, so it is applied here and not in SQL.
    const int64_t limit = values.count("limit") ? values["limit"].as<int64_t>() : -1;
    nlohmann::json rows = nlohmann::json::array();
    while ((limit < 0 || static_cast<int64_t>(rows.size()) < limit) && query.step()) {
        const std::string status = run_state(query, 10);
        if (by_status && status != wanted_status) continue;
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
    // Newest first was only for --limit; print in the order the runs were made.
    std::reverse(rows.begin(), rows.end());

    if (values["json"].as<bool>()) {
        std::cout << json_text(rows) << "\n";
        return kExitOk;
    }
    TextTable table({"id", "uid", "name", "status", "started", "wall", "steps", "last val/loss", "best val/loss",
                     "sweep"});
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
                       row["sweep"].is_null() ? "-" : row["sweep"].get<std::string>()});
    }
    table.print(std::cout);
    if (rows.empty()) std::cout << "(no runs match)\n";
    return kExitOk;
}

}  // namespace labdb
