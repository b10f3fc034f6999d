// labdb ablate run as a user runs it: the built binary in a child process against a database made
// here through lab::ResultStore, with the group statistics, the paired and Welch intervals and the
// error exit codes checked against values computed by hand in this file.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "lab/results.h"
#include "labdb_test_support.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace lab_test;
using namespace lab_test::labdb;
using Catch::Matchers::Contains;
using nlohmann::json;

namespace {

struct AblationRunSpec {
    std::string attention, experiment;
    int64_t seed = 0;
    double final_loss = 0;  // last val/loss; the best is 0.1 lower, logged at step 100
    lab::RunStatus status = lab::RunStatus::finished;
};

// Final val/loss per group and seed.
const double kSoftmax[3] = {2.0, 2.2, 2.4};   // seeds 1, 2, 3
const double kLinear[3] = {2.5, 2.6, 3.0};    // seeds 1, 2, 3: paired with softmax
const double kWindow[2] = {2.15, 2.35};       // seeds 4, 5: no shared seeds, so Welch

// The ablation study: three attention types in experiment "abl", plus a failed run and a run of
// another experiment that must both stay out of it.
struct AblationDatabase {
    TempDir dir;
    fs::path db = dir.path / "lab.db";
    AblationDatabase() {
        std::vector<AblationRunSpec> specs;
        for (int64_t s = 0; s < 3; ++s) specs.push_back({"softmax", "abl", s + 1, kSoftmax[s]});
        for (int64_t s = 0; s < 3; ++s) specs.push_back({"linear", "abl", s + 1, kLinear[s]});
        for (int64_t s = 0; s < 2; ++s) specs.push_back({"window", "abl", s + 4, kWindow[s]});
        specs.push_back({"softmax", "abl", 4, 0.1, lab::RunStatus::failed});
        specs.push_back({"softmax", "other", 1, 9.0});
        lab::ResultStore store(db);
        int index = 0;
        for (const AblationRunSpec& spec : specs) {
            lab::RunRecord record;
            record.name = spec.attention + "_s" + std::to_string(spec.seed) + "_" + std::to_string(index++);
            record.experiment = spec.experiment;
            record.config_hash = "hash-" + record.name;
            record.config_text = "[experiment]\nname = " + record.name + "\n";
            record.backend = "reference";
            record.device = "cpu";
            record.precision = "fp32";
            record.seed = spec.seed;
            const int64_t id = store.begin_run(record, {{"attention.type", spec.attention},
                                                        {"model.layers", "4"},
                                                        {"experiment.seed", std::to_string(spec.seed)}});
            // Goals as the trainer and a task declare them.
            store.declare_metric(id, "val/loss", lab::MetricGoal::minimize);
            store.declare_metric(id, "val/accuracy", lab::MetricGoal::maximize);
            store.declare_metric(id, "perf/tokens_per_s", lab::MetricGoal::none);
            store.declare_metric(id, "perf/peak_mem_mb", lab::MetricGoal::none);
            store.add_metric(id, 0, "val/loss", 3.5);
            store.add_metric(id, 100, "val/loss", spec.final_loss - 0.1);
            store.add_metric(id, 200, "val/loss", spec.final_loss);
            store.add_metric(id, 200, "val/accuracy", spec.final_loss / 10);
            // Cost: throughput 1000 then 1200 + 10 * seed (run mean 1100 + 5 * seed); the memory
            // high-water mark 50 then 60 + seed (run maximum 60 + seed).
            store.add_metric(id, 100, "perf/tokens_per_s", 1000.0);
            store.add_metric(id, 200, "perf/tokens_per_s", 1200.0 + 10.0 * static_cast<double>(spec.seed));
            store.add_metric(id, 100, "perf/peak_mem_mb", 50.0);
            store.add_metric(id, 200, "perf/peak_mem_mb", 60.0 + static_cast<double>(spec.seed));
            store.finish_run(id, spec.status, "");
        }
    }
};

json group_row(const json& rows, const std::string& attention) {
    for (const json& row : rows) {
        if (row["group"]["attention.type"] == attention) return row;
    }
    FAIL("no group " << attention << " in " << rows.dump());
    return {};
}

double mean_of(const double* values, int count) {
    double sum = 0;
    for (int i = 0; i < count; ++i) sum += values[i];
    return sum / count;
}

double sample_std(const double* values, int count) {
    const double mean = mean_of(values, count);
    double squares = 0;
    for (int i = 0; i < count; ++i) squares += (values[i] - mean) * (values[i] - mean);
    return std::sqrt(squares / (count - 1));
}

}  // namespace

