// The results store: one SQLite file per study (default results/lab.db) that every run writes
// and that labdb and the plain sqlite3 shell read.
//
// The file is opened in WAL mode with foreign keys on and a 10 s busy timeout, so several labrun
// processes (or several ResultStore objects in one process) may write the same file at once; each
// write is one short transaction. The schema version lives in `PRAGMA user_version`; opening a
// file with version 0 creates the schema, an older version is migrated forward, and a file made by
// a newer labrun is refused. The tables and the view:
//
//   runs       one row per run: uid, name, experiment, config_hash, config (resolved text), status
//              (running|finished|failed|interrupted), error, backend, device, precision, seed,
//              host, pid, code_revision, started_at/ended_at (ISO-8601 UTC), wall_s
//   params     (run_id, key, value): the flattened resolved configuration
//   metrics    (run_id, step, name, value, time): time in seconds since the run started; a NaN value
//              is stored as NULL (SQLite has no NaN) and read back as NaN by metrics()
//   plugins    (run_id, kind, name, version, file, sha256): which code produced the run
//   artifacts  (run_id, kind, path): checkpoints, sample files, plots
//   texts      (run_id, step, name, text): generated samples
//   run_summary (view) id, name, experiment, status, started_at, wall_s, val_loss, train_loss
//              (the last logged values of the metrics "val/loss" and "train/loss", NULL if absent)
//
// Metrics and texts are buffered in memory and written by flush() in one transaction (a training
// loop logs many small rows; one transaction per row would dominate). Everything else is written
// at once. Every statement uses bound parameters. Failures throw lab::Error naming the database
// file, what was being done and SQLite's message. A ResultStore may be used from several threads.
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace lab {

enum class RunStatus { running, finished, failed, interrupted };

// "running", "finished", "failed" or "interrupted": the value stored in runs.status.
std::string run_status_name(RunStatus status);

// What identifies and describes a run; the caller fills it from the resolved experiment.
struct RunRecord {
    std::string name, experiment, config_hash, config_text, backend, device, precision, host, code_revision;
    int64_t seed = 0;
};

class ResultStore {
 public:
    // Opens (creating it and its parent directories if needed) the database file. Throws
    // lab::Error when the file cannot be opened, is not a SQLite database, or was written by a
    // newer labrun (schema version above kSchemaVersion).
    explicit ResultStore(const std::filesystem::path& db_file);
    // Flushes pending rows; a failure there is reported on stderr, never thrown.
    ~ResultStore();
    ResultStore(const ResultStore&) = delete;
    ResultStore& operator=(const ResultStore&) = delete;

    static constexpr int kSchemaVersion = 1;

    const std::filesystem::path& file() const;

    // Inserts a run with status "running", a fresh random uid, started_at = now, host/pid of this
    // process (host from r.host when given), and its params, in one transaction. Returns runs.id.
    int64_t begin_run(const RunRecord& r, const std::vector<std::pair<std::string, std::string>>& params);
    void add_plugin(int64_t run, const std::string& kind, const std::string& name, const std::string& version,
                    const std::string& file, const std::string& sha256);
    // Buffered in memory until flush(); the time column is taken now, not at flush.
    void add_metric(int64_t run, int64_t step, const std::string& name, double value);
    // Buffered like add_metric (generated samples).
    void add_text(int64_t run, int64_t step, const std::string& name, const std::string& text);
    void add_artifact(int64_t run, const std::string& kind, const std::string& path);
    // Writes the buffered metrics and texts in ONE transaction (BEGIN IMMEDIATE ... COMMIT). If the
    // write fails the rows stay buffered (a later flush retries them) and the error is rethrown.
    void flush();
    // Flushes, then sets status, error (NULL when empty), ended_at and wall_s. If the flush fails the
    // status is still recorded, the rows stay buffered, and the flush error is rethrown.
    void finish_run(int64_t run, RunStatus status, const std::string& error);

    // Runs left "running" by a labrun process on this host that no longer exists (killed, crashed)
    // are marked "interrupted"; returns their ids. Runs of live processes and of other hosts are
    // left alone. labrun calls this after opening the store.
    std::vector<int64_t> mark_interrupted_runs();
    // The most recent finished run whose config_hash matches, if any (a sweep rerun skips it).
    std::optional<int64_t> find_finished_run(const std::string& config_hash) const;

    // Reading (tests and tools use these). Pending buffered rows are not visible until flush().
    struct MetricRow {
        int64_t step;
        std::string name;
        double value;
    };
    // Rows of one run ordered by name, then step; all names when `name` is empty.
    std::vector<MetricRow> metrics(int64_t run, const std::string& name = "") const;
    // runs.status of the run; throws lab::Error when there is no such run.
    std::string status(int64_t run) const;
    std::string uid(int64_t run) const;

 private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// `git rev-parse HEAD` of source_dir (plus "-dirty" when `git status --porcelain` lists changes)
// when source_dir is a git checkout and git works; "unknown" otherwise. Never throws.
std::string code_revision(const std::filesystem::path& source_dir);
// This machine's host name ("unknown" if the system cannot tell).
std::string host_name();
// Now in UTC as ISO-8601 with milliseconds, e.g. "2024-05-01T12:34:56.789Z".
std::string utc_now_iso();

}  // namespace lab
