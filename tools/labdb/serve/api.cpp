#include "api.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <iostream>
#include <set>

#include "command_json.h"
#include "run_data.h"
#include "run_labels.h"
#include "run_lookup.h"

namespace labdb::serve {

struct Api::Route {
    std::string_view path;  // the exact path, or with `prefix` the start of a path that names ids
    bool prefix;
    std::string_view usage;
    std::string_view summary;
    nlohmann::json (Api::*handler)(const std::string& path, const Query& query) const;
};

namespace {

// The one value of a parameter; given twice it is refused rather than silently picking one.
std::optional<std::string> optional_param(const Query& query, const std::string& name) {
    const auto [first, last] = query.equal_range(name);
    if (first == last) return std::nullopt;
    if (std::next(first) != last) {
        throw UsageError("the query parameter '" + name + "' is given more than once; hint: give it once");
    }
    return first->second;
}

std::string required_param(const Query& query, const std::string& name, const std::string& example) {
    std::optional<std::string> value = optional_param(query, name);
    if (!value || value->empty()) {
        throw UsageError("the query parameter '" + name + "' is missing; hint: e.g. " + example);
    }
    return *value;
}

std::vector<std::string> all_params(const Query& query, const std::string& name) {
    std::vector<std::string> values;
    const auto [first, last] = query.equal_range(name);
    for (auto it = first; it != last; ++it) values.push_back(it->second);
    return values;
}

int64_t parse_integer(const std::string& text, const std::string& name) {
    int64_t value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || error != std::errc() || end != text.data() + text.size()) {
        throw UsageError("the query parameter '" + name + "' is '" + text + "', not an integer; hint: e.g. " + name +
                         "=3");
    }
    return value;
}

// A switch: present without a value, 1 or true is on; absent, 0 or false is off.
bool flag_param(const Query& query, const std::string& name) {
    const std::optional<std::string> value = optional_param(query, name);
    if (!value || *value == "0" || *value == "false") return false;
    if (value->empty() || *value == "1" || *value == "true") return true;
    throw UsageError("the query parameter '" + name + "' is '" + *value + "'; hint: use " + name + "=1 or " + name +
                     "=0");
}

RunRef existing_run(const Database& database, size_t index, int64_t id) {
    std::optional<RunRef> run = find_run(database, id);
    if (!run) {
        throw NotFoundError("database " + std::to_string(index) + " ('" + database.file().string() +
                            "') has no run with id " + std::to_string(id) + "; hint: GET /api/runs lists the runs");
    }
    return *run;
}

std::vector<std::string> distinct_texts(const Database& database, const std::string& sql, const std::string& purpose) {
    Statement query(database, sql, purpose);
    std::vector<std::string> values;
    while (query.step()) values.push_back(query.column_text(0));
    return values;
}

}  // namespace

Api::Api(std::vector<std::filesystem::path> databases) : databases_(std::move(databases)) {
    for (size_t index = 0; index < databases_.size(); ++index) open(index);
}

const std::vector<Api::Route>& Api::routes() {
    static const std::vector<Route> table = {
        {"/api/databases", false, "GET /api/databases",
         "the --db files: index, file, experiments, sweeps, run count", &Api::list_databases},
        {"/api/runs", false, "GET /api/runs?experiment=&status=&sweep=&where=KEY=VALUE&limit=&db=",
         "`labdb runs --json` rows of every database (or of db=), each with db and params", &Api::list_runs},
        {"/api/runs/", true, "GET /api/runs/DB/ID",
         "`labdb show --json` of run ID of database DB, with db and file", &Api::show_run},
        {"/api/metrics", false, "GET /api/metrics?db=&run=&name=&after_step=",
         "a metric's points {step, time, value} in step order (only steps > after_step)", &Api::metric_points},
        {"/api/metric_names", false, "GET /api/metric_names?db=",
         "the metric names logged in every database (or in db=)", &Api::list_metric_names},
        {"/api/ablate", false,
         "GET /api/ablate?db=&experiment=|sweep=&by=KEY&by=KEY2&metric=&baseline=&best=1&cost=",
         "`labdb ablate --json` groups (n, mean, std, deltas with 95% CIs, costs), left_out", &Api::ablate},
        {"/api/compare", false, "GET /api/compare?run=DB:ID&run=DB:ID&all=1",
         "`labdb compare --json` rows (params that differ, metrics), each with db and label (legend)", &Api::compare},
        {"/api/curves", false, "GET /api/curves?db=&run=ID&run=ID&metric=&by=KEY&by=KEY2&band=std|minmax|none",
         "`labdb curves --json` of runs of one database: with by, one mean line and band per group", &Api::curves},
    };
    return table;
}

std::string Api::routes_help() {
    std::string text;
    for (const Route& route : routes()) {
        text += "  ";
        text += route.usage;
        text += "\n      ";
        text += route.summary;
        text += "\n";
    }
    return text;
}