TEST_CASE("labdb ablate groups finished runs and compares them with a baseline", "[labdb][ablate]") {
    AblationDatabase study;
    const std::string db = study.db.string();

    const json rows = run_json({"--db", db, "ablate", "--experiment", "abl", "--by", "attention.type", "--metric",
                                "val/loss", "--baseline", "softmax", "--json"});
    REQUIRE(rows.size() == 3);
    // Groups in value order.
    CHECK(rows[0]["group"]["attention.type"] == "linear");
    CHECK(rows[1]["group"]["attention.type"] == "softmax");
    CHECK(rows[2]["group"]["attention.type"] == "window");

    const json softmax = group_row(rows, "softmax"), linear = group_row(rows, "linear"), window = group_row(rows, "window");
    // The failed run (0.1) and the run of experiment "other" (9.0) are not counted.
    CHECK(softmax["n"] == 3);
    CHECK(linear["n"] == 3);
    CHECK(window["n"] == 2);
    CHECK(softmax["mean"].get<double>() == Approx(2.2));
    CHECK(linear["mean"].get<double>() == Approx(mean_of(kLinear, 3)));
    CHECK(window["mean"].get<double>() == Approx(2.25));
    CHECK(softmax["std"].get<double>() == Approx(0.2));
    CHECK(linear["std"].get<double>() == Approx(sample_std(kLinear, 3)));
    CHECK(linear["std"].get<double>() == Approx(std::sqrt(0.07)));
    CHECK(linear["min"].get<double>() == Approx(2.5));
    CHECK(linear["max"].get<double>() == Approx(3.0));
    CHECK(softmax["best"] == true);
    CHECK(linear["best"] == false);
    CHECK(window["best"] == false);
    CHECK(softmax["baseline"] == true);
    CHECK(softmax["delta"].is_null());

    SECTION("the paired interval over the shared seeds 1, 2, 3") {
        // Per-seed differences linear - softmax: 0.5, 0.4, 0.6; mean 0.5, sample std 0.1, df 2.
        const double differences[3] = {kLinear[0] - kSoftmax[0], kLinear[1] - kSoftmax[1], kLinear[2] - kSoftmax[2]};
        const double delta = mean_of(differences, 3);
        const double half_width = 4.303 * sample_std(differences, 3) / std::sqrt(3.0);
        CHECK(delta == Approx(0.5));
        CHECK(linear["ci_method"] == "paired");
        CHECK(linear["delta"].get<double>() == Approx(delta));
        CHECK(linear["df"].get<double>() == Approx(2.0));
        CHECK(linear["ci_low"].get<double>() == Approx(delta - half_width));
        CHECK(linear["ci_high"].get<double>() == Approx(delta + half_width));
        CHECK(linear["ci_low"].get<double>() == Approx(0.5 - 4.303 * 0.1 / std::sqrt(3.0)));
    }
    SECTION("Welch's interval where the seeds differ") {
        const double a = 0.04 / 3, b = 0.02 / 2;  // variance / n of softmax and window
        const double df = (a + b) * (a + b) / (a * a / 2 + b * b / 1);
        CHECK(df == Approx(2.882).epsilon(0.001));
        const double half_width = 4.303 * std::sqrt(a + b);  // df rounded down to 2
        CHECK(window["ci_method"] == "welch");
        CHECK(window["delta"].get<double>() == Approx(0.05));
        CHECK(window["df"].get<double>() == Approx(df));
        CHECK(window["ci_low"].get<double>() == Approx(0.05 - half_width));
        CHECK(window["ci_high"].get<double>() == Approx(0.05 + half_width));
    }
    SECTION("the table shows the same numbers and marks the best group") {
        const Outcome table = labdb::run({"--db", db, "ablate", "--experiment", "abl", "--by", "attention.type",
                                         "--metric", "val/loss", "--baseline", "softmax"});
        INFO(table);
        REQUIRE(table.exit_code == kExitOk);
        const std::vector<std::string> lines = lines_of(table.out);
        REQUIRE(lines.size() == 6);  // title, header, rule, three groups
        CHECK_THAT(lines[1], Contains("attention.type") && Contains("mean") && Contains("std") &&
                                 Contains("delta") && Contains("95% CI"));
        CHECK_THAT(lines[3], Contains("linear") && Contains("2.7") && Contains("paired") && Contains("0.5"));
        CHECK_THAT(lines[4], Contains("softmax") && Contains("2.2") && Contains("0.2") && Contains("(baseline)") &&
                                 Contains("*"));
        CHECK_THAT(lines[5], Contains("window") && Contains("welch"));
        CHECK(lines[3].find('*') == std::string::npos);
        CHECK(lines[5].find('*') == std::string::npos);
    }
    SECTION("--best, two keys, and an accuracy metric where higher is better") {
        const json best = run_json({"--db", db, "ablate", "--experiment", "abl", "--by", "attention.type", "--by",
                                    "model.layers", "--metric", "val/loss", "--best", "--baseline", "softmax,4",
                                    "--json"});
        REQUIRE(best.size() == 3);
        CHECK(group_row(best, "linear")["group"]["model.layers"] == "4");
        CHECK(group_row(best, "linear")["mean"].get<double>() == Approx(mean_of(kLinear, 3) - 0.1));
        CHECK(group_row(best, "softmax")["baseline"] == true);
        const json accuracy = run_json(
            {"--db", db, "ablate", "--experiment", "abl", "--by", "attention.type", "--metric", "val/accuracy", "--json"});
        CHECK(group_row(accuracy, "linear")["best"] == true);
        CHECK(group_row(accuracy, "softmax")["best"] == false);
        CHECK(group_row(accuracy, "softmax")["mean"].get<double>() == Approx(0.22));
        // Without --experiment the run of experiment "other" joins the softmax group.
        const json all = run_json({"--db", db, "ablate", "--by", "attention.type", "--metric", "val/loss", "--json"});
        CHECK(group_row(all, "softmax")["n"] == 4);
    }
    SECTION("one run in a group has no std and no interval") {
        const json single = run_json({"--db", db, "ablate", "--by", "attention.type", "--by", "experiment.seed",
                                      "--metric", "val/loss", "--experiment", "abl", "--baseline", "softmax,1",
                                      "--json"});
        REQUIRE(single.size() == 8);
        for (const json& row : single) {
            CHECK(row["n"] == 1);
            CHECK(row["std"].is_null());
            CHECK(row["ci_low"].is_null());
        }
    }
}

