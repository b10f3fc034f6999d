// What a rerun of an experiment may skip. A finished run is "the same run" only when its
// configuration (the config hash) and the plugin binaries it ran with are the same: the plugins
// table records the sha256 of each plugin library a run used, and a plugin rebuilt since (a fixed
// bug, a new kernel) would compute something else. Rerunning such a run's configuration is refused
// before anything runs, naming each changed plugin; --force runs them again (new runs), restoring
// the old plugin builds makes them skippable again.
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "lab/config.h"
#include "lab/registry.h"
#include "lab/results.h"

struct RebuiltPlugin {
    std::string kind, name;
    std::string file;                // the library loaded now
    std::string recorded, current;   // sha256 (hex) recorded with the run, and of `file` now; "" = built in
};

// The plugins recorded for `run` whose library loaded now in `registry` has another sha256 (or is
// no longer loaded: current = "" and file = "(not loaded)"). `sha_of_file` caches hashes by file.
std::vector<RebuiltPlugin> rebuilt_plugins(const lab::ResultStore& store, int64_t run, const lab::Registry& registry,
                                           std::map<std::string, std::string>& sha_of_file);

// The results databases that may record earlier runs of specs[index], in the order they are
// searched: [experiment] db by default; --results-db FILE instead; for --slurm a run's task
// database, then [experiment] db (slurm.h).
using RunDatabases = std::function<std::vector<std::filesystem::path>(size_t index)>;

// Throws PluginError when a run of specs[first, last) finished with plugin builds other than the
// ones loaded now; the message lists each such run (id, uid, sweep values) with its changed plugins
// (kind/name, recorded and current short sha256, file) and the two ways on. The first of a run's
// `databases` (default: its [experiment] db) whose latest run of the configuration finished is the
// one checked. Opens no database that does not exist.
void refuse_finished_runs_with_rebuilt_plugins(const std::vector<lab::RunSpec>& specs, size_t first, size_t last,
                                               const lab::Registry& registry, const RunDatabases& databases = {});
