// ResultStore: schema, a run's lifecycle, buffering, version refusal, hostile strings and
// concurrent writers. What the store wrote is read back through a separate plain sqlite3
// connection, as labdb and the sqlite3 shell would see it.
#include <catch2/catch.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "lab/error.h"
#include "lab/results.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace lab_test;

namespace {

lab::RunRecord sample_record(const std::string& name) {
    lab::RunRecord record;
    record.name = name;
    record.experiment = "bert_mlm";
    record.config_hash = "c0ffee";
    record.config_text = "[experiment]\nname = " + name + "\nseed = 3\n";
    record.backend = "onednn";
    record.device = "cpu: test";
    record.precision = "fp32";
    record.host = "testhost";
    record.code_revision = "abc123-dirty";
    record.seed = 3;
    return record;
}

std::string error_of(const std::function<void()>& action) {
    try {
        action();
    } catch (const lab::Error& error) {
        return error.what();
    }
    return "";
}

}  // namespace

TEST_CASE("a new results database gets the current schema version in WAL mode", "[results]") {
    TempDir scratch;
    const fs::path file = scratch.path / "nested" / "dirs" / "lab.db";
    {
        lab::ResultStore store(file);
        CHECK(store.file() == file);
    }
    REQUIRE(fs::exists(file));
    PlainSqlite plain(file);
    CHECK(plain.one("PRAGMA user_version").integer == 5);
    CHECK(plain.one("PRAGMA journal_mode").text == "wal");
    const std::vector<Row> objects = plain.rows("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' "
                                                "ORDER BY type, name");
    std::vector<std::string> names;
    for (const Row& row : objects) names.push_back(row[0].text + " " + row[1].text);
    for (const char* expected : {"table runs", "table params", "table metrics", "table plugins", "table artifacts",
                                 "table texts", "table sweeps", "table metric_goals", "view run_summary", "view metric_summary", "index metrics_by_run_name_step",
                                 "index runs_by_sweep"}) {
        INFO("schema object " << expected);
        CHECK(std::find(names.begin(), names.end(), expected) != names.end());
    }
    // Reopening an existing database keeps it (no second schema creation).
    lab::ResultStore reopened(file);
    CHECK(plain.one("SELECT COUNT(*) FROM runs").integer == 0);
}

TEST_CASE("a run goes from running to finished with everything it logged", "[results]") {
    TempDir scratch;
    const fs::path file = scratch.path / "lab.db";
    lab::ResultStore store(file);
    const int64_t run = store.begin_run(sample_record("small"), {{"model.layers", "4"}, {"optimizer.lr", "5e-4"}});
    CHECK(store.status(run) == "running");
    CHECK(std::regex_match(store.uid(run), std::regex("[0-9a-f]{16}")));

    store.add_plugin(run, "attention", "softmax", "1.0", "/plugins/libsoftmax.so", std::string(64, 'e'),
                     "lab-sdk1/gcc-12/cxx11abi-1");
    for (int64_t step = 1; step <= 3; ++step) store.add_metric(run, step, "train/loss", 4.0 - double(step));
    store.add_metric(run, 2, "val/loss", 2.5);
    store.add_text(run, 3, "sample", "to be or not");
    store.add_artifact(run, "checkpoint", "results/ckpt/step3.safetensors");
    store.finish_run(run, lab::RunStatus::finished, "");
    CHECK(store.status(run) == "finished");

    PlainSqlite plain(file);
    const std::vector<Row> runs = plain.rows(
        "SELECT name, experiment, config_hash, config, status, error, backend, device, precision, seed, host,"
        " code_revision, started_at, ended_at, wall_s, uid, pid FROM runs WHERE id = ?1",
        {run});
    REQUIRE(runs.size() == 1);
    const Row& r = runs[0];
    CHECK(r[0].text == "small");
    CHECK(r[1].text == "bert_mlm");
    CHECK(r[2].text == "c0ffee");
    CHECK(r[3].text == "[experiment]\nname = small\nseed = 3\n");
    CHECK(r[4].text == "finished");
    CHECK(r[5].is_null);
    CHECK(r[6].text == "onednn");
    CHECK(r[7].text == "cpu: test");
    CHECK(r[8].text == "fp32");
    CHECK(r[9].integer == 3);
    CHECK(r[10].text == "testhost");
    CHECK(r[11].text == "abc123-dirty");
    const std::regex iso_utc("\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{3}Z");
    CHECK(std::regex_match(r[12].text, iso_utc));
    CHECK(std::regex_match(r[13].text, iso_utc));
    CHECK(r[13].text >= r[12].text);
    CHECK_FALSE(r[14].is_null);
    CHECK(r[14].real >= 0.0);
    CHECK(r[15].text == store.uid(run));
    CHECK(r[16].integer == int64_t(::getpid()));

    const std::vector<Row> params = plain.rows("SELECT key, value FROM params WHERE run_id = ?1 ORDER BY key", {run});
    REQUIRE(params.size() == 2);
    CHECK(params[0][0].text == "model.layers");
    CHECK(params[0][1].text == "4");
    CHECK(params[1][0].text == "optimizer.lr");
    CHECK(params[1][1].text == "5e-4");

    const std::vector<Row> metrics = plain.rows(
        "SELECT step, name, value, time FROM metrics WHERE run_id = ?1 ORDER BY name, step", {run});
    REQUIRE(metrics.size() == 4);
    CHECK(metrics[0][1].text == "train/loss");
    CHECK(metrics[0][0].integer == 1);
    CHECK(metrics[0][2].real == 3.0);
    CHECK(metrics[2][0].integer == 3);
    CHECK(metrics[2][2].real == 1.0);
    CHECK(metrics[3][1].text == "val/loss");
    CHECK(metrics[3][2].real == 2.5);
    for (const Row& row : metrics) CHECK(row[3].real >= 0.0);

    const std::vector<Row> plugins =
        plain.rows("SELECT kind, name, version, file, sha256 FROM plugins WHERE run_id = ?1", {run});
    REQUIRE(plugins.size() == 1);
    CHECK(plugins[0][0].text == "attention");
    CHECK(plugins[0][1].text == "softmax");
    CHECK(plugins[0][2].text == "1.0");
    CHECK(plugins[0][3].text == "/plugins/libsoftmax.so");
    CHECK(plugins[0][4].text == std::string(64, 'e'));

    const std::vector<Row> texts = plain.rows("SELECT step, name, text FROM texts WHERE run_id = ?1", {run});
    REQUIRE(texts.size() == 1);
    CHECK(texts[0][0].integer == 3);
    CHECK(texts[0][1].text == "sample");
    CHECK(texts[0][2].text == "to be or not");

    const std::vector<Row> artifacts = plain.rows("SELECT kind, path FROM artifacts WHERE run_id = ?1", {run});
    REQUIRE(artifacts.size() == 1);
    CHECK(artifacts[0][0].text == "checkpoint");
    CHECK(artifacts[0][1].text == "results/ckpt/step3.safetensors");

    // The view answers "how did it end" in one SELECT: the last logged losses.
    const std::vector<Row> summary =
        plain.rows("SELECT name, status, val_loss, train_loss FROM run_summary WHERE id = ?1", {run});
    REQUIRE(summary.size() == 1);
    CHECK(summary[0][0].text == "small");
    CHECK(summary[0][1].text == "finished");
    CHECK(summary[0][2].real == 2.5);
    CHECK(summary[0][3].real == 1.0);
    // Key parameters and the best value are columns too; metric_summary has last/min/max per metric.
    const std::vector<Row> key_params =
        plain.rows("SELECT lr, steps, best_val_loss FROM run_summary WHERE id = ?1", {run});
    CHECK(key_params[0][0].text == "5e-4");
    CHECK(key_params[0][1].integer == 3);
    CHECK(key_params[0][2].real == 2.5);
    const std::vector<Row> train_summary = plain.rows(
        "SELECT n, last_step, last_value, min_value, min_step, max_value, max_step FROM metric_summary "
        "WHERE run_id = ?1 AND name = 'train/loss'", {run});
    REQUIRE(train_summary.size() == 1);
    CHECK(train_summary[0][0].integer == 3);
    CHECK(train_summary[0][1].integer == 3);
    CHECK(train_summary[0][2].real == 1.0);
    CHECK(train_summary[0][3].real == 1.0);
    CHECK(train_summary[0][4].integer == 3);
    CHECK(train_summary[0][5].real == 3.0);
    CHECK(train_summary[0][6].integer == 1);

    // The reading API agrees.
    const std::vector<lab::ResultStore::MetricRow> train = store.metrics(run, "train/loss");
    REQUIRE(train.size() == 3);
    CHECK(train[0].step == 1);
    CHECK(train[0].value == 3.0);
    CHECK(train[2].step == 3);
    CHECK(train[2].value == 1.0);
    CHECK(store.metrics(run).size() == 4);
    CHECK(store.find_finished_run("c0ffee") == run);
    CHECK_FALSE(store.find_finished_run("other").has_value());
}

