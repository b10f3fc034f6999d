// Rerunning an experiment whose runs finished with other plugin builds: a finished run is the same
// run only with the same plugin binaries (the sha256 the plugins table records), so a rerun after a
// plugin was rebuilt is refused before anything runs, in every way a sweep is run (one process,
// --jobs, --sweep-index); --force runs them again, and runs of the current build are skipped.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "lab/hash.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace lab_test;
using Catch::Matchers::Contains;

namespace {

constexpr int kExitPlugin = 4;

// A sweep of 2 seeds of a copy-task GPT whose attention is the test plugin attention/leaky with its
// leak beyond every position (softmax attention, loaded from a file the test can change).
std::string seed_sweep(const fs::path& db) {
    return "[experiment]\nname = rerun_test\ndb = " + db.string() +
           "\n[backend]\ntype = onednn\n[tokenizer]\ntype = char\n[task]\ntype = copy\nvocab = 8\nlength = 4\nval_examples = 32\n"
           "[model]\ntype = gpt\nlayers = 1\nheads = 2\nhidden = 16\n[attention]\ntype = leaky\nfrom = 1000000\n"
           "[optimizer]\ntype = adamw\n[train]\nsteps = 5\nbatch = 4\nseq_len = 9\neval_every = 5\nlog_every = 5\n"
           "[sweep]\nexperiment.seed = 1, 2\n";
}

}  // namespace

TEST_CASE("a rerun after a plugin was rebuilt is refused and --force runs it again", "[e2e][sweep]") {
    TempDir dir;
    const fs::path db = dir.path / "r.db";
    const fs::path ini = dir.write("sweep.ini", seed_sweep(db));
    const fs::path original = fs::path(LAB_TEST_PLUGIN_DIR) / "test_leaky_attention.so";
    INFO("test plugin " << original << " is built by the lab_test_plugins target");
    REQUIRE(fs::is_regular_file(original));
    fs::create_directories(dir.path / "plugins");
    const fs::path plugin = fs::canonical(dir.path / "plugins") / "leaky.so";
    fs::copy_file(original, plugin);
    auto labrun = [&](std::vector<std::string> args) {
        args.insert(args.begin(), {ini.string(), "--no-progress", "--plugin-path", plugin.string()});
        return run_program(kLabrunBinary, args);
    };

    Outcome first = labrun({});
    INFO(first);
    REQUIRE(first.exit_code == 0);
    PlainSqlite sql(db, PlainSqlite::Access::read_only);
    REQUIRE(sql.one("SELECT COUNT(*) FROM runs WHERE status = 'finished'").integer == 2);
    const std::string old_sha = lab::sha256_file(plugin);
    CHECK(sql.one("SELECT COUNT(*) FROM plugins WHERE name = 'leaky' AND sha256 = ?", {old_sha}).integer == 2);

    // "Rebuilt": one byte after the ELF image, which the loader ignores and the hash does not.
    { std::ofstream(plugin, std::ios::binary | std::ios::app) << '\n'; }
    const std::string new_sha = lab::sha256_file(plugin);
    REQUIRE(new_sha != old_sha);
    const std::string changed = "attention/leaky: recorded " + old_sha.substr(0, 12) + ", now " + new_sha.substr(0, 12) +
                                " (" + plugin.string() + ")";

    Outcome again = labrun({});
    INFO(again);
    CHECK(again.exit_code == kExitPlugin);
    CHECK_THAT(again.err, Contains("2 runs of this experiment finished with plugin builds other than the ones loaded now"));
    CHECK_THAT(again.err, Contains("run 1 (uid " + sql.one("SELECT uid FROM runs WHERE id = 1").text +
                                   ") of 'rerun_test' [1/2: experiment.seed=1]:\n    " + changed));
    CHECK_THAT(again.err, Contains("run 2 (uid " + sql.one("SELECT uid FROM runs WHERE id = 2").text +
                                   ") of 'rerun_test' [2/2: experiment.seed=2]:\n    " + changed));
    CHECK_THAT(again.err, Contains("rerun with --force to run them again") &&
                              Contains("or restore the plugin builds they were run with"));

    // The same refusal when the sweep runs in child processes, and for the one run --sweep-index names.
    Outcome jobs = labrun({"--jobs", "2"});
    INFO(jobs);
    CHECK(jobs.exit_code == kExitPlugin);
    CHECK_THAT(jobs.err, Contains("2 runs of this experiment finished with plugin builds other than"));
    CHECK_FALSE(fs::exists(dir.path / "logs"));  // no child was started
    Outcome one = labrun({"--sweep-index", "1"});
    INFO(one);
    CHECK(one.exit_code == kExitPlugin);
    CHECK_THAT(one.err, Contains("1 run of this experiment") && Contains("[2/2: experiment.seed=2]:\n    " + changed));
    CHECK_THAT(one.err, !Contains("[1/2"));
    CHECK(sql.one("SELECT COUNT(*) FROM runs").integer == 2);  // nothing ran

    // --force: new runs with the plugin as it is now; the finished ones stay.
    Outcome forced = labrun({"--force"});
    INFO(forced);
    REQUIRE(forced.exit_code == 0);
    CHECK(sql.one("SELECT COUNT(*) FROM runs WHERE status = 'finished'").integer == 4);
    CHECK(sql.one("SELECT COUNT(*) FROM plugins WHERE name = 'leaky' AND sha256 = ?", {new_sha}).integer == 2);

    // Runs of the plugin build loaded now are the same runs: skipped.
    Outcome skipped = labrun({});
    INFO(skipped);
    CHECK(skipped.exit_code == 0);
    CHECK_THAT(skipped.err, Contains("[1/2] run 3 with this configuration already finished; skipped"));
    CHECK_THAT(skipped.err, Contains("[2/2] run 4 with this configuration already finished; skipped"));
    CHECK(sql.one("SELECT COUNT(*) FROM runs").integer == 4);
}
