// `labrun eval RUN [section.key=value ...]`: a trained copy-task GPT evaluated again from its
// checkpoint. At its own seq_len the recorded val@33/loss equals the run's last val/loss (same data,
// same weights: proof that the checkpoint's weights are what is evaluated); a longer seq_len within
// model.max_seq_len is recorded under its tag; evaluating again replaces the rows; the run's own
// plugins ([experiment] plugins) are loaded; a bad run id, a shape-changing override, a seq_len past
// the learned positions, a missing checkpoint and a failed run are refused with the reason.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>

#include "test_support.h"

namespace fs = std::filesystem;
using namespace lab_test;
using Catch::Matchers::Contains;

namespace {

constexpr int kExitOk = 0, kExitConfig = 3, kExitData = 5;

const fs::path copy_ini = fs::path(LAB_SOURCE_DIR) / "experiments" / "copy.ini";

// A short copy run (20 steps of 8 sequences, evaluated at 10 and 20) into `db`, with `extra` overrides.
Outcome train_copy(const fs::path& db, std::vector<std::string> extra) {
    std::vector<std::string> args = {copy_ini.string(),    "--no-progress",         "experiment.db=" + db.string(),
                                     "backend.threads=2", "train.steps=20",      "train.eval_every=10",
                                     "train.log_every=10",   "train.batch=8",       "task.val_examples=128"};
    args.insert(args.end(), extra.begin(), extra.end());
    return run_program(kLabrunBinary, args);
}

Outcome eval(const fs::path& db, const std::string& run, std::vector<std::string> overrides) {
    std::vector<std::string> args = {"eval", run, "--db", db.string()};
    args.insert(args.end(), overrides.begin(), overrides.end());
    return run_program(kLabrunBinary, args);
}

// The rows (step, value) of metric `name` of `run`.
std::vector<Row> metric_rows(const fs::path& db, int64_t run, const std::string& name) {
    return PlainSqlite(db, PlainSqlite::Access::read_only)
        .rows("SELECT step, value FROM metrics WHERE run_id = ?1 AND name = ?2 ORDER BY step", {run, name});
}

}  // namespace

