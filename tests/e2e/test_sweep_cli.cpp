// `labrun FILE.ini --sweep KEY=V1,V2 ...`: a sweep from the command line is the sweep of the file
// with those [sweep] lines (the same --dry-run runs and sweep id, the same records, so a rerun of
// either skips the other's runs), it runs with --jobs, and bad flags are refused naming the flag.
#include <catch2/catch.hpp>

#include <filesystem>
#include <set>

#include "test_support.h"

namespace fs = std::filesystem;
using namespace lab_test;
using Catch::Matchers::Contains;

namespace {

constexpr int kExitOk = 0, kExitConfig = 3;

const fs::path copy_ini = fs::path(LAB_SOURCE_DIR) / "experiments" / "copy.ini";

Outcome run_labrun(const std::vector<std::string>& args) { return run_program(kLabrunBinary, args); }

// --dry-run output without the origin comments at the ends of `key = value` lines (they name the
// file or the flag a value came from) and without the memory available; other whole-line comments
// (# sweep ..., # run ..., # memory estimate) are kept.
std::vector<std::string> without_origins(const std::string& dry_run) {
    std::vector<std::string> lines;
    for (std::string line : lines_of(dry_run)) {
        // The memory the machine has free is read at each call; it is no part of the resolved runs.
        if (line.rfind("# memory available:", 0) == 0) continue;
        if (line.rfind("#", 0) != 0)
            if (auto origin = line.rfind("  # "); origin != std::string::npos) line.erase(origin);
        while (!line.empty() && line.back() == ' ') line.pop_back();
        lines.push_back(line);
    }
    return lines;
}

}  // namespace

TEST_CASE("labrun --sweep resolves the runs of the equivalent [sweep] file", "[e2e][sweep]") {
    TempDir dir;
    const std::string experiment = read_text(copy_ini);
    REQUIRE(!experiment.empty());
    // The same experiment in two folders (the same stem), one of them with the sweep written out.
    const fs::path plain = dir.write("plain/copy.ini", experiment);
    const fs::path swept = dir.write("swept/copy.ini", experiment +
                                                           "\n[sweep]\noptimizer.lr = 1e-3, 3e-4\n"
                                                           "experiment.seed = 1, 2\n");
    Outcome from_file = run_labrun({swept.string(), "--dry-run"});
    INFO(from_file);
    REQUIRE(from_file.exit_code == kExitOk);
    Outcome from_flags = run_labrun(
        {plain.string(), "--dry-run", "--sweep", "optimizer.lr=1e-3,3e-4", "--sweep", "experiment.seed=1,2"});
    INFO(from_flags);
    REQUIRE(from_flags.exit_code == kExitOk);
    CHECK_THAT(from_flags.out, Contains("# 4 runs of sweep "));
    CHECK_THAT(from_flags.out, Contains("# sweep "));
    CHECK_THAT(from_flags.out, Contains("run 2/4: optimizer.lr=0.001, experiment.seed=2"));
    CHECK_THAT(from_flags.out, Contains("# --sweep 'experiment.seed=1,2' [sweep]"));
    CHECK(without_origins(from_flags.out) == without_origins(from_file.out));

    // A flag replaces the file's list of its key, and crosses with the file's other keys.
    Outcome replaced = run_labrun({swept.string(), "--dry-run", "--sweep", "experiment.seed=7,8,9"});
    INFO(replaced);
    REQUIRE(replaced.exit_code == kExitOk);
    CHECK_THAT(replaced.out, Contains("# 6 runs of sweep "));
    CHECK_THAT(replaced.out, Contains("run 6/6: optimizer.lr=0.0003, experiment.seed=9"));
    Outcome crossed = run_labrun({swept.string(), "--dry-run", "--sweep", "train.batch=16,32"});
    INFO(crossed);
    REQUIRE(crossed.exit_code == kExitOk);
    CHECK_THAT(crossed.out, Contains("run 8/8: optimizer.lr=0.0003, experiment.seed=2, train.batch=32"));
}