TEST_CASE("a failed run keeps its error text", "[results]") {
    TempDir scratch;
    const fs::path file = scratch.path / "lab.db";
    lab::ResultStore store(file);
    const int64_t run = store.begin_run(sample_record("diverges"), {});
    store.add_metric(run, 7, "train/loss", std::nan(""));
    store.finish_run(run, lab::RunStatus::failed, "loss is NaN at step 7; hint: lower the learning rate");
    CHECK(store.status(run) == "failed");
    PlainSqlite plain(file);
    CHECK(plain.one("SELECT error FROM runs WHERE id = ?1", {run}).text ==
          "loss is NaN at step 7; hint: lower the learning rate");
    CHECK(plain.one("SELECT ended_at IS NOT NULL FROM runs WHERE id = ?1", {run}).integer == 1);
    // SQLite has no NaN: it is stored as NULL and read back as NaN.
    CHECK(plain.one("SELECT value IS NULL FROM metrics WHERE run_id = ?1", {run}).integer == 1);
    const auto rows = store.metrics(run, "train/loss");
    REQUIRE(rows.size() == 1);
    CHECK(std::isnan(rows[0].value));
    CHECK_FALSE(store.find_finished_run("c0ffee").has_value());
}

TEST_CASE("buffered metrics are written on flush and on destruction", "[results]") {
    TempDir scratch;
    const fs::path file = scratch.path / "lab.db";
    int64_t run = 0;
    {
        lab::ResultStore store(file);
        run = store.begin_run(sample_record("buffered"), {});
        PlainSqlite plain(file);
        store.add_metric(run, 1, "train/loss", 1.5);
        store.add_text(run, 1, "sample", "abc");
        CHECK(plain.one("SELECT COUNT(*) FROM metrics").integer == 0);
        CHECK(plain.one("SELECT COUNT(*) FROM texts").integer == 0);
        store.flush();
        CHECK(plain.one("SELECT COUNT(*) FROM metrics").integer == 1);
        CHECK(plain.one("SELECT COUNT(*) FROM texts").integer == 1);
        store.flush();  // nothing pending: no duplicate rows
        CHECK(plain.one("SELECT COUNT(*) FROM metrics").integer == 1);
        for (int64_t step = 2; step <= 101; ++step) store.add_metric(run, step, "train/loss", double(step));
        CHECK(plain.one("SELECT COUNT(*) FROM metrics").integer == 1);
    }
    PlainSqlite plain(file);
    CHECK(plain.one("SELECT COUNT(*) FROM metrics WHERE run_id = ?1", {run}).integer == 101);
    CHECK(plain.one("SELECT SUM(value) FROM metrics WHERE run_id = ?1 AND step > 1", {run}).real == 5150.0);
}

TEST_CASE("metric goals are stored once per run and metric, on flush", "[results]") {
    TempDir scratch;
    const fs::path file = scratch.path / "lab.db";
    lab::ResultStore store(file);
    const int64_t first = store.begin_run(sample_record("first"), {});
    const int64_t second = store.begin_run(sample_record("second"), {});
    PlainSqlite plain(file);
    store.declare_metric(first, "val/loss", lab::MetricGoal::minimize);
    store.declare_metric(first, "val/accuracy", lab::MetricGoal::maximize);
    store.declare_metric(first, "val/tokens", lab::MetricGoal::none);
    store.declare_metric(second, "val/loss", lab::MetricGoal::minimize);
    CHECK(plain.one("SELECT COUNT(*) FROM metric_goals").integer == 0);  // buffered
    store.flush();
    CHECK(plain.text_rows("SELECT run_id, name, goal FROM metric_goals ORDER BY run_id, name") ==
          std::vector<std::string>{std::to_string(first) + "|val/accuracy|max", std::to_string(first) + "|val/loss|min",
                                   std::to_string(first) + "|val/tokens|none", std::to_string(second) + "|val/loss|min"});
    // The same declaration again writes nothing; a changed one replaces the row.
    store.declare_metric(first, "val/loss", lab::MetricGoal::minimize);
    store.declare_metric(second, "val/loss", lab::MetricGoal::maximize);
    store.flush();
    CHECK(plain.one("SELECT COUNT(*) FROM metric_goals").integer == 4);
    CHECK(plain.one("SELECT goal FROM metric_goals WHERE run_id = ?1", {second}).text == "max");
    // A run that does not exist is refused at once, so it cannot poison the buffer.
    CHECK(error_of([&] { store.declare_metric(9999, "val/loss", lab::MetricGoal::minimize); })
              .find("9999") != std::string::npos);
    CHECK(lab::metric_goal_name(lab::MetricGoal::none) == "none");
    CHECK(lab::metric_goal_name(lab::MetricGoal::minimize) == "min");
    CHECK(lab::metric_goal_name(lab::MetricGoal::maximize) == "max");
}

