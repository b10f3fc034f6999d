// Naming runs on the command line: a numeric id, a unique prefix of the uid (at least 4
// characters), or a run name, by the rule labrun uses too (lab::match_run in lab/results.h). A name
// or prefix that matches several runs is an error listing the candidates; one that matches nothing
// lists the closest run names.
//
// The state of a run: labdb only reads, so a run whose labrun was killed stays "running" in the
// file until the next labrun opens it and records it "interrupted". labdb shows such a run as
// "dead" at once, by labrun's own rule (lab::run_writer_gone: its pid is gone on this host, or its
// heartbeat is older than lab::kDefaultLeaseSeconds), and writes nothing.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "database.h"

namespace labdb {

inline constexpr const char* kDeadStatus = "dead";

struct RunRef {
    int64_t id = 0;
    std::string uid, name, experiment;
    std::string status;  // the state: runs.status, or "dead" (run_state)
};

// SQL for the four columns run_state() reads from a row of runs: status, host, pid and the seconds
// since the run's last sign of life (lab::run_silence_sql, for the columns this file has).
std::string run_state_columns(const Database& database);
// runs.status, or "dead" for a "running" run whose writer is gone, from the run_state_columns()
// of `query` that start at column `first`.
std::string run_state(const Statement& query, int first);

// The run with this id, or nullopt.
std::optional<RunRef> find_run(const Database& database, int64_t id);
// lab::match_run over the runs of `database`. Throws NotFoundError (exit code 3) when `spec`
// matches no run or several runs.
RunRef resolve_run(const Database& database, const std::string& spec);
// resolve_run for each spec, in the order given; a run named twice is kept once.
std::vector<RunRef> resolve_runs(const Database& database, const std::vector<std::string>& specs);
// Every run of the database ordered by id.
std::vector<RunRef> all_runs(const Database& database);

// "3 (bert_small, uid 1a2b3c4d)": how a run is named in messages.
std::string describe_run(const RunRef& run);

// Up to `limit` distinct entries of `candidates` ordered by edit distance to `target` (closest
// first); with `only_near`, those too far away to be a likely typo are left out.
std::vector<std::string> closest_matches(const std::string& target, const std::vector<std::string>& candidates,
                                         size_t limit, bool only_near);

}  // namespace labdb
