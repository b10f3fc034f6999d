// `labrun FILE.ini ... --slurm` without a cluster: the --dry-run text (one job array of the runs not
// finished yet, a database per task, the merge job after the array), the --results-db a task
// runs with, nothing submitted when every run finished, and the refusals. The submission to a real
// one-node cluster is tests/scripts/test_slurm_sweep.sh.
#include <catch2/catch.hpp>

#include <filesystem>
#include <regex>

#include "test_support.h"

namespace fs = std::filesystem;
using namespace lab_test;
using Catch::Matchers::Contains;

namespace {

constexpr int kExitOk = 0, kExitRunFailed = 1, kExitConfig = 3;

const fs::path copy_ini = fs::path(LAB_SOURCE_DIR) / "experiments" / "copy.ini";
const std::map<std::string, std::string> kOneThread = {{"OMP_NUM_THREADS", "1"}};

// A 4-run sweep of the copy task, a few steps each, recorded in `db`.
std::vector<std::string> sweep_args(const fs::path& db, std::vector<std::string> more = {}) {
    std::vector<std::string> args = {copy_ini.string(),       "experiment.db=" + db.string(), "train.steps=10",
                                     "train.log_every=10",     "train.eval_every=10",          "task.val_examples=32",
                                     "--sweep",                "experiment.seed=1,2",          "--sweep",
                                     "train.batch=8,16",       "--no-progress"};
    args.insert(args.end(), more.begin(), more.end());
    return args;
}

Outcome labrun(const std::vector<std::string>& args, std::map<std::string, std::string> env = kOneThread) {
    return run_program(kLabrunBinary, args, "", std::move(env));
}

std::string sweep_id_of(const fs::path& db) {
    Outcome dry = labrun(sweep_args(db, {"--dry-run"}));
    REQUIRE(dry.exit_code == kExitOk);
    std::smatch match;
    REQUIRE(std::regex_search(dry.out, match, std::regex("of sweep ([0-9a-f]{12})")));
    return match[1];
}

}  // namespace