TEST_CASE("replace_metrics writes at once and replaces rows of the same run, step and name", "[results]") {
    TempDir scratch;
    const fs::path file = scratch.path / "lab.db";
    lab::ResultStore store(file);
    const int64_t run = store.begin_run(sample_record("evaluated"), {});
    const int64_t other = store.begin_run(sample_record("other"), {});
    PlainSqlite plain(file);
    store.add_metric(run, 40, "val/loss", 2.5);
    store.add_metric(run, 40, "val@64/loss", 9.0);  // buffered, and replaced before it is written
    store.add_metric(other, 40, "val@64/loss", 7.0);
    store.flush();
    store.add_metric(run, 40, "val@64/loss", 8.0);
    store.replace_metrics(run, 40, {{"val@64/loss", 2.25}, {"val@64/accuracy", 0.5}},
                          {{"val@64/loss", lab::MetricGoal::minimize}});
    auto rows = [&] {
        return plain.text_rows("SELECT run_id, step, name, value FROM metrics ORDER BY run_id, name, step");
    };
    const std::string r = std::to_string(run), o = std::to_string(other);
    const std::vector<std::string> expected = {r + "|40|val/loss|2.5", r + "|40|val@64/accuracy|0.5",
                                               r + "|40|val@64/loss|2.25", o + "|40|val@64/loss|7.0"};
    CHECK(rows() == expected);  // written at once: no flush
    store.flush();              // the replaced buffered row stays replaced
    CHECK(rows() == expected);
    CHECK(plain.one("SELECT goal FROM metric_goals WHERE run_id = ?1 AND name = 'val@64/loss'", {run}).text == "min");

    // Again: the same names at the same step are replaced; another step is another row.
    store.replace_metrics(run, 40, {{"val@64/loss", 2.0}}, {});
    store.replace_metrics(run, 20, {{"val@64/loss", 3.0}}, {});
    CHECK(plain.text_rows("SELECT step, value FROM metrics WHERE run_id = " + r +
                          " AND name = 'val@64/loss' ORDER BY step") == std::vector<std::string>{"20|3.0", "40|2.0"});
    CHECK(error_of([&] { store.replace_metrics(9999, 1, {{"val@64/loss", 1.0}}, {}); }).find("9999") !=
          std::string::npos);
}

TEST_CASE("a failed flush keeps its rows for the next flush", "[results]") {
    TempDir scratch;
    const fs::path file = scratch.path / "lab.db";
    lab::ResultStore store(file);
    const int64_t run = store.begin_run(sample_record("retry"), {});
    PlainSqlite plain(file);
    // Another writer makes every metric insert fail for a while.
    plain.exec("CREATE TRIGGER refuse_metrics BEFORE INSERT ON metrics BEGIN SELECT RAISE(ABORT, 'disk says no'); END");
    store.add_metric(run, 1, "train/loss", 0.25);
    store.add_metric(run, 2, "train/loss", 0.125);
    const std::string message = error_of([&] { store.flush(); });
    CHECK(message.find("disk says no") != std::string::npos);
    CHECK(message.find(file.string()) != std::string::npos);
    CHECK(message.find("metric") != std::string::npos);
    CHECK(plain.one("SELECT COUNT(*) FROM metrics").integer == 0);
    plain.exec("DROP TRIGGER refuse_metrics");
    store.flush();
    const auto rows = store.metrics(run, "train/loss");
    REQUIRE(rows.size() == 2);
    CHECK(rows[0].value == 0.25);
    CHECK(rows[1].value == 0.125);
}

TEST_CASE("a database from a newer labrun is refused, naming both versions", "[results]") {
    TempDir scratch;
    const fs::path file = scratch.path / "future.db";
    {
        PlainSqlite plain(file);
        plain.exec("CREATE TABLE runs (id INTEGER PRIMARY KEY); PRAGMA user_version = 7;");
    }
    const std::string message = error_of([&] { lab::ResultStore store(file); });
    CHECK(message.find(file.string()) != std::string::npos);
    CHECK(message.find("schema version 7") != std::string::npos);
    CHECK(message.find("schema version 5") != std::string::npos);
    CHECK(message.find("hint:") != std::string::npos);
    // Refused before touching the file.
    PlainSqlite plain(file);
    CHECK(plain.one("PRAGMA user_version").integer == 7);
    CHECK(plain.one("PRAGMA journal_mode").text == "delete");
}

TEST_CASE("a file that is not a database is refused with its name", "[results]") {
    TempDir scratch;
    const fs::path file = scratch.path / "notes.db";
    {
        std::ofstream out(file);
        out << "this is a text file, not a SQLite database, and it is long enough to have a header page.\n";
    }
    const std::string message = error_of([&] { lab::ResultStore store(file); });
    CHECK(message.find(file.string()) != std::string::npos);
    CHECK(message.find("not a database") != std::string::npos);
}

TEST_CASE("hostile strings are stored verbatim", "[results]") {
    TempDir scratch;
    const fs::path file = scratch.path / "lab.db";
    lab::ResultStore store(file);
    const std::string injection = "'); DROP TABLE runs; --";
    const std::string quotes = "it's a \"quoted\" \\ name; -- \n\t\xc3\xa9\xe4\xb8\xad";
    const std::string with_nul = std::string("before") + '\0' + "after";
    lab::RunRecord record = sample_record(injection);
    record.experiment = quotes;
    record.config_text = with_nul;
    const int64_t run = store.begin_run(record, {{injection, quotes}, {quotes, injection}});
    store.add_metric(run, 1, injection, 1.0);
    store.add_text(run, 1, quotes, injection);
    store.add_plugin(run, "attention", injection, quotes, injection, quotes, injection);
    store.add_artifact(run, quotes, injection);
    store.finish_run(run, lab::RunStatus::failed, injection);

    PlainSqlite plain(file);
    CHECK(plain.one("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'runs'").integer == 1);
    CHECK(plain.one("SELECT name FROM runs WHERE id = ?1", {run}).text == injection);
    CHECK(plain.one("SELECT experiment FROM runs WHERE id = ?1", {run}).text == quotes);
    CHECK(plain.one("SELECT config FROM runs WHERE id = ?1", {run}).text == with_nul);
    CHECK(plain.one("SELECT error FROM runs WHERE id = ?1", {run}).text == injection);
    CHECK(plain.one("SELECT value FROM params WHERE run_id = ?1 AND key = ?2", {run, injection}).text == quotes);
    CHECK(plain.one("SELECT value FROM params WHERE run_id = ?1 AND key = ?2", {run, quotes}).text == injection);
    CHECK(plain.one("SELECT text FROM texts WHERE run_id = ?1 AND name = ?2", {run, quotes}).text == injection);
    CHECK(plain.one("SELECT version FROM plugins WHERE run_id = ?1 AND name = ?2", {run, injection}).text == quotes);
    CHECK(plain.one("SELECT path FROM artifacts WHERE run_id = ?1 AND kind = ?2", {run, quotes}).text == injection);
    const auto rows = store.metrics(run, injection);
    REQUIRE(rows.size() == 1);
    CHECK(rows[0].name == injection);
}

