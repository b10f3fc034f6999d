// The attention conformance check (lab/attention_check.h) against plugins whose verdict is known:
// attention/softmax (composite and fused) must pass every check; deliberately broken test plugins
// must fail exactly the check that sees their bug (tests/test_plugins/leaky_attention.cpp leaks the
// next token, wrong_grad_attention.cpp drops the values' gradient, extra_param_attention.cpp
// declares itself exact but adds a parameter softmax lacks). Also labrun's --check command through
// its library function (tools/labrun/check.cpp) and what it records.
#include <catch2/catch.hpp>

#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "attention_conformance.h"
#include "check.h"
#include "lab/attention_check.h"
#include "lab/error.h"
#include "lab/host_backend.h"
#include "lab/registry.h"
#include "lab/results.h"
#include "test_support.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using Status = lab::AttentionCheckResult::Status;

namespace {

struct CheckFixture {
    lab::Registry registry;
    lab::HostBackend backend;

    CheckFixture() {
        registry.load_directory(LAB_PLUGIN_DIR);
        for (const char* stem : {"leaky_attention", "wrong_grad_attention", "extra_param_attention"}) {
            fs::path file = fs::path(LAB_TEST_PLUGIN_DIR) / ("test_" + std::string(stem) + ".so");
            INFO("test plugin " << file << " is built by the lab_test_plugins target");
            REQUIRE(fs::is_regular_file(file));
            registry.load_library(file);
        }
    }

    lab::AttentionCheckReport check(const std::string& name, std::map<std::string, std::string> options = {},
                                    std::vector<int64_t> lengths = {}) {
        lab::AttentionCheckSettings settings;
        settings.options = std::move(options);
        settings.profile_lengths = std::move(lengths);
        settings.profile_repeats = 1;
        return lab::check_attention(registry, backend, name, settings);
    }
};

std::map<std::string, Status> statuses(const lab::AttentionCheckReport& report) {
    std::map<std::string, Status> out;
    for (const auto& c : report.checks) out[c.name] = c.status;
    return out;
}

const lab::AttentionCheckResult& find_check(const lab::AttentionCheckReport& report, const std::string& name) {
    for (const auto& c : report.checks)
        if (c.name == name) return c;
    FAIL("the report has no check named " << name);
    throw std::logic_error("unreachable");
}

// The sequence lengths of the profile table's rows in format(): lines of four numbers.
std::vector<int64_t> table_lengths(const std::string& text) {
    std::vector<int64_t> lengths;
    for (const std::string& line : lab_test::lines_of(text)) {
        std::istringstream in(line);
        int64_t seq_len = 0;
        double forward_ms = 0, train_ms = 0, peak_mb = 0;
        std::string rest;
        if (in >> seq_len >> forward_ms >> train_ms >> peak_mb && !(in >> rest)) lengths.push_back(seq_len);
    }
    return lengths;
}

const std::map<std::string, Status> kAllPassed = {{"shapes", Status::passed},    {"gradients", Status::passed},
                                                  {"causality", Status::passed}, {"padding", Status::passed},
                                                  {"exact", Status::passed},     {"determinism", Status::passed}};

}  // namespace

TEST_CASE("attention check: softmax (composite) passes every check and profiles the lengths asked for",
          "[attention][check]") {
    CheckFixture f;
    lab::AttentionCheckReport report = f.check("softmax", {{"fused", "false"}}, {32, 64});
    INFO(report.format());
    CHECK(report.passed());
    CHECK(statuses(report) == kAllPassed);
    CHECK(report.plugin == "attention/softmax");
    CHECK(report.options == "fused=false");
    CHECK(report.backend == "reference");
    // exact compares fused = false (these options) with attention/softmax's defaults through the
    // declared equals_softmax_with = {fused: true}.
    CHECK_THAT(find_check(report, "exact").detail, Contains("with fused=true"));
    CHECK_THAT(find_check(report, "causality").detail, Contains("bitwise equal"));

    REQUIRE(report.profile.size() == 2);
    for (const auto& row : report.profile) {
        CHECK(row.error.empty());
        CHECK(row.forward_ms > 0);
        CHECK(row.train_ms > 0);
        CHECK(row.peak_mb > 0);
    }
    CHECK(report.profile[0].seq_len == 32);
    CHECK(report.profile[1].seq_len == 64);

    const std::string text = report.format();
    CHECK_THAT(text, Contains("PASS shapes: "));
    CHECK_THAT(text, Contains("PASS determinism: "));
    CHECK_THAT(text, Contains("seq_len  forward ms  fwd+bwd ms  peak MB"));
    CHECK(table_lengths(text) == std::vector<int64_t>{32, 64});
}

