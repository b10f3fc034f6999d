#include "run_lookup.h"

#include <algorithm>
#include <set>

#include "lab/options.h"
#include "lab/results.h"

namespace labdb {
namespace {

std::string select_runs_sql(const Database& database) {
    return "SELECT id, uid, name, experiment, " + run_state_columns(database) + " FROM runs";
}

RunRef read_run(const Statement& query) {
    return {query.column_int(0), query.column_text(1), query.column_text(2), query.column_text(3),
            run_state(query, 4)};
}

}  // namespace

std::string run_state_columns(const Database& database) {
    return "status, host, pid, " + lab::run_silence_sql(database.has_column("runs", "heartbeat_at"));
}

std::string run_state(const Statement& query, int first) {
    const std::string status = query.column_text(first);
    if (status != lab::run_status_name(lab::RunStatus::running)) return status;
    lab::RunWriter writer{query.column_text(first + 1), std::nullopt, std::nullopt};
    if (!query.is_null(first + 2)) writer.pid = query.column_int(first + 2);
    if (!query.is_null(first + 3)) writer.silent_s = query.column_double(first + 3);
    return lab::run_writer_gone(writer) ? kDeadStatus : status;
}

std::string describe_run(const RunRef& run) { return lab::describe_run({run.id, run.uid, run.name}); }

std::vector<std::string> closest_matches(const std::string& target, const std::vector<std::string>& candidates,
                                         size_t limit, bool only_near) {
    std::vector<std::pair<size_t, std::string>> scored;
    std::set<std::string> seen;
    const size_t near = std::max<size_t>(2, target.size() / 3);
    for (const std::string& candidate : candidates) {
        if (!seen.insert(candidate).second) continue;
        const size_t distance = lab::edit_distance(target, candidate);
        if (only_near && distance > near) continue;
        scored.emplace_back(distance, candidate);
    }
    std::stable_sort(scored.begin(), scored.end(),
                     [](const auto& left, const auto& right) { return left.first < right.first; });
    std::vector<std::string> closest;
    for (size_t i = 0; i < scored.size() && i < limit; ++i) closest.push_back(scored[i].second);
    return closest;
}

std::vector<RunRef> all_runs(const Database& database) {
    Statement query(database, select_runs_sql(database) + " ORDER BY id", "list the runs");
    std::vector<RunRef> runs;
    while (query.step()) runs.push_back(read_run(query));
    return runs;
}

std::optional<RunRef> find_run(const Database& database, int64_t id) {
    Statement query(database, select_runs_sql(database) + " WHERE id = ?1", "look up a run by id");
    query.bind(1, id);
    if (query.step()) return read_run(query);
    return std::nullopt;
}

RunRef resolve_run(const Database& database, const std::string& spec) {
    std::vector<RunRef> runs = all_runs(database);
    std::vector<lab::RunKey> keys;
    for (const RunRef& run : runs) keys.push_back({run.id, run.uid, run.name});
    try {
        const int64_t id = lab::match_run(keys, spec, database.file().string()).id;
        for (RunRef& run : runs)
            if (run.id == id) return std::move(run);
    } catch (const lab::RunLookupError& error) {
        throw NotFoundError(error.what());  // exit code 3
    }
    throw NotFoundError("run '" + spec + "' was found in '" + database.file().string() + "' and then not; is another "
                        "process rewriting the database?");
}

std::vector<RunRef> resolve_runs(const Database& database, const std::vector<std::string>& specs) {
    std::vector<RunRef> runs;
    for (const std::string& spec : specs) {
        RunRef run = resolve_run(database, spec);
        const bool repeated =
            std::any_of(runs.begin(), runs.end(), [&](const RunRef& other) { return other.id == run.id; });
        if (!repeated) runs.push_back(std::move(run));
    }
    return runs;
}

}  // namespace labdb
