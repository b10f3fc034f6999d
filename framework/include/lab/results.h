// The results store: one SQLite file per study (default results/lab.db) that every run writes
// and that labdb and the plain sqlite3 shell read.
//
// The file is opened in WAL mode with synchronous=NORMAL (a commit survives a crash of the
// process; only a power loss may drop the last commits, never corrupt the file), foreign keys on
// and a 10 s busy timeout, so several labrun processes (or several ResultStore objects in one
// process) may write the same file at once; each write is one short transaction. The schema
// version lives in `PRAGMA user_version`; opening a file with version 0 creates the schema, an
// older version is migrated forward, and a file made by a newer labrun is refused. The tables and
// the views (schema version 5):
//
//   runs       one row per run: uid, name, experiment, config_hash, config (resolved text), status
//              (running|finished|failed|interrupted), error, backend, device, precision, seed,
//              host, pid, code_revision, started_at/ended_at (ISO-8601 UTC), wall_s; since
//              version 2 also heartbeat_at (ISO-8601 UTC, the last sign of life of the writing
//              process), sweep (sweeps.id, NULL for a single run), threads, libraries (JSON
//              object: library -> version); since version 4 world_size (data-parallel ranks) and
//              communicator ("mpi", "nccl"; NULL for one process), both NULL in older rows
//   params     (run_id, key, value): the flattened resolved configuration
//   metrics    (run_id, step, name, value, time): time in seconds since the run started; a NaN value
//              is stored as NULL (SQLite has no NaN) and read back as NaN by metrics()
//   plugins    (run_id, kind, name, version, file, sha256): which code produced the run; since
//              version 5 also abi (the plugin's SDK ABI tag, lab/version.h), NULL in older rows
//   artifacts  (run_id, kind, path): checkpoints, sample files, plots
//   texts      (run_id, step, name, text): generated samples
//   sweeps     (id, experiment, created_at, size): the runs one experiment file expanded into
//   metric_goals (run_id, name, goal): which way each metric of a run improves (version 3)
//   run_summary (view) id, name, experiment, sweep, status, started_at, wall_s, val_loss,
//              train_loss (the last logged values of "val/loss" and "train/loss", NULL if absent)
//   metric_summary (view) per (run, metric): count, last value and step, lowest and highest value
//              with their steps
//
// Metrics and texts are buffered in memory and written by flush() in one transaction (a training
// loop logs many small rows; one transaction per row would dominate). Everything else is written
// at once. Every statement uses bound parameters. Failures throw lab::Error naming the database
// file, what was being done and SQLite's message. A ResultStore may be used from several threads.
//
// Live or dead: a run is "running" until finish_run. A process that dies leaves it so; the next
// labrun that opens the file calls mark_interrupted_runs(), which marks it "interrupted" when its
// process is gone (pid check, same host only) or its heartbeat is older than the lease (any host).
// run_writer_gone() is that rule on its own, for readers that must not write (labdb shows such a
// run as "dead").
// The store keeps the heartbeat of the runs it writes fresh: begin_run, reopen_run, every flush()
// and heartbeat(). A labrun busy for longer than the lease without flushing (a long evaluation)
// must call heartbeat() in between.
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "lab/error.h"
#include "lab/metric_goal.h"

namespace lab {

enum class RunStatus { running, finished, failed, interrupted };

// How long a "running" run may go without a heartbeat before its writer counts as gone, in
// seconds: the default lease of mark_interrupted_runs(), and the one labdb uses.
inline constexpr int64_t kDefaultLeaseSeconds = 600;

// "running", "finished", "failed" or "interrupted": the value stored in runs.status.
std::string run_status_name(RunStatus status);

// "none", "min" or "max": the value stored in metric_goals.goal.
std::string metric_goal_name(MetricGoal goal);

// What identifies and describes a run; the caller fills it from the resolved experiment.
struct RunRecord {
    std::string name, experiment, config_hash, config_text, backend, device, precision, host, code_revision;
    int64_t seed = 0;
    std::string sweep;      // sweeps.id of the sweep the run belongs to; empty (NULL) for a single run
    int64_t threads = 0;    // CPU threads the run used; 0 (NULL) when unknown
    std::string libraries;  // JSON object of library versions, e.g. {"oneDNN":"2.6.3","sqlite":"3.40.1"};
                            // empty (NULL) when unknown
    int64_t world_size = 1;     // data-parallel ranks (processes) that trained the run
    std::string communicator;   // "mpi" or "nccl" for a data-parallel run; empty (NULL) for one process
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

