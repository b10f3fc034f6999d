// Eight labrun-like PROCESSES write one fresh results database at the same moment: they race on
// creating the schema (WAL switch, migration) and then on 50 write transactions each. Threads in
// one process would share locks SQLite takes per process; separate processes are what a sweep on
// one machine really does. The helper is tests/tools/lab_write_metrics.cpp.
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

constexpr int kWriters = 8;
constexpr int64_t kMetricsPerWriter = 5000;
constexpr int64_t kFlushEvery = 100;
constexpr int kPauseMs = 2;  // "training" between two flushes, so that the writers interleave

struct WritersScratchDir {
    fs::path path;
    WritersScratchDir() {
        std::random_device entropy;
        path = fs::temp_directory_path() / ("lab_test_writers_" + std::to_string(entropy()) + std::to_string(entropy()));
        fs::create_directories(path);
    }
    ~WritersScratchDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

std::string file_text(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

// Integer results of a query over a plain read-only connection, row by row, column by column.
std::vector<std::vector<int64_t>> integer_rows(sqlite3* db, const std::string& sql) {
    sqlite3_stmt* statement = nullptr;
    INFO("sql: " << sql);
    REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &statement, nullptr) == SQLITE_OK);
    std::vector<std::vector<int64_t>> rows;
    int rc = SQLITE_OK;
    while ((rc = sqlite3_step(statement)) == SQLITE_ROW) {
        std::vector<int64_t> row;
        for (int column = 0; column < sqlite3_column_count(statement); ++column)
            row.push_back(sqlite3_column_int64(statement, column));
        rows.push_back(row);
    }
    sqlite3_finalize(statement);
    REQUIRE(rc == SQLITE_DONE);
    return rows;
}

int64_t one_integer(sqlite3* db, const std::string& sql) {
    const auto rows = integer_rows(db, sql);
    REQUIRE(rows.size() == 1);
    REQUIRE(rows[0].size() == 1);
    return rows[0][0];
}

std::string one_text(sqlite3* db, const std::string& sql) {
    sqlite3_stmt* statement = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &statement, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(statement) == SQLITE_ROW);
    const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(statement, 0));
    std::string result = text != nullptr ? text : "";
    sqlite3_finalize(statement);
    return result;
}

}  // namespace

TEST_CASE("8 writer processes share one fresh results database without losing a row", "[concurrency]") {
    const fs::path helper = fs::path(LAB_BINARY_DIR) / "tests" / "lab_write_metrics";
    if (!fs::exists(helper)) FAIL("missing " << helper << "; build it with: cmake --build <build> --target lab_write_metrics");
    WritersScratchDir scratch;
    const fs::path db = scratch.path / "results" / "shared.db";  // neither the file nor its directory exists yet

    int go[2];
    REQUIRE(::pipe(go) == 0);
    // Everything a child needs is prepared before fork: between fork and exec only async-signal-safe calls.
    std::vector<std::vector<std::string>> arguments(kWriters);
    std::vector<std::string> out_files(kWriters), err_files(kWriters);
    for (int writer = 0; writer < kWriters; ++writer) {
        arguments[writer] = {helper.string(), "--db", db.string(), "--name", "writer" + std::to_string(writer),
                             "--metrics", std::to_string(kMetricsPerWriter), "--flush-every",
                             std::to_string(kFlushEvery), "--pause-ms", std::to_string(kPauseMs), "--wait-fd",
                             std::to_string(go[0])};
        out_files[writer] = (scratch.path / ("writer" + std::to_string(writer) + ".out")).string();
        err_files[writer] = (scratch.path / ("writer" + std::to_string(writer) + ".err")).string();
    }
    std::vector<pid_t> children;
    for (int writer = 0; writer < kWriters; ++writer) {
        std::vector<char*> argv;
        for (std::string& argument : arguments[writer]) argv.push_back(argument.data());
        argv.push_back(nullptr);
        const pid_t child = ::fork();
        REQUIRE(child >= 0);
        if (child == 0) {
            ::close(go[1]);  // or the pipe never reaches end of file
            const int out = ::open(out_files[writer].c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            const int err = ::open(err_files[writer].c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (out < 0 || err < 0 || ::dup2(out, 1) < 0 || ::dup2(err, 2) < 0) ::_exit(126);
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
        children.push_back(child);
    }
    ::close(go[0]);
    const auto start = std::chrono::steady_clock::now();
    ::close(go[1]);  // all writers start now
    std::vector<int> exit_codes;
    for (pid_t child : children) {
        int status = 0;
        REQUIRE(::waitpid(child, &status, 0) == child);
        exit_codes.push_back(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    }
    const double wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    for (int writer = 0; writer < kWriters; ++writer) {
        INFO("writer " << writer << " stderr: " << file_text(err_files[writer]));
        CHECK(exit_codes[writer] == 0);
        CHECK(file_text(err_files[writer]).empty());
        CHECK(file_text(out_files[writer]).find("\"metrics\": 5000") != std::string::npos);
    }

    sqlite3* raw = nullptr;
    REQUIRE(sqlite3_open_v2(db.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
    std::unique_ptr<sqlite3, decltype(&sqlite3_close_v2)> plain(raw, &sqlite3_close_v2);
    CHECK(one_text(raw, "PRAGMA integrity_check") == "ok");
    CHECK(one_integer(raw, "PRAGMA user_version") == 2);
    CHECK(one_integer(raw, "SELECT COUNT(*) FROM runs") == kWriters);
    CHECK(one_integer(raw, "SELECT COUNT(*) FROM runs WHERE status = 'finished' AND ended_at IS NOT NULL") == kWriters);
    CHECK(one_integer(raw, "SELECT COUNT(DISTINCT name) FROM runs") == kWriters);
    CHECK(one_integer(raw, "SELECT COUNT(*) FROM metrics") == kWriters * kMetricsPerWriter);
    // Every (run, step) exactly once, and each row in the run that wrote it.
    CHECK(one_integer(raw, "SELECT COUNT(*) FROM (SELECT DISTINCT run_id, step FROM metrics)") ==
          kWriters * kMetricsPerWriter);
    CHECK(one_integer(raw, "SELECT COUNT(*) FROM metrics WHERE value != run_id * 1e6 + step") == 0);
    const auto per_run = integer_rows(raw, "SELECT run_id, COUNT(*), MIN(step), MAX(step) FROM metrics GROUP BY run_id");
    REQUIRE(per_run.size() == size_t(kWriters));
    for (const auto& row : per_run) {
        INFO("run " << row[0]);
        CHECK(row[1] == kMetricsPerWriter);
        CHECK(row[2] == 0);
        CHECK(row[3] == kMetricsPerWriter - 1);
    }

    // How much the writers actually overlapped: how often consecutive rows (in insertion order)
    // belong to different runs. 7 would mean they ran one after another. Printed, not asserted:
    // it depends on the machine's scheduling.
    int64_t switches = 0, previous = -1;
    for (const auto& row : integer_rows(raw, "SELECT run_id FROM metrics ORDER BY rowid")) {
        if (previous >= 0 && row[0] != previous) ++switches;
        previous = row[0];
    }
    std::cout << "concurrent writers: " << kWriters << " processes x " << kMetricsPerWriter << " metrics (flush every "
              << kFlushEvery << ", " << kPauseMs << " ms between flushes): wall " << wall_s << " s, " << switches
              << " switches between runs in insertion order (" << kWriters * kMetricsPerWriter / kFlushEvery
              << " transactions)\n";
}
