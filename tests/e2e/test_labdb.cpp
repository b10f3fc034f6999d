// labdb run as a user runs it: the built binary in a child process against a database made here
// through lab::ResultStore, with its exit code, stdout (tables and --json parsed with nlohmann)
// and the files it writes checked. Exit codes (tools/labdb/main.cpp): 0 ok, 1 failure, 2 usage,
// 3 not found or ambiguous.
#include <catch2/catch.hpp>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "lab/results.h"
#include "labdb_test_support.h"
#include "results_schema_history.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace lab_test;
using namespace lab_test::labdb;
using Catch::Matchers::Contains;
using Catch::Matchers::EndsWith;
using nlohmann::json;

namespace {

// Rows per table, read with the plain SQLite API: what "changes nothing" is checked against.
std::map<std::string, int64_t> table_counts(const fs::path& db_file) {
    const PlainSqlite db(db_file, PlainSqlite::Access::read_only);
    std::map<std::string, int64_t> counts;
    for (const char* table : {"runs", "params", "metrics", "plugins", "artifacts", "texts"})
        counts[table] = db.one(std::string("SELECT COUNT(*) FROM ") + table).integer;
    return counts;
}

const std::string kSha = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const std::string kAbiTag = "lab-sdk1/gcc-12/cxx11abi-1";

struct RunSpec {
    std::string name, experiment;
    std::vector<std::pair<std::string, std::string>> params;
    std::vector<std::pair<int64_t, double>> val_loss, train_loss;
    lab::RunStatus status = lab::RunStatus::finished;
    std::string error;
};

RunSpec finished_run(std::string name, std::string experiment, std::vector<std::pair<std::string, std::string>> params,
                     std::vector<std::pair<int64_t, double>> val_loss, std::vector<std::pair<int64_t, double>> train_loss) {
    return {std::move(name), std::move(experiment), std::move(params), std::move(val_loss), std::move(train_loss),
            lab::RunStatus::finished, ""};
}

// Writes the runs through lab::ResultStore with plugins, an artifact and two text samples each;
// returns the run ids in order.
std::vector<int64_t> write_runs(const fs::path& db_file, const std::vector<RunSpec>& specs) {
    lab::ResultStore store(db_file);
    std::vector<int64_t> ids;
    for (const RunSpec& spec : specs) {
        lab::RunRecord record;
        record.name = spec.name;
        record.experiment = spec.experiment;
        record.config_hash = "hash-" + spec.name;
        record.config_text = "[experiment]\nname = " + spec.name + "\n";
        record.backend = "reference";
        record.device = "cpu";
        record.precision = "fp32";
        record.host = "testhost";
        record.code_revision = "abc123";
        record.seed = 1;
        const int64_t id = store.begin_run(record, spec.params);
        store.add_plugin(id, "attention", "softmax", "1.0", "/plugins/libsoftmax.so", kSha, kAbiTag);
        store.add_plugin(id, "model", "gpt", "1.1", "/plugins/libgpt.so", kSha, kAbiTag);
        store.add_artifact(id, "vocab", "/results/" + spec.name + "/vocab.txt");
        store.declare_metric(id, "val/loss", lab::MetricGoal::minimize);
        store.declare_metric(id, "train/loss", lab::MetricGoal::minimize);
        for (const auto& [step, value] : spec.val_loss) store.add_metric(id, step, "val/loss", value);
        for (const auto& [step, value] : spec.train_loss) store.add_metric(id, step, "train/loss", value);
        store.add_text(id, 100, "sample", "early text of " + spec.name);
        store.add_text(id, 200, "sample", "last text of " + spec.name);
        store.finish_run(id, spec.status, spec.error);
        ids.push_back(id);
    }
    return ids;
}

const double kNaN = std::numeric_limits<double>::quiet_NaN();

// Five runs: two finished runs of exp1 that differ in two params, a failed run of exp1 (with a
// CSV-hostile name and a NaN), and two runs of exp2 that share the name "rerun".
struct StudyDatabase {
    TempDir dir;
    fs::path db = dir.path / "lab.db";
    std::vector<int64_t> ids;
    StudyDatabase() {
        ids = write_runs(
            db, {finished_run("base_a", "exp1",
                              {{"model.layers", "4"}, {"optimizer.lr", "0.001"}, {"attention.type", "softmax"}},
                              {{0, 3.0}, {100, 2.5}, {200, 2.75}},
                              {{0, 3.5}, {50, 3.0}, {100, 2.8}, {150, 2.6}, {200, 2.4}}),
                 finished_run("wide_b", "exp1",
                              {{"model.layers", "8"}, {"optimizer.lr", "0.001"}, {"attention.type", "linear"}},
                              {{0, 3.1}, {100, 2.25}, {200, 2.375}}, {{0, 3.6}, {100, 2.7}, {200, 2.2}}),
                 {"broken, \"really\"",
                  "exp1",
                  {{"model.layers", "4"}, {"optimizer.lr", "0.01"}, {"attention.type", "softmax"}},
                  {{0, 5.0}, {50, kNaN}},
                  {{0, 5.5}},
                  lab::RunStatus::failed,
                  "non-finite loss at step 50"},
                 finished_run("rerun", "exp2", {{"model.layers", "2"}}, {{0, 4.0}}, {{0, 4.5}}),
                 finished_run("rerun", "exp2", {{"model.layers", "2"}}, {{0, 3.9}}, {{0, 4.4}})});
    }
    std::string uid(size_t index) const { return lab::ResultStore(db).uid(ids[index]); }
};

json find_by_id(const json& rows, int64_t id) {
    for (const json& row : rows) {
        if (row["id"].get<int64_t>() == id) return row;
    }
    FAIL("no row with id " << id << " in " << rows.dump());
    return {};
}

std::vector<int64_t> ids_of(const json& rows) {
    std::vector<int64_t> ids;
    for (const json& row : rows) ids.push_back(row["id"].get<int64_t>());
    return ids;
}

// A pid that no process has any more: a child that has exited and been reaped.
int64_t exited_pid() {
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) ::_exit(0);
    REQUIRE(wait_exit(child) == 0);
    return child;
}

std::map<int64_t, std::string> status_by_id(const json& rows) {
    std::map<int64_t, std::string> statuses;
    for (const json& row : rows) statuses[row["id"].get<int64_t>()] = row["status"].get<std::string>();
    return statuses;
}

}  // namespace