TEST_CASE("begin_run is all or nothing", "[results]") {
    TempDir scratch;
    const fs::path file = scratch.path / "lab.db";
    lab::ResultStore store(file);
    const std::string message =
        error_of([&] { store.begin_run(sample_record("twice"), {{"train.steps", "10"}, {"train.steps", "20"}}); });
    CHECK(message.find(file.string()) != std::string::npos);
    CHECK(message.find("parameter") != std::string::npos);
    PlainSqlite plain(file);
    CHECK(plain.one("SELECT COUNT(*) FROM runs").integer == 0);
    CHECK(plain.one("SELECT COUNT(*) FROM params").integer == 0);
}

TEST_CASE("unknown run ids are refused at once", "[results]") {
    TempDir scratch;
    lab::ResultStore store(scratch.path / "lab.db");
    CHECK(error_of([&] { store.add_metric(999, 1, "train/loss", 1.0); }).find("no run with id 999") !=
          std::string::npos);
    CHECK(error_of([&] { store.add_text(999, 1, "sample", "x"); }).find("no run with id 999") != std::string::npos);
    CHECK(error_of([&] { (void)store.status(999); }).find("no run with id 999") != std::string::npos);
    CHECK(error_of([&] { store.finish_run(999, lab::RunStatus::finished, ""); }).find("no run with id 999") !=
          std::string::npos);
    CHECK(error_of([&] { store.add_artifact(999, "checkpoint", "x"); }).find("FOREIGN KEY") != std::string::npos);
    store.flush();  // nothing was buffered for the bad id
}

TEST_CASE("a second store logs to a run begun by the first (resume)", "[results]") {
    TempDir scratch;
    const fs::path file = scratch.path / "lab.db";
    int64_t run = 0;
    {
        lab::ResultStore first(file);
        run = first.begin_run(sample_record("resumed"), {});
        first.add_metric(run, 1, "train/loss", 2.0);
    }
    lab::ResultStore second(file);
    second.add_metric(run, 2, "train/loss", 1.0);
    second.finish_run(run, lab::RunStatus::finished, "");
    const auto rows = second.metrics(run, "train/loss");
    REQUIRE(rows.size() == 2);
    CHECK(rows[1].value == 1.0);
    CHECK(second.status(run) == "finished");
}

TEST_CASE("runs of dead processes on this host are marked interrupted", "[results]") {
    TempDir scratch;
    const fs::path file = scratch.path / "lab.db";
    lab::ResultStore store(file);
    lab::RunRecord record = sample_record("killed");
    record.host = lab::host_name();
    const int64_t killed = store.begin_run(record, {});
    record.name = "alive";
    const int64_t alive = store.begin_run(record, {});
    record.name = "elsewhere";
    record.host = "some-other-host";
    const int64_t elsewhere = store.begin_run(record, {});

    // A pid that certainly belonged to a process that has ended: a child we reaped.
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) ::_exit(0);
    int child_status = 0;
    REQUIRE(::waitpid(child, &child_status, 0) == child);
    PlainSqlite plain(file);
    plain.rows("UPDATE runs SET pid = ?1 WHERE name IN ('killed', 'elsewhere')", {int64_t(child)});

    const std::vector<int64_t> marked = store.mark_interrupted_runs();
    REQUIRE(marked.size() == 1);
    CHECK(marked[0] == killed);
    CHECK(store.status(killed) == "interrupted");
    CHECK(store.status(alive) == "running");
    CHECK(store.status(elsewhere) == "running");
    CHECK(plain.one("SELECT error FROM runs WHERE id = ?1", {killed}).text.find(std::to_string(child)) !=
          std::string::npos);
    CHECK(store.mark_interrupted_runs().empty());
}

TEST_CASE("two stores on one file write concurrently without losing rows", "[results]") {
    TempDir scratch;
    const fs::path file = scratch.path / "shared.db";
    constexpr int64_t kMetricsPerWriter = 2000;
    int64_t runs[2] = {0, 0};
    std::string errors[2];
    auto writer = [&](int index) {
        try {
            // Each thread opens its own store, as two labrun processes would, at the same time.
            lab::ResultStore store(file);
            runs[index] = store.begin_run(sample_record("writer" + std::to_string(index)), {{"index", std::to_string(index)}});
            for (int64_t step = 0; step < kMetricsPerWriter; ++step) {
                store.add_metric(runs[index], step, "train/loss", double(step) + 0.5 * index);
                if (step % 50 == 49) store.flush();
            }
            store.add_metric(runs[index], kMetricsPerWriter, "val/loss", double(index));
            store.finish_run(runs[index], lab::RunStatus::finished, "");
        } catch (const std::exception& error) {
            errors[index] = error.what();
        }
    };
    std::thread first(writer, 0), second(writer, 1);
    first.join();
    second.join();
    CHECK(errors[0].empty());
    CHECK(errors[1].empty());
    INFO(errors[0] << errors[1]);
    REQUIRE(runs[0] != runs[1]);

    PlainSqlite plain(file);
    CHECK(plain.one("SELECT COUNT(*) FROM metrics WHERE name = 'train/loss'").integer == 2 * kMetricsPerWriter);
    for (int index = 0; index < 2; ++index) {
        INFO("writer " << index);
        CHECK(plain.one("SELECT COUNT(DISTINCT step) FROM metrics WHERE run_id = ?1 AND name = 'train/loss'",
                        {runs[index]})
                  .integer == kMetricsPerWriter);
        // Sum of (step + 0.5 * index) over steps 0..1999.
        const double expected = 1999.0 * 2000.0 / 2.0 + 0.5 * index * kMetricsPerWriter;
        CHECK(plain.one("SELECT SUM(value) FROM metrics WHERE run_id = ?1 AND name = 'train/loss'", {runs[index]})
                  .real == expected);
        CHECK(plain.one("SELECT status FROM runs WHERE id = ?1", {runs[index]}).text == "finished");
        CHECK(plain.one("SELECT val_loss FROM run_summary WHERE id = ?1", {runs[index]}).real == double(index));
    }
}

