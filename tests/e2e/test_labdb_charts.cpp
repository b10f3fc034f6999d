// labdb made for ablations, run as a user runs it: legends that name runs by the parameters that
// differ, `curves --by` (group means and spread bands, checked through --json and the SVG),
// `export --wide` (one row per run and step, parameters and metrics as columns) and PNG charts.
// The database is 2 attention variants x 2 seeds written through lab::ResultStore with known
// values, chosen so that every mean is exact in binary.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "lab/results.h"
#include "labdb_test_support.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace lab_test;
using namespace lab_test::labdb;
using Catch::Matchers::Contains;
using nlohmann::json;

namespace {

struct AblationRun {
    std::string name, attention, seed;
    std::map<int64_t, double> val_loss, train_loss;
};

// softmax and sigmoid attention, seeds 1 and 2; sm_s1 alone logs val/loss at step 300.
const std::vector<AblationRun> kRuns = {
    {"sm_s1", "softmax", "1", {{0, 4.0}, {100, 3.0}, {200, 2.5}, {300, 2.25}}, {{0, 4.5}, {100, 3.5}}},
    {"sm_s2", "softmax", "2", {{0, 4.5}, {100, 3.5}, {200, 2.0}}, {{0, 5.0}, {100, 3.75}}},
    {"sg_s1", "sigmoid", "1", {{0, 5.0}, {100, 3.25}, {200, 2.75}}, {{0, 5.5}, {100, 4.0}}},
    {"sg_s2", "sigmoid", "2", {{0, 5.0}, {100, 3.75}, {200, 3.25}}, {{0, 5.5}, {100, 4.5}}},
};

struct AblationDatabase {
    TempDir dir;
    fs::path db = dir.path / "lab.db";
    std::vector<int64_t> ids;
    AblationDatabase() {
        lab::ResultStore store(db);
        for (const AblationRun& run : kRuns) {
            lab::RunRecord record;
            record.name = run.name;
            record.experiment = "attn_ablation";
            record.config_hash = "hash-" + run.name;
            record.config_text = "[experiment]\n";
            const int64_t id = store.begin_run(record, {{"attention.type", run.attention},
                                                        {"experiment.seed", run.seed},
                                                        {"model.layers", "4"}});
            store.declare_metric(id, "val/loss", lab::MetricGoal::minimize);
            store.declare_metric(id, "train/loss", lab::MetricGoal::minimize);
            for (const auto& [step, value] : run.val_loss) store.add_metric(id, step, "val/loss", value);
            for (const auto& [step, value] : run.train_loss) store.add_metric(id, step, "train/loss", value);
            store.finish_run(id, lab::RunStatus::finished, "");
            ids.push_back(id);
        }
    }
    std::vector<std::string> args(std::vector<std::string> tail) const {
        tail.insert(tail.begin(), {"--db", db.string()});
        return tail;
    }
    std::vector<std::string> all_runs() const { return {"sm_s1", "sm_s2", "sg_s1", "sg_s2"}; }
};

std::vector<std::string> with(std::vector<std::string> head, const std::vector<std::string>& tail) {
    head.insert(head.end(), tail.begin(), tail.end());
    return head;
}

std::vector<std::string> split_csv_line(const std::string& line) {
    std::vector<std::string> fields;
    std::stringstream in(line);
    std::string field;
    while (std::getline(in, field, ',')) fields.push_back(field);
    if (!line.empty() && line.back() == ',') fields.push_back("");
    return fields;
}

const json& series_labelled(const json& curves, const std::string& label) {
    for (const json& series : curves["series"])
        if (series["label"] == label) return series;
    FAIL("no series labelled '" << label << "' in " << curves.dump());
    static const json none;
    return none;
}

}  // namespace

