// Schema migration 1 -> 2: a version-1 database built by hand (the version-1 DDL below is a
// literal copy of the first migration as released, so later edits to the live migration list
// cannot hide a break) is opened by ResultStore, which must migrate it in place, keep every old
// row, and make the new columns, table and view work.
#include <catch2/catch.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "lab/error.h"
#include "lab/results.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace lab_test;

namespace {

// The schema of labrun's first release (PRAGMA user_version = 1), verbatim.
constexpr const char* kVersion1Schema = R"sql(
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
)sql";

// Two runs as labrun 0.1 wrote them: a finished one with metrics, params, a plugin, an artifact
// and a text, and one left running by a process that is gone.
constexpr const char* kVersion1Rows = R"sql(
INSERT INTO runs (id, uid, name, experiment, config_hash, config, status, error, backend, device, precision, seed,
                  host, pid, code_revision, started_at, ended_at, wall_s)
VALUES (1, '0123456789abcdef', 'baby', 'shakespeare_char', 'hash-one', 'train.steps = 3', 'finished', NULL,
        'onednn', 'cpu', 'fp32', 1, 'old-host', 4242, 'abc123', '2024-05-01T12:00:00.000Z',
        '2024-05-01T12:05:00.000Z', 300.0),
       (2, 'fedcba9876543210', 'killed', 'shakespeare_char', 'hash-two', 'train.steps = 9', 'running', NULL,
        'onednn', 'cpu', 'fp32', 2, 'old-host', 4243, 'abc123', '2024-05-01T13:00:00.000Z', NULL, NULL);
INSERT INTO params (run_id, key, value) VALUES (1, 'train.steps', '3'), (2, 'train.steps', '9');
INSERT INTO metrics (run_id, step, name, value, time)
VALUES (1, 1, 'train/loss', 4.0, 1.0), (1, 2, 'train/loss', 3.0, 2.0), (1, 3, 'train/loss', 2.5, 3.0),
       (1, 3, 'val/loss', 2.75, 3.5), (2, 1, 'train/loss', 4.25, 1.0);
INSERT INTO plugins (run_id, kind, name, version, file, sha256)
VALUES (1, 'attention', 'softmax', '1.0', '/plugins/libsoftmax.so', 'ee');
INSERT INTO artifacts (run_id, kind, path) VALUES (1, 'checkpoint', 'results/ckpt/baby.safetensors');
INSERT INTO texts (run_id, step, name, text) VALUES (1, 3, 'sample', 'to be');
PRAGMA user_version = 1;
)sql";

std::vector<std::string> column_names(PlainSqlite& plain, const std::string& table) {
    std::vector<std::string> names;
    for (const std::string& row : plain.text_rows("SELECT name FROM pragma_table_info('" + table + "') ORDER BY cid"))
        names.push_back(row);
    return names;
}

}  // namespace