TEST_CASE("labdb runs lists runs with last and best val/loss and filters them", "[labdb]") {
    StudyDatabase study;
    const std::string db = study.db.string();

    const json all = run_json({"--db", db, "runs", "--json"});
    REQUIRE(all.size() == 5);
    CHECK(ids_of(all) == study.ids);
    const json base = find_by_id(all, study.ids[0]);
    CHECK(base["name"] == "base_a");
    CHECK(base["best_val_loss"].get<double>() == 2.5);
    CHECK(base["last_val_loss"].get<double>() == 2.75);
    CHECK(base["steps"].get<int64_t>() == 200);
    CHECK(base["uid"].get<std::string>() == study.uid(0));
    CHECK(find_by_id(all, study.ids[1])["best_val_loss"].get<double>() == 2.25);
    const json broken = find_by_id(all, study.ids[2]);
    CHECK(broken["status"] == "failed");
    CHECK(broken["last_val_loss"].is_null());  // the NaN logged last
    CHECK(broken["best_val_loss"].get<double>() == 5.0);

    CHECK(ids_of(run_json({"--db", db, "runs", "--experiment", "exp1", "--json"})) ==
          std::vector<int64_t>{study.ids[0], study.ids[1], study.ids[2]});
    CHECK(ids_of(run_json({"runs", "--db", db, "--status", "failed", "--json"})) == std::vector<int64_t>{study.ids[2]});
    CHECK(ids_of(run_json({"--db", db, "runs", "--where", "model.layers=4", "--json"})) ==
          std::vector<int64_t>{study.ids[0], study.ids[2]});
    CHECK(ids_of(run_json({"--db", db, "runs", "--where", "model.layers=4", "--where", "optimizer.lr=0.001",
                           "--json"})) == std::vector<int64_t>{study.ids[0]});
    CHECK(ids_of(run_json({"--db", db, "runs", "--limit", "2", "--json"})) ==
          std::vector<int64_t>{study.ids[3], study.ids[4]});

    SECTION("the table names the columns and shows the values") {
        const Outcome table = labdb::run({"--db", db, "runs", "--experiment", "exp1"});
        INFO(table);
        REQUIRE(table.exit_code == kExitOk);
        const std::vector<std::string> lines = lines_of(table.out);
        REQUIRE(lines.size() == 5);  // header, rule, three runs
        CHECK_THAT(lines[0], Contains("best val/loss") && Contains("sweep"));
        CHECK_THAT(lines[2], Contains("base_a") && Contains(study.uid(0).substr(0, 8)) && Contains("2.5") &&
                                 Contains("2.75") && Contains("finished"));
        CHECK_THAT(lines[4], Contains("failed"));
    }
    SECTION("a bad status is a usage error, an unknown key a warning") {
        const Outcome bad_status = labdb::run({"--db", db, "runs", "--status", "done"});
        CHECK(bad_status.exit_code == kExitUsage);
        CHECK_THAT(bad_status.err, Contains("finished"));
        const Outcome typo = labdb::run({"--db", db, "runs", "--where", "model.layer=4", "--json"});
        CHECK(typo.exit_code == kExitOk);
        CHECK(json::parse(typo.out).empty());
        CHECK_THAT(typo.err, Contains("model.layers"));
    }
}

TEST_CASE("labdb show prints everything about one run, named by id, uid prefix or name", "[labdb]") {
    StudyDatabase study;
    const std::string db = study.db.string();

    const json shown = run_json({"--db", db, "show", "base_a", "--json"});
    CHECK(shown["run"]["id"].get<int64_t>() == study.ids[0]);
    CHECK(shown["run"]["status"] == "finished");
    CHECK(shown["run"]["code_revision"] == "abc123");
    CHECK(shown["params"] == json({{"attention.type", "softmax"}, {"model.layers", "4"}, {"optimizer.lr", "0.001"}}));
    REQUIRE(shown["plugins"].size() == 2);
    CHECK(shown["plugins"][0]["sha256"] == kSha);
    CHECK(shown["plugins"][0]["abi"] == kAbiTag);
    CHECK(shown["plugins"][1]["abi"] == kAbiTag);
    json val_loss;
    for (const json& metric : shown["metrics"]) {
        if (metric["name"] == "val/loss") val_loss = metric;
    }
    CHECK(val_loss["best"].get<double>() == 2.5);
    CHECK(val_loss["best_step"].get<int64_t>() == 100);
    CHECK(val_loss["last"].get<double>() == 2.75);
    CHECK(val_loss["last_step"].get<int64_t>() == 200);
    CHECK(val_loss["count"].get<int64_t>() == 3);
    REQUIRE(shown["texts"].size() == 1);
    CHECK(shown["texts"][0]["text"] == "last text of base_a");
    CHECK(shown["texts"][0]["step"].get<int64_t>() == 200);
    REQUIRE(shown["artifacts"].size() == 1);
    CHECK(shown["artifacts"][0]["path"] == "/results/base_a/vocab.txt");

    CHECK(run_json({"--db", db, "show", study.uid(1).substr(0, 6), "--json"})["run"]["name"] == "wide_b");
    CHECK(run_json({"--db", db, "show", std::to_string(study.ids[2]), "--json"})["run"]["error"] ==
          "non-finite loss at step 50");

    const Outcome text = labdb::run({"--db", db, "show", "wide_b"});
    INFO(text);
    REQUIRE(text.exit_code == kExitOk);
    CHECK_THAT(text.out, Contains("model.layers   = 8") && Contains("last text of wide_b") &&
                             Contains("0123456789ab") && Contains("2.25") && Contains(kAbiTag));

    SECTION("an ambiguous name lists the candidates with ids") {
        const Outcome ambiguous = labdb::run({"--db", db, "show", "rerun"});
        CHECK(ambiguous.exit_code == kExitNotFound);
        CHECK_THAT(ambiguous.err, Contains("ambiguous") && Contains(std::to_string(study.ids[3]) + " (rerun") &&
                                      Contains(std::to_string(study.ids[4]) + " (rerun"));
    }
    SECTION("an unknown name lists the closest runs") {
        const Outcome unknown = labdb::run({"--db", db, "show", "base_b"});
        CHECK(unknown.exit_code == kExitNotFound);
        CHECK_THAT(unknown.err, Contains("no run matches 'base_b'") && Contains("(base_a"));
    }
    SECTION("a missing database is not found") {
        const Outcome missing = labdb::run({"--db", (study.dir.path / "nope.db").string(), "show", "1"});
        CHECK(missing.exit_code == kExitNotFound);
        CHECK_THAT(missing.err, Contains("nope.db"));
    }
}