TEST_CASE("labdb curves names runs by the parameters that differ", "[labdb]") {
    AblationDatabase study;
    const fs::path svg = study.dir.path / "runs.svg";
    const Outcome drawn =
        labdb::run(study.args(with({"curves", "--metric", "val/loss", "-o", svg.string()}, study.all_runs())));
    INFO(drawn);
    REQUIRE(drawn.exit_code == kExitOk);
    const std::string text = read_text(svg);
    for (const char* label : {">attention.type=softmax experiment.seed=1</text>", ">attention.type=softmax experiment.seed=2</text>",
                              ">attention.type=sigmoid experiment.seed=1</text>", ">attention.type=sigmoid experiment.seed=2</text>"}) {
        INFO(label);
        CHECK(text.find(label) != std::string::npos);
    }
    CHECK_THAT(text, !Contains("model.layers") && !Contains("sm_s1"));

    // Two metrics: the metric follows; runs of one seed differ only in attention.type.
    const json two = run_json(study.args({"curves", "--metric", "val/loss", "--metric", "train/loss", "sm_s1", "sg_s1", "--json"}));
    std::vector<std::string> labels;
    for (const json& series : two["series"]) labels.push_back(series["label"]);
    CHECK(labels == std::vector<std::string>{"attention.type=softmax val/loss", "attention.type=softmax train/loss",
                                             "attention.type=sigmoid val/loss", "attention.type=sigmoid train/loss"});
    CHECK(two["series"][2]["runs"] == json::array({study.ids[2]}));
    CHECK(two["series"][0]["points"].size() == 4);
    CHECK(two["series"][0]["points"][3]["y"].get<double>() == 2.25);

    // One run, or runs that differ in nothing: "run ID NAME".
    const json one = run_json(study.args({"curves", "--metric", "val/loss", "sg_s2", "--json"}));
    CHECK(one["series"][0]["label"] == "run " + std::to_string(study.ids[3]) + " sg_s2");

    // The report names runs the same way.
    const fs::path html = study.dir.path / "report.html";
    const Outcome report = labdb::run(study.args({"report", "attn_ablation", "-o", html.string()}));
    INFO(report);
    REQUIRE(report.exit_code == kExitOk);
    CHECK_THAT(read_text(html), Contains(">attention.type=sigmoid experiment.seed=2</text>"));
}

TEST_CASE("labdb curves leaves out plugin options that do not tell runs apart", "[labdb]") {
    TempDir dir;
    const fs::path db = dir.path / "lab.db";
    {
        lab::ResultStore store(db);
        const std::vector<std::pair<std::string, std::vector<std::pair<std::string, std::string>>>> runs = {
            {"soft", {{"attention.type", "softmax"}, {"attention.fused", "false"}}},
            {"lin64", {{"attention.type", "linear"}, {"attention.chunk", "64"}}},
            {"lin32", {{"attention.type", "linear"}, {"attention.chunk", "32"}}}};
        for (const auto& [name, params] : runs) {
            lab::RunRecord record;
            record.name = name;
            record.experiment = "plugins";
            record.config_hash = "hash-" + name;
            record.config_text = "[experiment]\n";
            const int64_t id = store.begin_run(record, params);
            store.add_metric(id, 0, "val/loss", 3.0);
            store.finish_run(id, lab::RunStatus::finished, "");
        }
    }
    const auto labels_of = [&](const std::vector<std::string>& runs) {
        std::vector<std::string> labels;
        const json curves = run_json(with({"--db", db.string(), "curves", "--metric", "val/loss", "--json"}, runs));
        for (const json& series : curves["series"]) labels.push_back(series["label"]);
        return labels;
    };
    // attention.fused and attention.chunk come with the attention type: the type alone names the runs.
    CHECK(labels_of({"soft", "lin64"}) == std::vector<std::string>{"attention.type=softmax", "attention.type=linear"});
    // Two linear runs differ in their chunk: then it is shown, (unset) where a run has none.
    CHECK(labels_of({"soft", "lin64", "lin32"}) ==
          std::vector<std::string>{"attention.chunk=(unset) attention.type=softmax",
                                   "attention.chunk=64 attention.type=linear", "attention.chunk=32 attention.type=linear"});
}

