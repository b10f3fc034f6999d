#include "run_lookup.h"

#include <algorithm>
#include <cctype>
#include <set>

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

bool all_of_class(const std::string& text, int (*is_class)(int)) {
    return !text.empty() &&
           std::all_of(text.begin(), text.end(), [&](char c) { return is_class(static_cast<unsigned char>(c)) != 0; });
}

size_t edit_distance(const std::string& a, const std::string& b) {
    std::vector<size_t> previous(b.size() + 1), current(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) previous[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
        current[0] = i;
        for (size_t j = 1; j <= b.size(); ++j) {
            const size_t substitute = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
            current[j] = std::min({previous[j] + 1, current[j - 1] + 1, substitute});
        }
        std::swap(previous, current);
    }
    return previous[b.size()];
}

std::string list_runs(const std::vector<RunRef>& runs) {
    std::string text;
    for (const RunRef& run : runs) text += "\n  " + describe_run(run) + ", experiment " + run.experiment + ", " + run.status;
    return text;
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

std::string describe_run(const RunRef& run) {
    return std::to_string(run.id) + " (" + run.name + ", uid " + run.uid.substr(0, 8) + ")";
}

std::vector<std::string> closest_matches(const std::string& target, const std::vector<std::string>& candidates,
                                         size_t limit, bool only_near) {
    std::vector<std::pair<size_t, std::string>> scored;
    std::set<std::string> seen;
    const size_t near = std::max<size_t>(2, target.size() / 3);
    for (const std::string& candidate : candidates) {
        if (!seen.insert(candidate).second) continue;
        const size_t distance = edit_distance(target, candidate);
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
    if (all_of_class(spec, std::isdigit) && spec.size() <= 18) {
        if (std::optional<RunRef> run = find_run(database, static_cast<int64_t>(std::stoll(spec)))) return *run;
    }
    std::vector<RunRef> candidates;
    auto add_candidates = [&](Statement& query) {
        while (query.step()) {
            RunRef run = read_run(query);
            const bool known = std::any_of(candidates.begin(), candidates.end(),
                                           [&](const RunRef& other) { return other.id == run.id; });
            if (!known) candidates.push_back(std::move(run));
        }
    };
    if (spec.size() >= 4 && all_of_class(spec, std::isxdigit)) {
        std::string prefix = spec;
        std::transform(prefix.begin(), prefix.end(), prefix.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        // substr() rather than LIKE: a prefix is compared as plain text, never as a pattern.
        Statement query(database, select_runs_sql(database) + " WHERE substr(uid, 1, length(?1)) = ?1 ORDER BY id",
                        "look up a run by uid prefix");
        query.bind(1, prefix);
        add_candidates(query);
    }
    {
        Statement query(database, select_runs_sql(database) + " WHERE name = ?1 ORDER BY id", "look up a run by name");
        query.bind(1, spec);
        add_candidates(query);
    }
    if (candidates.size() == 1) return candidates.front();
    if (candidates.size() > 1) {
        throw NotFoundError("run '" + spec + "' is ambiguous in '" + database.file().string() + "': it matches " +
                            std::to_string(candidates.size()) + " runs:" + list_runs(candidates) +
                            "\nhint: name the run by its numeric id or a longer uid prefix");
    }
    const std::vector<RunRef> runs = all_runs(database);
    if (runs.empty()) {
        throw NotFoundError("no run matches '" + spec + "': the database '" + database.file().string() +
                            "' has no runs; hint: check --db, or run an experiment with labrun first");
    }
    std::vector<std::string> names;
    for (const RunRef& run : runs) names.push_back(run.name);
    std::vector<RunRef> suggestions;
    for (const std::string& name : closest_matches(spec, names, 5, false)) {
        for (const RunRef& run : runs) {
            if (run.name == name && suggestions.size() < 5) suggestions.push_back(run);
        }
    }
    throw NotFoundError("no run matches '" + spec + "' in '" + database.file().string() +
                        "' (neither an id, nor a uid prefix of 4 or more hex digits, nor a run name); closest runs:" +
                        list_runs(suggestions) + "\nhint: `labdb runs` lists every run");
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