TEST_CASE("labdb compare shows exactly the params that differ and the metrics", "[labdb]") {
    StudyDatabase study;
    const std::string db = study.db.string();

    const json compared = run_json({"--db", db, "compare", "base_a", "wide_b", "--json"});
    REQUIRE(compared.size() == 2);
    CHECK(compared[0]["params"] == json({{"attention.type", "softmax"}, {"model.layers", "4"}}));
    CHECK(compared[1]["params"] == json({{"attention.type", "linear"}, {"model.layers", "8"}}));
    CHECK(compared[0]["metrics"]["val/loss"]["best"].get<double>() == 2.5);
    CHECK(compared[1]["metrics"]["val/loss"]["best"].get<double>() == 2.25);
    CHECK(compared[1]["metrics"]["val/loss"]["last"].get<double>() == 2.375);
    CHECK(compared[1]["metrics"]["train/loss"]["last"].get<double>() == 2.2);

    const json all = run_json({"--db", db, "compare", "base_a", "wide_b", "--all", "--json"});
    CHECK(all[0]["params"].size() == 3);
    CHECK(all[1]["params"]["optimizer.lr"] == "0.001");

    const Outcome table = labdb::run({"--db", db, "compare", "base_a", "wide_b", std::to_string(study.ids[2])});
    INFO(table);
    REQUIRE(table.exit_code == kExitOk);
    CHECK_THAT(table.out, Contains("optimizer.lr") && Contains("model.layers") && Contains("val/loss best") &&
                              Contains("2.25 @100"));
    const Outcome two = labdb::run({"--db", db, "compare", "base_a", "wide_b"});
    CHECK_THAT(two.out, !Contains("optimizer.lr") && Contains("attention.type"));
}

TEST_CASE("labdb export writes long-format CSV and JSON", "[labdb]") {
    StudyDatabase study;
    const std::string db = study.db.string();
    const int64_t metric_rows = table_counts(study.db)["metrics"];
    REQUIRE(metric_rows == 3 + 5 + 3 + 3 + 2 + 1 + 2 + 2);

    const Outcome csv = labdb::run({"--db", db, "export", "--format", "csv"});
    INFO(csv);
    REQUIRE(csv.exit_code == kExitOk);
    const std::vector<std::string> lines = lines_of(csv.out);
    REQUIRE(static_cast<int64_t>(lines.size()) == metric_rows + 1);
    CHECK(lines[0] == "run_id,run_name,step,name,value,time");
    const std::string id = std::to_string(study.ids[0]);
    const std::string broken = std::to_string(study.ids[2]) + ",\"broken, \"\"really\"\"\",";
    int found = 0;
    for (const std::string& line : lines) {
        if (line.rfind(id + ",base_a,100,val/loss,2.5,", 0) == 0) ++found;
        if (line.rfind(broken + "50,val/loss,,", 0) == 0) ++found;  // RFC 4180 quoting; NaN is empty
    }
    CHECK(found == 2);

    const fs::path json_file = study.dir.path / "wide_b.json";
    const Outcome to_file = labdb::run({"--db", db, "export", "wide_b", "--format", "json", "-o", json_file.string()});
    INFO(to_file);
    REQUIRE(to_file.exit_code == kExitOk);
    const json rows = json::parse(read_text(json_file));
    REQUIRE(rows.size() == 6);
    CHECK(rows[0]["run_name"] == "wide_b");
    CHECK(rows[0]["name"] == "train/loss");
    CHECK(rows[5]["name"] == "val/loss");
    CHECK(rows[5]["step"].get<int64_t>() == 200);
    CHECK(rows[5]["value"].get<double>() == 2.375);
    CHECK(rows[5]["time"].is_number());

    CHECK(labdb::run({"--db", db, "export", "--format", "xml"}).exit_code == kExitUsage);
}

TEST_CASE("labdb curves writes SVG and PNG charts", "[labdb]") {
    StudyDatabase study;
    const std::string db = study.db.string();
    const fs::path svg = study.dir.path / "curves.svg", png = study.dir.path / "curves.png";

    const Outcome svg_run = labdb::run({"--db", db, "curves", "--metric", "val/loss", "--metric", "train/loss",
                                       "base_a", "wide_b", "-o", svg.string()});
    INFO(svg_run);
    REQUIRE(svg_run.exit_code == kExitOk);
    const std::string svg_text = read_text(svg);
    // Runs are named by the params that differ between them (test_labdb_charts.cpp checks more).
    CHECK_THAT(svg_text, Contains("<svg") && Contains("<polyline") &&
                             Contains(">attention.type=softmax model.layers=4 val/loss</text>") &&
                             Contains(">attention.type=linear model.layers=8 train/loss</text>"));

    const Outcome png_run =
        labdb::run({"--db", db, "curves", "--metric", "val/loss", "wide_b", "-o", png.string(), "--log-y", "--x", "time"});
    INFO(png_run);
    if (png_run.err.find("built without PNG charts") != std::string::npos) {
        // A labdb configured without Cairo: a usage error that points to .svg, and no file.
        CHECK(png_run.exit_code == kExitUsage);
        CHECK_THAT(png_run.err, Contains(".svg") && Contains("libcairo2-dev"));
        CHECK(!fs::exists(png));
    } else {
        REQUIRE(png_run.exit_code == kExitOk);
        const std::string png_bytes = read_text(png);
        REQUIRE(png_bytes.size() > 8);
        CHECK(png_bytes.substr(0, 8) == std::string("\x89PNG\r\n\x1a\n", 8));
    }

    const Outcome unknown_metric = labdb::run({"--db", db, "curves", "--metric", "val/los", "base_a", "-o", svg.string()});
    CHECK(unknown_metric.exit_code == kExitNotFound);
    CHECK_THAT(unknown_metric.err, Contains("val/loss"));
    CHECK(labdb::run({"--db", db, "curves", "--metric", "val/loss", "base_a", "-o", "x.jpg"}).exit_code == kExitUsage);
}

TEST_CASE("labdb report writes one self-contained HTML file for an experiment or a sweep", "[labdb]") {
    StudyDatabase study;
    const std::string db = study.db.string();
    const fs::path html_file = study.dir.path / "report.html";

    const Outcome report = labdb::run({"--db", db, "report", "exp1", "-o", html_file.string()});
    INFO(report);
    REQUIRE(report.exit_code == kExitOk);
    const std::string html = read_text(html_file);
    CHECK_THAT(html, Contains("<!DOCTYPE html>") && Contains("base_a") && Contains("wide_b") && Contains("<svg") &&
                         Contains("last text of wide_b") && Contains("abc123") && Contains("libsoftmax.so") &&
                         Contains("broken, &quot;really&quot;") && Contains("non-finite loss at step 50"));
    CHECK_THAT(html, Contains("<th>sha256</th><th>abi</th>") && Contains("<td><code>" + kAbiTag + "</code></td>"));
    CHECK_THAT(html, !Contains("<script") && !Contains("<link") && !Contains("src=") && !Contains("rerun"));

    // A sweep column as schema version 2 has it (added here when the store is still version 1).
    {
        PlainSqlite plain(study.db);
        if (plain.rows("SELECT 1 FROM pragma_table_info('runs') WHERE name = 'sweep'").empty())
            plain.exec("ALTER TABLE runs ADD COLUMN sweep TEXT");
        plain.exec("UPDATE runs SET sweep = 'sw42' WHERE id IN (" + std::to_string(study.ids[0]) + ", " +
                   std::to_string(study.ids[1]) + ")");
    }
    const json swept = run_json({"--db", db, "runs", "--json"});
    CHECK(find_by_id(swept, study.ids[0])["sweep"] == "sw42");
    CHECK(find_by_id(swept, study.ids[2])["sweep"].is_null());
    const Outcome sweep_report = labdb::run({"--db", db, "report", "sw42", "-o", html_file.string()});
    INFO(sweep_report);
    REQUIRE(sweep_report.exit_code == kExitOk);
    const std::string sweep_html = read_text(html_file);
    CHECK_THAT(sweep_html, Contains("sweep sw42") && Contains("base_a") && Contains("wide_b") && !Contains("broken"));

    const Outcome unknown = labdb::run({"--db", db, "report", "exp3", "-o", html_file.string()});
    CHECK(unknown.exit_code == kExitNotFound);
    CHECK_THAT(unknown.err, Contains("exp1") && Contains("exp2"));
}