    static constexpr int kSchemaVersion = 5;

    const std::filesystem::path& file() const;

    // Inserts a run with status "running", a fresh random uid, started_at = heartbeat_at = now,
    // host/pid of this process (host from r.host when given), and its params, in one transaction.
    // Returns runs.id. Throws lab::Error, writing nothing, when r.libraries is neither empty nor a
    // JSON object, when r.world_size is below 1, or when r.world_size is above 1 and r.communicator
    // is empty (ranks that trained together always talked through something).
    int64_t begin_run(const RunRecord& r, const std::vector<std::pair<std::string, std::string>>& params);
    // `abi` is the SDK ABI tag the plugin was built with (Registry::abi_tag() for every plugin a
    // Registry loaded, since it refuses any other); empty strings are stored as NULL.
    void add_plugin(int64_t run, const std::string& kind, const std::string& name, const std::string& version,
                    const std::string& file, const std::string& sha256, const std::string& abi);
    // Buffered in memory until flush(); the time column is taken now, not at flush.
    void add_metric(int64_t run, int64_t step, const std::string& name, double value);
    // Which way metric `name` of `run` improves; buffered like add_metric and written with the next
    // flush (INSERT OR REPLACE into metric_goals). Declaring the same goal again costs nothing.
    void declare_metric(int64_t run, const std::string& name, MetricGoal goal);
    // Buffered like add_metric (generated samples).
    void add_text(int64_t run, int64_t step, const std::string& name, const std::string& text);
    void add_artifact(int64_t run, const std::string& kind, const std::string& path);
    // Writes the buffered metrics and texts, and the heartbeat of every run this store is writing
    // (begun or reopened here, or with buffered rows, and not finished), in ONE transaction
    // (BEGIN IMMEDIATE ... COMMIT). If the write fails the rows stay buffered (a later flush
    // retries them) and the error is rethrown.
    void flush();
    // Flushes, then sets status, error (NULL when empty), ended_at, wall_s and a last heartbeat. If
    // the flush fails the status is still recorded, the rows stay buffered, and the flush error is
    // rethrown.
    void finish_run(int64_t run, RunStatus status, const std::string& error);
    // Sets runs.heartbeat_at = now (one short transaction), and keeps the run's heartbeat fresh on
    // later flushes. For long phases without flushes. Throws lab::Error when there is no such run.
    void heartbeat(int64_t run);
    // For resume: the run becomes "running" again, with ended_at, wall_s and error NULL, host and
    // pid of this process, heartbeat_at = now. Throws lab::Error when there is no such run.
    void reopen_run(int64_t run);
    // For resume from a checkpoint at `step`: deletes the run's metrics and texts with a step
    // greater than `step` (written after the checkpoint, and about to be written again), buffered
    // ones included, in one transaction.
    void delete_metrics_after(int64_t run, int64_t step);
    // Writes `values` as metrics of `run` at `step` at once (not buffered), with the goals of those
    // named in `goals`, in one transaction. A row of the same run, step and name is replaced, not
    // added to: what a re-evaluation (`labrun eval`) records. Throws lab::Error for an unknown run.
    void replace_metrics(int64_t run, int64_t step, const std::map<std::string, double>& values,
                         const std::map<std::string, MetricGoal>& goals);
    // Records a sweep; a second call with the same id changes nothing (INSERT OR IGNORE), so every
    // process of a sweep may call it.
    void add_sweep(const std::string& id, const std::string& experiment, int64_t size);