TEST_CASE("code revision, host name and timestamps", "[results]") {
    TempDir scratch;
    CHECK(lab::code_revision(scratch.path) == "unknown");
    CHECK(lab::code_revision(scratch.path / "does_not_exist") == "unknown");
    CHECK_FALSE(lab::host_name().empty());
    CHECK(std::regex_match(lab::utc_now_iso(), std::regex("\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{3}Z")));
    CHECK(lab::run_status_name(lab::RunStatus::interrupted) == "interrupted");

    if (std::system("git --version > /dev/null 2>&1") != 0) {
        WARN("git is not installed: the git part of code_revision is not tested");
        return;
    }
    // A directory name with a quote checks the shell quoting of the path.
    const fs::path repo = scratch.path / "it's a repo";
    fs::create_directories(repo);
    const std::string git = "git -C '" + scratch.path.string() + "/it'\\''s a repo' ";
    REQUIRE(std::system((git + "init -q").c_str()) == 0);
    CHECK(lab::code_revision(repo) == "unknown");  // no commit yet
    { std::ofstream(repo / "a.txt") << "one\n"; }
    REQUIRE(std::system((git + "add a.txt && " + git +
                         "-c user.name=test -c user.email=test@example.com commit -q -m first")
                            .c_str()) == 0);
    const std::string clean = lab::code_revision(repo);
    CHECK(std::regex_match(clean, std::regex("[0-9a-f]{40}([0-9a-f]{24})?")));
    { std::ofstream(repo / "a.txt") << "two\n"; }
    CHECK(lab::code_revision(repo) == clean + "-dirty");
}

// ---- schema versions 2 and 4: provenance, sweeps, heartbeat and lease, resume ---------------

namespace {

// An ISO-8601 UTC time `offset` from now ("-20 minutes"), in the format the store writes.
std::string iso_from_now(PlainSqlite& plain, const std::string& offset) {
    return plain.one("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?1)", {offset}).text;
}

}  // namespace

TEST_CASE("runs record their sweep, threads and library versions", "[results]") {
    TempDir scratch;
    const fs::path file = scratch.path / "lab.db";
    lab::ResultStore store(file);
    store.add_sweep("sweep-1f2e", "bert_mlm", 9);
    store.add_sweep("sweep-1f2e", "other", 3);  // every process of a sweep may record it: ignored
    lab::RunRecord record = sample_record("in_sweep");
    record.sweep = "sweep-1f2e";
    record.threads = 2;
    record.libraries = R"({"oneDNN":"2.6.3","sqlite":"3.40.1","boost":"1.74"})";
    const int64_t in_sweep = store.begin_run(record, {});
    const int64_t single = store.begin_run(sample_record("single"), {});

    PlainSqlite plain(file);
    const std::vector<Row> sweeps = plain.rows("SELECT id, experiment, created_at, size FROM sweeps");
    REQUIRE(sweeps.size() == 1);
    CHECK(sweeps[0][0].text == "sweep-1f2e");
    CHECK(sweeps[0][1].text == "bert_mlm");
    CHECK(std::regex_match(sweeps[0][2].text, std::regex("\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{3}Z")));
    CHECK(sweeps[0][3].integer == 9);

    const std::vector<Row> runs =
        plain.rows("SELECT sweep, threads, libraries, heartbeat_at, started_at FROM runs ORDER BY id");
    REQUIRE(runs.size() == 2);
    CHECK(runs[0][0].text == "sweep-1f2e");
    CHECK(runs[0][1].integer == 2);
    CHECK(runs[0][2].text == record.libraries);
    CHECK(runs[0][3].text == runs[0][4].text);  // the first heartbeat is the start
    CHECK(runs[1][0].is_null);
    CHECK(runs[1][1].is_null);
    CHECK(runs[1][2].is_null);
    // The JSON is usable from SQL as it stands.
    CHECK(plain.one("SELECT json_extract(libraries, '$.oneDNN') FROM runs WHERE id = ?1", {in_sweep}).text == "2.6.3");
    // The view and a join answer "which runs belong together".
    CHECK(plain.one("SELECT sweep FROM run_summary WHERE id = ?1", {in_sweep}).text == "sweep-1f2e");
    CHECK(plain.one("SELECT sweep IS NULL FROM run_summary WHERE id = ?1", {single}).integer == 1);
    CHECK(plain.one("SELECT COUNT(*) FROM runs r JOIN sweeps s ON s.id = r.sweep WHERE s.experiment = 'bert_mlm'")
              .integer == 1);

    const std::string empty_id = error_of([&] { store.add_sweep("", "bert_mlm", 2); });
    CHECK(empty_id.find("empty id") != std::string::npos);
    CHECK(empty_id.find("hint:") != std::string::npos);
}

TEST_CASE("libraries that are not a JSON object are refused before anything is written", "[results]") {
    TempDir scratch;
    const fs::path file = scratch.path / "lab.db";
    lab::ResultStore store(file);
    for (const std::string bad : {"oneDNN 2.6.3", "[\"oneDNN\", \"2.6.3\"]", "{\"oneDNN\": ", "42"}) {
        INFO("libraries = " << bad);
        lab::RunRecord record = sample_record("bad_libraries");
        record.libraries = bad;
        const std::string message = error_of([&] { store.begin_run(record, {}); });
        CHECK(message.find("libraries is not a JSON object") != std::string::npos);
        CHECK(message.find(file.string()) != std::string::npos);
        CHECK(message.find(bad) != std::string::npos);
    }
    PlainSqlite plain(file);
    CHECK(plain.one("SELECT COUNT(*) FROM runs").integer == 0);
}

TEST_CASE("runs record their data-parallel world size and communicator", "[results]") {
    TempDir scratch;
    const fs::path file = scratch.path / "lab.db";
    lab::ResultStore store(file);
    lab::RunRecord record = sample_record("four_ranks");
    record.world_size = 4;
    record.communicator = "nccl";
    const int64_t four = store.begin_run(record, {});
    // mpirun -n 1: one rank, but it did talk through MPI.
    record = sample_record("one_rank");
    record.communicator = "mpi";
    const int64_t one_rank = store.begin_run(record, {});
    const int64_t single = store.begin_run(sample_record("single"), {});  // the defaults: 1, no communicator

    PlainSqlite plain(file);
    const std::vector<Row> runs = plain.rows("SELECT id, world_size, communicator FROM runs ORDER BY id");
    REQUIRE(runs.size() == 3);
    CHECK(runs[0][0].integer == four);
    CHECK(runs[0][1].integer == 4);
    CHECK(runs[0][2].text == "nccl");
    CHECK(runs[1][0].integer == one_rank);
    CHECK(runs[1][1].integer == 1);
    CHECK(runs[1][2].text == "mpi");
    CHECK(runs[2][0].integer == single);
    CHECK(runs[2][1].integer == 1);
    CHECK(runs[2][2].is_null);
}