TEST_CASE("labdb merge joins databases with new ids and remapped rows", "[labdb]") {
    StudyDatabase study;
    const fs::path second = study.dir.path / "second.db";
    const std::vector<int64_t> second_ids =
        write_runs(second, {finished_run("other_x", "exp9", {{"model.layers", "6"}}, {{0, 2.0}, {10, 1.5}}, {{0, 2.5}}),
                            finished_run("other_y", "exp9", {{"model.layers", "7"}}, {{0, 2.1}}, {{0, 2.6}, {10, 2.0}})});
    // A copy of the first database: every uid in it is a duplicate.
    const fs::path copy = study.dir.path / "copy.db";
    fs::copy_file(study.db, copy);
    const fs::path merged = study.dir.path / "merged.db";

    const Outcome merge =
        labdb::run({"merge", study.db.string(), second.string(), copy.string(), "-o", merged.string()});
    INFO(merge);
    REQUIRE(merge.exit_code == kExitOk);
    CHECK_THAT(merge.err, Contains("already copied"));
    const std::map<std::string, int64_t> first_counts = table_counts(study.db), second_counts = table_counts(second),
                                         merged_counts = table_counts(merged);
    for (const auto& [table, count] : merged_counts) {
        INFO(table);
        CHECK(count == first_counts.at(table) + second_counts.at(table));
    }

    // Each run keeps its uid and gets its own rows under its new id.
    const json runs = run_json({"--db", merged.string(), "runs", "--json"});
    REQUIRE(runs.size() == 7);
    std::set<std::string> uids;
    for (const json& run : runs) uids.insert(run["uid"].get<std::string>());
    CHECK(uids.size() == 7);
    const json other_y = run_json({"--db", merged.string(), "show", "other_y", "--json"});
    CHECK(other_y["run"]["uid"] == lab::ResultStore(second).uid(second_ids[1]));
    CHECK(other_y["run"]["id"].get<int64_t>() == 7);
    CHECK(other_y["params"] == json({{"model.layers", "7"}}));
    int64_t metric_rows = 0;
    for (const json& metric : other_y["metrics"]) metric_rows += metric["count"].get<int64_t>();
    CHECK(metric_rows == 3);
    CHECK(other_y["plugins"].size() == 2);
    CHECK(other_y["texts"][0]["text"] == "last text of other_y");
    CHECK(run_json({"--db", merged.string(), "show", "base_a", "--json"})["metrics"][1]["best"].get<double>() == 2.5);

    SECTION("an existing output is refused unless --force") {
        const auto before = table_counts(merged);
        const Outcome refused = labdb::run({"merge", second.string(), "-o", merged.string()});
        CHECK(refused.exit_code == kExitFailure);
        CHECK_THAT(refused.err, Contains("--force"));
        CHECK(table_counts(merged) == before);
        const Outcome forced = labdb::run({"merge", second.string(), "-o", merged.string(), "--force"});
        INFO(forced);
        REQUIRE(forced.exit_code == kExitOk);
        CHECK(table_counts(merged)["runs"] == 2);
    }
    SECTION("a missing input leaves no output") {
        const fs::path target = study.dir.path / "never.db";
        const Outcome missing = labdb::run({"merge", study.db.string(), "nope.db", "-o", target.string()});
        CHECK(missing.exit_code == kExitNotFound);
        CHECK(!fs::exists(target));
    }
}

// labrun takes a configuration's highest id as its latest run; after a merge that must still be the
// run that started last, whichever input it came from (labrun --slurm merges its task databases,
// newer, before the experiment's database).
TEST_CASE("labdb merge numbers runs in the order they started, the first input's copy of a uid winning",
          "[labdb]") {
    TempDir dir;
    const fs::path older = dir.path / "experiment.db", newer = dir.path / "task.db";
    write_runs(older, {finished_run("old_run", "exp", {}, {{0, 3.0}}, {}),
                       finished_run("resumed", "exp", {}, {{0, 2.9}}, {})});
    std::string resumed_uid;
    {
        // The task database holds a newer copy of "resumed" (same uid) and a run of its own.
        fs::copy_file(older, newer);
        PlainSqlite task(newer);
        task.exec("DELETE FROM runs WHERE name = 'old_run'");
        task.exec("UPDATE metrics SET value = 1.5 WHERE value = 2.9");
        resumed_uid = task.one("SELECT uid FROM runs WHERE name = 'resumed'").text;
        PlainSqlite experiment(older);
        experiment.exec("UPDATE runs SET status = 'interrupted' WHERE name = 'resumed'");
        experiment.exec("UPDATE runs SET started_at = '2025-01-01T10:00:00.000Z' WHERE name = 'old_run'");
        experiment.exec("UPDATE runs SET started_at = '2025-01-01T11:00:00.000Z' WHERE name = 'resumed'");
        task.exec("UPDATE runs SET started_at = '2025-01-01T11:00:00.000Z' WHERE name = 'resumed'");
    }
    write_runs(newer, {finished_run("new_run", "exp", {}, {{0, 2.0}}, {})});  // started now

    const fs::path merged = dir.path / "merged.db";
    const Outcome merge = labdb::run({"merge", newer.string(), older.string(), "-o", merged.string()});
    INFO(merge);
    REQUIRE(merge.exit_code == kExitOk);
    CHECK_THAT(merge.err, Contains("has uid " + resumed_uid + ", already copied from '" + newer.string() + "'"));
    const PlainSqlite sql(merged, PlainSqlite::Access::read_only);
    std::vector<std::string> order;
    for (const Row& row : sql.rows("SELECT name || ':' || status FROM runs ORDER BY id")) order.push_back(row[0].text);
    CHECK(order == std::vector<std::string>{"old_run:finished", "resumed:finished", "new_run:finished"});
    CHECK(sql.one("SELECT value FROM metrics JOIN runs ON runs.id = metrics.run_id WHERE runs.name = 'resumed'")
              .real == 1.5);
    // The same ids whichever order the inputs come in, when no uid is shared.
    const fs::path other = dir.path / "other.db";
    write_runs(other, {finished_run("latest", "exp", {}, {{0, 1.0}}, {})});
    const fs::path reversed = dir.path / "reversed.db";
    REQUIRE(labdb::run({"merge", other.string(), older.string(), "-o", reversed.string()}).exit_code == kExitOk);
    order.clear();
    for (const Row& row : PlainSqlite(reversed, PlainSqlite::Access::read_only).rows("SELECT name FROM runs ORDER BY id"))
        order.push_back(row[0].text);
    CHECK(order == std::vector<std::string>{"old_run", "resumed", "latest"});
}