TEST_CASE("a version-1 database is migrated to version 3 with its rows intact", "[results][migration]") {
    TempDir scratch;
    const fs::path file = scratch.path / "v1.db";
    {
        PlainSqlite plain(file);
        plain.exec(kVersion1Schema);
        plain.exec(kVersion1Rows);
        REQUIRE(plain.text_row("PRAGMA user_version") == "1");
    }
    // What a version-1 file answered before the migration, to compare after it.
    std::vector<std::string> metrics_before, summary_before;
    {
        PlainSqlite plain(file);
        metrics_before = plain.text_rows("SELECT run_id, step, name, value, time FROM metrics ORDER BY rowid");
        summary_before = plain.text_rows("SELECT id, name, experiment, status, started_at, wall_s, val_loss, train_loss"
                                    " FROM run_summary ORDER BY id");
    }
    REQUIRE(metrics_before.size() == 5);

    lab::ResultStore store(file);
    PlainSqlite plain(file);
    CHECK(plain.text_row("PRAGMA user_version") == "3");
    CHECK(plain.text_row("PRAGMA journal_mode") == "wal");
    CHECK(plain.text_row("PRAGMA integrity_check") == "ok");
    CHECK(plain.text_rows("PRAGMA foreign_key_check").empty());

    // The old rows, unchanged.
    CHECK(plain.text_rows("SELECT run_id, step, name, value, time FROM metrics ORDER BY rowid") == metrics_before);
    CHECK(plain.text_rows("SELECT id, name, experiment, status, started_at, wall_s, val_loss, train_loss"
                     " FROM run_summary ORDER BY id") == summary_before);
    CHECK(plain.text_rows(
              "SELECT id, uid, name, config_hash, config, status, host, pid, ended_at FROM runs ORDER BY id") ==
          std::vector<std::string>{
              "1|0123456789abcdef|baby|hash-one|train.steps = 3|finished|old-host|4242|2024-05-01T12:05:00.000Z",
              "2|fedcba9876543210|killed|hash-two|train.steps = 9|running|old-host|4243|NULL"});
    CHECK(plain.text_rows("SELECT run_id, key, value FROM params ORDER BY run_id") ==
          std::vector<std::string>{"1|train.steps|3", "2|train.steps|9"});
    CHECK(plain.text_row("SELECT kind, name, version, file, sha256 FROM plugins") ==
          "attention|softmax|1.0|/plugins/libsoftmax.so|ee");
    CHECK(plain.text_row("SELECT run_id, kind, path FROM artifacts") == "1|checkpoint|results/ckpt/baby.safetensors");
    CHECK(plain.text_row("SELECT run_id, step, name, text FROM texts") == "1|3|sample|to be");
    CHECK(store.status(1) == "finished");
    CHECK(store.uid(2) == "fedcba9876543210");
    REQUIRE(store.metrics(1, "train/loss").size() == 3);
    CHECK(store.metrics(1, "train/loss")[2].value == 2.5);
    CHECK(store.find_finished_run("hash-one") == 1);

    // The new columns exist, after the old ones, and are NULL in old rows; the new table is empty.
    const std::vector<std::string> columns = column_names(plain, "runs");
    REQUIRE(columns.size() == 22);
    CHECK(columns[17] == "wall_s");
    CHECK(std::vector<std::string>(columns.begin() + 18, columns.end()) ==
          std::vector<std::string>{"heartbeat_at", "sweep", "threads", "libraries"});
    CHECK(plain.text_rows("SELECT heartbeat_at, sweep, threads, libraries FROM runs ORDER BY id") ==
          std::vector<std::string>{"NULL|NULL|NULL|NULL", "NULL|NULL|NULL|NULL"});
    CHECK(column_names(plain, "sweeps") == std::vector<std::string>{"id", "experiment", "created_at", "size"});
    CHECK(plain.text_row("SELECT COUNT(*) FROM sweeps") == "0");
    // Version 3: metric_goals, empty, since no old run declared which way its metrics improve.
    CHECK(column_names(plain, "metric_goals") == std::vector<std::string>{"run_id", "name", "goal"});
    CHECK(plain.text_row("SELECT COUNT(*) FROM metric_goals") == "0");
    CHECK(column_names(plain, "run_summary") ==
          std::vector<std::string>{"id", "name", "experiment", "sweep", "status", "started_at", "wall_s", "seed",
                                   "model", "attention", "lr", "steps", "val_loss", "best_val_loss", "train_loss"});
    CHECK(column_names(plain, "metric_summary") ==
          std::vector<std::string>{"run_id", "name", "n", "last_step", "last_value", "min_value", "min_step",
                                   "max_value", "max_step"});

    // ... and work: a new run in a sweep, with provenance, on the migrated file.
    store.add_sweep("sweep-a", "shakespeare_char", 2);
    lab::RunRecord record;
    record.name = "after_migration";
    record.experiment = "shakespeare_char";
    record.config_hash = "hash-three";
    record.config_text = "train.steps = 4";
    record.sweep = "sweep-a";
    record.threads = 4;
    record.libraries = R"({"oneDNN":"2.6.3","sqlite":"3.40.1","boost":"1.74"})";
    const int64_t run = store.begin_run(record, {{"train.steps", "4"}});
    CHECK(run == 3);
    store.add_metric(run, 4, "train/loss", 1.5);
    store.finish_run(run, lab::RunStatus::finished, "");
    CHECK(plain.text_row("SELECT sweep, threads, libraries, heartbeat_at = ended_at FROM runs WHERE id = 3") ==
          R"(sweep-a|4|{"oneDNN":"2.6.3","sqlite":"3.40.1","boost":"1.74"}|1)");
    CHECK(plain.text_row("SELECT name, sweep, status, train_loss FROM run_summary WHERE id = 3") ==
          "after_migration|sweep-a|finished|1.5");
    CHECK(plain.text_row("SELECT s.experiment, s.size, COUNT(r.id) FROM sweeps s JOIN runs r ON r.sweep = s.id") ==
          "shakespeare_char|2|1");

    // The version-1 run left running has no heartbeat: its start (long ago) counts, on any host.
    CHECK(store.mark_interrupted_runs() == std::vector<int64_t>{2});
    CHECK(store.status(2) == "interrupted");
    CHECK(plain.text_row("SELECT error LIKE '%old-host%' AND error LIKE '%lease of 600 s%' FROM runs WHERE id = 2") ==
          "1");

    // Reopening the migrated file is a no-op for the schema.
    lab::ResultStore again(file);
    CHECK(plain.text_row("PRAGMA user_version") == "3");
    CHECK(plain.text_row("SELECT COUNT(*) FROM runs") == "3");
}

TEST_CASE("a failed migration leaves the version-1 file as it was", "[results][migration]") {
    TempDir scratch;
    const fs::path file = scratch.path / "v1_clash.db";
    {
        PlainSqlite plain(file);
        plain.exec(kVersion1Schema);
        plain.exec(kVersion1Rows);
        // A user's own table with the name that version 2 needs makes the migration fail.
        plain.exec("CREATE TABLE sweeps (note TEXT); INSERT INTO sweeps VALUES ('mine');");
    }
    std::string message;
    try {
        lab::ResultStore store(file);
    } catch (const lab::Error& error) {
        message = error.what();
    }
    CHECK(message.find(file.string()) != std::string::npos);
    CHECK(message.find("from version 1 to 2") != std::string::npos);
    CHECK(message.find("sweeps") != std::string::npos);
    CHECK(message.find("hint:") != std::string::npos);
    PlainSqlite plain(file);
    CHECK(plain.text_row("PRAGMA user_version") == "1");
    CHECK(column_names(plain, "runs").size() == 18);  // the ALTER TABLEs were rolled back
    CHECK(plain.text_row("SELECT note FROM sweeps") == "mine");
    CHECK(plain.text_row("SELECT COUNT(*) FROM metrics") == "5");
}