TEST_CASE("a world size below 1, or several ranks without a communicator, are refused before anything is written",
          "[results]") {
    TempDir scratch;
    const fs::path file = scratch.path / "lab.db";
    lab::ResultStore store(file);
    for (const int64_t bad : {int64_t{0}, int64_t{-2}}) {
        INFO("world_size = " << bad);
        lab::RunRecord record = sample_record("no_ranks");
        record.world_size = bad;
        const std::string message = error_of([&] { store.begin_run(record, {{"train.steps", "3"}}); });
        CHECK(message.find(file.string()) != std::string::npos);
        CHECK(message.find("run 'no_ranks'") != std::string::npos);
        CHECK(message.find("world_size is " + std::to_string(bad) + ";") != std::string::npos);
        CHECK(message.find("hint:") != std::string::npos);
    }
    lab::RunRecord record = sample_record("silent_ranks");
    record.world_size = 8;
    const std::string message = error_of([&] { store.begin_run(record, {}); });
    CHECK(message.find(file.string()) != std::string::npos);
    CHECK(message.find("world_size is 8 but communicator is empty") != std::string::npos);
    CHECK(message.find("hint:") != std::string::npos);
    PlainSqlite plain(file);
    CHECK(plain.one("SELECT COUNT(*) FROM runs").integer == 0);
    CHECK(plain.one("SELECT COUNT(*) FROM params").integer == 0);
}

TEST_CASE("flush, heartbeat and finish_run keep a run's heartbeat fresh", "[results]") {
    TempDir scratch;
    const fs::path file = scratch.path / "lab.db";
    lab::ResultStore store(file);
    const int64_t run = store.begin_run(sample_record("beating"), {});
    PlainSqlite plain(file);
    const std::string long_ago = "2001-02-03T04:05:06.007Z";
    auto heartbeat_of = [&](int64_t id) { return plain.one("SELECT heartbeat_at FROM runs WHERE id = ?1", {id}).text; };

    // Every flush beats, even one with no rows to write.
    plain.rows("UPDATE runs SET heartbeat_at = ?1 WHERE id = ?2", {long_ago, run});
    store.flush();
    const std::string after_empty_flush = heartbeat_of(run);
    CHECK(after_empty_flush > "2020");
    CHECK(std::regex_match(after_empty_flush, std::regex("\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{3}Z")));

    plain.rows("UPDATE runs SET heartbeat_at = ?1 WHERE id = ?2", {long_ago, run});
    store.add_metric(run, 1, "train/loss", 2.0);
    store.flush();
    CHECK(heartbeat_of(run) > "2020");

    plain.rows("UPDATE runs SET heartbeat_at = ?1 WHERE id = ?2", {long_ago, run});
    store.heartbeat(run);
    CHECK(heartbeat_of(run) > "2020");
    CHECK(error_of([&] { store.heartbeat(999); }).find("no run with id 999") != std::string::npos);

    store.finish_run(run, lab::RunStatus::finished, "");
    CHECK(heartbeat_of(run) == plain.one("SELECT ended_at FROM runs WHERE id = ?1", {run}).text);
    // A finished run no longer beats.
    plain.rows("UPDATE runs SET heartbeat_at = ?1 WHERE id = ?2", {long_ago, run});
    store.flush();
    CHECK(heartbeat_of(run) == long_ago);

    // A run this store only logs to (begun by another process) beats while it is running.
    int64_t foreign = 0;
    {
        lab::ResultStore other(file);
        foreign = other.begin_run(sample_record("foreign"), {});
    }
    plain.rows("UPDATE runs SET heartbeat_at = ?1 WHERE id = ?2", {long_ago, foreign});
    store.add_metric(foreign, 1, "train/loss", 1.0);
    store.flush();
    CHECK(heartbeat_of(foreign) > "2020");
}

TEST_CASE("a run whose heartbeat is older than the lease is interrupted, on any host", "[results]") {
    TempDir scratch;
    const fs::path file = scratch.path / "lab.db";
    PlainSqlite plain(file);
    // Runs begun by another writer (a store that is gone now), so the checking store does not
    // count them as its own.
    std::map<std::string, int64_t> ids;
    {
        lab::ResultStore other(file);
        for (const char* name : {"far_stale", "far_fresh", "far_quiet", "here_live_stale", "v1_row"}) {
            lab::RunRecord record = sample_record(name);
            record.host = std::string(name).rfind("here", 0) == 0 ? lab::host_name() : "far-away-host";
            ids[name] = other.begin_run(record, {});
        }
    }
    auto set_heartbeat = [&](const std::string& name, const std::string& offset) {
        plain.rows("UPDATE runs SET heartbeat_at = ?1 WHERE id = ?2", {iso_from_now(plain, offset), ids[name]});
    };
    set_heartbeat("far_stale", "-20 minutes");
    set_heartbeat("far_quiet", "-5 minutes");
    set_heartbeat("here_live_stale", "-20 minutes");  // pid: this process, alive
    // A row from schema version 1 has no heartbeat: its start counts.
    plain.rows("UPDATE runs SET heartbeat_at = NULL, started_at = ?1 WHERE id = ?2",
               {iso_from_now(plain, "-3 hours"), ids["v1_row"]});

    lab::ResultStore store(file);
    const int64_t own = store.begin_run(sample_record("own"), {});
    plain.rows("UPDATE runs SET heartbeat_at = ?1 WHERE id = ?2", {iso_from_now(plain, "-1 hours"), own});

    std::vector<int64_t> marked = store.mark_interrupted_runs();
    std::sort(marked.begin(), marked.end());
    std::vector<int64_t> expected = {ids["far_stale"], ids["here_live_stale"], ids["v1_row"]};
    std::sort(expected.begin(), expected.end());
    CHECK(marked == expected);
    CHECK(store.status(ids["far_fresh"]) == "running");
    CHECK(store.status(ids["far_quiet"]) == "running");
    CHECK(store.status(own) == "running");  // this store's own run, however quiet
    const std::string error = plain.one("SELECT error FROM runs WHERE id = ?1", {ids["far_stale"]}).text;
    CHECK(error.find("far-away-host") != std::string::npos);
    CHECK(error.find("no heartbeat for 1200 s") != std::string::npos);
    CHECK(error.find("lease of 600 s") != std::string::npos);

    // A shorter lease catches the quieter run too.
    CHECK(store.mark_interrupted_runs(60) == std::vector<int64_t>{ids["far_quiet"]});
    CHECK(store.status(ids["far_fresh"]) == "running");
    CHECK(store.mark_interrupted_runs(60).empty());

    const std::string bad_lease = error_of([&] { store.mark_interrupted_runs(0); });
    CHECK(bad_lease.find("lease of 0 s") != std::string::npos);
    CHECK(bad_lease.find("hint:") != std::string::npos);
}