TEST_CASE("attention check: softmax with the fused kernel passes every check", "[attention][check]") {
    CheckFixture f;
    lab::AttentionCheckReport report = f.check("softmax", {{"fused", "true"}}, {256});
    INFO(report.format());
    CHECK(report.passed());
    CHECK(statuses(report) == kAllPassed);
    REQUIRE(report.profile.size() == 1);
    REQUIRE(report.profile[0].error.empty());
    // The composite keeps [B, H, T, T] = [1, 4, 256, 256] scores and probabilities (1 MiB each) for
    // its backward; the fused kernel keeps no T x T matrix, so its peak is lower by more than one.
    lab::AttentionCheckReport composite = f.check("softmax", {{"fused", "false"}}, {256});
    REQUIRE(composite.profile.size() == 1);
    INFO(composite.format());
    CHECK(composite.profile[0].peak_mb > report.profile[0].peak_mb + 1.0);
}

TEST_CASE("attention check: a plugin that leaks the next token fails causality, and only causality",
          "[attention][check]") {
    CheckFixture f;
    SECTION("leaking from query 3 on: the earliest leaking position is 3") {
        lab::AttentionCheckReport report = f.check("leaky", {{"from", "3"}});
        INFO(report.format());
        CHECK_FALSE(report.passed());
        std::map<std::string, Status> expected = kAllPassed;
        expected["causality"] = Status::failed;
        CHECK(statuses(report) == expected);
        const std::string detail = find_check(report, "causality").detail;
        CHECK_THAT(detail, Contains("earliest leaking position 3:"));
        CHECK_THAT(detail, Contains("only inputs at positions >= 4 change"));
        CHECK_THAT(detail, Contains("leaking positions: 3, 4, 5, 6, 7"));
        CHECK_THAT(report.format(), Contains("FAIL causality: earliest leaking position 3"));
        CHECK_THAT(report.format(), Contains("FAILED: 5 passed, 1 failed, 0 skipped"));
    }
    SECTION("leaking everywhere: the earliest leaking position is 0") {
        lab::AttentionCheckReport report = f.check("leaky");
        INFO(report.format());
        CHECK(find_check(report, "causality").status == Status::failed);
        CHECK_THAT(find_check(report, "causality").detail, Contains("earliest leaking position 0:"));
    }
}

TEST_CASE("attention check: a plugin whose values get no gradient fails the gradient check",
          "[attention][check]") {
    CheckFixture f;
    lab::AttentionCheckReport report = f.check("wrong_grad");
    INFO(report.format());
    CHECK_FALSE(report.passed());
    std::map<std::string, Status> expected = kAllPassed;
    expected["gradients"] = Status::failed;
    expected["exact"] = Status::skipped;  // it declares no equals_softmax_with
    CHECK(statuses(report) == expected);
    const std::string detail = find_check(report, "gradients").detail;
    CHECK_THAT(detail, Contains("c_attn.weight (non-causal)"));
    CHECK_THAT(detail, Contains("x (non-causal)"));
    CHECK_THAT(find_check(report, "exact").detail, Contains("declares no options"));
}

TEST_CASE("attention check: an exact variant whose parameters do not map onto softmax's fails exact",
          "[attention][check]") {
    CheckFixture f;
    lab::AttentionCheckReport report = f.check("extra_param");
    INFO(report.format());
    std::map<std::string, Status> expected = kAllPassed;
    expected["exact"] = Status::failed;
    CHECK(statuses(report) == expected);
    CHECK_THAT(find_check(report, "exact").detail,
               Contains("with learn_temperature=false the parameters do not map onto attention/softmax's by name "
                        "(extra temperature)"));
}

TEST_CASE("attention check: errors and a profile length that fails", "[attention][check]") {
    CheckFixture f;
    CHECK_THROWS_AS(f.check("sofmax"), lab::PluginError);
    CHECK_THROWS_AS(f.check("softmax", {{"fused", "maybe"}}), lab::ConfigError);
    CHECK_THROWS_AS(f.check("softmax", {{"fusd", "true"}}), lab::ConfigError);

    // 3 heads do not divide 256 channels: the first length records the error, the profile stops,
    // and the checks still count.
    lab::AttentionCheckSettings settings;
    settings.profile_lengths = {16, 32};
    settings.profile_heads = 3;
    lab::AttentionCheckReport report = lab::check_attention(f.registry, f.backend, "softmax", settings);
    INFO(report.format());
    CHECK(report.passed());
    REQUIRE(report.profile.size() == 1);
    CHECK(report.profile[0].seq_len == 16);
    CHECK_THAT(report.profile[0].error, Contains("not divisible by heads = 3"));
    CHECK_THAT(report.format(), Contains("failed: "));
    CHECK_THAT(report.format(), Contains("(profile stopped)"));
}

