// labdb's view of a results database (docs/results-schema.md): a thin RAII layer over the SQLite
// C API. Every value reaches SQL through a bound parameter; the only text ever pasted into SQL is
// a fixed clause or a column name read from the schema of a database labdb created itself.
//
// The schema grows (version 1: runs, params, metrics, plugins, artifacts, texts; version 2 adds
// runs.sweep, runs.threads, runs.libraries, runs.heartbeat_at and the sweeps table; version 3 the
// metric_goals table; version 4 runs.world_size and runs.communicator; version 5 plugins.abi), so
// queries that use a newer column ask has_column() first instead of trusting user_version alone.
// A file of a schema version newer than this build's labrun writes is refused.
#pragma once
#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lab/error.h"

namespace labdb {

// Exit codes of labdb; main.cpp is the one place that maps exceptions to them.
enum ExitCode { kExitOk = 0, kExitFailure = 1, kExitUsage = 2, kExitNotFound = 3 };

// A bad command line: exit code 2.
struct UsageError : lab::Error {
    using lab::Error::Error;
};
// A run, sweep, metric or file that does not exist, or a name that matches several runs: exit code 3.
struct NotFoundError : lab::Error {
    using lab::Error::Error;
};

class Database;

// One prepared statement. Bindings are 1-based as in SQLite; columns are 0-based.
class Statement {
 public:
    Statement(const Database& database, const std::string& sql, std::string purpose);
    ~Statement();
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;

    Statement& bind(int index, const std::string& value);
    Statement& bind(int index, int64_t value);
    // NaN is bound as NULL: SQLite has no NaN, and the store reads NULL back as NaN.
    Statement& bind(int index, double value);
    Statement& bind_null(int index);
    // Copies column `column` of `from`'s current row with its own storage class (merge).
    Statement& bind_column(int index, const Statement& from, int column);

    // True while a row is available; false when the statement is done.
    bool step();
    // For statements that return no rows.
    void run();
    void reset();

    int column_count() const;
    std::string column_name(int column) const;
    bool is_null(int column) const;
    // SQLITE_INTEGER, SQLITE_FLOAT, SQLITE_TEXT, SQLITE_BLOB or SQLITE_NULL.
    int column_type(int column) const;
    int64_t column_int(int column) const;
    // NaN for NULL.
    double column_double(int column) const;
    // "" for NULL.
    std::string column_text(int column) const;
    std::optional<std::string> column_optional_text(int column) const;
    std::optional<double> column_optional_double(int column) const;

 private:
    void check_bind(int rc) const;
    const Database& database_;
    sqlite3_stmt* statement_ = nullptr;
    std::string purpose_;
};

class Database {
 public:
    enum class Mode { read_only, read_write };
    // Opens an existing results database. Throws NotFoundError when the file does not exist and
    // lab::Error when it is not a SQLite file, has no runs table, or has a schema version newer
    // than lab::ResultStore::kSchemaVersion (written by a newer labrun).
    Database(const std::filesystem::path& file, Mode mode);
    ~Database();
    Database(const Database&) = delete;
    Database& operator=(const Database&) = delete;

    const std::filesystem::path& file() const { return file_; }
    sqlite3* handle() const { return db_; }

    int user_version() const;
    bool has_table(const std::string& table) const;
    bool has_column(const std::string& table, const std::string& column) const;
    // Column names of `table` in schema order (empty when the table does not exist).
    std::vector<std::string> columns(const std::string& table) const;
    // Runs constant SQL with no values in it (BEGIN, COMMIT, PRAGMA ...).
    void execute(const std::string& sql, const std::string& purpose) const;

    [[noreturn]] void fail(const std::string& purpose, int rc) const;

 private:
    std::filesystem::path file_;
    sqlite3* db_ = nullptr;
};

// A double quoted SQL identifier ("a""b"), for column names taken from a schema.
std::string quote_identifier(const std::string& name);

}  // namespace labdb
