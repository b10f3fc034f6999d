#include "test_support.h"

#include <fcntl.h>
#include <spawn.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

extern char** environ;

namespace fs = std::filesystem;

namespace lab_test {

TempDir::TempDir() {
    static std::atomic<int> counter{0};
    path = fs::temp_directory_path() /
           ("lab_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);  // left by an earlier process that had the same pid
    fs::create_directories(path);
}

TempDir::~TempDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
}

fs::path TempDir::write(const std::string& name, const std::string& text) const {
    fs::path file = path / name;
    fs::create_directories(file.parent_path());
    std::ofstream(file, std::ios::binary) << text;
    return file;
}

std::string read_text(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}

fs::path shakespeare_data_dir() {
    if (!fs::exists(kDataDir / "tinyshakespeare" / "input.txt"))
        FAIL("tinyshakespeare is missing from " << kDataDir << "; run tools/get_data.sh --from ../shared/data");
    return kDataDir;
}

std::ostream& operator<<(std::ostream& os, const Outcome& outcome) {
    return os << "exit " << outcome.exit_code << "\n--- stdout ---\n"
              << outcome.out << "--- stderr ---\n"
              << outcome.err;
}

namespace {

// posix_spawn's file actions, destroyed on every way out (a failed REQUIRE throws).
class SpawnFileActions {
 public:
    SpawnFileActions() { posix_spawn_file_actions_init(&actions_); }
    ~SpawnFileActions() { posix_spawn_file_actions_destroy(&actions_); }
    SpawnFileActions(const SpawnFileActions&) = delete;
    SpawnFileActions& operator=(const SpawnFileActions&) = delete;
    posix_spawn_file_actions_t* get() { return &actions_; }