TEST_CASE("attention check: require_conformant passes softmax", "[attention][check]") {
    lab::AttentionCheckReport report = lab_test::require_conformant("softmax");
    CHECK(table_lengths(report.format()) == std::vector<int64_t>{128, 256});
}

TEST_CASE("labrun --check: the command records its checks and profile in the results database",
          "[attention][check]") {
    CheckFixture f;
    lab_test::TempDir dir;
    const fs::path db = dir.path / "check.db";
    std::ostringstream printed;
    CheckCliOptions cli;
    cli.backend = "reference";
    cli.profile_lengths = "16,32";
    cli.db = db.string();
    cli.out = &printed;

    SECTION("a passing plugin: a finished run with every check at 1 and the profile by length") {
        REQUIRE(run_attention_check(f.registry, {"attention/softmax", "fused=true"}, cli) == 0);
        CHECK_THAT(printed.str(), Contains("PASS exact: "));
        CHECK(table_lengths(printed.str()) == std::vector<int64_t>{16, 32});

        lab_test::PlainSqlite sql(db, lab_test::PlainSqlite::Access::read_only);
        CHECK(sql.text_row("SELECT name, status, error, backend FROM runs") ==
              "check attention/softmax|finished|NULL|reference");
        CHECK(sql.one("SELECT value FROM params WHERE key = 'attention.fused'").text == "true");
        CHECK(sql.one("SELECT value FROM params WHERE key = 'experiment.backend'").text == "reference");
        CHECK(sql.text_rows("SELECT name, step, value FROM metrics WHERE name LIKE 'check/%' ORDER BY name") ==
              std::vector<std::string>{"check/causality|0|1.0", "check/determinism|0|1.0", "check/exact|0|1.0",
                                       "check/gradients|0|1.0", "check/padding|0|1.0", "check/shapes|0|1.0"});
        for (const char* metric : {"cost/forward_ms", "cost/train_ms", "cost/peak_mem_mb"})
            CHECK(sql.text_rows("SELECT step FROM metrics WHERE name = '" + std::string(metric) +
                                "' AND value > 0 ORDER BY step") == std::vector<std::string>{"16", "32"});
        CHECK(sql.one("SELECT COUNT(*) FROM plugins WHERE kind = 'attention' AND name = 'softmax'").integer == 1);
        CHECK_THAT(sql.one("SELECT text FROM texts WHERE name = 'check/report'").text,
                   Contains("PASS causality: "));
    }

    SECTION("a failing plugin: a failed run whose error names the check, exit status 1") {
        cli.no_profile = true;
        REQUIRE(run_attention_check(f.registry, {"leaky", "from=2"}, cli) == 1);
        CHECK_THAT(printed.str(), Contains("FAIL causality: earliest leaking position 2"));
        lab_test::PlainSqlite sql(db, lab_test::PlainSqlite::Access::read_only);
        CHECK(sql.one("SELECT status FROM runs").text == "failed");
        CHECK_THAT(sql.one("SELECT error FROM runs").text,
                   Contains("conformance check failed: causality: earliest leaking position 2"));
        CHECK(sql.one("SELECT value FROM metrics WHERE name = 'check/causality'").real == 0.0);
        CHECK(sql.one("SELECT value FROM metrics WHERE name = 'check/gradients'").real == 1.0);
        CHECK(sql.one("SELECT COUNT(*) FROM metrics WHERE name LIKE 'cost/%'").integer == 0);
    }

    SECTION("bad arguments are refused before anything is recorded") {
        CHECK_THROWS_AS(run_attention_check(f.registry, {}, cli), lab::ConfigError);
        CHECK_THROWS_AS(run_attention_check(f.registry, {"model/gpt"}, cli), lab::ConfigError);
        CHECK_THROWS_AS(run_attention_check(f.registry, {"attention/softmax", "fused"}, cli), lab::ConfigError);
        CHECK_THROWS_AS(run_attention_check(f.registry, {"attention/softmax", "fusd=true"}, cli), lab::ConfigError);
        CHECK_THROWS_AS(run_attention_check(f.registry, {"attention/nope"}, cli), lab::PluginError);
        cli.profile_lengths = "16,x";
        CHECK_THROWS_AS(run_attention_check(f.registry, {"attention/softmax"}, cli), lab::ConfigError);
        cli.profile_lengths = "16";
        cli.backend = "nope";
        CHECK_THROWS_AS(run_attention_check(f.registry, {"attention/softmax"}, cli), lab::PluginError);
        CHECK_FALSE(fs::exists(db));
    }
}