TEST_CASE("run_writer_gone: a pid on this host, a heartbeat older than the lease on any host", "[results]") {
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) ::_exit(0);
    int child_status = 0;
    REQUIRE(::waitpid(child, &child_status, 0) == child);
    const int64_t lease = lab::kDefaultLeaseSeconds;

    const auto ended = lab::run_writer_gone({lab::host_name(), int64_t(child), 1.0});
    REQUIRE(ended);
    CHECK(*ended == "the labrun process (pid " + std::to_string(child) + " on " + lab::host_name() +
                        ") ended without finishing the run");
    CHECK_FALSE(lab::run_writer_gone({"far-away-host", int64_t(child), 1.0}));  // a pid means nothing there
    CHECK_FALSE(lab::run_writer_gone({lab::host_name(), int64_t(::getpid()), 1.0}));
    CHECK_FALSE(lab::run_writer_gone({lab::host_name(), std::nullopt, 1.0}));

    CHECK_FALSE(lab::run_writer_gone({"far-away-host", int64_t(::getpid()), double(lease)}));
    const auto silent = lab::run_writer_gone({"far-away-host", std::nullopt, double(lease) + 1});
    REQUIRE(silent);
    CHECK(*silent == "the labrun process (pid unknown on far-away-host) sent no heartbeat for " +
                         std::to_string(lease + 1) + " s, longer than the lease of " + std::to_string(lease) + " s");
    CHECK(lab::run_writer_gone({lab::host_name(), int64_t(::getpid()), 61.0}, 60));
    CHECK_FALSE(lab::run_writer_gone({"", std::nullopt, std::nullopt}));
}

TEST_CASE("resume: reopen a run and drop what it logged after the checkpoint", "[results]") {
    TempDir scratch;
    const fs::path file = scratch.path / "lab.db";
    int64_t run = 0, neighbour = 0;
    {
        lab::ResultStore first(file);
        lab::RunRecord record = sample_record("resumable");
        record.host = "old-host";
        run = first.begin_run(record, {});
        neighbour = first.begin_run(sample_record("neighbour"), {});
        for (int64_t step = 1; step <= 10; ++step) {
            first.add_metric(run, step, "train/loss", double(step));
            first.add_metric(neighbour, step, "train/loss", double(step));
        }
        first.add_text(run, 5, "sample", "at five");
        first.add_text(run, 10, "sample", "at ten");
        first.finish_run(run, lab::RunStatus::interrupted, "killed at step 10");
    }
    PlainSqlite plain(file);
    plain.rows("UPDATE runs SET pid = 1 WHERE id = ?1", {run});

    lab::ResultStore second(file);
    second.reopen_run(run);
    const std::vector<Row> reopened =
        plain.rows("SELECT status, ended_at, wall_s, error, host, pid, heartbeat_at >= started_at FROM runs"
                   " WHERE id = ?1",
                   {run});
    REQUIRE(reopened.size() == 1);
    CHECK(reopened[0][0].text == "running");
    CHECK(reopened[0][1].is_null);
    CHECK(reopened[0][2].is_null);
    CHECK(reopened[0][3].is_null);
    CHECK(reopened[0][4].text == lab::host_name());
    CHECK(reopened[0][5].integer == int64_t(::getpid()));
    CHECK(reopened[0][6].integer == 1);
    CHECK(second.mark_interrupted_runs().empty());  // the reopened run is this store's own

    // The checkpoint was at step 6; a buffered row after it goes too.
    second.add_metric(run, 12, "train/loss", 12.0);
    second.add_metric(run, 6, "val/loss", 0.5);
    second.delete_metrics_after(run, 6);
    second.flush();
    std::vector<int64_t> steps;
    for (const auto& row : second.metrics(run, "train/loss")) steps.push_back(row.step);
    CHECK(steps == std::vector<int64_t>{1, 2, 3, 4, 5, 6});
    CHECK(second.metrics(run, "val/loss").size() == 1);  // at the checkpoint's step: kept
    CHECK(plain.one("SELECT group_concat(step) FROM texts WHERE run_id = ?1", {run}).text == "5");
    CHECK(second.metrics(neighbour, "train/loss").size() == 10);

    for (int64_t step = 7; step <= 10; ++step) second.add_metric(run, step, "train/loss", double(step) - 0.5);
    second.finish_run(run, lab::RunStatus::finished, "");
    CHECK(second.status(run) == "finished");
    const auto train = second.metrics(run, "train/loss");
    REQUIRE(train.size() == 10);
    CHECK(train[9].value == 9.5);
    CHECK(plain.one("SELECT train_loss FROM run_summary WHERE id = ?1", {run}).real == 9.5);

    CHECK(error_of([&] { second.reopen_run(999); }).find("no run with id 999") != std::string::npos);
}

