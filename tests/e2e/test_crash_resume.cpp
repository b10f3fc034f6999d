// Crash safety: a run killed with SIGKILL at many points leaves a valid database, is marked
// interrupted, and `labrun --resume` then reproduces the uninterrupted run bit for bit (metrics,
// samples and final weights) on the CPU backend. Also SIGINT: checkpoint, interrupted, resume.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "lab/results.h"

extern char** environ;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir(const std::string& name) {
    fs::path dir = fs::temp_directory_path() / ("lab_crash_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    return dir;
}

// Starts labrun with `args`, output to `log`; returns its pid.
pid_t spawn_labrun(const std::vector<std::string>& args, const fs::path& log) {
    std::vector<std::string> argv_s = {std::string(LAB_BINARY_DIR) + "/bin/labrun"};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    pid_t pid = 0;
    int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    REQUIRE(rc == 0);
    return pid;
}

int wait_exit(pid_t pid) {
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

std::string read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

struct Sqlite {
    sqlite3* db = nullptr;
    explicit Sqlite(const fs::path& f) { REQUIRE(sqlite3_open_v2(f.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK); }
    ~Sqlite() { sqlite3_close(db); }
    std::vector<std::string> column(const std::string& sql) {
        sqlite3_stmt* st = nullptr;
        REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
        std::vector<std::string> out;
        while (sqlite3_step(st) == SQLITE_ROW) {
            std::string row;
            for (int c = 0; c < sqlite3_column_count(st); ++c) {
                const unsigned char* t = sqlite3_column_text(st, c);
                // %.17g keeps doubles exact in the comparison.
                if (sqlite3_column_type(st, c) == SQLITE_FLOAT) {
                    char buf[64];
                    std::snprintf(buf, sizeof buf, "%.17g", sqlite3_column_double(st, c));
                    row += std::string(buf) + "|";
                } else {
                    row += (t ? reinterpret_cast<const char*>(t) : "NULL") + std::string("|");
                }
            }
            out.push_back(row);
        }
        sqlite3_finalize(st);
        return out;
    }
};

// Everything a run's learning produced, excluding timings (perf/*, times, wall clock).
std::vector<std::string> learning_record(const fs::path& db) {
    Sqlite s(db);
    auto metrics = s.column("SELECT name, step, value FROM metrics WHERE name NOT LIKE 'perf/%' ORDER BY name, step");
    auto texts = s.column("SELECT name, step, text FROM texts ORDER BY name, step");
    metrics.insert(metrics.end(), texts.begin(), texts.end());
    return metrics;
}

fs::path final_weights(const fs::path& db_dir) {
    for (const auto& run_dir : fs::directory_iterator(db_dir / "runs")) {
        std::ifstream latest(run_dir.path() / "latest");
        std::string name;
        if (latest >> name) return run_dir.path() / name / "model.safetensors";
    }
    FAIL("no checkpoint under " << (db_dir / "runs"));
    return {};
}

std::vector<std::string> experiment_args(const fs::path& db) {
    fs::path data = fs::path(LAB_SOURCE_DIR) / "data";
    if (!fs::exists(data / "tinyshakespeare" / "input.txt"))
        FAIL("tinyshakespeare is missing from " << data << "; run tools/get_data.sh --from ../shared/data");
    // A small model with dropout, so that the dropout stream must be restored too.
    return {std::string(LAB_SOURCE_DIR) + "/experiments/shakespeare_char.ini", "--no-progress", "--data-dir",
            data.string(), "experiment.db=" + db.string(), "experiment.threads=2", "model.layers=2", "model.hidden=32",
            "model.heads=2", "model.dropout=0.1", "train.seq_len=32", "train.batch=8", "train.steps=400",
            "train.log_every=5", "train.eval_every=50", "train.ckpt_every=10", "task.val_tokens=2000",
            "task.sample_tokens=20", "schedule.warmup=10"};
}

}  // namespace

TEST_CASE("SIGKILL at many points: database intact, run interrupted, resume reproduces the result", "[e2e][crash]") {
    fs::path ref_dir = temp_dir("reference"), crash_dir = temp_dir("killed");
    fs::path ref_db = ref_dir / "lab.db", crash_db = crash_dir / "lab.db";

    auto t0 = std::chrono::steady_clock::now();
    REQUIRE(wait_exit(spawn_labrun(experiment_args(ref_db), ref_dir / "log.txt")) == 0);
    double uninterrupted_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    INFO("uninterrupted run: " << uninterrupted_s << " s\n" << read_file(ref_dir / "log.txt"));

    std::string uid;
    int kills = 0;
    bool finished = false;
    for (int attempt = 0; attempt < 30 && kills < 12; ++attempt) {
        std::vector<std::string> args = experiment_args(crash_db);
        if (!uid.empty()) args = {"--resume", uid, "--db", crash_db.string(), "--no-progress", "--data-dir",
                                  (fs::path(LAB_SOURCE_DIR) / "data").string()};
        pid_t pid = spawn_labrun(args, crash_dir / "log.txt");
        // Kill points spread over start-up, training, evaluation, checkpointing and logging: each
        // attempt lives 0.15 s plus 2-12% of an uninterrupted run, so ten kills fall before the end.
        double delay = 0.1 + uninterrupted_s * (0.01 + 0.005 * ((attempt * 7) % 11));
        std::this_thread::sleep_for(std::chrono::duration<double>(delay));
        bool killed = ::kill(pid, SIGKILL) == 0;
        int code = wait_exit(pid);
        if (code == 0) {  // it finished before the kill
            finished = true;
            break;
        }
        REQUIRE(killed);
        REQUIRE(code == 128 + SIGKILL);
        ++kills;
        if (!fs::exists(crash_db)) continue;  // killed before the database was created
        {
            Sqlite s(crash_db);
            CHECK(s.column("PRAGMA integrity_check") == std::vector<std::string>{"ok|"});
        }
        lab::ResultStore store(crash_db);
        store.mark_interrupted_runs();
        Sqlite s(crash_db);
        auto runs = s.column("SELECT uid, status FROM runs");
        if (runs.empty()) continue;  // killed before the run was recorded
        REQUIRE(runs.size() == 1);
        CHECK(runs[0].substr(runs[0].find('|') + 1) == "interrupted|");
        uid = runs[0].substr(0, runs[0].find('|'));
    }
    INFO(read_file(crash_dir / "log.txt"));
    CHECK(kills >= 10);
    REQUIRE_FALSE(uid.empty());
    // Finish it.
    if (!finished)
        REQUIRE(wait_exit(spawn_labrun({"--resume", uid, "--db", crash_db.string(), "--no-progress", "--data-dir",
                                    (fs::path(LAB_SOURCE_DIR) / "data").string()},
                                   crash_dir / "log.txt")) == 0);
    Sqlite s(crash_db);
    CHECK(s.column("SELECT status FROM runs") == std::vector<std::string>{"finished|"});
    CHECK(s.column("PRAGMA integrity_check") == std::vector<std::string>{"ok|"});

    std::vector<std::string> expected = learning_record(ref_db), got = learning_record(crash_db);
    REQUIRE(expected.size() > 100);
    CHECK(got == expected);
    CHECK(read_file(final_weights(crash_dir)) == read_file(final_weights(ref_dir)));
    std::cout << "crash test: " << kills << " SIGKILLs, " << got.size()
              << " metric and sample rows and the final weights equal to the uninterrupted run (" << uninterrupted_s
              << " s)\n";
    fs::remove_all(ref_dir);
    fs::remove_all(crash_dir);
}

TEST_CASE("SIGINT finishes the step, checkpoints, marks the run interrupted, and resume completes it", "[e2e][crash]") {
    fs::path dir = temp_dir("sigint");
    fs::path db = dir / "lab.db";
    pid_t pid = spawn_labrun(experiment_args(db), dir / "log.txt");
    // Wait until training has logged a few intervals, then interrupt.
    for (int i = 0; i < 200; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        if (read_file(dir / "log.txt").find("step 20/") != std::string::npos) break;
    }
    REQUIRE(::kill(pid, SIGINT) == 0);
    int code = wait_exit(pid);
    std::string log = read_file(dir / "log.txt");
    INFO(log);
    CHECK(code == 130);
    CHECK(log.find("interrupted: SIGINT at step") != std::string::npos);
    {
        Sqlite s(db);
        auto rows = s.column("SELECT status, error FROM runs");
        REQUIRE(rows.size() == 1);
        CHECK(rows[0].rfind("interrupted|SIGINT at step", 0) == 0);
    }
    std::string uid = Sqlite(db).column("SELECT uid FROM runs")[0];
    uid.pop_back();
    REQUIRE(wait_exit(spawn_labrun({"--resume", uid.substr(0, 6), "--db", db.string(), "--no-progress", "--data-dir",
                                    (fs::path(LAB_SOURCE_DIR) / "data").string()},
                                   dir / "log.txt")) == 0);
    Sqlite s(db);
    CHECK(s.column("SELECT status FROM runs") == std::vector<std::string>{"finished|"});
    CHECK(s.column("SELECT count(*) FROM metrics WHERE name = 'train/loss'") == std::vector<std::string>{"80|"});
    fs::remove_all(dir);
}
