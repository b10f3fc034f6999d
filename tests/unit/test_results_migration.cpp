// Schema migrations: version-1, version-3 and version-4 databases built by hand (from the DDL as released,
// results_schema_history.h, so later edits to the live migration list cannot hide a break) are
// opened by ResultStore, which must migrate them in place, keep every old row, and make the new
// columns, tables and views work.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "lab/error.h"
#include "lab/results.h"
#include "results_schema_history.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace lab_test;

namespace {

// The error of opening `file` with lab::ResultStore ("" when it opens).
std::string opening_error(const std::filesystem::path& file) {
    try {
        lab::ResultStore store(file);
    } catch (const lab::Error& error) {
        return error.what();
    }
    return "";
}

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

TEST_CASE("a version-1 database is migrated to version 5 with its rows intact", "[results][migration]") {
    TempDir scratch;
    const fs::path file = scratch.path / "v1.db";
    {
        PlainSqlite plain(file);
        plain.exec(kResultsSchemaVersion1);
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
    CHECK(plain.text_row("PRAGMA user_version") == "5");
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
    // Version 5: plugins.abi, last, NULL in the old row (its labrun recorded no SDK ABI).
    CHECK(column_names(plain, "plugins") ==
          std::vector<std::string>{"run_id", "kind", "name", "version", "file", "sha256", "abi"});
    CHECK(plain.text_row("SELECT abi FROM plugins") == "NULL");
    CHECK(plain.text_row("SELECT run_id, kind, path FROM artifacts") == "1|checkpoint|results/ckpt/baby.safetensors");
    CHECK(plain.text_row("SELECT run_id, step, name, text FROM texts") == "1|3|sample|to be");
    CHECK(store.status(1) == "finished");
    CHECK(store.uid(2) == "fedcba9876543210");
    REQUIRE(store.metrics(1, "train/loss").size() == 3);
    CHECK(store.metrics(1, "train/loss")[2].value == 2.5);
    CHECK(store.find_finished_run("hash-one") == 1);

    // The new columns exist, after the old ones, and are NULL in old rows; the new table is empty.
    const std::vector<std::string> columns = column_names(plain, "runs");
    REQUIRE(columns.size() == 24);
    CHECK(columns[17] == "wall_s");
    CHECK(std::vector<std::string>(columns.begin() + 18, columns.end()) ==
          std::vector<std::string>{"heartbeat_at", "sweep", "threads", "libraries", "world_size", "communicator"});
    CHECK(plain.text_rows("SELECT heartbeat_at, sweep, threads, libraries, world_size, communicator FROM runs"
                          " ORDER BY id") ==
          std::vector<std::string>{"NULL|NULL|NULL|NULL|NULL|NULL", "NULL|NULL|NULL|NULL|NULL|NULL"});
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
    CHECK(plain.text_row("SELECT sweep, threads, libraries, heartbeat_at = ended_at, world_size, communicator"
                         " FROM runs WHERE id = 3") ==
          R"(sweep-a|4|{"oneDNN":"2.6.3","sqlite":"3.40.1","boost":"1.74"}|1|1|NULL)");
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
    CHECK(plain.text_row("PRAGMA user_version") == "5");
    CHECK(plain.text_row("SELECT COUNT(*) FROM runs") == "3");
}

TEST_CASE("a failed migration leaves the version-1 file as it was", "[results][migration]") {
    TempDir scratch;
    const fs::path file = scratch.path / "v1_clash.db";
    {
        PlainSqlite plain(file);
        plain.exec(kResultsSchemaVersion1);
        plain.exec(kVersion1Rows);
        // A user's own table with the name that version 2 needs makes the migration fail.
        plain.exec("CREATE TABLE sweeps (note TEXT); INSERT INTO sweeps VALUES ('mine');");
    }
    const std::string message = opening_error(file);
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

namespace {

// A version-3 file as labrun wrote it: the version-1 rows above migrated by the released
// migrations 2 and 3, and a run of the version-3 era in a sweep, with threads, libraries, a
// heartbeat and metric goals.
void write_version3_file(const fs::path& file) {
    PlainSqlite plain(file);
    plain.exec(kResultsSchemaVersion1);
    plain.exec(kVersion1Rows);
    plain.exec(kResultsMigration1To2);
    plain.exec(kResultsMigration2To3);
    plain.exec(R"sql(
INSERT INTO sweeps (id, experiment, created_at, size) VALUES ('sweep-v3', 'shakespeare_char', '2024-06-01T09:00:00.000Z', 1);
INSERT INTO runs (id, uid, name, experiment, config_hash, config, status, backend, device, precision, seed, host, pid,
                  code_revision, started_at, ended_at, wall_s, heartbeat_at, sweep, threads, libraries)
VALUES (3, '00112233aabbccdd', 'v3_run', 'shakespeare_char', 'hash-v3', 'train.steps = 5', 'finished', 'onednn', 'cpu',
        'fp32', 5, 'v3-host', 777, 'def456', '2024-06-01T09:00:01.000Z', '2024-06-01T09:10:00.000Z', 599.0,
        '2024-06-01T09:10:00.000Z', 'sweep-v3', 8, '{"oneDNN":"2.6.3"}');
INSERT INTO params (run_id, key, value) VALUES (3, 'train.steps', '5');
INSERT INTO metrics (run_id, step, name, value, time) VALUES (3, 5, 'val/loss', 2.125, 590.0);
INSERT INTO metric_goals (run_id, name, goal) VALUES (3, 'val/loss', 'min');
)sql");
    REQUIRE(plain.text_row("PRAGMA user_version") == "3");
}

}  // namespace

TEST_CASE("a version-3 database is migrated to version 5: old runs have no world size, new runs record it",
          "[results][migration]") {
    TempDir scratch;
    const fs::path file = scratch.path / "v3.db";
    write_version3_file(file);
    const std::string version3_columns =
        "id, uid, name, experiment, config_hash, config, status, error, backend, device, precision, seed, host, pid,"
        " code_revision, started_at, ended_at, wall_s, heartbeat_at, sweep, threads, libraries";
    std::vector<std::string> runs_before, goals_before, summary_before;
    {
        PlainSqlite plain(file);
        runs_before = plain.text_rows("SELECT " + version3_columns + " FROM runs ORDER BY id");
        goals_before = plain.text_rows("SELECT run_id, name, goal FROM metric_goals ORDER BY run_id, name");
        summary_before = plain.text_rows("SELECT * FROM run_summary ORDER BY id");
        REQUIRE(column_names(plain, "runs").size() == 22);
    }
    REQUIRE(runs_before.size() == 3);
    REQUIRE(goals_before == std::vector<std::string>{"3|val/loss|min"});

    lab::ResultStore store(file);
    PlainSqlite plain(file);
    CHECK(plain.text_row("PRAGMA user_version") == "5");
    CHECK(plain.text_row("PRAGMA integrity_check") == "ok");
    CHECK(plain.text_rows("PRAGMA foreign_key_check").empty());

    // The version-3 rows, unchanged; the two new columns come last and are NULL in them.
    CHECK(plain.text_rows("SELECT " + version3_columns + " FROM runs ORDER BY id") == runs_before);
    CHECK(plain.text_rows("SELECT run_id, name, goal FROM metric_goals ORDER BY run_id, name") == goals_before);
    CHECK(plain.text_rows("SELECT * FROM run_summary ORDER BY id") == summary_before);
    const std::vector<std::string> columns = column_names(plain, "runs");
    REQUIRE(columns.size() == 24);
    CHECK(columns[21] == "libraries");
    CHECK(columns[22] == "world_size");
    CHECK(columns[23] == "communicator");
    CHECK(plain.text_rows("SELECT id, world_size, communicator FROM runs ORDER BY id") ==
          std::vector<std::string>{"1|NULL|NULL", "2|NULL|NULL", "3|NULL|NULL"});
    CHECK(store.find_finished_run("hash-v3") == 3);

    // A data-parallel run and a run of one process on the migrated file.
    lab::RunRecord record;
    record.experiment = "shakespeare_char";
    record.config_text = "train.steps = 6";
    record.name = "two_ranks";
    record.config_hash = "hash-dp";
    record.world_size = 2;
    record.communicator = "mpi";
    const int64_t data_parallel = store.begin_run(record, {{"train.steps", "6"}});
    record.name = "one_process";
    record.config_hash = "hash-single";
    record.world_size = 1;
    record.communicator = "";
    const int64_t single = store.begin_run(record, {{"train.steps", "6"}});
    CHECK(data_parallel == 4);
    CHECK(single == 5);
    CHECK(plain.text_rows("SELECT id, name, world_size, communicator FROM runs WHERE id >= 4 ORDER BY id") ==
          std::vector<std::string>{"4|two_ranks|2|mpi", "5|one_process|1|NULL"});
    CHECK(plain.text_row("SELECT typeof(world_size) FROM runs WHERE id = 4") == "integer");

    // Reopening the migrated file changes nothing.
    lab::ResultStore again(file);
    CHECK(plain.text_row("PRAGMA user_version") == "5");
    CHECK(column_names(plain, "runs").size() == 24);
    CHECK(plain.text_row("SELECT COUNT(*) FROM runs") == "5");
}

TEST_CASE("a failed migration 3 -> 4 leaves the version-3 file as it was", "[results][migration]") {
    TempDir scratch;
    const fs::path file = scratch.path / "v3_clash.db";
    write_version3_file(file);
    // A column someone added by hand, with the name that version 4 needs, makes the migration fail
    // at its second statement: the first one (world_size) must be rolled back too.
    PlainSqlite(file).exec("ALTER TABLE runs ADD COLUMN communicator TEXT;");
    const std::string message = opening_error(file);
    CHECK(message.find(file.string()) != std::string::npos);
    CHECK(message.find("from version 3 to 4") != std::string::npos);
    CHECK(message.find("communicator") != std::string::npos);
    CHECK(message.find("hint:") != std::string::npos);
    PlainSqlite plain(file);
    CHECK(plain.text_row("PRAGMA user_version") == "3");
    const std::vector<std::string> columns = column_names(plain, "runs");
    CHECK(columns.size() == 23);
    CHECK(std::find(columns.begin(), columns.end(), "world_size") == columns.end());
    CHECK(plain.text_row("SELECT COUNT(*) FROM runs") == "3");
}

namespace {

// A version-4 file as labrun wrote it: the version-3 file above migrated by the released migration
// 3 -> 4, and a data-parallel run of the version-4 era with its plugins (no ABI column yet).
void write_version4_file(const fs::path& file) {
    write_version3_file(file);
    PlainSqlite plain(file);
    plain.exec(kResultsMigration3To4);
    plain.exec(R"sql(
INSERT INTO runs (id, uid, name, experiment, config_hash, config, status, backend, device, precision, seed, host, pid,
                  code_revision, started_at, ended_at, wall_s, heartbeat_at, threads, world_size, communicator)
VALUES (4, '4444333322221111', 'v4_run', 'shakespeare_char', 'hash-v4', 'train.steps = 7', 'finished', 'onednn', 'cpu',
        'fp32', 7, 'v4-host', 888, 'aaa111', '2024-07-01T09:00:01.000Z', '2024-07-01T09:10:00.000Z', 599.0,
        '2024-07-01T09:10:00.000Z', 8, 2, 'mpi');
INSERT INTO plugins (run_id, kind, name, version, file, sha256)
VALUES (4, 'model', 'gpt', '1.0', '/plugins/model_gpt.so', 'aa'), (4, 'attention', 'softmax', '1.0', '<builtin>', NULL);
)sql");
    REQUIRE(plain.text_row("PRAGMA user_version") == "4");
}

}  // namespace

TEST_CASE("a version-4 database is migrated to version 5: old plugin rows have no ABI, new ones record it",
          "[results][migration]") {
    TempDir scratch;
    const fs::path file = scratch.path / "v4.db";
    write_version4_file(file);
    std::vector<std::string> plugins_before, runs_before;
    {
        PlainSqlite plain(file);
        plugins_before = plain.text_rows("SELECT run_id, kind, name, version, file, sha256 FROM plugins ORDER BY rowid");
        runs_before = plain.text_rows("SELECT * FROM runs ORDER BY id");
        REQUIRE(column_names(plain, "plugins").size() == 6);
    }
    REQUIRE(plugins_before.size() == 3);

    lab::ResultStore store(file);
    PlainSqlite plain(file);
    CHECK(plain.text_row("PRAGMA user_version") == "5");
    CHECK(plain.text_row("PRAGMA integrity_check") == "ok");
    CHECK(plain.text_rows("PRAGMA foreign_key_check").empty());

    // The version-4 rows, unchanged; abi comes last and is NULL in them.
    CHECK(plain.text_rows("SELECT run_id, kind, name, version, file, sha256 FROM plugins ORDER BY rowid") ==
          plugins_before);
    CHECK(plain.text_rows("SELECT * FROM runs ORDER BY id") == runs_before);
    CHECK(column_names(plain, "plugins") ==
          std::vector<std::string>{"run_id", "kind", "name", "version", "file", "sha256", "abi"});
    CHECK(plain.text_rows("SELECT abi FROM plugins ORDER BY rowid") ==
          std::vector<std::string>{"NULL", "NULL", "NULL"});
    const std::vector<lab::ResultStore::PluginRow> old_rows = store.plugins(4);
    REQUIRE(old_rows.size() == 2);
    CHECK(old_rows[0].name == "gpt");
    CHECK(old_rows[0].abi.empty());

    // A run on the migrated file records its plugins' ABI tag.
    lab::RunRecord record;
    record.name = "v5_run";
    record.experiment = "shakespeare_char";
    record.config_hash = "hash-v5";
    record.config_text = "train.steps = 8";
    const int64_t run = store.begin_run(record, {{"train.steps", "8"}});
    CHECK(run == 5);
    store.add_plugin(run, "model", "gpt", "1.0", "/plugins/model_gpt.so", "bb", "lab-sdk1/gcc-12/cxx11abi-1");
    CHECK(plain.text_row("SELECT kind, name, sha256, abi FROM plugins WHERE run_id = 5") ==
          "model|gpt|bb|lab-sdk1/gcc-12/cxx11abi-1");
    REQUIRE(store.plugins(run).size() == 1);
    CHECK(store.plugins(run)[0].abi == "lab-sdk1/gcc-12/cxx11abi-1");

    // Reopening the migrated file changes nothing.
    lab::ResultStore again(file);
    CHECK(plain.text_row("PRAGMA user_version") == "5");
    CHECK(column_names(plain, "plugins").size() == 7);
    CHECK(plain.text_row("SELECT COUNT(*) FROM plugins") == "4");
}

TEST_CASE("a failed migration 4 -> 5 leaves the version-4 file as it was", "[results][migration]") {
    TempDir scratch;
    const fs::path file = scratch.path / "v4_clash.db";
    write_version4_file(file);
    // A column someone added by hand with the name that version 5 needs makes the migration fail.
    PlainSqlite(file).exec("ALTER TABLE plugins ADD COLUMN abi INTEGER;");
    const std::string message = opening_error(file);
    CHECK(message.find(file.string()) != std::string::npos);
    CHECK(message.find("from version 4 to 5") != std::string::npos);
    CHECK(message.find("abi") != std::string::npos);
    CHECK(message.find("hint:") != std::string::npos);
    PlainSqlite plain(file);
    CHECK(plain.text_row("PRAGMA user_version") == "4");
    CHECK(column_names(plain, "plugins").size() == 7);  // the hand-made column, and no other
    CHECK(plain.text_row("SELECT COUNT(*) FROM plugins") == "3");
    CHECK(plain.text_row("SELECT COUNT(*) FROM runs") == "4");
}
