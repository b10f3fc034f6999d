#include "database.h"

#include <cmath>
#include <limits>

#include "lab/results.h"

namespace labdb {
namespace {

const char* hint_for(int rc) {
    switch (rc & 0xff) {
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
            return "another process held the database locked for more than 10 s; retry when the writer is done";
        case SQLITE_NOTADB:
            return "the file is not a SQLite database; pass a labrun results database with --db";
        case SQLITE_CORRUPT:
            return "the file is damaged; restore it from a copy";
        case SQLITE_READONLY:
        case SQLITE_PERM:
        case SQLITE_CANTOPEN:
            return "check that the file and its directory exist and are readable (and writable for merge)";
        case SQLITE_FULL:
            return "the disk is full; free space and rerun";
        default:
            return "check that the file is a labrun results database on a local disk";
    }
}

}  // namespace

std::string quote_identifier(const std::string& name) {
    std::string quoted = "\"";
    for (char c : name) {
        if (c == '"') quoted += '"';
        quoted += c;
    }
    return quoted + "\"";
}

// ---- Statement ------------------------------------------------------------------------------

Statement::Statement(const Database& database, const std::string& sql, std::string purpose)
    : database_(database), purpose_(std::move(purpose)) {
    const int rc = sqlite3_prepare_v2(database_.handle(), sql.c_str(), -1, &statement_, nullptr);
    if (rc != SQLITE_OK) database_.fail("preparing the statement to " + purpose_, rc);
}

Statement::~Statement() { sqlite3_finalize(statement_); }

void Statement::check_bind(int rc) const {
    if (rc != SQLITE_OK) database_.fail("binding a value to " + purpose_, rc);
}

Statement& Statement::bind(int index, const std::string& value) {
    check_bind(sqlite3_bind_text(statement_, index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT));
    return *this;
}

Statement& Statement::bind(int index, int64_t value) {
    check_bind(sqlite3_bind_int64(statement_, index, value));
    return *this;
}

Statement& Statement::bind(int index, double value) {
    check_bind(std::isnan(value) ? sqlite3_bind_null(statement_, index) : sqlite3_bind_double(statement_, index, value));
    return *this;
}

Statement& Statement::bind_null(int index) {
    check_bind(sqlite3_bind_null(statement_, index));
    return *this;
}

Statement& Statement::bind_column(int index, const Statement& from, int column) {
    check_bind(sqlite3_bind_value(statement_, index, sqlite3_column_value(from.statement_, column)));
    return *this;
}

bool Statement::step() {
    const int rc = sqlite3_step(statement_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    database_.fail(purpose_, rc);
}

void Statement::run() {
    while (step()) {
    }
    reset();
}

void Statement::reset() {
    sqlite3_reset(statement_);
    sqlite3_clear_bindings(statement_);
}

int Statement::column_count() const { return sqlite3_column_count(statement_); }

std::string Statement::column_name(int column) const {
    const char* name = sqlite3_column_name(statement_, column);
    return name != nullptr ? name : "";
}

bool Statement::is_null(int column) const { return sqlite3_column_type(statement_, column) == SQLITE_NULL; }

int Statement::column_type(int column) const { return sqlite3_column_type(statement_, column); }

int64_t Statement::column_int(int column) const { return sqlite3_column_int64(statement_, column); }

double Statement::column_double(int column) const {
    if (is_null(column)) return std::numeric_limits<double>::quiet_NaN();
    return sqlite3_column_double(statement_, column);
}

std::string Statement::column_text(int column) const {
    const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(statement_, column));
    const int bytes = sqlite3_column_bytes(statement_, column);
    return text != nullptr ? std::string(text, static_cast<size_t>(bytes)) : std::string();
}

std::optional<std::string> Statement::column_optional_text(int column) const {
    if (is_null(column)) return std::nullopt;
    return column_text(column);
}

std::optional<double> Statement::column_optional_double(int column) const {
    if (is_null(column)) return std::nullopt;
    return sqlite3_column_double(statement_, column);
}

// ---- Database -------------------------------------------------------------------------------

Database::Database(const std::filesystem::path& file, Mode mode) : file_(file) {
    std::error_code ec;
    if (std::filesystem::exists(file_, ec) && !std::filesystem::is_regular_file(file_, ec)) {
        throw lab::Error("results database '" + file_.string() +
                         "' is not a file; hint: pass the database file itself with --db FILE, e.g. results/lab.db");
    }
    if (!std::filesystem::is_regular_file(file_, ec)) {
        throw NotFoundError("results database '" + file_.string() +
                            "' does not exist; hint: pass the database labrun wrote with --db FILE "
                            "(the [experiment] db of the experiment, default results/lab.db)");
    }
    const int flags = mode == Mode::read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
    const int rc = sqlite3_open_v2(file_.c_str(), &db_, flags, nullptr);
    if (rc != SQLITE_OK) fail("opening the file", rc);
    sqlite3_extended_result_codes(db_, 1);
    // labrun may be writing the file right now; wait for its short transactions.
    sqlite3_busy_timeout(db_, 10000);
    if (mode == Mode::read_write) execute("PRAGMA foreign_keys=ON", "turn on foreign keys");
    // A newer schema may have changed what the known columns mean; guessing could mislead.
    const int version = user_version();
    if (version > lab::ResultStore::kSchemaVersion) {
        throw lab::Error("results database '" + file_.string() + "' has schema version " + std::to_string(version) +
                         ", but this labdb knows schema version " + std::to_string(lab::ResultStore::kSchemaVersion) +
                         " at most; hint: it was written by a newer labrun: use the labdb built with that labrun, " +
                         "or rebuild labdb from the same source");
    }
    if (!has_table("runs")) {
        throw lab::Error("'" + file_.string() + "' has no runs table, so it is not a labrun results database " +
                         "(schema version " + std::to_string(version) +
                         "); hint: pass the database labrun wrote with --db FILE");
    }
}

Database::~Database() { sqlite3_close_v2(db_); }

void Database::fail(const std::string& purpose, int rc) const {
    const std::string message = db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    throw lab::Error("results database '" + file_.string() + "': " + purpose + " failed: " + message +
                     "; hint: " + hint_for(rc));
}

void Database::execute(const std::string& sql, const std::string& purpose) const {
    char* message = nullptr;
    const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &message);
    if (rc != SQLITE_OK) {
        const std::string detail = message != nullptr ? message : sqlite3_errstr(rc);
        sqlite3_free(message);
        throw lab::Error("results database '" + file_.string() + "': " + purpose + " failed: " + detail +
                         "; hint: " + hint_for(rc));
    }
}

int Database::user_version() const {
    Statement query(*this, "PRAGMA user_version", "read the schema version");
    return query.step() ? static_cast<int>(query.column_int(0)) : 0;
}

bool Database::has_table(const std::string& table) const {
    Statement query(*this, "SELECT 1 FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?1",
                    "look up a table");
    query.bind(1, table);
    return query.step();
}

bool Database::has_column(const std::string& table, const std::string& column) const {
    Statement query(*this, "SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2", "look up a column");
    query.bind(1, table).bind(2, column);
    return query.step();
}

std::vector<std::string> Database::columns(const std::string& table) const {
    Statement query(*this, "SELECT name FROM pragma_table_info(?1) ORDER BY cid", "list the columns of a table");
    query.bind(1, table);
    std::vector<std::string> names;
    while (query.step()) names.push_back(query.column_text(0));
    return names;
}

}  // namespace labdb
