// ResultStore over the SQLite C API. Every statement is prepared once per connection with bound
// parameters; every return code is checked and turned into a lab::Error that names the database
// file, what was being done, and SQLite's own message.
#include "lab/results.h"

#include <sqlite3.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <exception>
#include <iostream>
#include <iterator>
#include <limits>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "lab/error.h"

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

// Forward migrations: kMigrations[v] takes a database from user_version v to v + 1. Version 0 is
// an empty (new) file. Each entry sets its own user_version so a migration is one unit.
constexpr const char* kMigrations[] = {
    // 0 -> 1: the first schema.
    R"sql(
CREATE TABLE runs (
    id            INTEGER PRIMARY KEY,
    uid           TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    experiment    TEXT NOT NULL,
    config_hash   TEXT NOT NULL,
    config        TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed', 'interrupted')),
    error         TEXT,
    backend       TEXT,
    device        TEXT,
    precision     TEXT,
    seed          INTEGER,
    host          TEXT,
    pid           INTEGER,
    code_revision TEXT,
    started_at    TEXT NOT NULL,
    ended_at      TEXT,
    wall_s        REAL
);
CREATE INDEX runs_by_config_hash ON runs (config_hash, status);
CREATE INDEX runs_by_experiment ON runs (experiment);
CREATE TABLE params (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE TABLE metrics (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step   INTEGER NOT NULL,
    name   TEXT NOT NULL,
    value  REAL,
    time   REAL NOT NULL
);
CREATE INDEX metrics_by_run_name_step ON metrics (run_id, name, step);
CREATE TABLE plugins (
    run_id  INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    kind    TEXT NOT NULL,
    name    TEXT NOT NULL,
    version TEXT,
    file    TEXT,
    sha256  TEXT
);
CREATE INDEX plugins_by_run ON plugins (run_id);
CREATE TABLE artifacts (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    kind   TEXT NOT NULL,
    path   TEXT NOT NULL
);
CREATE INDEX artifacts_by_run ON artifacts (run_id);
CREATE TABLE texts (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step   INTEGER NOT NULL,
    name   TEXT NOT NULL,
    text   TEXT NOT NULL
);
CREATE INDEX texts_by_run_name_step ON texts (run_id, name, step);
-- One row per run with the last logged losses: "the last value" is the row with the highest step,
-- and among rows of the same step (a resumed run may log a step twice) the one written last.
CREATE VIEW run_summary AS
SELECT r.id, r.name, r.experiment, r.status, r.started_at, r.wall_s,
       (SELECT m.value FROM metrics AS m WHERE m.run_id = r.id AND m.name = 'val/loss'
        ORDER BY m.step DESC, m.rowid DESC LIMIT 1) AS val_loss,
       (SELECT m.value FROM metrics AS m WHERE m.run_id = r.id AND m.name = 'train/loss'
        ORDER BY m.step DESC, m.rowid DESC LIMIT 1) AS train_loss
FROM runs AS r;
PRAGMA user_version = 1;
)sql",
};
static_assert(std::size(kMigrations) == ResultStore::kSchemaVersion,
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

    // Declared first so that it is destroyed last, after the statements that use it.
    std::filesystem::path file;
    DatabaseHandle db;
    mutable std::mutex mutex;
    std::vector<PendingMetric> pending_metrics;
    std::vector<PendingText> pending_texts;
    // When each run this store knows started, for metrics.time and runs.wall_s. A monotonic clock,
    // so that a wall-clock adjustment mid-run does not bend the time axis.
    std::map<int64_t, SteadyClock::time_point> run_started;

    Statement begin_immediate, commit, rollback;
    Statement insert_run, insert_param, insert_plugin, insert_metric, insert_text, insert_artifact;
    Statement update_run_end, select_seconds_since_start;
    Statement select_running_on_host, mark_run_interrupted, select_finished_by_hash;
    Statement select_metrics_all, select_metrics_named, select_status, select_uid;

    explicit Impl(const std::filesystem::path& db_file) : file(db_file) {
        open();
        const int version = read_user_version();
        check_version_known(version);
        set_wal_mode();
        {
            Statement foreign_keys(db.get(), file, "PRAGMA foreign_keys=ON", "turn on foreign keys");
            Query(foreign_keys).run();
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
            const int rc = sqlite3_exec(db.get(), kMigrations[from], nullptr, nullptr, &message);
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
                               " precision, seed, host, pid, code_revision, started_at)"
                               " VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                               "insert a run");
        insert_param = Statement(handle, file, "INSERT INTO params (run_id, key, value) VALUES (?1, ?2, ?3)",
                                 "insert a run parameter");
        insert_plugin = Statement(handle, file,
                                  "INSERT INTO plugins (run_id, kind, name, version, file, sha256)"
                                  " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                                  "insert a plugin record");
        insert_metric = Statement(handle, file,
                                  "INSERT INTO metrics (run_id, step, name, value, time) VALUES (?1, ?2, ?3, ?4, ?5)",
                                  "insert a metric row");
        insert_text = Statement(handle, file, "INSERT INTO texts (run_id, step, name, text) VALUES (?1, ?2, ?3, ?4)",
                                "insert a text row");
        insert_artifact = Statement(handle, file, "INSERT INTO artifacts (run_id, kind, path) VALUES (?1, ?2, ?3)",
                                    "insert an artifact");
        update_run_end = Statement(handle, file,
                                   "UPDATE runs SET status = ?1, error = ?2, ended_at = ?3, wall_s = ?4 WHERE id = ?5",
                                   "record the end of a run");
        select_seconds_since_start = Statement(
            handle, file, "SELECT (julianday('now') - julianday(started_at)) * 86400.0 FROM runs WHERE id = ?1",
            "look up when a run started");
        select_running_on_host = Statement(
            handle, file, "SELECT id, pid FROM runs WHERE status = 'running' AND host = ?1 AND pid IS NOT NULL",
            "list the running runs of this host");
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
        if (pending_metrics.empty() && pending_texts.empty()) return;
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
        transaction.commit();
        // Cleared only after COMMIT succeeded: a failed write keeps the rows for the next flush.
        pending_metrics.clear();
        pending_texts.clear();
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
    std::lock_guard<std::mutex> lock(impl_->mutex);
    Impl::Transaction transaction(*impl_);
    const std::string host = r.host.empty() ? host_name() : r.host;
    {
        Query query(impl_->insert_run);
        query.bind(1, random_uid()).bind(2, r.name).bind(3, r.experiment).bind(4, r.config_hash);
        query.bind(5, r.config_text).bind_text_or_null(6, r.backend).bind_text_or_null(7, r.device);
        query.bind_text_or_null(8, r.precision).bind(9, r.seed).bind(10, host);
        query.bind(11, static_cast<int64_t>(::getpid())).bind_text_or_null(12, r.code_revision);
        query.bind(13, utc_now_iso()).run();
    }
    const int64_t run = sqlite3_last_insert_rowid(impl_->db.get());
    for (const auto& [key, value] : params) {
        Query query(impl_->insert_param);
        query.bind(1, run).bind(2, key).bind(3, value).run();
    }
    transaction.commit();
    impl_->run_started[run] = SteadyClock::now();
    return run;
}

void ResultStore::add_plugin(int64_t run, const std::string& kind, const std::string& name, const std::string& version,
                             const std::string& file, const std::string& sha256) {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    Query query(impl_->insert_plugin);
    query.bind(1, run).bind(2, kind).bind(3, name).bind_text_or_null(4, version).bind_text_or_null(5, file);
    query.bind_text_or_null(6, sha256).run();
}

void ResultStore::add_metric(int64_t run, int64_t step, const std::string& name, double value) {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    const double time_s = impl_->seconds_since_start(run);
    impl_->pending_metrics.push_back({run, step, name, value, time_s});
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
    if (flush_error) std::rethrow_exception(flush_error);
}

std::vector<int64_t> ResultStore::mark_interrupted_runs() {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    const std::string host = host_name();
    std::vector<int64_t> interrupted;
    Impl::Transaction transaction(*impl_);
    std::vector<std::pair<int64_t, int64_t>> candidates;  // (run id, pid)
    {
        Query query(impl_->select_running_on_host);
        query.bind(1, host);
        while (query.step()) candidates.emplace_back(query.column_int(0), query.column_int(1));
    }
    for (const auto& [run, pid] : candidates) {
        if (pid == ::getpid() || !process_is_gone(pid)) continue;
        Query query(impl_->mark_run_interrupted);
        query.bind(1, "the labrun process (pid " + std::to_string(pid) + " on " + host +
                          ") ended without finishing the run; found at " + utc_now_iso());
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

std::string ResultStore::uid(int64_t run) const {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    Query query(impl_->select_uid);
    query.bind(1, run);
    if (!query.step()) impl_->throw_no_run(run, "reading the uid of a run");
    return query.column_text(0);
}

// ---- process facts -------------------------------------------------------------------------

namespace {

// Runs a shell command, returns its stdout, or nullopt when it cannot start or exits non-zero.
std::optional<std::string> command_output(const std::string& command) {
    FILE* pipe = ::popen(command.c_str(), "r");
    if (pipe == nullptr) return std::nullopt;
    std::string output;
    char buffer[4096];
    size_t got = 0;
    while ((got = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, got);
    const int status = ::pclose(pipe);
    if (status != 0) return std::nullopt;
    return output;
}

// Single-quotes a path for /bin/sh: ' becomes '\''.
std::string shell_quote(const std::string& text) {
    std::string quoted = "'";
    for (char c : text) {
        if (c == '\'') {
            quoted += "'\\''";
        } else {
            quoted += c;
        }
    }
    return quoted + "'";
}

}  // namespace

std::string code_revision(const std::filesystem::path& source_dir) {
    try {
        std::error_code ec;
        if (!std::filesystem::exists(source_dir / ".git", ec)) return "unknown";
        const std::string git = "git -C " + shell_quote(source_dir.string());
        const std::optional<std::string> head = command_output(git + " rev-parse HEAD 2>/dev/null");
        if (!head) return "unknown";
        std::string revision = *head;
        while (!revision.empty() && (revision.back() == '\n' || revision.back() == '\r')) revision.pop_back();
        // 40 hex digits (SHA-1 repositories) or 64 (SHA-256 repositories); anything else is not a commit.
        const bool is_hex = revision.find_first_not_of("0123456789abcdef") == std::string::npos;
        if (!is_hex || (revision.size() != 40 && revision.size() != 64)) return "unknown";
        const std::optional<std::string> changes = command_output(git + " status --porcelain 2>/dev/null");
        if (changes && !changes->empty()) revision += "-dirty";
        return revision;
    } catch (const std::exception&) {
        return "unknown";
    }
}

std::string host_name() {
    char name[256] = {};
    if (::gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "unknown";
    return name;
}

std::string utc_now_iso() {
    const auto now = std::chrono::system_clock::now();
    const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
    const auto millis =
        std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
    std::tm utc{};
    ::gmtime_r(&seconds, &utc);
    char text[32];
    const size_t length = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
    std::snprintf(text + length, sizeof text - length, ".%03dZ", static_cast<int>(millis));
    return text;
}

}  // namespace lab