TEST_CASE("labrun --slurm --dry-run prints one job array of the unfinished runs, a database per task and the merge",
          "[e2e][slurm]") {
    TempDir dir;
    const fs::path db = dir.path / "results" / "sweep.db";
    const std::string id = sweep_id_of(db);
    auto task_db = [&](int run) {
        return dir.path / "results" / ("sweep.slurm-" + id + "-" + std::to_string(run) + ".db");
    };

    Outcome all = labrun(sweep_args(db, {"--slurm", "--dry-run"}));
    INFO(all);
    REQUIRE(all.exit_code == kExitOk);
    CHECK_THAT(all.out, Contains("# sweep " + id + " of 'copy': 4 runs; 4 to submit as one job array (--array=0-3)"));
    CHECK_THAT(all.out, Contains("#SBATCH --array=0-3\n"));
    CHECK_THAT(all.out, Contains("#SBATCH --chdir=" + fs::current_path().string() + "\n"));
    CHECK_THAT(all.out, Contains("#SBATCH --output=" + (dir.path / "results" / "logs" / "slurm-%A_%a.out").string()));
    CHECK_THAT(all.out, Contains("#SBATCH --cpus-per-task=1\n"));
    CHECK_THAT(all.out, Contains("export OMP_NUM_THREADS=\"${SLURM_CPUS_PER_TASK:-1}\""));
    for (int run = 1; run <= 4; ++run) CHECK_THAT(all.out, Contains("  " + task_db(run).string() + "\n"));
    CHECK_THAT(all.out, Contains("exec " + kLabrunBinary.string() + " " + copy_ini.string() + " experiment.db=" +
                                 db.string() + " train.steps=10"));
    CHECK_THAT(all.out, Contains("--sweep experiment.seed=1,2 --sweep train.batch=8,16 --data-dir data"));
    CHECK_THAT(all.out, Contains("--sweep-index \"$SLURM_ARRAY_TASK_ID\" --results-db "
                                 "\"${task_dbs[$SLURM_ARRAY_TASK_ID]}\" --no-progress"));
    CHECK_THAT(all.out, Contains("labdb=" + (kLabrunBinary.parent_path() / "labdb").string() + "\n"));
    CHECK_THAT(all.out, Contains("\"$labdb\" merge \"${inputs[@]}\" -o \"$db.merging\" --force"));
    CHECK_THAT(all.out, Contains("mv -f \"$db.merging\" \"$db\""));
    CHECK_THAT(all.out, Contains("sbatch --parsable " +
                                 (dir.path / "results" / "logs" / ("sweep.slurm-" + id + ".sh")).string() + "\n"));
    CHECK_THAT(all.out, Contains("sbatch --parsable --dependency=afterany:<array job id> " +
                                 (dir.path / "results" / "logs" / ("sweep.slurm-" + id + "-merge.sh")).string()));
    CHECK(!fs::exists(dir.path / "results"));  // a dry run writes nothing

    // Run 2 finishes here, in the experiment's database; run 3 in its task database, as its array
    // task would record it (--results-db), which the experiment's database then does not hold.
    Outcome second = labrun(sweep_args(db, {"--sweep-index", "1"}));
    INFO(second);
    REQUIRE(second.exit_code == kExitOk);
    Outcome third = labrun(sweep_args(db, {"--sweep-index", "2", "--results-db", task_db(3).string()}));
    INFO(third);
    REQUIRE(third.exit_code == kExitOk);
    CHECK_THAT(third.err, Contains("results in " + task_db(3).string()));
    {
        PlainSqlite experiment(db, PlainSqlite::Access::read_only);
        CHECK(experiment.one("SELECT COUNT(*) FROM runs WHERE status = 'finished'").integer == 1);
        PlainSqlite task(task_db(3), PlainSqlite::Access::read_only);
        CHECK(task.one("SELECT COUNT(*) FROM runs WHERE status = 'finished'").integer == 1);
        CHECK(task.one("SELECT value FROM params WHERE key = 'experiment.seed'").text == "2");
    }
    // The task's run folder is beside the experiment's database, where a local run puts its own.
    CHECK(fs::is_directory(dir.path / "results" / "runs"));
    Outcome again = labrun(sweep_args(db, {"--sweep-index", "2", "--results-db", task_db(3).string()}));
    INFO(again);
    REQUIRE(again.exit_code == kExitOk);
    CHECK_THAT(again.err, Contains("already finished; skipped"));

    Outcome rest = labrun(sweep_args(db, {"--slurm", "--dry-run", "--partition", "gpu", "--time", "1-12:00",
                                          "--cpus-per-task", "4", "--gpus-per-task", "1"}));
    INFO(rest);
    REQUIRE(rest.exit_code == kExitOk);
    CHECK_THAT(rest.out, Contains("4 runs, 2 already finished (skipped; --force submits them again); 2 to submit as "
                                  "one job array (--array=0,3)"));
    CHECK_THAT(rest.out, Contains("#SBATCH --array=0,3\n"));
    CHECK_THAT(rest.out, Contains("#SBATCH --partition=gpu\n#SBATCH --time=1-12:00\n"));
    CHECK_THAT(rest.out, Contains("#SBATCH --cpus-per-task=4\n#SBATCH --gpus-per-task=1\n"));
    CHECK(!fs::exists(dir.path / "results" / "logs"));

    Outcome forced = labrun(sweep_args(db, {"--slurm", "--dry-run", "--force"}));
    INFO(forced);
    REQUIRE(forced.exit_code == kExitOk);
    CHECK_THAT(forced.out, Contains("#SBATCH --array=0-3\n"));
    CHECK_THAT(forced.out, Contains(" --force \\\n  --sweep-index"));
}