std::optional<ApiReply> Api::get(const std::string& path, const Query& query) const {
    for (const Route& route : routes()) {
        const bool matches = route.prefix ? path.size() > route.path.size() && path.rfind(route.path, 0) == 0
                                          : path == route.path;
        if (!matches) continue;
        try {
            return ApiReply{200, (this->*route.handler)(path, query)};
        } catch (const UsageError& error) {
            return ApiReply{400, {{"error", error.what()}}};
        } catch (const NotFoundError& error) {
            return ApiReply{404, {{"error", error.what()}}};
        } catch (const std::exception& error) {
            std::cerr << "labdb serve: error: GET " << path << ": " << error.what() << "\n";
            return ApiReply{500, {{"error", error.what()}}};
        }
    }
    return std::nullopt;
}

std::unique_ptr<Database> Api::open(size_t index) const {
    return std::make_unique<Database>(databases_.at(index), Database::Mode::read_only);
}

size_t Api::database_index(const std::string& text) const {
    const int64_t index = parse_integer(text, "db");
    if (index < 0 || static_cast<size_t>(index) >= databases_.size()) {
        throw NotFoundError("there is no database " + text + "; hint: db is 0.." + std::to_string(databases_.size() - 1) +
                            ", the position of the file among the --db files (GET /api/databases)");
    }
    return static_cast<size_t>(index);
}

nlohmann::json Api::list_databases(const std::string&, const Query&) const {
    nlohmann::json list = nlohmann::json::array();
    for (size_t index = 0; index < databases_.size(); ++index) {
        const std::unique_ptr<Database> database = open(index);
        nlohmann::json entry = {{"index", index}, {"file", databases_[index].string()}};
        entry["schema_version"] = database->user_version();
        entry["experiments"] =
            distinct_texts(*database, "SELECT DISTINCT experiment FROM runs ORDER BY experiment", "list the experiments");
        entry["sweeps"] = database->has_column("runs", "sweep")
                              ? distinct_texts(*database,
                                               "SELECT DISTINCT sweep FROM runs WHERE sweep IS NOT NULL ORDER BY sweep",
                                               "list the sweeps")
                              : std::vector<std::string>{};
        Statement count(*database, "SELECT COUNT(*) FROM runs", "count the runs");
        entry["runs"] = count.step() ? count.column_int(0) : 0;
        list.push_back(std::move(entry));
    }
    return list;
}

nlohmann::json Api::list_runs(const std::string&, const Query& query) const {
    RunFilter filter;
    filter.experiment = optional_param(query, "experiment");
    filter.status = optional_param(query, "status");
    filter.sweep = optional_param(query, "sweep");
    // An empty field of the dashboard's filter form means "any".
    for (std::optional<std::string>* field : {&filter.experiment, &filter.status, &filter.sweep}) {
        if (*field && (*field)->empty()) field->reset();
    }
    for (const std::string& where : all_params(query, "where")) {
        if (!where.empty()) filter.where.push_back(parse_where(where));
    }
    if (const std::optional<std::string> limit = optional_param(query, "limit")) {
        filter.limit = parse_integer(*limit, "limit");
    }
    std::vector<size_t> indices;
    if (const std::optional<std::string> db = optional_param(query, "db"); db && !db->empty()) {
        indices.push_back(database_index(*db));
    } else {
        for (size_t index = 0; index < databases_.size(); ++index) indices.push_back(index);
    }
    nlohmann::json runs = nlohmann::json::array();
    for (size_t index : indices) {
        const std::unique_ptr<Database> database = open(index);
        for (nlohmann::json& row : runs_json(*database, filter)) {
            row["db"] = index;
            row["params"] = nlohmann::json::object();
            for (const auto& [key, value] : run_params(*database, row["id"].get<int64_t>())) row["params"][key] = value;
            runs.push_back(std::move(row));
        }
    }
    return runs;
}

nlohmann::json Api::show_run(const std::string& path, const Query&) const {
    // /api/runs/DB/ID
    const std::string rest = path.substr(std::string_view("/api/runs/").size());
    const size_t slash = rest.find('/');
    if (slash == std::string::npos || rest.find('/', slash + 1) != std::string::npos) {
        throw NotFoundError("no route " + path + "; hint: a run is GET /api/runs/DB/ID, e.g. /api/runs/0/3");
    }
    const size_t index = database_index(rest.substr(0, slash));
    const int64_t id = parse_integer(rest.substr(slash + 1), "run id");
    const std::unique_ptr<Database> database = open(index);
    nlohmann::json shown = show_json(*database, existing_run(*database, index, id));
    shown["db"] = index;
    shown["file"] = databases_[index].string();
    return shown;
}

