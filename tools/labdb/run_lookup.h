// Naming runs on the command line: a numeric id, a unique prefix of the uid (at least 4 hex
// digits), or a run name. A name or prefix that matches several runs is an error listing the
// candidates; one that matches nothing lists the closest run names.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "database.h"

namespace labdb {

struct RunRef {
    int64_t id = 0;
    std::string uid, name, experiment, status;
};

// Throws NotFoundError (exit code 3) when `spec` matches no run or several runs.
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