TEST_CASE("labdb ablate refuses unknown metrics, keys, groups and empty selections", "[labdb][ablate]") {
    AblationDatabase study;
    const std::string db = study.db.string();
    const std::vector<std::string> base = {"--db", db, "ablate", "--experiment", "abl"};
    auto with = [&](std::vector<std::string> extra) {
        std::vector<std::string> args = base;
        args.insert(args.end(), extra.begin(), extra.end());
        return labdb::run(args);
    };

    const Outcome metric = with({"--by", "attention.type", "--metric", "val/los"});
    CHECK(metric.exit_code == kExitNotFound);
    CHECK_THAT(metric.err, Contains("val/los") && Contains("val/loss") && Contains("hint"));

    const Outcome key = with({"--by", "attention.typ", "--metric", "val/loss"});
    CHECK(key.exit_code == kExitNotFound);
    CHECK_THAT(key.err, Contains("attention.typ") && Contains("attention.type"));

    const Outcome group = with({"--by", "attention.type", "--metric", "val/loss", "--baseline", "flash"});
    CHECK(group.exit_code == kExitNotFound);
    CHECK_THAT(group.err, Contains("flash") && Contains("linear") && Contains("softmax") && Contains("window"));

    const Outcome nothing =
        labdb::run({"--db", db, "ablate", "--experiment", "nope", "--by", "attention.type", "--metric", "val/loss"});
    CHECK(nothing.exit_code == kExitNotFound);
    CHECK_THAT(nothing.err, Contains("no finished runs") && Contains("nope"));

    CHECK(with({"--metric", "val/loss"}).exit_code == kExitUsage);
    CHECK(with({"--by", "attention.type"}).exit_code == kExitUsage);
    CHECK(with({"--by", "attention.type", "--metric", "val/loss", "--last", "--best"}).exit_code == kExitUsage);

    // A metric declared without a goal has no best value and no best group.
    const Outcome no_goal = with({"--by", "attention.type", "--metric", "perf/tokens_per_s", "--best"});
    CHECK(no_goal.exit_code == kExitUsage);
    CHECK_THAT(no_goal.err, Contains("perf/tokens_per_s") && Contains("goal") && Contains("--last"));
    const Outcome throughput = with({"--by", "attention.type", "--metric", "perf/tokens_per_s", "--json"});
    REQUIRE(throughput.exit_code == kExitOk);
    for (const auto& group : nlohmann::json::parse(throughput.out)) CHECK(group["best"] == false);
    const Outcome table = with({"--by", "attention.type", "--metric", "perf/tokens_per_s"});
    CHECK_THAT(table.out, Contains("no declared goal, so no best group") && !Contains("*"));
    const Outcome values = with({"--by", "attention.type", "--metric", "val/loss", "--baseline", "softmax,4"});
    CHECK(values.exit_code == kExitUsage);
    CHECK_THAT(values.err, Contains("--by"));
    CHECK(labdb::run({"--db", db, "ablate", "--experiment", "abl", "--sweep", "s1", "--by", "attention.type",
                     "--metric", "val/loss"})
              .exit_code == kExitUsage);
}