TEST_CASE("runs are found by id, uid or uid prefix, and by configuration hash", "[results]") {
    TempDir scratch;
    const fs::path file = scratch.path / "lab.db";
    lab::ResultStore store(file);
    CHECK_FALSE(store.latest_run("c0ffee").has_value());
    const int64_t first = store.begin_run(sample_record("first"), {});
    store.finish_run(first, lab::RunStatus::finished, "");
    const int64_t second = store.begin_run(sample_record("second"), {});
    store.finish_run(second, lab::RunStatus::interrupted, "killed");
    lab::RunRecord other = sample_record("other");
    other.config_hash = "another-hash";
    const int64_t third = store.begin_run(other, {});

    // The latest run of a configuration, whatever its status (a rerun resumes or skips it).
    const auto latest = store.latest_run("c0ffee");
    REQUIRE(latest.has_value());
    CHECK(latest->id == second);
    CHECK(latest->status == "interrupted");
    CHECK(store.latest_run("another-hash")->status == "running");
    CHECK_FALSE(store.latest_run("c0ffe").has_value());

    CHECK(store.config_text(first) == "[experiment]\nname = first\nseed = 3\n");
    CHECK(error_of([&] { (void)store.config_text(999); }).find("no run with id 999") != std::string::npos);

    CHECK(store.find_run(std::to_string(third)) == third);
    CHECK(store.find_run(store.uid(second)) == second);
    // uids are random: make them known to test prefixes.
    PlainSqlite plain(file);
    plain.rows("UPDATE runs SET uid = ?1 WHERE id = ?2", {std::string("abcd1111aaaaaaaa"), first});
    plain.rows("UPDATE runs SET uid = ?1 WHERE id = ?2", {std::string("abcd2222bbbbbbbb"), second});
    plain.rows("UPDATE runs SET uid = ?1 WHERE id = ?2", {std::string("a_cd%333cccccccc"), third});
    CHECK(store.find_run("abcd1") == first);
    CHECK(store.find_run("abcd2222bbbbbbbb") == second);
    CHECK(store.find_run("a_cd%") == third);
    const std::string ambiguous = error_of([&] { store.find_run("abcd"); });
    CHECK(ambiguous.find("matches several runs") != std::string::npos);
    CHECK(error_of([&] { store.find_run("a%"); }).find("prefix of at least 4") != std::string::npos);
    CHECK(error_of([&] { store.find_run("abc_"); }).find("no run with uid 'abc_'") != std::string::npos);
    CHECK(error_of([&] { store.find_run("42"); }).find("no run with id 42") != std::string::npos);
    CHECK(error_of([&] { store.find_run("99999999999999999999999"); }).find("no run with id") != std::string::npos);
    // A uid prefix of digits only (labrun --resume 415629 once failed on one): an id first, else a uid.
    plain.rows("UPDATE runs SET uid = ?1 WHERE id = ?2", {std::string("4156290fdeadbeef"), second});
    CHECK(store.find_run("415629") == second);
    CHECK(store.find_run(std::to_string(first)) == first);
    CHECK(error_of([&] { store.find_run("415628"); }).find("no run with id 415628 nor uid '415628'") !=
          std::string::npos);
    CHECK(error_of([&] { store.find_run(""); }).find("hint:") != std::string::npos);
}

TEST_CASE("match_run: the one rule labrun and labdb name runs by", "[results]") {
    using Catch::Matchers::Contains;
    const std::vector<lab::RunKey> runs = {{1, "abcd1111aaaaaaaa", "base"},
                                           {2, "abcd2222bbbbbbbb", "wide"},
                                           {3, "0042f00dcccccccc", "wide"},
                                           {40, "ffff0000dddddddd", "1"}};
    auto message = [&](const std::string& spec) {
        try {
            (void)lab::match_run(runs, spec, "study.db");
        } catch (const lab::RunLookupError& e) {
            return std::string(e.what());
        }
        return std::string("<no error>");
    };
    CHECK(lab::match_run(runs, "2", "study.db").id == 2);          // an id first
    CHECK(lab::match_run(runs, "1", "study.db").id == 1);          // id 1, not the run named "1"
    CHECK(lab::match_run(runs, "0042", "study.db").id == 3);       // digits that are no id: a uid prefix
    CHECK(lab::match_run(runs, "ABCD1", "study.db").id == 1);      // uids compare case-insensitively
    CHECK(lab::match_run(runs, "base", "study.db").id == 1);       // a run name
    CHECK(lab::match_run(runs, "ffff0000dddddddd", "study.db").id == 40);
    const std::string ambiguous_prefix = message("abcd");
    CHECK_THAT(ambiguous_prefix, Contains("run 'abcd' is ambiguous in 'study.db': it matches several runs (2):") &&
                                     Contains("\n  1 (base, uid abcd1111)") && Contains("\n  2 (wide, uid abcd2222)"));
    CHECK_THAT(message("wide"), Contains("ambiguous") && Contains("2 (wide, uid abcd2222)") &&
                                    Contains("3 (wide, uid 0042f00d)") && Contains("hint:"));
    // Below kMinRunUidPrefix characters a string is no uid prefix: "abc" is not found, not ambiguous.
    CHECK(lab::kMinRunUidPrefix == 4);
    CHECK_THAT(message("abc"), Contains("no run matches 'abc' in 'study.db': there is no run with name 'abc' (a uid "
                                        "is named by a prefix of at least 4 characters)"));
    CHECK_THAT(message("basse"), Contains("there is no run with uid 'basse' nor name 'basse'; closest runs:\n  1 "
                                          "(base, uid abcd1111)") &&
                                     Contains("labdb runs --db study.db"));
    CHECK_THAT(message("77"), Contains("there is no run with id 77 nor name '77'"));
    CHECK_THROWS_WITH(lab::match_run({}, "1", "empty.db"),
                      Contains("no run matches '1': the database 'empty.db' has no runs"));
}

TEST_CASE("plugins reads back a run's plugin rows in the order they were recorded", "[results]") {
    TempDir scratch;
    lab::ResultStore store(scratch.path / "lab.db");
    const int64_t run = store.begin_run(sample_record("plugins"), {});
    const int64_t other = store.begin_run(sample_record("other"), {});
    store.add_plugin(run, "model", "gpt", "1.0", "/plugins/model_gpt.so", std::string(64, 'a'),
                     "lab-sdk3/gcc-12/cxx11abi-1");
    store.add_plugin(other, "model", "bert", "1.0", "/plugins/model_bert.so", std::string(64, 'b'),
                     "lab-sdk3/gcc-12/cxx11abi-1");
    // version, sha256 and abi stored as NULL
    store.add_plugin(run, "attention", "softmax", "", "<builtin>", "", "");

    const std::vector<lab::ResultStore::PluginRow> rows = store.plugins(run);
    REQUIRE(rows.size() == 2);
    CHECK(rows[0].kind == "model");
    CHECK(rows[0].name == "gpt");
    CHECK(rows[0].version == "1.0");
    CHECK(rows[0].file == "/plugins/model_gpt.so");
    CHECK(rows[0].sha256 == std::string(64, 'a'));
    CHECK(rows[0].abi == "lab-sdk3/gcc-12/cxx11abi-1");
    CHECK(rows[1].name == "softmax");
    CHECK(rows[1].version.empty());
    CHECK(rows[1].file == "<builtin>");
    CHECK(rows[1].sha256.empty());
    CHECK(rows[1].abi.empty());
    PlainSqlite plain(scratch.path / "lab.db");
    CHECK(plain.one("SELECT COUNT(*) FROM plugins WHERE abi IS NULL").integer == 1);
    CHECK(store.plugins(other).size() == 1);
    CHECK(store.plugins(other + 1).empty());  // no such run: no rows
}
