// ResultStore over the SQLite C API. Every statement is prepared once per connection with bound
// parameters; every return code is checked and turned into a lab::Error that names the database
// file, what was being done, and SQLite's own message.
#include "lab/results.h"

#include <sqlite3.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <exception>
#include <iostream>
#include <limits>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "lab/error.h"
#include "lab/options.h"
#include "results_schema.h"

namespace lab {
namespace {

using SteadyClock = std::chrono::steady_clock;

// A hint per failure class, so the message says what the user can do about it.
const char* hint_for(int result_code) {
    switch (result_code & 0xff) {
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
            return "another process held the database locked for more than 10 s; retry, or look for a "
                   "hung labrun writing the same file";
        case SQLITE_NOTADB:
            return "the file is not a SQLite database; pass the path of a labrun results database or a "
                   "new file name";
        case SQLITE_CORRUPT:
            return "the file is damaged; restore it from a copy or write to a new database file";
        case SQLITE_READONLY:
        case SQLITE_PERM:
        case SQLITE_CANTOPEN:
        case SQLITE_AUTH:
            return "check that the file and its directory exist and are writable";
        case SQLITE_FULL:
            return "the disk is full; free space and rerun";
        case SQLITE_IOERR:
            return "the disk or filesystem reported an I/O error; keep result databases on a local disk";
        case SQLITE_CONSTRAINT:
            return "a row broke a constraint of the schema (a run id that does not exist, a parameter "
                   "key given twice, an unknown status)";
        default:
            return "check that the file is a labrun results database on a local disk";
    }
}

[[noreturn]] void throw_sqlite_error(sqlite3* db, const std::filesystem::path& file, const std::string& purpose,
                                     int result_code) {
    const std::string message = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(result_code);
    throw Error("results database '" + file.string() + "': " + purpose + " failed: " + message +
                "; hint: " + hint_for(result_code));
}

struct DatabaseCloser {
    void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using DatabaseHandle = std::unique_ptr<sqlite3, DatabaseCloser>;

struct StatementFinalizer {
    void operator()(sqlite3_stmt* statement) const { sqlite3_finalize(statement); }
};

// One prepared statement with the purpose used in its error messages.
class Statement {
 public:
    Statement() = default;
    Statement(sqlite3* db, const std::filesystem::path& file, const char* sql, std::string purpose)
        : db_(db), file_(&file), purpose_(std::move(purpose)) {
        sqlite3_stmt* raw = nullptr;
        const int rc = sqlite3_prepare_v2(db, sql, -1, &raw, nullptr);
        statement_.reset(raw);
        if (rc != SQLITE_OK) throw_sqlite_error(db, file, "preparing the statement to " + purpose_, rc);
    }
    sqlite3_stmt* get() const { return statement_.get(); }
    sqlite3* db() const { return db_; }
    const std::filesystem::path& file() const { return *file_; }
    const std::string& purpose() const { return purpose_; }

 private:
    sqlite3* db_ = nullptr;
    const std::filesystem::path* file_ = nullptr;
    std::string purpose_;
    std::unique_ptr<sqlite3_stmt, StatementFinalizer> statement_;
};

// One execution of a prepared statement: clears old bindings on entry and resets on exit, so that
// no statement keeps a read transaction (and its stale snapshot) open between calls.
class Query {
 public:
    explicit Query(Statement& statement) : statement_(statement), raw_(statement.get()) {
        sqlite3_reset(raw_);
        sqlite3_clear_bindings(raw_);
    }
    ~Query() { sqlite3_reset(raw_); }
    Query(const Query&) = delete;
    Query& operator=(const Query&) = delete;

    Query& bind(int index, const std::string& value) {
        check_bind(sqlite3_bind_text(raw_, index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT));
        return *this;
    }
    Query& bind(int index, int64_t value) {
        check_bind(sqlite3_bind_int64(raw_, index, value));
        return *this;
    }
    // SQLite stores NaN as NULL; bind it so explicitly rather than relying on that conversion.
    Query& bind(int index, double value) {
        check_bind(std::isnan(value) ? sqlite3_bind_null(raw_, index) : sqlite3_bind_double(raw_, index, value));
        return *this;
    }
    // An empty string becomes NULL (an absent error message, an unknown device).
    Query& bind_text_or_null(int index, const std::string& value) {
        return value.empty() ? bind_null(index) : bind(index, value);
    }
    Query& bind_null(int index) {
        check_bind(sqlite3_bind_null(raw_, index));
        return *this;
    }

    // True when a row is available, false when the statement is done.
    bool step() {
        const int rc = sqlite3_step(raw_);
        if (rc == SQLITE_ROW) return true;
        if (rc == SQLITE_DONE) return false;
        throw_sqlite_error(statement_.db(), statement_.file(), statement_.purpose(), rc);
    }
    // For statements that return no rows.
    void run() {
        while (step()) {
        }
    }

    int64_t column_int(int column) const { return sqlite3_column_int64(raw_, column); }
    double column_double(int column) const {
        if (sqlite3_column_type(raw_, column) == SQLITE_NULL) return std::numeric_limits<double>::quiet_NaN();
        return sqlite3_column_double(raw_, column);
    }
    bool column_is_null(int column) const { return sqlite3_column_type(raw_, column) == SQLITE_NULL; }
    std::string column_text(int column) const {
        const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(raw_, column));
        const int bytes = sqlite3_column_bytes(raw_, column);
        return text != nullptr ? std::string(text, static_cast<size_t>(bytes)) : std::string();
    }