TEST_CASE("labdb treats hostile names and filters as plain values", "[labdb]") {
    StudyDatabase study;
    const std::string db = study.db.string();
    const auto before = table_counts(study.db);

    CHECK(run_json({"--db", db, "runs", "--where", "model.layers=4' OR 1=1 --", "--json"}).empty());
    CHECK(run_json({"--db", db, "runs", "--where", "model.layers' OR '1'='1=4", "--json"}).empty());
    CHECK(run_json({"--db", db, "runs", "--experiment", "x' OR '1'='1", "--json"}).empty());
    CHECK(run_json({"--db", db, "runs", "--experiment", "exp1'; DROP TABLE runs; --", "--json"}).empty());
    const Outcome show = labdb::run({"--db", db, "show", "x' OR '1'='1"});
    CHECK(show.exit_code == kExitNotFound);
    const Outcome compare = labdb::run({"--db", db, "compare", "base_a", "1; DELETE FROM metrics"});
    CHECK(compare.exit_code == kExitNotFound);
    const Outcome report = labdb::run({"--db", db, "report", "exp1' OR '1'='1", "-o", (study.dir.path / "r.html").string()});
    CHECK(report.exit_code == kExitNotFound);

    CHECK(table_counts(study.db) == before);
}

TEST_CASE("labdb shows a running run whose process is gone as dead and writes nothing", "[labdb]") {
    TempDir dir;
    const fs::path db_file = dir.path / "lab.db";
    std::map<std::string, int64_t> ids;
    {
        lab::ResultStore store(db_file);
        lab::RunRecord record;
        record.experiment = "exp";
        record.config_hash = "hash";
        record.config_text = "[experiment]\n";
        // begin_run records this test's pid, which is alive.
        for (const char* name : {"live", "gone", "silent", "far"}) {
            record.name = name;
            record.host = record.name == "silent" || record.name == "far" ? "elsewhere" : lab::host_name();
            ids[name] = store.begin_run(record, {});
        }
        record.name = "finished";
        const int64_t finished = store.begin_run(record, {});
        store.finish_run(finished, lab::RunStatus::finished, "");
        ids["finished"] = finished;
    }
    {
        PlainSqlite plain(db_file);
        const int64_t dead_pid = exited_pid();
        // On this host the pid of an exited process: dead at once. On another host a pid means
        // nothing ("far" keeps its fresh heartbeat); a heartbeat older than the lease is dead anywhere.
        plain.rows("UPDATE runs SET pid = ?1 WHERE id IN (?2, ?3, ?4)",
                   {dead_pid, ids["gone"], ids["far"], ids["finished"]});
        plain.rows("UPDATE runs SET heartbeat_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?1) WHERE id = ?2",
                   {"-" + std::to_string(lab::kDefaultLeaseSeconds + 60) + " seconds", ids["silent"]});
    }
    const std::string db = db_file.string();
    const std::string bytes_before = read_text(db_file);
    REQUIRE(!bytes_before.empty());

    const json runs = run_json({"--db", db, "runs", "--json"});
    CHECK(status_by_id(runs) == std::map<int64_t, std::string>{{ids["live"], "running"},
                                                                {ids["gone"], "dead"},
                                                                {ids["silent"], "dead"},
                                                                {ids["far"], "running"},
                                                                {ids["finished"], "finished"}});
    CHECK(ids_of(run_json({"--db", db, "runs", "--status", "dead", "--json"})) ==
          std::vector<int64_t>{ids["gone"], ids["silent"]});
    CHECK(ids_of(run_json({"--db", db, "runs", "--status", "running", "--json"})) ==
          std::vector<int64_t>{ids["live"], ids["far"]});
    // --limit counts the runs the status filter keeps: the newest dead run.
    CHECK(ids_of(run_json({"--db", db, "runs", "--status", "dead", "--limit", "1", "--json"})) ==
          std::vector<int64_t>{ids["silent"]});

    const Outcome table = labdb::run({"--db", db, "runs"});
    INFO(table);
    REQUIRE(table.exit_code == kExitOk);
    const std::vector<std::string> lines = lines_of(table.out);
    REQUIRE(lines.size() == 7);  // header, rule, five runs
    CHECK_THAT(lines[2], Contains("live") && Contains("running"));
    CHECK_THAT(lines[3], Contains("gone") && Contains("dead") && !Contains("running"));
    CHECK_THAT(lines[4], Contains("silent") && Contains("dead"));

    CHECK(run_json({"--db", db, "show", "gone", "--json"})["run"]["status"] == "dead");
    CHECK(run_json({"--db", db, "show", "silent", "--json"})["run"]["status"] == "dead");
    CHECK(run_json({"--db", db, "show", "live", "--json"})["run"]["status"] == "running");
    const Outcome shown = labdb::run({"--db", db, "show", "gone"});
    INFO(shown);
    REQUIRE(shown.exit_code == kExitOk);
    bool status_line_seen = false;
    for (const std::string& line : lines_of(shown.out)) {
        if (line.rfind("  status ", 0) == 0) {
            status_line_seen = true;
            CHECK_THAT(line, EndsWith("  dead"));
        }
    }
    CHECK(status_line_seen);

    // labdb wrote nothing: the file is byte for byte the same, and it still says running.
    CHECK(read_text(db_file) == bytes_before);
    const PlainSqlite plain(db_file, PlainSqlite::Access::read_only);
    CHECK(plain.one("SELECT status FROM runs WHERE id = ?1", {ids["gone"]}).text == "running");
}