nlohmann::json Api::metric_points(const std::string&, const Query& query) const {
    const size_t index = database_index(optional_param(query, "db").value_or("0"));
    const int64_t id = parse_integer(required_param(query, "run", "run=3"), "run");
    const std::string name = required_param(query, "name", "name=val/loss");
    std::optional<int64_t> after_step;
    if (const std::optional<std::string> after = optional_param(query, "after_step"); after && !after->empty()) {
        after_step = parse_integer(*after, "after_step");
    }
    const std::unique_ptr<Database> database = open(index);
    const RunRef run = existing_run(*database, index, id);
    nlohmann::json points = nlohmann::json::array();
    for (const SeriesPoint& point : metric_series(*database, id, name, after_step)) {
        points.push_back({{"step", point.step}, {"time", point.time_s}, {"value", point.value}});
    }
    return {{"db", index}, {"run", id}, {"name", name}, {"status", run.status}, {"points", std::move(points)}};
}

nlohmann::json Api::curves(const std::string&, const Query& query) const {
    const size_t index = database_index(optional_param(query, "db").value_or("0"));
    const std::unique_ptr<Database> database = open(index);
    std::vector<RunRef> runs;
    for (const std::string& id : all_params(query, "run")) {
        runs.push_back(existing_run(*database, index, parse_integer(id, "run")));
    }
    if (runs.empty()) throw UsageError("curves needs run=ID for each run; hint: e.g. run=3&run=4");
    CurvesRequest request;
    request.metrics = {required_param(query, "metric", "metric=val/loss")};
    for (const std::string& key : all_params(query, "by")) {
        if (!key.empty()) request.by.push_back(key);
    }
    if (const std::optional<std::string> band = optional_param(query, "band"); band && !band->empty()) {
        request.band = *band;
    }
    nlohmann::json reply = curves_json(*database, runs, request);
    reply["db"] = index;
    return reply;
}

nlohmann::json Api::list_metric_names(const std::string&, const Query& query) const {
    std::set<std::string> names;
    const std::optional<std::string> db = optional_param(query, "db");
    for (size_t index = 0; index < databases_.size(); ++index) {
        if (db && !db->empty() && database_index(*db) != index) continue;
        for (std::string& name : metric_names(*open(index))) names.insert(std::move(name));
    }
    return names;
}

nlohmann::json Api::ablate(const std::string&, const Query& query) const {
    const size_t index = database_index(optional_param(query, "db").value_or("0"));
    AblateRequest request;
    request.experiment = optional_param(query, "experiment");
    request.sweep = optional_param(query, "sweep");
    for (std::optional<std::string>* field : {&request.experiment, &request.sweep}) {
        if (*field && (*field)->empty()) field->reset();
    }
    for (const std::string& key : all_params(query, "by")) {
        if (!key.empty()) request.by.push_back(key);
    }
    request.metric = optional_param(query, "metric").value_or("");
    request.use_best = flag_param(query, "best");
    request.baseline = optional_param(query, "baseline");
    if (request.baseline && request.baseline->empty()) request.baseline.reset();
    request.costs = all_params(query, "cost");
    const Ablation ablation = ablate_json(*open(index), request);
    return {{"db", index},
            {"metric", request.metric},
            {"value", request.use_best ? "best" : "last"},
            {"goal", lab::metric_goal_name(ablation.goal)},
            {"by", request.by},
            {"groups", ablation.groups},
            {"left_out", ablation.left_out}};
}

nlohmann::json Api::compare(const std::string&, const Query& query) const {
    const std::vector<std::string> specs = all_params(query, "run");
    if (specs.empty()) throw UsageError("compare needs run=DB:ID for each run; hint: e.g. run=0:3&run=0:4");
    std::map<size_t, std::unique_ptr<Database>> opened;
    std::vector<ComparedRun> runs;
    std::vector<size_t> indices;
    for (const std::string& spec : specs) {
        const size_t colon = spec.find(':');
        if (colon == std::string::npos) {
            throw UsageError("run='" + spec + "' is not DB:ID; hint: e.g. run=0:3 for run 3 of the first --db file");
        }
        const size_t index = database_index(spec.substr(0, colon));
        const int64_t id = parse_integer(spec.substr(colon + 1), "run");
        std::unique_ptr<Database>& database = opened[index];
        if (!database) database = open(index);
        const bool repeated = std::any_of(runs.begin(), runs.end(), [&](const ComparedRun& other) {
            return other.database == database.get() && other.run.id == id;
        });
        if (repeated) continue;
        runs.push_back({database.get(), existing_run(*database, index, id)});
        indices.push_back(index);
    }
    nlohmann::json rows = compare_json(runs, flag_param(query, "all"));
    // The chart legend of these runs, named as `labdb curves` names them (run_labels.h).
    std::vector<RunRef> refs;
    std::vector<std::map<std::string, std::string>> params_per_run;
    for (const ComparedRun& compared : runs) {
        refs.push_back(compared.run);
        const auto params = run_params(*compared.database, compared.run.id);
        params_per_run.emplace_back(params.begin(), params.end());
    }
    const std::vector<std::string> labels = run_labels(refs, params_per_run);
    for (size_t r = 0; r < rows.size(); ++r) {
        rows[r]["db"] = indices[r];
        rows[r]["label"] = labels[r];
    }
    return rows;
}

}  // namespace labdb::serve