TEST_CASE("labdb ablate: cost columns average each run's mean throughput and peak memory", "[e2e][labdb][ablate]") {
    AblationDatabase fixture;
    const json rows = run_json({"--db", fixture.db.string(), "ablate", "--experiment", "abl", "--by", "attention.type",
                                "--metric", "val/loss", "--json"});
    REQUIRE(rows.size() == 3);
    // Groups sort by value: linear (seeds 1-3), softmax (seeds 1-3), window (seeds 4, 5).
    CHECK(rows[0]["group"]["attention.type"] == "linear");
    CHECK(rows[0]["cost"]["perf/tokens_per_s"].get<double>() == Approx(1110.0));  // 1100 + 5 * mean(1, 2, 3)
    CHECK(rows[0]["cost"]["perf/peak_mem_mb"].get<double>() == Approx(62.0));     // 60 + mean(1, 2, 3)
    CHECK(rows[2]["cost"]["perf/tokens_per_s"].get<double>() == Approx(1122.5));  // 1100 + 5 * 4.5
    CHECK(rows[2]["cost"]["perf/peak_mem_mb"].get<double>() == Approx(64.5));

    // The table shows the columns; --cost chooses them, and a metric no run logged shows "-".
    const Outcome table = labdb::run({"--db", fixture.db.string(), "ablate", "--experiment", "abl", "--by",
                                     "attention.type", "--metric", "val/loss", "--cost", "perf/peak_mem_mb", "--cost",
                                     "perf/nothing"});
    INFO(table);
    REQUIRE(table.exit_code == kExitOk);
    CHECK_THAT(table.out, Contains("perf/peak_mem_mb"));
    CHECK_THAT(table.out, Contains("perf/nothing"));
    CHECK_THAT(table.out, !Contains("perf/tokens_per_s"));
    CHECK_THAT(table.out, Contains("64.5"));
}