TEST_CASE("labdb refuses a database of a newer schema version", "[labdb]") {
    StudyDatabase study;
    const int newer = lab::ResultStore::kSchemaVersion + 1;
    PlainSqlite(study.db).exec("PRAGMA user_version = " + std::to_string(newer));
    const std::string db = study.db.string();

    const std::vector<std::vector<std::string>> commands = {
        {"--db", db, "runs"}, {"--db", db, "show", "base_a"}, {"merge", db, "-o", (study.dir.path / "merged.db").string()}};
    for (const std::vector<std::string>& args : commands) {
        const Outcome refused = labdb::run(args);
        INFO(refused);
        CHECK(refused.exit_code == kExitFailure);
        CHECK(refused.out.empty());
        CHECK_THAT(refused.err, Contains("'" + db + "' has schema version " + std::to_string(newer)) &&
                                    Contains("this labdb knows schema version " +
                                             std::to_string(lab::ResultStore::kSchemaVersion) + " at most") &&
                                    Contains("hint:") && Contains("newer labrun") && Contains("rebuild labdb"));
    }
    CHECK(!fs::exists(study.dir.path / "merged.db"));
    CHECK_THAT(labdb::run({"--help"}).out, Contains("1 failure (also: a database written by a newer labrun)"));
}

TEST_CASE("labdb prints a whole number without decimals", "[labdb]") {
    TempDir dir;
    const fs::path db_file = dir.path / "lab.db";
    {
        lab::ResultStore store(db_file);
        lab::RunRecord record;
        record.name = "counts";
        record.experiment = "exp";
        record.config_hash = "hash";
        record.config_text = "[experiment]\n";
        const int64_t id = store.begin_run(record, {});
        // Goals as a task declares them: a count has none, so compare shows no best for it.
        store.declare_metric(id, "val/tokens", lab::MetricGoal::none);
        store.declare_metric(id, "train/loss", lab::MetricGoal::minimize);
        store.declare_metric(id, "val/shift", lab::MetricGoal::maximize);
        store.declare_metric(id, "val/huge", lab::MetricGoal::minimize);
        store.add_metric(id, 100, "val/tokens", 111488.0);
        store.add_metric(id, 200, "val/tokens", 222976.0);
        store.add_metric(id, 100, "train/loss", 2.718281828);
        store.add_metric(id, 200, "train/loss", 3.0);
        store.add_metric(id, 100, "val/shift", -7.0);
        // 2^53: integers from here on are no longer all exact in a double.
        store.add_metric(id, 100, "val/huge", 9007199254740992.0);
        store.finish_run(id, lab::RunStatus::finished, "");
    }
    const Outcome compared = labdb::run({"--db", db_file.string(), "compare", "counts"});
    INFO(compared);
    REQUIRE(compared.exit_code == kExitOk);
    CHECK(compared.out ==
          "                                                    1 counts\n"
          "-------------------------------------------  ---------------\n"
          "params (differing)\n"
          "  (none: the runs have the same parameters)\n"
          "metrics\n"
          "  train/loss last                                     3 @200\n"
          "  train/loss best (min)                          2.7183 @100\n"
          "  val/huge last                              9.0072e+15 @100\n"
          "  val/huge best (min)                        9.0072e+15 @100\n"
          "  val/shift last                                     -7 @100\n"
          "  val/shift best (max)                               -7 @100\n"
          "  val/tokens last                                222976 @200\n");

    const Outcome shown = labdb::run({"--db", db_file.string(), "show", "counts"});
    INFO(shown);
    REQUIRE(shown.exit_code == kExitOk);
    // A count's row has its last value as an integer and, with no goal, no best value.
    CHECK_THAT(shown.out, Contains("\n  val/tokens          2      222976      200           -        -\n"));
    CHECK_THAT(shown.out, Contains("\n  val/shift (max)     1          -7      100          -7      100\n"));
}

TEST_CASE("labdb usage errors and help", "[labdb]") {
    CHECK(labdb::run({}).exit_code == kExitUsage);
    const Outcome unknown = labdb::run({"frobnicate"});
    CHECK(unknown.exit_code == kExitUsage);
    CHECK_THAT(unknown.err, Contains("runs") && Contains("merge"));
    CHECK(labdb::run({"runs", "--no-such-option"}).exit_code == kExitUsage);
    for (const char* command : {"runs", "show", "compare", "curves", "export", "report", "merge"}) {
        const Outcome help = labdb::run({command, "--help"});
        INFO(command << "\n" << help);
        CHECK(help.exit_code == kExitOk);
        CHECK_THAT(help.out, Contains(std::string("usage: labdb ") + command));
    }
    const Outcome top = labdb::run({"--help"});
    CHECK(top.exit_code == kExitOk);
    CHECK_THAT(top.out, Contains("compare") && Contains("report"));
}

// The DDL of schema version 1 as a literal, so the test keeps building a version-1 file when the
// store has moved on (labdb reads files of every version without migrating them).
const char* const kSchemaVersion1 = R"sql(
CREATE TABLE runs (id INTEGER PRIMARY KEY, uid TEXT NOT NULL UNIQUE, name TEXT NOT NULL, experiment TEXT NOT NULL,
    config_hash TEXT NOT NULL, config TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed', 'interrupted')), error TEXT, backend TEXT,
    device TEXT, precision TEXT, seed INTEGER, host TEXT, pid INTEGER, code_revision TEXT, started_at TEXT NOT NULL,
    ended_at TEXT, wall_s REAL);
CREATE TABLE params (run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE, key TEXT NOT NULL,
    value TEXT NOT NULL, PRIMARY KEY (run_id, key));
CREATE TABLE metrics (run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE, step INTEGER NOT NULL,
    name TEXT NOT NULL, value REAL, time REAL NOT NULL);
CREATE TABLE plugins (run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE, kind TEXT NOT NULL,
    name TEXT NOT NULL, version TEXT, file TEXT, sha256 TEXT);
CREATE TABLE artifacts (run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE, kind TEXT NOT NULL,
    path TEXT NOT NULL);
CREATE TABLE texts (run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE, step INTEGER NOT NULL,
    name TEXT NOT NULL, text TEXT NOT NULL);
INSERT INTO runs (id, uid, name, experiment, config_hash, config, status, started_at, wall_s)
    VALUES (1, 'aaaa000011112222', 'old_run', 'old_exp', 'h1', '[experiment]', 'finished', '2024-01-02T03:04:05.000Z', 12.5),
           (2, 'bbbb000011112222', 'old_two', 'old_exp', 'h2', '[experiment]', 'finished', '2024-01-02T04:04:05.000Z', 7.0);
INSERT INTO params VALUES (1, 'model.layers', '2'), (2, 'model.layers', '3');
INSERT INTO metrics VALUES (1, 0, 'val/loss', 4.0, 0.5), (1, 10, 'val/loss', 3.5, 1.5), (1, 10, 'train/loss', 3.75, 1.5),
    (2, 0, 'val/loss', 4.25, 0.5);
