// Crash safety: a run killed with SIGKILL at many points leaves a valid database, is marked
// interrupted, and `labrun --resume` then reproduces the uninterrupted run bit for bit (metrics,
// samples and final weights) on the CPU backend. Also SIGINT: checkpoint, interrupted, resume.
#include <signal.h>
#include <sqlite3.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "lab/results.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace lab_test;

namespace {


// Every row of a query as "a|b|...|", "NULL" for NULL and REALs with %.17g, which reads back as
// the same double: two runs compare bit for bit.
std::vector<std::string> exact_rows(const PlainSqlite& db, const std::string& sql) {
    std::vector<std::string> texts;
    for (const Row& row : db.rows(sql)) {
        std::string text;
        for (const Cell& cell : row) {
            if (cell.type == SQLITE_FLOAT) {
                char digits[64];
                std::snprintf(digits, sizeof digits, "%.17g", cell.real);
                text += digits;
            } else {
                text += cell.is_null ? "NULL" : cell.text;
            }
            text += "|";
        }
        texts.push_back(text);
    }
    return texts;
}

// Everything a run's learning produced, excluding timings (perf/*, times, wall clock).
std::vector<std::string> learning_record(const fs::path& db) {
    const PlainSqlite s(db, PlainSqlite::Access::read_only);
    auto metrics =
        exact_rows(s, "SELECT name, step, value FROM metrics WHERE name NOT LIKE 'perf/%' ORDER BY name, step");
    auto texts = exact_rows(s, "SELECT name, step, text FROM texts ORDER BY name, step");
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
    const fs::path data = shakespeare_data_dir();
    // A small model with dropout, so that the dropout stream must be restored too.
    return {std::string(LAB_SOURCE_DIR) + "/experiments/shakespeare_char.ini", "--no-progress", "--data-dir",
            data.string(), "experiment.db=" + db.string(), "backend.threads=2", "model.layers=2", "model.hidden=32",
            "model.heads=2", "model.dropout=0.1", "train.seq_len=32", "train.batch=8", "train.steps=400",
            "train.log_every=5", "train.eval_every=50", "train.ckpt_every=10", "task.val_tokens=2000",
            "task.sample_tokens=20", "schedule.warmup=10"};
}

}  // namespace

TEST_CASE("SIGKILL at many points: database intact, run interrupted, resume reproduces the result", "[e2e][crash]") {
    TempDir ref_scratch, crash_scratch;
    const fs::path ref_dir = ref_scratch.path, crash_dir = crash_scratch.path;
    fs::path ref_db = ref_dir / "lab.db", crash_db = crash_dir / "lab.db";

    auto t0 = std::chrono::steady_clock::now();
    REQUIRE(wait_exit(spawn_program(kLabrunBinary, experiment_args(ref_db), ref_dir / "log.txt")) == 0);
    double uninterrupted_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    INFO("uninterrupted run: " << uninterrupted_s << " s\n" << read_text(ref_dir / "log.txt"));

    std::string uid;
    int kills = 0;
    bool finished = false;
    for (int attempt = 0; attempt < 30 && kills < 12; ++attempt) {
        std::vector<std::string> args = experiment_args(crash_db);
        if (!uid.empty()) args = {"--resume", uid, "--db", crash_db.string(), "--no-progress", "--data-dir",
                                  kDataDir.string()};
        pid_t pid = spawn_program(kLabrunBinary, args, crash_dir / "log.txt");
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
            const PlainSqlite s(crash_db, PlainSqlite::Access::read_only);
            CHECK(exact_rows(s, "PRAGMA integrity_check") == std::vector<std::string>{"ok|"});
        }
        lab::ResultStore store(crash_db);
        store.mark_interrupted_runs();
        const PlainSqlite s(crash_db, PlainSqlite::Access::read_only);
        auto runs = exact_rows(s, "SELECT uid, status FROM runs");
        if (runs.empty()) continue;  // killed before the run was recorded
        REQUIRE(runs.size() == 1);
        CHECK(runs[0].substr(runs[0].find('|') + 1) == "interrupted|");
        uid = runs[0].substr(0, runs[0].find('|'));
    }
    INFO(read_text(crash_dir / "log.txt"));
    CHECK(kills >= 10);
    REQUIRE_FALSE(uid.empty());
    // Finish it.
    if (!finished)
        REQUIRE(wait_exit(spawn_program(kLabrunBinary,
                                        {"--resume", uid, "--db", crash_db.string(), "--no-progress", "--data-dir",
                                         kDataDir.string()},
                                        crash_dir / "log.txt")) == 0);
    const PlainSqlite s(crash_db, PlainSqlite::Access::read_only);
    CHECK(exact_rows(s, "SELECT status FROM runs") == std::vector<std::string>{"finished|"});
    CHECK(exact_rows(s, "PRAGMA integrity_check") == std::vector<std::string>{"ok|"});

    std::vector<std::string> expected = learning_record(ref_db), got = learning_record(crash_db);
    REQUIRE(expected.size() > 100);
    CHECK(got == expected);
    CHECK(read_text(final_weights(crash_dir)) == read_text(final_weights(ref_dir)));
    std::cout << "crash test: " << kills << " SIGKILLs, " << got.size()
              << " metric and sample rows and the final weights equal to the uninterrupted run (" << uninterrupted_s
              << " s)\n";
}

TEST_CASE("SIGINT finishes the step, checkpoints, marks the run interrupted, and resume completes it", "[e2e][crash]") {
    TempDir scratch;
    const fs::path dir = scratch.path;
    fs::path db = dir / "lab.db";
    pid_t pid = spawn_program(kLabrunBinary, experiment_args(db), dir / "log.txt");
    // Wait until training has logged a few intervals, then interrupt.
    for (int i = 0; i < 200; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        if (read_text(dir / "log.txt").find("step 20/") != std::string::npos) break;
    }
    REQUIRE(::kill(pid, SIGINT) == 0);
    int code = wait_exit(pid);
    std::string log = read_text(dir / "log.txt");
    INFO(log);
    CHECK(code == 130);
    CHECK(log.find("interrupted: SIGINT at step") != std::string::npos);
    {
        const PlainSqlite s(db, PlainSqlite::Access::read_only);
        auto rows = exact_rows(s, "SELECT status, error FROM runs");
        REQUIRE(rows.size() == 1);
        CHECK(rows[0].rfind("interrupted|SIGINT at step", 0) == 0);
    }
    std::string uid = exact_rows(PlainSqlite(db, PlainSqlite::Access::read_only), "SELECT uid FROM runs")[0];
    uid.pop_back();
    REQUIRE(wait_exit(spawn_program(kLabrunBinary,
                                    {"--resume", uid.substr(0, 6), "--db", db.string(), "--no-progress", "--data-dir",
                                     kDataDir.string()},
                                    dir / "log.txt")) == 0);
    const PlainSqlite s(db, PlainSqlite::Access::read_only);
    CHECK(exact_rows(s, "SELECT status FROM runs") == std::vector<std::string>{"finished|"});
    CHECK(exact_rows(s, "SELECT count(*) FROM metrics WHERE name = 'train/loss'") == std::vector<std::string>{"80|"});
}