 private:
    void check_bind(int rc) {
        if (rc != SQLITE_OK) {
            throw_sqlite_error(statement_.db(), statement_.file(), "binding a value to " + statement_.purpose(), rc);
        }
    }
    Statement& statement_;
    sqlite3_stmt* raw_;
};

static_assert(results_schema::kMigrationCount == ResultStore::kSchemaVersion,
              "one migration per schema version: add the migration when raising kSchemaVersion");

std::string random_uid() {
    std::random_device entropy;
    const uint64_t bits = (uint64_t(entropy()) << 32) ^ uint64_t(entropy());
    char text[17];
    std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(bits));
    return text;
}

bool process_is_gone(int64_t pid) {
    if (pid <= 0 || pid > std::numeric_limits<pid_t>::max()) return false;
    // Signal 0 only checks existence; EPERM means it exists but belongs to someone else.
    return ::kill(static_cast<pid_t>(pid), 0) == -1 && errno == ESRCH;
}

}  // namespace

std::string metric_goal_name(MetricGoal goal) {
    switch (goal) {
        case MetricGoal::none: return "none";
        case MetricGoal::minimize: return "min";
        case MetricGoal::maximize: return "max";
    }
    throw Error("metric_goal_name: MetricGoal value " + std::to_string(static_cast<int>(goal)) +
                " is not an enumerator; hint: use one of the MetricGoal enumerators");
}

std::string run_status_name(RunStatus status) {
    switch (status) {
        case RunStatus::running: return "running";
        case RunStatus::finished: return "finished";
        case RunStatus::failed: return "failed";
        case RunStatus::interrupted: return "interrupted";
    }
    throw Error("run_status_name: invalid RunStatus value " + std::to_string(static_cast<int>(status)) +
                "; hint: use one of the RunStatus enumerators");
}

std::optional<std::string> run_writer_gone(const RunWriter& writer, int64_t lease_seconds) {
    const std::string process = "the labrun process (pid " + (writer.pid ? std::to_string(*writer.pid) : "unknown") +
                                " on " + (writer.host.empty() ? "an unknown host" : writer.host) + ")";
    // A pid is only meaningful on its own host, and our own pid is alive by definition.
    if (writer.host == host_name() && writer.pid && *writer.pid != ::getpid() && process_is_gone(*writer.pid)) {
        return process + " ended without finishing the run";
    }
    if (writer.silent_s && *writer.silent_s > double(lease_seconds)) {
        return process + " sent no heartbeat for " + std::to_string(std::llround(*writer.silent_s)) +
               " s, longer than the lease of " + std::to_string(lease_seconds) + " s";
    }
    return std::nullopt;
}

// The age of the last sign of life by the database's clock ('now' is this host's UTC).
std::string run_silence_sql(bool has_heartbeat) {
    return std::string("((julianday('now') - julianday(") +
           (has_heartbeat ? "COALESCE(heartbeat_at, started_at)" : "started_at") + ")) * 86400.0)";
}

struct ResultStore::Impl {
    struct PendingMetric {
        int64_t run, step;
        std::string name;
        double value, time_s;
    };
    struct PendingText {
        int64_t run, step;
        std::string name, text;
    };
    using MetricKey = std::pair<int64_t, std::string>;  // (run, metric name)

    // Declared first so that it is destroyed last, after the statements that use it.
    std::filesystem::path file;
    DatabaseHandle db;
    mutable std::mutex mutex;
    std::vector<PendingMetric> pending_metrics;
    std::vector<PendingText> pending_texts;
    // Goals declared and not yet written, and every goal this store has declared (so that
    // declaring one again buffers nothing).
    std::map<MetricKey, MetricGoal> pending_goals, declared_goals;
    // When each run this store knows started, for metrics.time and runs.wall_s. A monotonic clock,
    // so that a wall-clock adjustment mid-run does not bend the time axis.
    std::map<int64_t, SteadyClock::time_point> run_started;
    // Runs this store is writing (begun, reopened, heartbeat or with rows flushed here, not yet
    // finished): flush() keeps their heartbeat fresh and mark_interrupted_runs() never marks them.
    std::set<int64_t> live_runs;

    Statement begin_immediate, commit, rollback;
    Statement insert_run, insert_param, insert_plugin, insert_metric, insert_text, insert_artifact, upsert_goal;
    Statement update_run_end, select_seconds_since_start;
    Statement update_heartbeat_if_running, update_heartbeat, reopen, delete_metrics_after, delete_texts_after;
    Statement delete_metric_at;
    Statement insert_sweep, select_running, mark_run_interrupted, select_finished_by_hash;
    Statement select_metrics_all, select_metrics_named, select_status, select_uid, select_config;
    Statement select_latest_by_hash, select_run_keys, select_latest_artifact;
    Statement select_plugins;

