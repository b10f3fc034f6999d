// The causality probe from the command line: a GPT run whose attention sees later tokens (in both
// modes, or in evaluation mode only) is refused before its first step and recorded as failed, with
// the mode, the position and the attention block named; an honest run says the probe passed.
#include <catch2/catch.hpp>

#include <filesystem>

#include "test_support.h"

namespace fs = std::filesystem;
using namespace lab_test;
using Catch::Matchers::Contains;

namespace {

const fs::path test_plugin_dir = LAB_TEST_PLUGIN_DIR;

// One copy-task run of a 1-layer GPT (T = 9) with dropout, small enough to train in a second;
// `attention` is what follows "type = " in [attention] (more lines may follow it).
std::string copy_run(const fs::path& db, const std::string& attention) {
    return "[experiment]\nname = probe_test\ndb = " + db.string() +
           "\n[backend]\ntype = onednn\n[tokenizer]\ntype = char\n[task]\ntype = copy\nvocab = 8\nlength = 4\nval_examples = 64\n"
           "[model]\ntype = gpt\nlayers = 1\nheads = 2\nhidden = 16\ndropout = 0.1\n[attention]\ntype = " + attention +
           "\n[optimizer]\ntype = adamw\n[train]\nsteps = 10\nbatch = 8\nseq_len = 9\neval_every = 10\nlog_every = 5\n";
}

Outcome run_with_plugin(const fs::path& ini, const std::string& plugin_stem) {
    fs::path plugin = test_plugin_dir / ("test_" + plugin_stem + ".so");
    INFO("test plugin " << plugin << " is built by the lab_test_plugins target");
    REQUIRE(fs::is_regular_file(plugin));
    return run_program(kLabrunBinary, {ini.string(), "--no-progress", "--plugin-path", plugin.string()});
}

// copy_run with `attention` (loaded from the test plugin `plugin_stem`), in a directory of its own.
struct ProbeRun {
    TempDir dir;
    fs::path db = dir.path / "r.db";
    Outcome outcome;

    ProbeRun(const std::string& attention, const std::string& plugin_stem)
        : outcome(run_with_plugin(dir.write("probe.ini", copy_run(db, attention)), plugin_stem)) {}
};

// What a run refused before its first step leaves in its database: a failed run without one metric.
void check_refused(const PlainSqlite& sql) {
    CHECK(sql.one("SELECT status FROM runs").text == "failed");
    CHECK(sql.one("SELECT COUNT(*) FROM metrics").integer == 0);  // not one step was taken
}

}  // namespace

TEST_CASE("a GPT run whose attention sees the next token is refused before its first step", "[e2e][probe]") {
    // attention/leaky (from = 0): query i also sees key i + 1, in both modes; `labrun --check` would
    // fail it, but nothing made the user run the check after rebuilding.
    ProbeRun run("leaky", "leaky_attention");
    const Outcome& outcome = run.outcome;
    INFO(outcome);
    CHECK(outcome.exit_code == 1);  // a refused run: "run failed"
    CHECK_THAT(outcome.err, Contains("causality probe: model/gpt sees the future in training mode: its output at "
                                     "position 0 changed by"));
    CHECK_THAT(outcome.err, Contains("when only the tokens from position 1 on changed (2 x 9 random tokens)"));
    CHECK_THAT(outcome.err, Contains("the first attention block that leaks on its own is h.0.attn (attention/leaky)"));
    CHECK_THAT(outcome.err, Contains("labrun --check attention/NAME"));

    PlainSqlite sql(run.db, PlainSqlite::Access::read_only);
    check_refused(sql);
    CHECK_THAT(sql.one("SELECT error FROM runs").text, Contains("sees the future in training mode") &&
                                                           Contains("h.0.attn (attention/leaky)"));
    CHECK(sql.one("SELECT COUNT(*) FROM plugins WHERE kind = 'attention' AND name = 'leaky'").integer == 1);
}

TEST_CASE("an attention that leaks only in evaluation mode is refused too", "[e2e][probe]") {
    ProbeRun run("eval_leak", "eval_leak_attention");
    const Outcome& outcome = run.outcome;
    INFO(outcome);
    CHECK(outcome.exit_code == 1);
    CHECK_THAT(outcome.err, Contains("causality probe: model/gpt sees the future in evaluation mode: its output at "
                                     "position 0 changed by"));
    CHECK_THAT(outcome.err, Contains("h.0.attn (attention/eval_leak)"));
    CHECK_THAT(outcome.err, !Contains("training mode:"));
    PlainSqlite sql(run.db, PlainSqlite::Access::read_only);
    check_refused(sql);
    CHECK_THAT(sql.one("SELECT error FROM runs").text, Contains("in evaluation mode"));
}

TEST_CASE("an honest causal run reports the probe and trains", "[e2e][probe]") {
    // attention/leaky with its leak beyond every position is softmax attention: the probe passes.
    ProbeRun run("leaky\nfrom = 1000000", "leaky_attention");
    const Outcome& outcome = run.outcome;
    INFO(outcome);
    REQUIRE(outcome.exit_code == 0);
    CHECK_THAT(outcome.err, Contains("causality probe: model/gpt sees no later token in training or evaluation mode "
                                     "(2 x 9 random tokens, replaced from t = 1, 4, 8 on: 8 forward passes, "));
    CHECK_THAT(outcome.err, Contains("outputs before t bitwise equal)"));
    PlainSqlite sql(run.db, PlainSqlite::Access::read_only);
    CHECK(sql.one("SELECT status FROM runs").text == "finished");
}