TEST_CASE("labdb curves --by draws group means with a spread band", "[labdb]") {
    AblationDatabase study;
    const fs::path svg = study.dir.path / "groups.svg";
    const json curves = run_json(study.args(
        with({"curves", "--metric", "val/loss", "--by", "attention.type", "-o", svg.string(), "--json"}, study.all_runs())));
    CHECK(curves["by"] == json::array({"attention.type"}));
    CHECK(curves["band"] == "std");
    REQUIRE(curves["series"].size() == 2);
    // Groups in value order: sigmoid, then softmax.
    CHECK(curves["series"][0]["label"] == "attention.type=sigmoid (n=2)");
    CHECK(curves["series"][0]["group"] == json({{"attention.type", "sigmoid"}}));
    CHECK(curves["series"][0]["runs"] == json::array({study.ids[2], study.ids[3]}));
    const json& softmax = series_labelled(curves, "attention.type=softmax (n=2)");
    const json& sigmoid = series_labelled(curves, "attention.type=sigmoid (n=2)");
    // Only the steps every run of the group logged: step 300 of sm_s1 is left out.
    REQUIRE(softmax["points"].size() == 3);
    const std::vector<std::pair<double, double>> softmax_means = {{0, 4.25}, {100, 3.25}, {200, 2.25}};
    const std::vector<std::pair<double, double>> sigmoid_means = {{0, 5.0}, {100, 3.5}, {200, 3.0}};
    for (size_t i = 0; i < 3; ++i) {
        INFO("point " << i);
        CHECK(softmax["points"][i]["x"].get<double>() == softmax_means[i].first);
        CHECK(softmax["points"][i]["y"].get<double>() == softmax_means[i].second);
        CHECK(sigmoid["points"][i]["y"].get<double>() == sigmoid_means[i].second);
    }
    // Sample std (n-1) of {3.0, 3.5} is sqrt(0.125); of {5.0, 5.0} zero.
    CHECK(softmax["points"][1]["band_lo"].get<double>() == Approx(3.25 - std::sqrt(0.125)).epsilon(1e-12));
    CHECK(softmax["points"][1]["band_hi"].get<double>() == Approx(3.25 + std::sqrt(0.125)).epsilon(1e-12));
    CHECK(sigmoid["points"][0]["band_lo"].get<double>() == 5.0);
    CHECK(sigmoid["points"][0]["band_hi"].get<double>() == 5.0);

    const std::string text = read_text(svg);
    CHECK_THAT(text, Contains(">attention.type=sigmoid (n=2)</text>") && Contains(">attention.type=softmax (n=2)</text>"));
    CHECK_THAT(text, Contains("<polygon class=\"band\"") && !Contains("sm_s1"));

    SECTION("--band minmax is the range of the runs, --band none draws no band") {
        const json minmax = run_json(study.args(
            with({"curves", "--metric", "val/loss", "--by", "attention.type", "--band", "minmax", "--json"}, study.all_runs())));
        const json& range = series_labelled(minmax, "attention.type=softmax (n=2)");
        CHECK(range["points"][2]["band_lo"].get<double>() == 2.0);
        CHECK(range["points"][2]["band_hi"].get<double>() == 2.5);
        const json none = run_json(study.args(
            with({"curves", "--metric", "val/loss", "--by", "attention.type", "--band", "none", "--json"}, study.all_runs())));
        CHECK(!none["series"][0]["points"][0].contains("band_lo"));
    }
    SECTION("two keys: one group per combination; one run has no std band") {
        const json both = run_json(study.args(with(
            {"curves", "--metric", "val/loss", "--by", "attention.type", "--by", "experiment.seed", "--json"}, study.all_runs())));
        REQUIRE(both["series"].size() == 4);
        const json& single = series_labelled(both, "attention.type=softmax experiment.seed=1 (n=1)");
        REQUIRE(single["points"].size() == 4);  // a group of one keeps every step
        CHECK(single["points"][3]["y"].get<double>() == 2.25);
        CHECK(single["points"][3]["band_lo"].is_null());
    }
    SECTION("bad flags name the flag and what was expected") {
        const Outcome unknown = labdb::run(study.args({"curves", "--metric", "val/loss", "--by", "attention.typ", "sm_s1", "--json"}));
        CHECK(unknown.exit_code == kExitNotFound);
        CHECK_THAT(unknown.err, Contains("--by 'attention.typ'") && Contains("attention.type"));
        const Outcome time = labdb::run(study.args({"curves", "--metric", "val/loss", "--by", "attention.type", "--x", "time",
                                                   "sm_s1", "--json"}));
        CHECK(time.exit_code == kExitUsage);
        CHECK_THAT(time.err, Contains("--x step"));
        const Outcome band = labdb::run(study.args({"curves", "--metric", "val/loss", "--by", "attention.type", "--band", "iqr",
                                                   "sm_s1", "--json"}));
        CHECK(band.exit_code == kExitUsage);
        CHECK_THAT(band.err, Contains("--band 'iqr'") && Contains("minmax"));
        const Outcome lonely = labdb::run(study.args({"curves", "--metric", "val/loss", "--band", "minmax", "sm_s1", "--json"}));
        CHECK(lonely.exit_code == kExitUsage);
        CHECK_THAT(lonely.err, Contains("--by"));
    }
}

