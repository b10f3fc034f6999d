// Helpers shared by the test executables (test-only, never installed): scratch directories,
// whole-file reads, running a built binary as a child process, and a plain SQLite connection to
// read back what the code under test wrote. They report problems through Catch2 (REQUIRE/FAIL),
// so call them from inside a test case.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <ostream>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

struct sqlite3;

namespace lab_test {

// A plugin factory for registries that only declare plugins (config tests read declarations):
// calling it means a bug in the test. E.g. registry.add_model(decl, unused_factory<lab::Model>()).
template <class Product>
auto unused_factory() {
    return [](auto&&...) -> std::shared_ptr<Product> {
        throw std::logic_error("factory called in a declarations-only test");
    };
}

// A fresh directory under the system temp folder, unique per process and per call (so parallel
// ctest processes never share one), removed with everything in it by the destructor.
class TempDir {
 public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    // Writes `text` to `name` (a path relative to the directory; missing folders are made) and
    // returns the file's full path.
    std::filesystem::path write(const std::string& name, const std::string& text) const;

    std::filesystem::path path;
};

// The whole file, byte for byte; "" when it cannot be read.
std::string read_text(const std::filesystem::path& file);

// `text` split at newlines, without them.
std::vector<std::string> lines_of(const std::string& text);

// The repository's data folder, which tools/get_data.sh fills, the committed test fixtures, and
// the labrun this build made.
inline const std::filesystem::path kDataDir = std::filesystem::path(LAB_SOURCE_DIR) / "data";
inline const std::filesystem::path kFixturesDir = std::filesystem::path(LAB_SOURCE_DIR) / "tests" / "fixtures";
inline const std::filesystem::path kLabrunBinary = std::filesystem::path(LAB_BINARY_DIR) / "bin" / "labrun";

// kDataDir; FAILs with how to fetch tinyshakespeare when it is not there.
std::filesystem::path shakespeare_data_dir();

// What a finished child process did. A signal shows as 128 + its number, as in the shell, so it
// fails every exit-code check.
struct Outcome {
    int exit_code = -1;
    std::string out, err;
};

// All of it, for INFO() when a check on the outcome fails.
std::ostream& operator<<(std::ostream& os, const Outcome& outcome);

// Runs `binary` with `args` to completion: `stdin_text` on its standard input, and `env_changes`
// added to (or, with an empty value, removed from) this process's environment. LAB_PLUGIN_PATH
// and LAB_DATA are always cleared first (an entry in `env_changes` sets them) so that the
// caller's shell cannot change what the tests see. stdout and stderr go to files rather than
// pipes so that a chatty child can never block on a full pipe.
Outcome run_program(const std::filesystem::path& binary, const std::vector<std::string>& args,
                    const std::string& stdin_text = "", std::map<std::string, std::string> env_changes = {});

// Starts `binary` with `args` and returns at once with its pid, for tests that signal it. Its
// stdout and stderr are both appended to `log`; stdin and the environment are this process's.
// Collect it with wait_exit.
pid_t spawn_program(const std::filesystem::path& binary, const std::vector<std::string>& args,
                    const std::filesystem::path& log);

// Waits for the child `pid` to end: its exit status, or 128 + the signal that ended it.
int wait_exit(pid_t pid);

// One column value of a result row, read back through a plain connection.
struct Cell {
    int type = 0;  // SQLITE_INTEGER, SQLITE_FLOAT, SQLITE_TEXT, SQLITE_BLOB or SQLITE_NULL, as stored
    bool is_null = true;
    int64_t integer = 0;
    double real = 0;
    std::string text;  // all bytes, NULs included
};
using Row = std::vector<Cell>;
// A value bound to ?1, ?2, ... in the SQL text, in order.
using Bound = std::variant<int64_t, std::string>;

// A second, independent connection to a database file, as the sqlite3 shell or labdb would open
// it: what tests check the code under test against. Read-write opening creates a missing file.
class PlainSqlite {
 public:
    enum class Access { read_only, read_write };

    explicit PlainSqlite(const std::filesystem::path& file, Access access = Access::read_write);
    ~PlainSqlite();
    PlainSqlite(const PlainSqlite&) = delete;
    PlainSqlite& operator=(const PlainSqlite&) = delete;

    // Runs SQL without values (one or more statements); REQUIREs success.
    void exec(const std::string& sql);

    // Every row of a query with `values` bound, REQUIRing that it runs to the end.
    std::vector<Row> rows(const std::string& sql, const std::vector<Bound>& values = {}) const;

    // The single value of a query that must give exactly one row of one column.
    Cell one(const std::string& sql, const std::vector<Bound>& values = {}) const;

    // Every row as its columns' text joined by '|', "NULL" for NULL (the sqlite3 shell's list
    // mode): whole tables compare in one check.
    std::vector<std::string> text_rows(const std::string& sql) const;

    // The single row of a query that must give exactly one, as text_rows writes it.
    std::string text_row(const std::string& sql) const;

 private:
    sqlite3* db_ = nullptr;
};

}  // namespace lab_test
