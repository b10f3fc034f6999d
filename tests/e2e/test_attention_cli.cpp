// The attention kit from the command line: `labrun --check`, the refusal of an attention that
// lacks what the model needs, and sweeps run in parallel with --jobs.
#include <catch2/catch.hpp>

#include <filesystem>
#include <set>

#include "test_support.h"

namespace fs = std::filesystem;
using namespace lab_test;
using Catch::Matchers::Contains;

namespace {

const fs::path test_plugin_dir = LAB_TEST_PLUGIN_DIR;

Outcome run_labrun(const std::vector<std::string>& args) { return run_program(kLabrunBinary, args); }

// A copy-task sweep small enough to train in a few seconds: 2 attentions x 2 seeds.
std::string copy_sweep(const fs::path& db) {
    return "[experiment]\nname = jobs_test\ndb = " + db.string() +
           "\n[backend]\ntype = onednn\n[tokenizer]\ntype = char\n[task]\ntype = copy\nvocab = 8\nlength = 4\nval_examples = 64\n"
           "[model]\ntype = gpt\nlayers = 1\nheads = 2\nhidden = 16\n[attention]\ntype = softmax\n"
           "local.window = 4\n[optimizer]\ntype = adamw\n[train]\nsteps = 20\nbatch = 8\nseq_len = 9\n"
           "eval_every = 20\nlog_every = 10\n[sweep]\nattention.type = softmax, local\nexperiment.seed = 1, 2\n";
}

}  // namespace

TEST_CASE("labrun --check passes softmax and rejects an attention that leaks future tokens", "[e2e][check]") {
    Outcome good = run_labrun({"--check", "attention/softmax", "--no-profile"});
    INFO(good);
    CHECK(good.exit_code == 0);
    CHECK_THAT(good.out, Contains("PASS causality"));
    CHECK_THAT(good.out, Contains("PASS gradients"));

    Outcome leaky = run_labrun({"--check", "attention/leaky", "--no-profile", "--plugin-path",
                                (test_plugin_dir / "test_leaky_attention.so").string()});
    INFO(leaky);
    CHECK(leaky.exit_code == 1);
    CHECK_THAT(leaky.out, Contains("FAIL causality"));

    // Options are validated against the plugin's schema, naming the key.
    Outcome bad = run_labrun({"--check", "attention/softmax", "fusd=true", "--no-profile"});
    INFO(bad);
    CHECK(bad.exit_code == 3);
    CHECK_THAT(bad.err, Contains("fusd"));
}

TEST_CASE("labrun --check --db records the checks and the cost profile", "[e2e][check]") {
    TempDir dir;
    fs::path db = dir.path / "check.db";
    Outcome outcome = run_labrun({"--check", "attention/softmax", "fused=true", "--profile-lengths", "64,128",
                                  "--db", db.string()});
    INFO(outcome);
    REQUIRE(outcome.exit_code == 0);
    CHECK_THAT(outcome.out, Contains("seq_len"));
    PlainSqlite sql(db, PlainSqlite::Access::read_only);
    CHECK(sql.one("SELECT status FROM runs WHERE name = 'check attention/softmax'").text == "finished");
    CHECK(sql.one("SELECT COUNT(*) FROM metrics WHERE name = 'cost/train_ms' AND step IN (64, 128) AND value > 0")
              .integer == 2);
    CHECK(sql.one("SELECT COUNT(*) FROM metrics WHERE name = 'cost/peak_mem_mb' AND value > 0").integer == 2);
    CHECK(sql.one("SELECT value FROM metrics WHERE name = 'check/causality'").real == 1.0);
}

TEST_CASE("an experiment whose attention lacks causal masking is refused before it starts", "[e2e][attention]") {
    TempDir dir;
    fs::path db = dir.path / "r.db";
    fs::path file = dir.write("x.ini", copy_sweep(db));
    Outcome outcome = run_labrun({file.string(), "attention.type=bidirectional", "--plugin-path",
                                  (test_plugin_dir / "test_bidirectional_attention.so").string()});
    INFO(outcome);
    CHECK(outcome.exit_code == 3);
    CHECK_THAT(outcome.err, Contains("model/gpt needs attention with causal masking, which attention/bidirectional "
                                     "does not support (it supports: padding mask)"));
    CHECK_FALSE(fs::exists(db));  // nothing was started, not even the database
}

TEST_CASE("labrun --jobs 2 runs a sweep two at a time and a rerun skips it", "[e2e][sweep]") {
    TempDir dir;
    fs::path db = dir.path / "jobs.db";
    fs::path file = dir.write("sweep.ini", copy_sweep(db));
    Outcome first = run_labrun({file.string(), "--jobs", "2", "--no-progress"});  // the children get it once
    INFO(first);
    REQUIRE(first.exit_code == 0);
    CHECK_THAT(first.err, Contains("4 of 4 runs to do, 2 at a time with 1 thread each"));
    CHECK_THAT(first.err, Contains("4 finished, 0 failed, 0 interrupted"));
    PlainSqlite sql(db, PlainSqlite::Access::read_only);
    CHECK(sql.one("SELECT COUNT(*) FROM runs WHERE status = 'finished'").integer == 4);
    CHECK(sql.one("SELECT COUNT(DISTINCT config_hash) FROM runs").integer == 4);
    // Each run logged to its own file.
    std::set<std::string> logs;
    for (const auto& entry : fs::directory_iterator(dir.path / "logs")) logs.insert(entry.path().filename().string());
    CHECK(logs.size() == 4);

    Outcome again = run_labrun({file.string(), "--jobs", "2"});
    INFO(again);
    CHECK(again.exit_code == 0);
    CHECK_THAT(again.err, Contains("4 runs already finished; skipped"));
    CHECK(sql.one("SELECT COUNT(*) FROM runs").integer == 4);

    Outcome bad = run_labrun({file.string(), "--jobs", "0"});
    CHECK(bad.exit_code == 3);
    CHECK_THAT(bad.err, Contains("--jobs 0: expected a number of runs >= 1"));
}