TEST_CASE("labdb curves writes a compressed PNG with the group legend", "[labdb]") {
    AblationDatabase study;
    const fs::path png = study.dir.path / "groups.png";
    const Outcome drawn = labdb::run(
        study.args(with({"curves", "--metric", "val/loss", "--by", "attention.type", "-o", png.string()}, study.all_runs())));
    INFO(drawn);
    if (drawn.exit_code == kExitUsage && drawn.err.find("without PNG charts") != std::string::npos) {
        CHECK_THAT(drawn.err, Contains(".svg"));
        WARN("skipped: labdb is built without Cairo, so without PNG charts");
        return;
    }
    REQUIRE(drawn.exit_code == kExitOk);
    CHECK_THAT(drawn.out, Contains("(2 series)"));
    const std::string bytes = read_text(png);
    REQUIRE(bytes.size() > 24);
    CHECK(bytes.substr(0, 8) == std::string("\x89PNG\r\n\x1a\n", 8));
    // IHDR: width and height, big-endian, right after the signature and the chunk header.
    const auto u32 = [&](size_t at) {
        return uint32_t(uint8_t(bytes[at])) << 24 | uint32_t(uint8_t(bytes[at + 1])) << 16 |
               uint32_t(uint8_t(bytes[at + 2])) << 8 | uint32_t(uint8_t(bytes[at + 3]));
    };
    CHECK(bytes.substr(12, 4) == "IHDR");
    CHECK(u32(16) == 900);
    CHECK(u32(20) == 540);
    CHECK(bytes.size() < 200u * 1024);
}

TEST_CASE("labdb export --wide writes one row per run and step with params and metrics as columns", "[labdb]") {
    AblationDatabase study;
    const Outcome csv = labdb::run(study.args({"export", "--format", "csv", "--wide"}));
    INFO(csv);
    REQUIRE(csv.exit_code == kExitOk);
    const std::vector<std::string> lines = lines_of(csv.out);
    REQUIRE(lines.size() == 1 + 4 + 3 + 3 + 3);  // header; sm_s1 logged 4 steps, the others 3
    CHECK(lines[0] ==
          "run_id,run_name,param.attention.type,param.experiment.seed,param.model.layers,step,time,train/loss,val/loss");
    // sm_s1 at step 100: both metrics; at step 300: val/loss only. The time is when it was logged.
    const std::vector<std::string> step_100 = split_csv_line(lines[2]), step_300 = split_csv_line(lines[4]);
    REQUIRE(step_100.size() == 9);
    REQUIRE(step_300.size() == 9);
    const std::string id = std::to_string(study.ids[0]);
    CHECK(std::vector<std::string>(step_100.begin(), step_100.begin() + 6) ==
          std::vector<std::string>{id, "sm_s1", "softmax", "1", "4", "100"});
    CHECK(std::stod(step_100[6]) >= 0);
    CHECK(std::vector<std::string>(step_100.begin() + 7, step_100.end()) == std::vector<std::string>{"3.5", "3"});
    CHECK(std::vector<std::string>(step_300.begin(), step_300.begin() + 6) ==
          std::vector<std::string>{id, "sm_s1", "softmax", "1", "4", "300"});
    CHECK(std::vector<std::string>(step_300.begin() + 7, step_300.end()) == std::vector<std::string>{"", "2.25"});
    CHECK(split_csv_line(lines[13])[1] == "sg_s2");

    const Outcome exported = labdb::run(study.args({"export", "sg_s1", "--format", "json", "--wide"}));
    INFO(exported);
    REQUIRE(exported.exit_code == kExitOk);
    const auto rows = nlohmann::ordered_json::parse(exported.out);  // keeps the columns' order
    REQUIRE(rows.size() == 3);
    std::vector<std::string> keys;
    for (const auto& [key, value] : rows[2].items()) keys.push_back(key);
    CHECK(keys == std::vector<std::string>{"run_id", "run_name", "param.attention.type", "param.experiment.seed",
                                           "param.model.layers", "step", "time", "train/loss", "val/loss"});
    CHECK(rows[1]["param.attention.type"] == "sigmoid");
    CHECK(rows[1]["step"].get<int64_t>() == 100);
    CHECK(rows[1]["val/loss"].get<double>() == 3.25);
    CHECK(rows[1]["train/loss"].get<double>() == 4.0);
    CHECK(rows[2]["train/loss"].is_null());
    CHECK(rows[2]["val/loss"].get<double>() == 2.75);

    // The long format stays the default.
    CHECK(lines_of(labdb::run(study.args({"export", "--format", "csv"})).out)[0] == "run_id,run_name,step,name,value,time");
}