TEST_CASE("labrun --slurm submits nothing when every run finished", "[e2e][slurm]") {
    TempDir dir;
    const fs::path db = dir.path / "single.db";
    const std::vector<std::string> single = {copy_ini.string(), "experiment.db=" + db.string(), "train.steps=10",
                                             "train.log_every=10", "task.val_examples=32", "--no-progress"};
    Outcome run = labrun(single);
    INFO(run);
    REQUIRE(run.exit_code == kExitOk);
    std::vector<std::string> submit = single;
    submit.push_back("--slurm");
    // No sbatch on PATH: the run is found finished before sbatch is looked for.
    std::map<std::string, std::string> env = kOneThread;
    env["PATH"] = (dir.path / "no-bin").string();
    Outcome nothing = labrun(submit, env);
    INFO(nothing);
    REQUIRE(nothing.exit_code == kExitOk);
    CHECK_THAT(nothing.out, Contains("experiment 'copy': its run already finished (in " + db.string() +
                                     " or the task databases beside it); nothing submitted"));
    CHECK(!fs::exists(dir.path / "logs"));

    // A run not finished yet is an array of one; without sbatch that is an error naming the way on.
    submit = {copy_ini.string(), "experiment.db=" + db.string(), "train.steps=20", "train.log_every=10",
              "task.val_examples=32", "--slurm"};
    Outcome missing = labrun(submit, env);
    INFO(missing);
    CHECK(missing.exit_code == kExitRunFailed);
    CHECK_THAT(missing.err, Contains("--slurm: sbatch is not on PATH") && Contains("login node") &&
                                Contains("--dry-run"));
    CHECK(!fs::exists(dir.path / "logs"));
    std::vector<std::string> dry = submit;
    dry.push_back("--dry-run");
    Outcome one = labrun(dry);
    INFO(one);
    REQUIRE(one.exit_code == kExitOk);
    CHECK_THAT(one.out, Contains("#SBATCH --array=0\n"));
    CHECK_THAT(one.out, Contains("# experiment 'copy': 1 run; 1 to submit"));
    CHECK_THAT(one.out, Contains(".slurm-"));

    // sbatch that refuses the job: its message, and what was left.
    const fs::path fake = dir.write("bin/sbatch", "#!/bin/sh\necho 'sbatch: error: Batch job submission failed: "
                                                   "Invalid partition name specified' >&2\nexit 1\n");
    fs::permissions(fake, fs::perms::owner_all);
    env["PATH"] = (dir.path / "bin").string();
    Outcome refused = labrun(submit, env);
    INFO(refused);
    CHECK(refused.exit_code == kExitRunFailed);
    CHECK_THAT(refused.err, Contains("failed (exit code 1): sbatch: error: Batch job submission failed: Invalid "
                                     "partition name specified") &&
                                Contains("nothing was submitted"));
}

TEST_CASE("labrun --slurm refuses other modes and bad Slurm options naming the option", "[e2e][slurm]") {
    TempDir dir;
    const fs::path db = dir.path / "never.db";
    auto refused = [&](std::vector<std::string> extra, const std::string& message) {
        std::vector<std::string> args = {copy_ini.string(), "experiment.db=" + db.string()};
        args.insert(args.end(), extra.begin(), extra.end());
        Outcome outcome = labrun(args);
        INFO(outcome);
        CHECK(outcome.exit_code == kExitConfig);
        CHECK_THAT(outcome.err, Contains(message));
    };
    refused({"--slurm", "--jobs", "2"}, "--slurm does not go with --jobs");
    refused({"--slurm", "--sweep-index", "0"}, "--slurm does not go with --sweep-index");
    refused({"--slurm", "--results-db", "x.db"}, "--slurm does not go with --results-db");
    refused({"--partition", "debug"}, "--partition is an option of --slurm, which is not given");
    refused({"--cpus-per-task", "2"}, "--cpus-per-task is an option of --slurm");
    refused({"--slurm", "--dry-run", "--time", "1:2:3:4"}, "--time '1:2:3:4' is not a Slurm time limit");
    refused({"--slurm", "--dry-run", "--time", "ten"}, "--time 'ten' is not a Slurm time limit");
    refused({"--slurm", "--dry-run", "--cpus-per-task", "0"}, "--cpus-per-task 0: expected a number of CPUs >= 1");
    refused({"--slurm", "--dry-run", "--gpus-per-task", "-1"}, "--gpus-per-task -1: expected a number of GPUs >= 0");
    refused({"--slurm", "--dry-run", "--partition", "a b"}, "--partition 'a b' is not a partition name");
    Outcome two_dbs = labrun({copy_ini.string(), "--slurm", "--dry-run", "--sweep",
                              "experiment.db=" + (dir.path / "a.db").string() + "," + (dir.path / "b.db").string()});
    INFO(two_dbs);
    CHECK(two_dbs.exit_code == kExitConfig);
    CHECK_THAT(two_dbs.err, Contains("run 2 of the sweep records in " + (dir.path / "b.db").string()) &&
                                Contains("the runs of one submission merge into one database"));
    for (const std::vector<std::string>& mode : std::vector<std::vector<std::string>>{
             {"--slurm", "--resume", "1"}, {"eval", "1", "--slurm"}, {"generate", "1", "--slurm"}}) {
        Outcome outcome = labrun(mode);
        INFO(outcome);
        CHECK(outcome.exit_code == kExitConfig);
        CHECK_THAT(outcome.err, Contains("--slurm does not go with"));
    }
    refused({"--results-db", "x.db", "--resume", "1"},
            "--results-db records the runs of an experiment file (a --slurm task's); it does not go with --resume");
    CHECK(!fs::exists(db));
    CHECK(!fs::exists(dir.path / "x.db"));
}