    explicit Impl(const std::filesystem::path& db_file) : file(db_file) {
        open();
        const int version = read_user_version();
        check_version_known(version);
        set_wal_mode();
        {
            Statement foreign_keys(db.get(), file, "PRAGMA foreign_keys=ON", "turn on foreign keys");
            Query(foreign_keys).run();
        }
        {
            // In WAL mode NORMAL syncs at checkpoints instead of every commit: a crash of the process
            // loses nothing, a power loss may lose the last commits but never corrupts the file.
            Statement synchronous(db.get(), file, "PRAGMA synchronous=NORMAL", "set synchronous=NORMAL");
            Query(synchronous).run();
        }
        begin_immediate = Statement(db.get(), file, "BEGIN IMMEDIATE", "begin a write transaction");
        commit = Statement(db.get(), file, "COMMIT", "commit a write transaction");
        rollback = Statement(db.get(), file, "ROLLBACK", "roll back a write transaction");
        migrate();
        prepare_statements();
    }

    void open() {
        std::error_code ec;
        const std::filesystem::path parent = file.parent_path();
        if (!parent.empty()) std::filesystem::create_directories(parent, ec);
        if (ec) {
            throw Error("results database '" + file.string() + "': cannot create directory '" + parent.string() +
                        "': " + ec.message() + "; hint: choose a db path in a writable directory");
        }
        sqlite3* raw = nullptr;
        const int rc = sqlite3_open_v2(file.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
        db.reset(raw);
        if (rc != SQLITE_OK) throw_sqlite_error(raw, file, "opening the file", rc);
        sqlite3_extended_result_codes(db.get(), 1);
        // Several labrun processes may write one file; a writer waits up to 10 s for the lock
        // instead of failing at once.
        const int busy_rc = sqlite3_busy_timeout(db.get(), 10000);
        if (busy_rc != SQLITE_OK) throw_sqlite_error(db.get(), file, "setting the busy timeout", busy_rc);
    }

    // WAL lets readers (labdb) and one writer work at the same time; set before any schema work so
    // that the schema itself is written through the WAL. Leaving rollback mode needs an exclusive
    // lock, and SQLite answers SQLITE_BUSY at once (without the busy handler, which could
    // deadlock) while another connection reads the file, e.g. a second labrun opening it at the
    // same moment. So retry here, within the same 10 s as the busy timeout.
    void set_wal_mode() {
        Statement set_wal(db.get(), file, "PRAGMA journal_mode=WAL", "switch the database to WAL mode");
        const auto deadline = SteadyClock::now() + std::chrono::seconds(10);
        auto pause = std::chrono::milliseconds(1);
        for (;;) {
            sqlite3_stmt* raw = set_wal.get();
            sqlite3_reset(raw);
            const int rc = sqlite3_step(raw);
            if (rc == SQLITE_ROW) {
                const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(raw, 0));
                const std::string mode = text != nullptr ? text : "";
                sqlite3_reset(raw);
                if (mode == "wal") return;
                throw Error("results database '" + file.string() + "': journal mode is '" + mode +
                            "' instead of 'wal'; hint: keep result databases on a local filesystem that "
                            "supports shared memory (not a network mount)");
            }
            const bool busy = (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED;
            if (!busy || SteadyClock::now() >= deadline) throw_sqlite_error(db.get(), file, set_wal.purpose(), rc);
            sqlite3_reset(raw);
            std::this_thread::sleep_for(pause);
            pause = std::min(pause * 2, std::chrono::milliseconds(50));
        }
    }

    int read_user_version() {
        Statement statement(db.get(), file, "PRAGMA user_version", "read the schema version");
        Query query(statement);
        if (!query.step()) {
            throw Error("results database '" + file.string() +
                        "': PRAGMA user_version returned no row; hint: check that the file is a SQLite database");
        }
        return static_cast<int>(query.column_int(0));
    }

    void check_version_known(int version) const {
        if (version > kSchemaVersion || version < 0) {
            throw Error("results database '" + file.string() + "' has schema version " + std::to_string(version) +
                        ", but this labrun knows schema version " + std::to_string(kSchemaVersion) +
                        " at most; hint: it was written by a newer labrun: upgrade labrun, or write to "
                        "another database file");
        }
    }

    // Runs the migrations the file lacks, inside one write transaction so that two processes
    // opening a new file at once do not both create the schema.
    void migrate() {
        Transaction transaction(*this);
        const int version = read_user_version();
        check_version_known(version);
        for (int from = version; from < kSchemaVersion; ++from) {
            char* message = nullptr;
            // Constant DDL text with no values in it: sqlite3_exec runs its several statements.
            const int rc = sqlite3_exec(db.get(), results_schema::kMigrations[from], nullptr, nullptr, &message);
            if (rc != SQLITE_OK) {
                const std::string detail = message != nullptr ? message : sqlite3_errstr(rc);
                sqlite3_free(message);
                throw Error("results database '" + file.string() + "': migrating the schema from version " +
                            std::to_string(from) + " to " + std::to_string(from + 1) + " failed: " + detail +
                            "; hint: " + hint_for(rc));
            }
        }
        transaction.commit();
    }

    void prepare_statements() {
        sqlite3* handle = db.get();
        insert_run = Statement(handle, file,
                               "INSERT INTO runs (uid, name, experiment, config_hash, config, status, backend, device,"
                               " precision, seed, host, pid, code_revision, started_at, heartbeat_at, sweep,"
                               " threads, libraries, world_size, communicator)"
                               " VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13,"
                               " ?14, ?15, ?16, ?17, ?18)",
                               "insert a run");
        insert_param = Statement(handle, file, "INSERT INTO params (run_id, key, value) VALUES (?1, ?2, ?3)",
                                 "insert a run parameter");
        insert_plugin = Statement(handle, file,
                                  "INSERT INTO plugins (run_id, kind, name, version, file, sha256, abi)"
                                  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                                  "insert a plugin record");
        insert_metric = Statement(handle, file,
                                  "INSERT INTO metrics (run_id, step, name, value, time) VALUES (?1, ?2, ?3, ?4, ?5)",
                                  "insert a metric row");
        insert_text = Statement(handle, file, "INSERT INTO texts (run_id, step, name, text) VALUES (?1, ?2, ?3, ?4)",
                                "insert a text row");
        upsert_goal = Statement(handle, file,
                                "INSERT OR REPLACE INTO metric_goals (run_id, name, goal) VALUES (?1, ?2, ?3)",
                                "record which way a metric improves");
        insert_artifact = Statement(handle, file, "INSERT INTO artifacts (run_id, kind, path) VALUES (?1, ?2, ?3)",
                                    "insert an artifact");
        update_run_end = Statement(handle, file,
                                   "UPDATE runs SET status = ?1, error = ?2, ended_at = ?3, heartbeat_at = ?3,"
                                   " wall_s = ?4 WHERE id = ?5",
                                   "record the end of a run");
        update_heartbeat_if_running = Statement(
            handle, file, "UPDATE runs SET heartbeat_at = ?1 WHERE id = ?2 AND status = 'running'",
            "update the heartbeat of a running run");
        update_heartbeat = Statement(handle, file, "UPDATE runs SET heartbeat_at = ?1 WHERE id = ?2",
                                     "update the heartbeat of a run");
        reopen = Statement(handle, file,
                           "UPDATE runs SET status = 'running', ended_at = NULL, wall_s = NULL, error = NULL,"
                           " host = ?1, pid = ?2, heartbeat_at = ?3 WHERE id = ?4",
                           "reopen a run");
        delete_metrics_after = Statement(handle, file, "DELETE FROM metrics WHERE run_id = ?1 AND step > ?2",
                                         "delete the metrics of a run after a step");
        delete_metric_at = Statement(handle, file, "DELETE FROM metrics WHERE run_id = ?1 AND step = ?2 AND name = ?3",
                                     "delete a metric of a run at a step");
        delete_texts_after = Statement(handle, file, "DELETE FROM texts WHERE run_id = ?1 AND step > ?2",
                                       "delete the texts of a run after a step");
        insert_sweep = Statement(handle, file,
                                 "INSERT OR IGNORE INTO sweeps (id, experiment, created_at, size)"
                                 " VALUES (?1, ?2, ?3, ?4)",
                                 "insert a sweep");
        select_seconds_since_start = Statement(
            handle, file, "SELECT (julianday('now') - julianday(started_at)) * 86400.0 FROM runs WHERE id = ?1",
            "look up when a run started");
        select_running = Statement(
            handle, file,
            ("SELECT id, host, pid, " + run_silence_sql() + " FROM runs WHERE status = 'running' ORDER BY id").c_str(),
            "list the running runs");
        mark_run_interrupted = Statement(
            handle, file, "UPDATE runs SET status = 'interrupted', error = ?1 WHERE id = ?2 AND status = 'running'",
            "mark a run interrupted");
        select_finished_by_hash = Statement(
            handle, file, "SELECT id FROM runs WHERE config_hash = ?1 AND status = 'finished' ORDER BY id DESC LIMIT 1",
            "look up a finished run by configuration hash");
        select_metrics_all = Statement(
            handle, file, "SELECT step, name, value FROM metrics WHERE run_id = ?1 ORDER BY name, step, rowid",
            "read the metrics of a run");
        select_metrics_named = Statement(
            handle, file,
            "SELECT step, name, value FROM metrics WHERE run_id = ?1 AND name = ?2 ORDER BY step, rowid",
            "read one metric of a run");
        select_status = Statement(handle, file, "SELECT status FROM runs WHERE id = ?1", "read the status of a run");
        select_uid = Statement(handle, file, "SELECT uid FROM runs WHERE id = ?1", "read the uid of a run");
        select_config = Statement(handle, file, "SELECT config FROM runs WHERE id = ?1",
                                  "read the configuration of a run");
        select_latest_by_hash = Statement(
            handle, file, "SELECT id, status FROM runs WHERE config_hash = ?1 ORDER BY id DESC LIMIT 1",
            "look up the latest run by configuration hash");
        select_run_keys =
            Statement(handle, file, "SELECT id, uid, name FROM runs ORDER BY id", "list the runs to find one by name");
        select_plugins = Statement(handle, file,
                                   "SELECT kind, name, version, file, sha256, abi FROM plugins WHERE run_id = ?1"
                                   " ORDER BY rowid",
                                   "read the plugins of a run");
        select_latest_artifact = Statement(
            handle, file,
            "SELECT a.path FROM artifacts a JOIN runs r ON r.id = a.run_id WHERE r.status = 'finished' AND a.kind = ?1"
            " AND (?2 = '' OR r.name = ?2) ORDER BY r.id DESC, a.rowid DESC LIMIT 1",
            "look up the latest artifact of a finished run");
    }

    // BEGIN IMMEDIATE takes the write lock at once (waiting up to the busy timeout), so a
    // transaction never fails half-way because another writer got there first. Rolled back unless
    // commit() is reached.
    class Transaction {
     public:
        explicit Transaction(Impl& store) : store_(store) { Query(store_.begin_immediate).run(); }
        void commit() {
            Query(store_.commit).run();
            committed_ = true;
        }
        ~Transaction() {
            if (committed_ || sqlite3_get_autocommit(store_.db.get()) != 0) return;
            // A failed rollback leaves nothing better to do; the error that got us here is
            // already on its way to the caller.
            sqlite3_stmt* raw = store_.rollback.get();
            sqlite3_reset(raw);
            sqlite3_step(raw);
            sqlite3_reset(raw);
        }
        Transaction(const Transaction&) = delete;
        Transaction& operator=(const Transaction&) = delete;

     private:
        Impl& store_;
        bool committed_ = false;
    };

    [[noreturn]] void throw_no_run(int64_t run, const std::string& purpose) const {
        throw Error("results database '" + file.string() + "': " + purpose + ": there is no run with id " +
                    std::to_string(run) + "; hint: use the id that begin_run returned for this database");
    }

    // Seconds since the run started; the first call for a run that this store did not begin (a
    // resumed run) reads started_at from the database and checks that the run exists.
    double seconds_since_start(int64_t run) {
        const SteadyClock::time_point now = SteadyClock::now();
        auto known = run_started.find(run);
        if (known == run_started.end()) {
            Query query(select_seconds_since_start);
            query.bind(1, run);
            if (!query.step()) throw_no_run(run, "logging to a run");
            const double elapsed_s = query.column_is_null(0) ? 0.0 : query.column_double(0);
            const auto elapsed = std::chrono::duration_cast<SteadyClock::duration>(
                std::chrono::duration<double>(std::max(0.0, elapsed_s)));
            known = run_started.emplace(run, now - elapsed).first;
        }
        return std::chrono::duration<double>(now - known->second).count();
    }

    void flush_locked() {
        for (const PendingMetric& metric : pending_metrics) live_runs.insert(metric.run);
        for (const PendingText& text : pending_texts) live_runs.insert(text.run);
        if (pending_metrics.empty() && pending_texts.empty() && pending_goals.empty() && live_runs.empty()) return;
        Transaction transaction(*this);
        for (const PendingMetric& metric : pending_metrics) {
            Query query(insert_metric);
            query.bind(1, metric.run).bind(2, metric.step).bind(3, metric.name).bind(4, metric.value);
            query.bind(5, metric.time_s).run();
        }
        for (const PendingText& text : pending_texts) {
            Query query(insert_text);
            query.bind(1, text.run).bind(2, text.step).bind(3, text.name).bind(4, text.text).run();
        }
        for (const auto& [key, goal] : pending_goals) {
            Query query(upsert_goal);
            query.bind(1, key.first).bind(2, key.second).bind(3, metric_goal_name(goal)).run();
        }
        // The heartbeat rides in the same transaction: one commit per flush, whatever it writes.
        const std::string now = utc_now_iso();
        for (int64_t run : live_runs) {
            Query query(update_heartbeat_if_running);
            query.bind(1, now).bind(2, run).run();
        }
        transaction.commit();
        // Cleared only after COMMIT succeeded: a failed write keeps the rows for the next flush.
        pending_metrics.clear();
        pending_texts.clear();
        pending_goals.clear();
    }
};

ResultStore::ResultStore(const std::filesystem::path& db_file) : impl_(std::make_unique<Impl>(db_file)) {}

ResultStore::~ResultStore() {
    if (!impl_) return;
    try {
        flush();
    } catch (const std::exception& error) {
        std::cerr << "labrun: warning: " << impl_->pending_metrics.size() << " metric rows and "
                  << impl_->pending_texts.size() << " text rows were not written: " << error.what() << "\n";
    } catch (...) {
        std::cerr << "labrun: warning: buffered result rows were not written to '" << impl_->file.string()
                  << "' (unknown error)\n";
    }
}

const std::filesystem::path& ResultStore::file() const { return impl_->file; }

int64_t ResultStore::begin_run(const RunRecord& r, const std::vector<std::pair<std::string, std::string>>& params) {
    // labdb parses runs.libraries; refuse text it could not read rather than store it.
    if (!r.libraries.empty()) {
        const nlohmann::json libraries = nlohmann::json::parse(r.libraries, nullptr, /*allow_exceptions=*/false);
        if (!libraries.is_object()) {
            throw Error("results database '" + impl_->file.string() + "': run '" + r.name +
                        "': libraries is not a JSON object: '" + r.libraries +
                        "'; hint: pass e.g. {\"oneDNN\":\"2.6.3\",\"sqlite\":\"3.40.1\"}, or leave it empty");
        }
    }
    // A world size is always known (the trainer knows its ranks), so a value below 1 is a caller's
    // bug rather than "unknown" as threads = 0 is; and several ranks without a communicator would
    // be a row no reader could trust.
    if (r.world_size < 1) {
        throw Error("results database '" + impl_->file.string() + "': run '" + r.name + "': world_size is " +
                    std::to_string(r.world_size) +
                    "; hint: pass the number of data-parallel ranks that train the run, 1 for one process");
    }
    if (r.world_size > 1 && r.communicator.empty()) {
        throw Error("results database '" + impl_->file.string() + "': run '" + r.name + "': world_size is " +
                    std::to_string(r.world_size) +
                    " but communicator is empty; hint: pass the communicator's name (\"mpi\", \"nccl\") "
                    "with a data-parallel run's world size");
    }
    std::lock_guard<std::mutex> lock(impl_->mutex);
    Impl::Transaction transaction(*impl_);
    const std::string host = r.host.empty() ? host_name() : r.host;
    {
        Query query(impl_->insert_run);
        query.bind(1, random_uid()).bind(2, r.name).bind(3, r.experiment).bind(4, r.config_hash);
        query.bind(5, r.config_text).bind_text_or_null(6, r.backend).bind_text_or_null(7, r.device);
        query.bind_text_or_null(8, r.precision).bind(9, r.seed).bind(10, host);
        query.bind(11, static_cast<int64_t>(::getpid())).bind_text_or_null(12, r.code_revision);
        query.bind(13, utc_now_iso()).bind_text_or_null(14, r.sweep);
        if (r.threads > 0) {
            query.bind(15, r.threads);
        } else {
            query.bind_null(15);
        }
        query.bind_text_or_null(16, r.libraries).bind(17, r.world_size).bind_text_or_null(18, r.communicator);
        query.run();
    }
    const int64_t run = sqlite3_last_insert_rowid(impl_->db.get());
    for (const auto& [key, value] : params) {
        Query query(impl_->insert_param);
        query.bind(1, run).bind(2, key).bind(3, value).run();
    }
    transaction.commit();
    impl_->run_started[run] = SteadyClock::now();
    impl_->live_runs.insert(run);
    return run;
}

void ResultStore::add_plugin(int64_t run, const std::string& kind, const std::string& name, const std::string& version,
                             const std::string& file, const std::string& sha256, const std::string& abi) {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    Query query(impl_->insert_plugin);
    query.bind(1, run).bind(2, kind).bind(3, name).bind_text_or_null(4, version).bind_text_or_null(5, file);
    query.bind_text_or_null(6, sha256).bind_text_or_null(7, abi).run();
}

void ResultStore::add_metric(int64_t run, int64_t step, const std::string& name, double value) {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    const double time_s = impl_->seconds_since_start(run);
    impl_->pending_metrics.push_back({run, step, name, value, time_s});
}

void ResultStore::declare_metric(int64_t run, const std::string& name, MetricGoal goal) {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    const Impl::MetricKey key{run, name};
    const auto declared = impl_->declared_goals.find(key);
    if (declared != impl_->declared_goals.end() && declared->second == goal) return;
    // Checks that the run exists now, not at flush time, so a bad id cannot poison the buffer.
    impl_->seconds_since_start(run);
    impl_->declared_goals[key] = goal;
    impl_->pending_goals[key] = goal;
}

void ResultStore::add_text(int64_t run, int64_t step, const std::string& name, const std::string& text) {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    // Checks that the run exists now, not at flush time, so a bad id cannot poison the buffer.
    impl_->seconds_since_start(run);
    impl_->pending_texts.push_back({run, step, name, text});
}

void ResultStore::add_artifact(int64_t run, const std::string& kind, const std::string& path) {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    Query query(impl_->insert_artifact);
    query.bind(1, run).bind(2, kind).bind(3, path).run();
}

void ResultStore::flush() {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->flush_locked();
}

void ResultStore::finish_run(int64_t run, RunStatus status, const std::string& error) {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    // The final status matters more than the last buffered rows: if the flush fails the status
    // is still recorded, then the flush error is rethrown.
    std::exception_ptr flush_error;
    try {
        impl_->flush_locked();
    } catch (...) {
        flush_error = std::current_exception();
    }
    const double wall_s = impl_->seconds_since_start(run);
    Query query(impl_->update_run_end);
    query.bind(1, run_status_name(status)).bind_text_or_null(2, error).bind(3, utc_now_iso()).bind(4, wall_s);
    query.bind(5, run).run();
    if (sqlite3_changes(impl_->db.get()) != 1) impl_->throw_no_run(run, "finishing a run");
    impl_->live_runs.erase(run);
    if (flush_error) std::rethrow_exception(flush_error);
}

void ResultStore::heartbeat(int64_t run) {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    Query query(impl_->update_heartbeat);
    query.bind(1, utc_now_iso()).bind(2, run).run();
    if (sqlite3_changes(impl_->db.get()) != 1) impl_->throw_no_run(run, "recording a heartbeat");
    impl_->live_runs.insert(run);
}

void ResultStore::reopen_run(int64_t run) {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    Query query(impl_->reopen);
    query.bind(1, host_name()).bind(2, static_cast<int64_t>(::getpid())).bind(3, utc_now_iso()).bind(4, run).run();
    if (sqlite3_changes(impl_->db.get()) != 1) impl_->throw_no_run(run, "reopening a run");
    impl_->live_runs.insert(run);
}

void ResultStore::delete_metrics_after(int64_t run, int64_t step) {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    auto after = [run, step](const auto& row) { return row.run == run && row.step > step; };
    Impl::Transaction transaction(*impl_);
    {
        Query query(impl_->delete_metrics_after);
        query.bind(1, run).bind(2, step).run();
    }
    {
        Query query(impl_->delete_texts_after);
        query.bind(1, run).bind(2, step).run();
    }
    transaction.commit();
    // After COMMIT, so that a failed delete leaves the buffer as it was.
    std::erase_if(impl_->pending_metrics, after);
    std::erase_if(impl_->pending_texts, after);
}

void ResultStore::replace_metrics(int64_t run, int64_t step, const std::map<std::string, double>& values,
                                  const std::map<std::string, MetricGoal>& goals) {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    const double time_s = impl_->seconds_since_start(run);  // throws for a run that does not exist
    auto replaced = [&](const Impl::PendingMetric& row) {
        return row.run == run && row.step == step && values.count(row.name) > 0;
    };
    Impl::Transaction transaction(*impl_);
    for (const auto& [name, value] : values) {
        {
            Query query(impl_->delete_metric_at);
            query.bind(1, run).bind(2, step).bind(3, name).run();
        }
        Query query(impl_->insert_metric);
        query.bind(1, run).bind(2, step).bind(3, name).bind(4, value).bind(5, time_s).run();
    }
    for (const auto& [name, goal] : goals) {
        Query query(impl_->upsert_goal);
        query.bind(1, run).bind(2, name).bind(3, metric_goal_name(goal)).run();
    }
    transaction.commit();
    // After COMMIT, so that a failed write leaves the buffer as it was.
    std::erase_if(impl_->pending_metrics, replaced);
    for (const auto& [name, goal] : goals) {
        impl_->declared_goals[{run, name}] = goal;
        impl_->pending_goals.erase({run, name});
    }
}

void ResultStore::add_sweep(const std::string& id, const std::string& experiment, int64_t size) {
    if (id.empty()) {
        throw Error("results database '" + impl_->file.string() + "': a sweep of experiment '" + experiment +
                    "' has an empty id; hint: pass the id that the runs' RunRecord::sweep holds");
    }
    std::lock_guard<std::mutex> lock(impl_->mutex);
    Query query(impl_->insert_sweep);
    query.bind(1, id).bind_text_or_null(2, experiment).bind(3, utc_now_iso()).bind(4, size).run();
}

std::vector<int64_t> ResultStore::mark_interrupted_runs(int64_t lease_seconds) {
    if (lease_seconds < 1) {
        throw Error("results database '" + impl_->file.string() + "': a lease of " + std::to_string(lease_seconds) +
                    " s for running runs; hint: pass at least 1 s, well above the gap between heartbeats (the "
                    "default is 600 s)");
    }
    std::lock_guard<std::mutex> lock(impl_->mutex);
    const std::string this_host = host_name();
    const int64_t this_pid = ::getpid();
    std::vector<int64_t> interrupted;
    Impl::Transaction transaction(*impl_);
    std::vector<std::pair<int64_t, RunWriter>> running;
    {
        Query query(impl_->select_running);
        while (query.step()) {
            RunWriter writer{query.column_text(1), std::nullopt, std::nullopt};
            if (!query.column_is_null(2)) writer.pid = query.column_int(2);
            if (!query.column_is_null(3)) writer.silent_s = query.column_double(3);
            running.emplace_back(query.column_int(0), std::move(writer));
        }
    }
    for (const auto& [run, writer] : running) {
        // This store's own runs are alive, however quiet; the pid guards against a row that another
        // process has taken over since (reopen_run).
        if (impl_->live_runs.count(run) != 0 && writer.pid == this_pid) continue;
        const std::optional<std::string> reason = run_writer_gone(writer, lease_seconds);
        if (!reason) continue;
        Query query(impl_->mark_run_interrupted);
        query.bind(1, *reason + "; found at " + utc_now_iso() + " by pid " + std::to_string(this_pid) + " on " +
                          this_host);
        query.bind(2, run).run();
        if (sqlite3_changes(impl_->db.get()) == 1) interrupted.push_back(run);
    }
    transaction.commit();
    return interrupted;
}

std::optional<int64_t> ResultStore::find_finished_run(const std::string& config_hash) const {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    Query query(impl_->select_finished_by_hash);
    query.bind(1, config_hash);
    if (!query.step()) return std::nullopt;
    return query.column_int(0);
}

std::optional<ResultStore::RunRef> ResultStore::latest_run(const std::string& config_hash) const {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    Query query(impl_->select_latest_by_hash);
    query.bind(1, config_hash);
    if (!query.step()) return std::nullopt;
    return RunRef{query.column_int(0), query.column_text(1)};
}

std::optional<std::string> ResultStore::latest_artifact(const std::string& kind, const std::string& run_name) const {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    Query query(impl_->select_latest_artifact);
    query.bind(1, kind);
    query.bind(2, run_name);
    if (!query.step()) return std::nullopt;
    return query.column_text(0);
}

int64_t ResultStore::find_run(const std::string& spec) const {
    std::vector<RunKey> runs;
    {
        std::lock_guard<std::mutex> lock(impl_->mutex);
        Query query(impl_->select_run_keys);
        while (query.step()) runs.push_back({query.column_int(0), query.column_text(1), query.column_text(2)});
    }
    return match_run(runs, spec, impl_->file.string()).id;
}

std::string describe_run(const RunKey& run) {
    return std::to_string(run.id) + " (" + run.name + ", uid " + run.uid.substr(0, 8) + ")";
}

const RunKey& match_run(const std::vector<RunKey>& runs, const std::string& spec, const std::string& database) {
    auto list = [](const std::vector<const RunKey*>& some) {
        std::string text;
        for (const RunKey* run : some) text += "\n  " + describe_run(*run);
        return text;
    };
    const bool all_digits = !spec.empty() && spec.find_first_not_of("0123456789") == std::string::npos;
    if (all_digits && spec.size() <= 18) {  // 18 digits always fit an int64_t
        const int64_t id = std::stoll(spec);
        for (const RunKey& run : runs)
            if (run.id == id) return run;
    }
    auto lower = [](std::string text) {
        std::transform(text.begin(), text.end(), text.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        return text;
    };
    const std::string prefix = lower(spec);
    const bool uid_long_enough = spec.size() >= kMinRunUidPrefix;
    std::vector<const RunKey*> candidates;
    for (const RunKey& run : runs) {
        const bool by_uid = uid_long_enough && lower(run.uid).compare(0, prefix.size(), prefix) == 0;
        if (by_uid || run.name == spec) candidates.push_back(&run);
    }
    if (candidates.size() == 1) return *candidates.front();
    const std::string hint = "\nhint: `labdb runs --db " + database + "` lists the ids, uids and names of its runs";
    if (candidates.size() > 1)
        throw RunLookupError("run '" + spec + "' is ambiguous in '" + database + "': it matches several runs (" +
                             std::to_string(candidates.size()) + "):" + list(candidates) +
                             "\nhint: name the run by its numeric id or a longer uid prefix");
    if (runs.empty())
        throw RunLookupError("no run matches '" + spec + "': the database '" + database +
                             "' has no runs; hint: check the database file (--db), or run an experiment with labrun");
    std::vector<std::string> tried;
    if (all_digits) tried.push_back("id " + spec);
    if (uid_long_enough) tried.push_back("uid '" + spec + "'");
    tried.push_back("name '" + spec + "'");
    std::string message = "no run matches '" + spec + "' in '" + database + "': there is no run with " +
                          join(tried, " nor ");
    if (!uid_long_enough)
        message += " (a uid is named by a prefix of at least " + std::to_string(kMinRunUidPrefix) + " characters)";
    // The closest names first: a misspelt name is the likeliest mistake.
    std::vector<const RunKey*> closest;
    for (const RunKey& run : runs) closest.push_back(&run);
    std::stable_sort(closest.begin(), closest.end(), [&](const RunKey* a, const RunKey* b) {
        return edit_distance(spec, a->name) < edit_distance(spec, b->name);
    });
    std::vector<const RunKey*> shown;
    for (const RunKey* run : closest) {
        const bool same_name = std::any_of(shown.begin(), shown.end(), [&](const RunKey* s) { return s->name == run->name; });
        if (!same_name && shown.size() < 5) shown.push_back(run);
    }
    throw RunLookupError(message + "; closest runs:" + list(shown) + hint);
}

std::vector<ResultStore::MetricRow> ResultStore::metrics(int64_t run, const std::string& name) const {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    Query query(name.empty() ? impl_->select_metrics_all : impl_->select_metrics_named);
    query.bind(1, run);
    if (!name.empty()) query.bind(2, name);
    std::vector<MetricRow> rows;
    while (query.step()) rows.push_back({query.column_int(0), query.column_text(1), query.column_double(2)});
    return rows;
}

std::string ResultStore::status(int64_t run) const {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    Query query(impl_->select_status);
    query.bind(1, run);
    if (!query.step()) impl_->throw_no_run(run, "reading the status of a run");
    return query.column_text(0);
}

std::string ResultStore::config_text(int64_t run) const {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    Query query(impl_->select_config);
    query.bind(1, run);
    if (!query.step()) impl_->throw_no_run(run, "reading the configuration of a run");
    return query.column_text(0);
}

std::vector<ResultStore::PluginRow> ResultStore::plugins(int64_t run) const {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    Query query(impl_->select_plugins);
    query.bind(1, run);
    std::vector<PluginRow> rows;
    while (query.step())
        rows.push_back({query.column_text(0), query.column_text(1), query.column_text(2), query.column_text(3),
                        query.column_text(4), query.column_text(5)});
    return rows;
}

std::string ResultStore::uid(int64_t run) const {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    Query query(impl_->select_uid);
    query.bind(1, run);
    if (!query.step()) impl_->throw_no_run(run, "reading the uid of a run");
    return query.column_text(0);
}

}  // namespace lab