    // Marks "interrupted" (with an error saying why) every "running" run whose writer is dead, and
    // returns their ids. A run is dead when its process on this host no longer exists (pid check;
    // pids mean nothing on other hosts) or when its heartbeat_at (started_at when NULL) is older
    // than `lease_seconds`, on any host. Runs this store is writing (with this process's pid) are
    // never marked. Keep the lease well above the longest gap between heartbeats and the clock
    // skew between hosts. labrun calls this after opening the store. Throws lab::Error when
    // lease_seconds < 1.
    std::vector<int64_t> mark_interrupted_runs(int64_t lease_seconds = kDefaultLeaseSeconds);
    // The most recent finished run whose config_hash matches, if any (a sweep rerun skips it).
    std::optional<int64_t> find_finished_run(const std::string& config_hash) const;
    struct RunRef {
        int64_t id;
        std::string status;
    };
    // The most recent run (highest id) whose config_hash matches, whatever its status, if any.
    std::optional<RunRef> latest_run(const std::string& config_hash) const;
    // The path of artifact `kind` ("checkpoints") of the most recent finished run (named
    // `run_name` when it is not empty) that has one.
    std::optional<std::string> latest_artifact(const std::string& kind, const std::string& run_name = "") const;
    // The run a user names, by match_run's rule (below). Throws RunLookupError when no run or
    // several runs match.
    int64_t find_run(const std::string& spec) const;

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
    // runs.config: the resolved configuration text the run was started with (for resume).
    std::string config_text(int64_t run) const;
    // The plugins rows of a run, in the order they were recorded (sha256 and version empty where
    // NULL: factories built into the host).
    struct PluginRow {
        std::string kind, name, version, file, sha256, abi;  // abi "" where NULL (rows before version 5)
    };
    std::vector<PluginRow> plugins(int64_t run) const;

 private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Naming a run on the command line: the one rule of labrun (--resume, eval, generate) and labdb
// (show, compare, curves, export). `spec` names, in this order:
//   1. the run whose id it is, when it is all digits;
//   2. otherwise the runs whose uid starts with it (at least kMinRunUidPrefix characters, compared
//      as plain text, case-insensitively: uids are lowercase hex) together with the runs named
//      exactly `spec` ([experiment] name).
// One run: that run. Several: RunLookupError "ambiguous", listing each candidate as
// "id (name, uid 1a2b3c4d)". None: RunLookupError naming `database`, what was tried and the closest
// run names. A uid prefix may be all digits too, so digits that are no id go on to step 2.
inline constexpr size_t kMinRunUidPrefix = 4;
struct RunLookupError : Error {
    using Error::Error;
};
struct RunKey {
    int64_t id = 0;
    std::string uid, name;
};
// `runs`: every run of the database, ordered by id. Returns the one `spec` names.
const RunKey& match_run(const std::vector<RunKey>& runs, const std::string& spec, const std::string& database);
// "3 (bert_small, uid 1a2b3c4d)": how messages name a run.
std::string describe_run(const RunKey& run);

// What the runs row of a "running" run says about the process that writes it.
struct RunWriter {
    std::string host;                // runs.host
    std::optional<int64_t> pid;      // runs.pid
    std::optional<double> silent_s;  // seconds since its last sign of life: run_silence_sql()
};

// Why the writer of a "running" run is gone, e.g. "the labrun process (pid 42 on box) ended
// without finishing the run", or nothing while it may be alive. Gone means: its process on this
// host no longer exists (kill(pid, 0); a pid means nothing on another host, and this process is
// alive by definition), or it has been silent for longer than `lease_seconds`, on any host. The
// one rule behind mark_interrupted_runs() and labdb's "dead" status.
std::optional<std::string> run_writer_gone(const RunWriter& writer, int64_t lease_seconds = kDefaultLeaseSeconds);

// SQL that computes RunWriter::silent_s over a row of runs, by this host's clock: the seconds since
// heartbeat_at, or since started_at when heartbeat_at is NULL or, for `has_heartbeat` false, when
// the file has no such column (schema version 1).
std::string run_silence_sql(bool has_heartbeat = true);

// `git rev-parse HEAD` of source_dir (plus "-dirty" when `git status --porcelain` lists changes)
// when source_dir is a git checkout and git works; "unknown" otherwise. Never throws.
std::string code_revision(const std::filesystem::path& source_dir);
// This machine's host name ("unknown" if the system cannot tell).
std::string host_name();
// Now in UTC as ISO-8601 with milliseconds, e.g. "2024-05-01T12:34:56.789Z".
std::string utc_now_iso();

}  // namespace lab