INSERT INTO plugins VALUES (1, 'model', 'gpt', '1.0', '/p/libgpt.so', 'ff00');
INSERT INTO artifacts VALUES (1, 'vocab', '/v.txt');
INSERT INTO texts VALUES (1, 10, 'sample', 'old sample');
PRAGMA user_version = 1;
)sql";

TEST_CASE("labdb reads and merges a schema version 1 file without changing it", "[labdb]") {
    TempDir dir;
    const fs::path old_db = dir.path / "old.db";
    PlainSqlite(old_db).exec(kSchemaVersion1);
    const std::string db = old_db.string();
    const auto before = table_counts(old_db);

    const json runs = run_json({"--db", db, "runs", "--json"});
    REQUIRE(runs.size() == 2);
    CHECK(runs[0]["best_val_loss"].get<double>() == 3.5);
    CHECK(runs[0]["steps"].get<int64_t>() == 10);
    CHECK(runs[0]["sweep"].is_null());
    CHECK(ids_of(run_json({"--db", db, "runs", "--where", "model.layers=3", "--json"})) == std::vector<int64_t>{2});
    const json shown = run_json({"--db", db, "show", "aaaa", "--json"});
    CHECK(shown["run"]["name"] == "old_run");
    CHECK(!shown["run"].contains("sweep"));
    CHECK(shown["texts"][0]["text"] == "old sample");
    // No plugins.abi before schema version 5: null, "-" in text.
    REQUIRE(shown["plugins"].size() == 1);
    CHECK(shown["plugins"][0]["abi"].is_null());
    const Outcome shown_text = labdb::run({"--db", db, "show", "aaaa"});
    CHECK_THAT(shown_text.out, Contains("sha256  abi\n") && Contains("ff00    -\n"));

    const fs::path html = dir.path / "old.html";
    const Outcome report = labdb::run({"--db", db, "report", "old_exp", "-o", html.string()});
    INFO(report);
    REQUIRE(report.exit_code == kExitOk);
    CHECK_THAT(read_text(html), Contains("old_run") && Contains("old_two") && Contains("<svg"));

    // Merged into a file of the store's current schema: the rows come along, newer columns are NULL.
    const fs::path merged = dir.path / "merged.db";
    const Outcome merge = labdb::run({"merge", db, "-o", merged.string()});
    INFO(merge);
    REQUIRE(merge.exit_code == kExitOk);
    CHECK(table_counts(merged) == before);
    CHECK(run_json({"--db", merged.string(), "show", "old_run", "--json"})["run"]["uid"] == "aaaa000011112222");

    CHECK(table_counts(old_db) == before);
    CHECK(PlainSqlite(old_db, PlainSqlite::Access::read_only).one("PRAGMA user_version").integer == 1);
}

TEST_CASE("labdb tells a dead run of a schema version 1 file by its start time", "[labdb]") {
    TempDir dir;
    const fs::path old_db = dir.path / "old.db";
    {
        PlainSqlite plain(old_db);
        plain.exec(kSchemaVersion1);
        // No heartbeat_at column: the lease counts from started_at.
        const std::string insert =
            "INSERT INTO runs (id, uid, name, experiment, config_hash, config, status, host, pid, started_at)"
            " VALUES (?1, ?2, ?3, 'old_exp', 'h', '[experiment]', 'running', ?4, ?5, ?6)";
        plain.rows(insert, {int64_t{3}, "cccc000011112222", "old_dead", "elsewhere", int64_t{::getpid()},
                            "2024-01-02T05:04:05.000Z"});
        plain.rows(insert, {int64_t{4}, "dddd000011112222", "old_live", lab::host_name(), int64_t{::getpid()},
                            lab::utc_now_iso()});
    }
    const std::string db = old_db.string();
    const std::string bytes_before = read_text(old_db);

    CHECK(status_by_id(run_json({"--db", db, "runs", "--json"})) ==
          std::map<int64_t, std::string>{{1, "finished"}, {2, "finished"}, {3, "dead"}, {4, "running"}});
    CHECK(ids_of(run_json({"--db", db, "runs", "--status", "dead", "--json"})) == std::vector<int64_t>{3});
    CHECK(run_json({"--db", db, "show", "old_dead", "--json"})["run"]["status"] == "dead");
    CHECK(run_json({"--db", db, "show", "old_live", "--json"})["run"]["status"] == "running");
    CHECK(read_text(old_db) == bytes_before);
}

// The lines of `labdb show`'s runs block from the one of column `first` on, `count` of them.
std::vector<std::string> show_lines_from(const std::string& shown, const std::string& first, size_t count) {
    const std::vector<std::string> lines = lines_of(shown);
    const auto found = std::find_if(lines.begin(), lines.end(),
                                    [&](const std::string& line) { return line.rfind("  " + first + " ", 0) == 0; });
    if (found == lines.end() || size_t(lines.end() - found) < count) return {};
    return {found, found + static_cast<std::ptrdiff_t>(count)};
}

