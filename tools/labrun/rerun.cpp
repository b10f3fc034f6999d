#include "rerun.h"

#include <filesystem>

#include "lab/error.h"

namespace {

// 12 hex digits name a build well enough to tell two apart in a message (as git's short hashes do).
std::string short_sha(const std::string& sha) { return sha.empty() ? "(built in)" : sha.substr(0, 12); }

// "run 3 (uid 1a2b3c4d) of 'name' [2/4: attention.type=local, experiment.seed=1]"
std::string run_label(const lab::RunSpec& spec, size_t index, int64_t run, const std::string& uid) {
    std::string text = "run " + std::to_string(run) + " (uid " + uid + ") of '" + spec.name + "'";
    if (spec.sweep_values.empty()) return text;
    return text + " [" + std::to_string(index + 1) + "/" + std::to_string(spec.sweep_size) + ": " +
           spec.sweep_values_text() + "]";
}

}  // namespace

std::vector<RebuiltPlugin> rebuilt_plugins(const lab::ResultStore& store, int64_t run, const lab::Registry& registry,
                                           std::map<std::string, std::string>& sha_of_file) {
    std::vector<RebuiltPlugin> out;
    for (const lab::ResultStore::PluginRow& row : store.plugins(run)) {
        RebuiltPlugin p{row.kind, row.name, "(not loaded)", row.sha256, ""};
        if (registry.has(row.kind, row.name)) {
            const lab::PluginInfo& info = registry.find(row.kind, row.name);
            p.file = info.file;
            auto cached = sha_of_file.find(info.file);
            if (cached == sha_of_file.end()) cached = sha_of_file.emplace(info.file, lab::plugin_sha256(info)).first;
            p.current = cached->second;
            if (p.current == p.recorded) continue;
        }
        out.push_back(std::move(p));
    }
    return out;
}

void refuse_finished_runs_with_rebuilt_plugins(const std::vector<lab::RunSpec>& specs, size_t first, size_t last,
                                               const lab::Registry& registry, const RunDatabases& databases) {
    std::map<std::string, std::string> sha_of_file;
    std::string listing;
    size_t refused = 0;
    for (size_t i = first; i < last && i < specs.size(); ++i) {
        const lab::RunSpec& spec = specs[i];
        const std::vector<std::filesystem::path> dbs =
            databases ? databases(i) : std::vector<std::filesystem::path>{spec.experiment.get_string("db")};
        for (const std::filesystem::path& db : dbs) {
            std::error_code ec;
            if (!std::filesystem::exists(db, ec)) continue;  // no earlier run, and no database to create yet
            lab::ResultStore store(db);
            auto previous = store.latest_run(spec.hash());
            if (!previous || previous->status != "finished") continue;
            std::vector<RebuiltPlugin> changed = rebuilt_plugins(store, previous->id, registry, sha_of_file);
            if (!changed.empty()) {
                ++refused;
                listing += "\n  " + run_label(spec, i, previous->id, store.uid(previous->id)) +
                           (dbs.size() > 1 ? " in " + db.string() : "") + ":";
                for (const RebuiltPlugin& p : changed)
                    listing += "\n    " + p.kind + "/" + p.name + ": recorded " + short_sha(p.recorded) + ", now " +
                               short_sha(p.current) + " (" + p.file + ")";
            }
            break;  // the first database with a finished run decides
        }
    }
    if (refused == 0) return;
    throw lab::PluginError(
        std::to_string(refused) + (refused == 1 ? " run" : " runs") +
        " of this experiment finished with plugin builds other than the ones loaded now, so they are not the "
        "same runs and skipping them would keep results of other code:" + listing +
        "\nrerun with --force to run them again with the plugins as they are now (new runs; the finished ones stay "
        "in the database), or restore the plugin builds they were run with to skip them");
}