TEST_CASE("labrun eval records a run's metrics at another seq_len, and its own seq_len reproduces training",
          "[e2e][eval]") {
    TempDir dir;
    const fs::path db = dir.path / "eval.db";
    // 48 learned positions, trained on 33-token sequences: evaluation may go up to 48.
    Outcome train = train_copy(db, {"model.max_seq_len=48"});
    INFO(train);
    REQUIRE(train.exit_code == kExitOk);
    const std::vector<Row> trained_loss = metric_rows(db, 1, "val/loss");
    const std::vector<Row> trained_accuracy = metric_rows(db, 1, "val/accuracy");
    REQUIRE(trained_loss.size() == 2);
    REQUIRE(trained_loss.back()[0].integer == 20);
    REQUIRE(trained_accuracy.size() == 2);

    {  // at its own seq_len the evaluation reproduces the run's last val/ metrics
        Outcome same = eval(db, "1", {});
        INFO(same);
        REQUIRE(same.exit_code == kExitOk);
        CHECK_THAT(same.out, Contains("val@33/loss"));
        CHECK_THAT(same.err, Contains("checkpoint-20"));
        std::vector<Row> loss = metric_rows(db, 1, "val@33/loss");
        REQUIRE(loss.size() == 1);
        CHECK(loss[0][0].integer == 20);
        CHECK(std::abs(loss[0][1].real - trained_loss.back()[1].real) < 1e-6);
        std::vector<Row> accuracy = metric_rows(db, 1, "val@33/accuracy");
        REQUIRE(accuracy.size() == 1);
        CHECK(std::abs(accuracy[0][1].real - trained_accuracy.back()[1].real) < 1e-6);
        // The run's own rows are untouched, and the goal of the new names is the task's.
        CHECK(metric_rows(db, 1, "val/loss").size() == 2);
        CHECK(PlainSqlite(db).one("SELECT goal FROM metric_goals WHERE run_id = 1 AND name = 'val@33/loss'").text ==
              "min");

        // Again, by uid: the value is replaced, not added.
        const std::string uid = PlainSqlite(db).one("SELECT uid FROM runs WHERE id = 1").text;
        Outcome again = eval(db, uid, {"train.seq_len=33"});
        INFO(again);
        REQUIRE(again.exit_code == kExitOk);
        loss = metric_rows(db, 1, "val@33/loss");
        REQUIRE(loss.size() == 1);
        CHECK(std::abs(loss[0][1].real - trained_loss.back()[1].real) < 1e-6);
    }

    {  // a longer seq_len within model.max_seq_len, and other changed keys, are named in the tag
        Outcome longer = eval(db, "1", {"train.seq_len=48"});
        INFO(longer);
        REQUIRE(longer.exit_code == kExitOk);
        CHECK_THAT(longer.out, Contains("val@48/loss"));
        std::vector<Row> loss = metric_rows(db, 1, "val@48/loss");
        REQUIRE(loss.size() == 1);
        CHECK(loss[0][0].integer == 20);
        CHECK(std::isfinite(loss[0][1].real));
        CHECK(loss[0][1].real > 0);
        CHECK(metric_rows(db, 1, "val@48/accuracy").size() == 1);

        // Another evaluation batch changes how the examples are grouped, not the result.
        Outcome batched = eval(db, "1", {"train.seq_len=48", "task.eval_batch=16"});
        INFO(batched);
        REQUIRE(batched.exit_code == kExitOk);
        std::vector<Row> batched_loss = metric_rows(db, 1, "val@48,task.eval_batch=16/loss");
        REQUIRE(batched_loss.size() == 1);
        CHECK(std::abs(batched_loss[0][1].real - loss[0][1].real) < 1e-5);
    }

    {  // refusals say why
        Outcome too_long = eval(db, "1", {"train.seq_len=49"});
        INFO(too_long);
        CHECK(too_long.exit_code == kExitConfig);
        CHECK_THAT(too_long.err, Contains("override 'train.seq_len=49': train.seq_len = 49 is longer than the 48 "
                                          "positions of the trained model/gpt"));
        CHECK_THAT(too_long.err, Contains("larger model.max_seq_len"));

        Outcome wider = eval(db, "1", {"model.hidden=32"});
        INFO(wider);
        CHECK(wider.exit_code == kExitConfig);
        CHECK_THAT(wider.err, Contains("eval: with model.hidden=32 the model's tensor"));
        CHECK_THAT(wider.err, Contains("cannot change the shapes of trained parameters"));

        Outcome table = eval(db, "1", {"model.max_seq_len=64"});
        INFO(table);
        CHECK(table.exit_code == kExitConfig);
        CHECK_THAT(table.err, Contains("with model.max_seq_len=64 the model's tensor"));

        Outcome elsewhere = eval(db, "1", {"experiment.db=" + (dir.path / "other.db").string()});
        CHECK(elsewhere.exit_code == kExitConfig);
        CHECK_THAT(elsewhere.err, Contains("eval cannot change experiment.db"));

        Outcome typo = eval(db, "1", {"train.seq_lem=48"});
        CHECK(typo.exit_code == kExitConfig);
        CHECK_THAT(typo.err, Contains("seq_lem"));

        Outcome no_run = eval(db, "99", {});
        INFO(no_run);
        CHECK(no_run.exit_code == kExitConfig);
        CHECK_THAT(no_run.err, Contains("there is no run with id 99"));

        Outcome no_db = eval(dir.path / "absent.db", "1", {});
        CHECK(no_db.exit_code == kExitConfig);
        CHECK_THAT(no_db.err, Contains("absent.db' does not exist"));

        fs::remove_all(dir.path / "runs");
        Outcome no_checkpoint = eval(db, "1", {});
        INFO(no_checkpoint);
        CHECK(no_checkpoint.exit_code == kExitData);
        CHECK_THAT(no_checkpoint.err, Contains("eval: run 1 of " + db.string() + " has no checkpoint in"));
        CHECK(metric_rows(db, 1, "val@49/loss").empty());  // nothing recorded by the refusals

        PlainSqlite(db).exec("UPDATE runs SET status = 'failed' WHERE id = 1");
        Outcome failed = eval(db, "1", {});
        INFO(failed);
        CHECK(failed.exit_code == kExitConfig);
        CHECK_THAT(failed.err,
                   Contains("eval: run 1 of " + db.string() + " failed; only finished or interrupted runs"));
    }
}

TEST_CASE("labrun eval loads the run's own plugins and keeps the learned positions it was trained with",
          "[e2e][eval]") {
    TempDir dir;
    const fs::path db = dir.path / "plugin.db";
    const fs::path good = fs::path(LAB_TEST_PLUGIN_DIR) / "test_good.so";
    REQUIRE(fs::is_regular_file(good));
    // model.max_seq_len = 0 (copy.ini): the model learned train.seq_len = 33 positions.
    Outcome train = train_copy(db, {"experiment.plugins=" + good.string(), "schedule.type=test_const"});
    INFO(train);
    REQUIRE(train.exit_code == kExitOk);

    // Without the run's plugins its schedule/test_const would be unknown.
    Outcome same = eval(db, "1", {});
    INFO(same);
    REQUIRE(same.exit_code == kExitOk);
    const std::vector<Row> trained = metric_rows(db, 1, "val/loss");
    const std::vector<Row> evaluated = metric_rows(db, 1, "val@33/loss");
    REQUIRE(evaluated.size() == 1);
    CHECK(std::abs(evaluated[0][1].real - trained.back()[1].real) < 1e-6);

    Outcome longer = eval(db, "1", {"train.seq_len=34"});
    INFO(longer);
    CHECK(longer.exit_code == kExitConfig);
    CHECK_THAT(longer.err, Contains("train.seq_len = 34 is longer than the 33 positions of the trained model/gpt "
                                    "(model.max_seq_len = 0, i.e. the trained train.seq_len)"));
}