TEST_CASE("labdb shows a run's world size and communicator, and merges a version-3 file with a version-4 one",
          "[labdb]") {
    TempDir dir;
    // A version-3 file as a labrun before data parallelism wrote it (the DDL as released).
    const fs::path old_db = dir.path / "v3.db";
    {
        PlainSqlite plain(old_db);
        plain.exec(kResultsSchemaVersion1);
        plain.exec(kResultsMigration1To2);
        plain.exec(kResultsMigration2To3);
        plain.exec(R"sql(
INSERT INTO runs (id, uid, name, experiment, config_hash, config, status, started_at, wall_s, threads)
    VALUES (1, 'eeee000011112222', 'v3_run', 'dp_exp', 'h3', '[experiment]', 'finished', '2024-06-01T09:00:00.000Z',
            30.0, 8);
INSERT INTO params VALUES (1, 'model.layers', '2');
INSERT INTO metrics VALUES (1, 10, 'val/loss', 3.25, 1.5);
INSERT INTO metric_goals VALUES (1, 'val/loss', 'min');
)sql");
        REQUIRE(plain.one("PRAGMA user_version").integer == 3);
    }
    // A version-4 file: a run over two MPI ranks and a run of one process.
    const fs::path new_db = dir.path / "v4.db";
    {
        lab::ResultStore store(new_db);
        auto write = [&](const std::string& name, int64_t world_size, const std::string& communicator) {
            lab::RunRecord record;
            record.name = name;
            record.experiment = "dp_exp";
            record.config_hash = "hash-" + name;
            record.config_text = "[experiment]\n";
            record.threads = 4;
            record.world_size = world_size;
            record.communicator = communicator;
            const int64_t id = store.begin_run(record, {{"model.layers", "2"}});
            store.declare_metric(id, "val/loss", lab::MetricGoal::minimize);
            store.add_metric(id, 10, "val/loss", 3.0);
            store.finish_run(id, lab::RunStatus::finished, "");
        };
        write("two_ranks", 2, "mpi");
        write("one_process", 1, "");
    }
    const std::string db = new_db.string();

    // show: beside threads, in the text and in the JSON (what the dashboard's run page gets).
    const Outcome two_ranks = labdb::run({"--db", db, "show", "two_ranks"});
    INFO(two_ranks);
    REQUIRE(two_ranks.exit_code == kExitOk);
    const std::vector<std::string> provenance = show_lines_from(two_ranks.out, "threads", 3);
    REQUIRE(provenance.size() == 3);
    CHECK_THAT(provenance[0], EndsWith("  4"));
    CHECK(provenance[1].rfind("  world_size ", 0) == 0);
    CHECK_THAT(provenance[1], EndsWith("  2"));
    CHECK(provenance[2].rfind("  communicator ", 0) == 0);
    CHECK_THAT(provenance[2], EndsWith("  mpi"));
    const json shown = run_json({"--db", db, "show", "two_ranks", "--json"});
    CHECK(shown["run"]["world_size"] == 2);
    CHECK(shown["run"]["communicator"] == "mpi");
    const json single = run_json({"--db", db, "show", "one_process", "--json"});
    CHECK(single["run"]["world_size"] == 1);
    CHECK(single["run"]["communicator"].is_null());
    // A version-3 file read as it is has no such columns, and labdb invents none.
    const json old_shown = run_json({"--db", old_db.string(), "show", "v3_run", "--json"});
    CHECK(old_shown["run"]["threads"] == 8);
    CHECK(!old_shown["run"].contains("world_size"));
    CHECK(!old_shown["run"].contains("communicator"));

    // merge: the version-3 run comes along with NULL in the new columns, shown as one process.
    const fs::path merged = dir.path / "merged.db";
    const Outcome merge = labdb::run({"merge", old_db.string(), db, "-o", merged.string()});
    INFO(merge);
    REQUIRE(merge.exit_code == kExitOk);
    CHECK_THAT(merge.out, Contains("merged 3 runs from 2 databases"));
    CHECK(merge.err.empty());
    {
        const PlainSqlite plain(merged, PlainSqlite::Access::read_only);
        CHECK(plain.one("PRAGMA user_version").integer == lab::ResultStore::kSchemaVersion);
        CHECK(plain.text_rows("SELECT name, threads, world_size, communicator FROM runs ORDER BY id") ==
              std::vector<std::string>{"v3_run|8|NULL|NULL", "two_ranks|4|2|mpi", "one_process|4|1|NULL"});
        CHECK(plain.text_rows("SELECT r.name, g.goal FROM metric_goals g JOIN runs r ON r.id = g.run_id ORDER BY r.id") ==
              std::vector<std::string>{"v3_run|min", "two_ranks|min", "one_process|min"});
    }
    const json merged_old = run_json({"--db", merged.string(), "show", "v3_run", "--json"});
    CHECK(merged_old["run"]["world_size"] == 1);
    CHECK(merged_old["run"]["communicator"].is_null());
    CHECK(merged_old["metrics"][0]["best"].get<double>() == 3.25);
    const Outcome merged_text = labdb::run({"--db", merged.string(), "show", "v3_run"});
    INFO(merged_text);
    REQUIRE(merged_text.exit_code == kExitOk);
    const std::vector<std::string> old_provenance = show_lines_from(merged_text.out, "world_size", 2);
    REQUIRE(old_provenance.size() == 2);
    CHECK_THAT(old_provenance[0], EndsWith("  1"));
    CHECK(old_provenance[1].rfind("  communicator ", 0) == 0);
    CHECK_THAT(old_provenance[1], EndsWith("  -"));
    // The data-parallel run is copied as it was, under its new id.
    json copied_run = shown["run"];
    copied_run["id"] = 2;
    CHECK(run_json({"--db", merged.string(), "show", "two_ranks", "--json"})["run"] == copied_run);

    // report: the provenance table has both columns.
    const fs::path html = dir.path / "dp.html";
    const Outcome report = labdb::run({"--db", merged.string(), "report", "dp_exp", "-o", html.string()});
    INFO(report);
    REQUIRE(report.exit_code == kExitOk);
    CHECK_THAT(read_text(html), Contains("<th>world_size</th><th>communicator</th>") && Contains("<code>mpi</code>"));

    // The inputs are unchanged: labdb never migrates.
    const PlainSqlite old_plain(old_db, PlainSqlite::Access::read_only);
    CHECK(old_plain.one("PRAGMA user_version").integer == 3);
    CHECK(old_plain.one("SELECT COUNT(*) FROM pragma_table_info('runs')").integer == 22);
}

TEST_CASE("labdb runs shows what a sweep varied for each of its runs", "[labdb]") {
    TempDir dir;
    const fs::path db_file = dir.path / "lab.db";
    std::map<std::string, int64_t> ids;  // "softmax/1" -> run id
    {
        lab::ResultStore store(db_file);
        auto begin = [&](const std::string& attention, const std::string& seed, const std::string& sweep) {
            lab::RunRecord record;
            record.name = "ablation";
            record.experiment = "ablation";
            record.config_hash = "hash-" + attention + seed + sweep;
            record.config_text = "[experiment]\n";
            record.sweep = sweep;
            const int64_t id = store.begin_run(
                record, {{"attention.type", attention}, {"experiment.seed", seed}, {"model.layers", "4"}});
            store.finish_run(id, lab::RunStatus::finished, "");
            return id;
        };
        for (const std::string attention : {"softmax", "sigmoid"}) {
            for (const std::string seed : {"1", "2"}) ids[attention + "/" + seed] = begin(attention, seed, "sw1");
        }
        ids["single"] = begin("softmax", "7", "");
    }
    const json rows = run_json({"--db", db_file.string(), "runs", "--json"});
    REQUIRE(rows.size() == 5);
    CHECK(find_by_id(rows, ids["softmax/1"])["swept"] == "attention.type=softmax experiment.seed=1");
    CHECK(find_by_id(rows, ids["sigmoid/2"])["swept"] == "attention.type=sigmoid experiment.seed=2");
    CHECK(find_by_id(rows, ids["single"])["swept"].is_null());

    // What the sweep varied is a property of the sweep, not of the runs a filter leaves.
    const json softmax = run_json({"--db", db_file.string(), "runs", "--where", "attention.type=softmax", "--json"});
    REQUIRE(softmax.size() == 3);
    CHECK(find_by_id(softmax, ids["softmax/2"])["swept"] == "attention.type=softmax experiment.seed=2");

    const Outcome table = labdb::run({"--db", db_file.string(), "runs"});
    INFO(table);
    REQUIRE(table.exit_code == kExitOk);
    CHECK_THAT(table.out, Contains("swept") && Contains("attention.type=sigmoid experiment.seed=1"));
}