TEST_CASE("labrun --sweep with --jobs records one sweep of 4 runs, which the [sweep] file then skips",
          "[e2e][sweep]") {
    TempDir dir;
    const fs::path db = dir.path / "sweep.db";
    const std::string experiment = read_text(copy_ini);
    const fs::path plain = dir.write("plain/copy.ini", experiment);
    const fs::path swept = dir.write("swept/copy.ini", experiment + "\n[sweep]\ntrain.batch = 8, 16\n"
                                                                    "experiment.seed = 1, 2\n");
    const std::vector<std::string> small = {"experiment.db=" + db.string(), "train.steps=10", "train.eval_every=0",
                                            "train.log_every=10", "task.val_examples=32"};
    std::vector<std::string> args = {plain.string(), "--jobs", "2",          "--sweep",
                                     "train.batch=8,16", "--sweep", "experiment.seed=1,2"};
    args.insert(args.end(), small.begin(), small.end());
    Outcome sweep = run_labrun(args);
    INFO(sweep);
    REQUIRE(sweep.exit_code == kExitOk);
    CHECK_THAT(sweep.err, Contains("4 finished, 0 failed, 0 interrupted"));

    PlainSqlite sql(db, PlainSqlite::Access::read_only);
    CHECK(sql.one("SELECT COUNT(*) FROM runs WHERE status = 'finished'").integer == 4);
    CHECK(sql.one("SELECT COUNT(DISTINCT sweep) FROM runs").integer == 1);
    const std::string id = sql.one("SELECT sweep FROM runs LIMIT 1").text;
    CHECK(id.size() == 12);
    CHECK(sql.one("SELECT size FROM sweeps WHERE id = ?1", {id}).integer == 4);
    std::set<std::string> combinations;
    for (const Row& row : sql.rows("SELECT b.value || '/' || s.value FROM params AS b JOIN params AS s"
                                   " ON b.run_id = s.run_id WHERE b.key = 'train.batch' AND s.key = 'experiment.seed'"))
        combinations.insert(row[0].text);
    CHECK(combinations == std::set<std::string>{"8/1", "8/2", "16/1", "16/2"});

    // The file with the same sweep is the same sweep: its runs already finished.
    std::vector<std::string> file_args = {swept.string()};
    file_args.insert(file_args.end(), small.begin(), small.end());
    Outcome file = run_labrun(file_args);
    INFO(file);
    REQUIRE(file.exit_code == kExitOk);
    CHECK_THAT(file.err, Contains("already finished; skipped"));
    CHECK(sql.one("SELECT COUNT(*) FROM runs").integer == 4);
    CHECK(sql.one("SELECT COUNT(*) FROM sweeps").integer == 1);
}

TEST_CASE("labrun --sweep refuses malformed flags naming the flag", "[e2e][sweep]") {
    TempDir dir;
    const std::string db = "experiment.db=" + (dir.path / "never.db").string();
    auto refused = [&](std::vector<std::string> flags, const std::string& message) {
        std::vector<std::string> args = {copy_ini.string(), "--dry-run", db};
        args.insert(args.end(), flags.begin(), flags.end());
        Outcome outcome = run_labrun(args);
        INFO(outcome);
        CHECK(outcome.exit_code == kExitConfig);
        CHECK_THAT(outcome.err, Contains(message));
    };
    refused({"--sweep", "train.steps"},
            "--sweep 'train.steps' is malformed: expected --sweep section.key=value1,value2");
    refused({"--sweep", "=1,2"}, "--sweep '=1,2' is malformed");
    refused({"--sweep", "steps=1,2"}, "--sweep 'steps=1,2': 'steps' is not a 'section.key' to sweep");
    refused({"--sweep", "train.steps="}, "--sweep 'train.steps=': [sweep] train.steps has an empty list");
    refused({"--sweep", "train.steps=1,,2"}, "--sweep 'train.steps=1,,2': [sweep] train.steps = 1,,2: item 2 is empty");
    refused({"--sweep", "trian.steps=1,2"}, "--sweep 'trian.steps=1,2': [sweep] trian.steps: unknown section [trian]; "
                                            "did you mean [train]?");
    refused({"--sweep", "train.stepz=1,2"}, "--sweep 'train.stepz=1,2' [sweep]: [train] key 'stepz' is not an option");
    refused({"--sweep", "train.steps=1,2", "--sweep", "train.steps=3"},
            "--sweep 'train.steps=3': train.steps is already swept by another --sweep flag");
    refused({"--sweep", "train.steps=1,2", "train.steps=5"},
            "--sweep 'train.steps=1,2' and override 'train.steps=5' both set train.steps");
    refused({"--sweep", "sweep.x=1,2"}, "is not a 'section.key' to sweep");
    refused({"sweep.train.steps=1,2"}, "sweeps are not overrides; sweep from the command line with --sweep");
    refused({"--sweep", "optimizer.lr=1e-3,0.001"}, "are the same value");

    Outcome no_file = run_labrun({"--sweep", "train.steps=1,2", "eval", "1"});
    CHECK(no_file.exit_code == kExitConfig);
    CHECK_THAT(no_file.err, Contains("--sweep sweeps an experiment file"));
}