 private:
    posix_spawn_file_actions_t actions_;
};

// Starts `binary` with `args` under `actions` and the environment `envp`; returns its pid.
pid_t spawn(const fs::path& binary, const std::vector<std::string>& args, SpawnFileActions& actions,
            char* const* envp) {
    REQUIRE(fs::is_regular_file(binary));
    std::vector<std::string> argv_text = {binary.string()};
    argv_text.insert(argv_text.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& arg : argv_text) argv.push_back(arg.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    const int spawn_error = posix_spawn(&pid, argv[0], actions.get(), nullptr, argv.data(), envp);
    INFO("posix_spawn " << binary << ": " << std::strerror(spawn_error));
    REQUIRE(spawn_error == 0);
    return pid;
}

}  // namespace

Outcome run_program(const fs::path& binary, const std::vector<std::string>& args, const std::string& stdin_text,
                    std::map<std::string, std::string> env_changes) {
    TempDir io;
    const fs::path in_file = io.write("stdin", stdin_text);
    const fs::path out_file = io.path / "stdout", err_file = io.path / "stderr";

    env_changes.emplace("LAB_PLUGIN_PATH", "");
    env_changes.emplace("LAB_DATA", "");
    std::vector<std::string> env_text;
    for (char** entry = environ; *entry; ++entry) {
        std::string text = *entry;
        if (!env_changes.count(text.substr(0, text.find('=')))) env_text.push_back(text);
    }
    for (const auto& [name, value] : env_changes)
        if (!value.empty()) env_text.push_back(name + "=" + value);
    std::vector<char*> envp;
    for (std::string& entry : env_text) envp.push_back(entry.data());
    envp.push_back(nullptr);

    SpawnFileActions actions;
    posix_spawn_file_actions_addopen(actions.get(), STDIN_FILENO, in_file.c_str(), O_RDONLY, 0);
    constexpr int kWriteNew = O_WRONLY | O_CREAT | O_TRUNC;
    posix_spawn_file_actions_addopen(actions.get(), STDOUT_FILENO, out_file.c_str(), kWriteNew, 0644);
    posix_spawn_file_actions_addopen(actions.get(), STDERR_FILENO, err_file.c_str(), kWriteNew, 0644);
    const pid_t pid = spawn(binary, args, actions, envp.data());

    Outcome outcome;
    outcome.exit_code = wait_exit(pid);
    outcome.out = read_text(out_file);
    outcome.err = read_text(err_file);
    return outcome;
}

pid_t spawn_program(const fs::path& binary, const std::vector<std::string>& args, const fs::path& log) {
    SpawnFileActions actions;
    posix_spawn_file_actions_addopen(actions.get(), STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(actions.get(), STDOUT_FILENO, STDERR_FILENO);
    return spawn(binary, args, actions, environ);
}

int wait_exit(pid_t pid) {
    int status = 0;
    pid_t waited = 0;
    while ((waited = ::waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
    }
    REQUIRE(waited == pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

PlainSqlite::PlainSqlite(const fs::path& file, Access access) {
    const int flags = access == Access::read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    INFO("sqlite3_open_v2 " << file);
    REQUIRE(sqlite3_open_v2(file.c_str(), &db_, flags, nullptr) == SQLITE_OK);
    // Waits rather than fails while the code under test holds a write lock.
    sqlite3_busy_timeout(db_, 10000);
}

PlainSqlite::~PlainSqlite() { sqlite3_close_v2(db_); }

void PlainSqlite::exec(const std::string& sql) {
    char* message = nullptr;
    const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &message);
    INFO("sql: " << sql << " -> " << (message != nullptr ? message : "ok"));
    sqlite3_free(message);
    REQUIRE(rc == SQLITE_OK);
}

std::vector<Row> PlainSqlite::rows(const std::string& sql, const std::vector<Bound>& values) const {
    sqlite3_stmt* statement = nullptr;
    INFO("sql: " << sql);
    REQUIRE(sqlite3_prepare_v2(db_, sql.c_str(), -1, &statement, nullptr) == SQLITE_OK);
    for (size_t i = 0; i < values.size(); ++i) {
        const int index = static_cast<int>(i) + 1;
        if (const auto* number = std::get_if<int64_t>(&values[i])) {
            sqlite3_bind_int64(statement, index, *number);
        } else {
            const std::string& text = std::get<std::string>(values[i]);
            sqlite3_bind_text(statement, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
        }
    }
    std::vector<Row> result;
    int rc = SQLITE_OK;
    while ((rc = sqlite3_step(statement)) == SQLITE_ROW) {
        Row row;
        for (int column = 0; column < sqlite3_column_count(statement); ++column) {
            Cell cell;
            // The stored type is only reported before any conversion below.
            cell.type = sqlite3_column_type(statement, column);
            cell.is_null = cell.type == SQLITE_NULL;
            cell.integer = sqlite3_column_int64(statement, column);
            cell.real = sqlite3_column_double(statement, column);
            const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(statement, column));
            if (text != nullptr) cell.text.assign(text, static_cast<size_t>(sqlite3_column_bytes(statement, column)));
            row.push_back(cell);
        }
        result.push_back(row);
    }
    sqlite3_finalize(statement);
    REQUIRE(rc == SQLITE_DONE);
    return result;
}

Cell PlainSqlite::one(const std::string& sql, const std::vector<Bound>& values) const {
    const std::vector<Row> result = rows(sql, values);
    INFO("sql: " << sql);
    REQUIRE(result.size() == 1);
    REQUIRE(result[0].size() == 1);
    return result[0][0];
}

std::vector<std::string> PlainSqlite::text_rows(const std::string& sql) const {
    std::vector<std::string> texts;
    for (const Row& row : rows(sql)) {
        std::string text;
        for (size_t column = 0; column < row.size(); ++column) {
            if (column > 0) text += "|";
            text += row[column].is_null ? "NULL" : row[column].text;
        }
        texts.push_back(text);
    }
    return texts;
}

std::string PlainSqlite::text_row(const std::string& sql) const {
    const std::vector<std::string> texts = text_rows(sql);
    INFO("sql: " << sql);
    REQUIRE(texts.size() == 1);
    return texts[0];
}

}  // namespace lab_test
