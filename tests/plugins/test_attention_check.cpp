// The attention conformance check (lab/attention_check.h) against plugins whose verdict is known:
// every shipped attention plugin must pass every check it applies to; deliberately broken test
// plugins must fail exactly the check that sees their bug, with a message that names the mode, the
// lengths and the first offending position (tests/test_plugins/: leaky_attention.cpp leaks the
// next token, tile_leak_attention.cpp leaks inside a 64-key tile past the first,
// eval_leak_attention.cpp leaks in eval mode only, batch_mixing_attention.cpp mixes the sequences
// of a batch, padded_keys_attention.cpp ignores the padding mask, cache_offset_attention.cpp
// ignores the KV cache's offset, bad_dropout_attention.cpp gets dropout wrong three ways,
// wrong_grad_attention.cpp drops the values' gradient, extra_param_attention.cpp declares itself
// exact but adds a parameter softmax lacks). Also labrun's --check command through its library
// function (tools/labrun/check.cpp) and what it records.
#include <catch2/catch.hpp>

#include <chrono>
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
        for (const char* stem : {"leaky_attention", "wrong_grad_attention", "extra_param_attention",
                                 "tile_leak_attention", "eval_leak_attention", "batch_mixing_attention",
                                 "padded_keys_attention", "cache_offset_attention", "bad_dropout_attention"}) {
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

const std::map<std::string, Status> kAllPassed = {
    {"shapes", Status::passed},   {"gradients", Status::passed},          {"causality", Status::passed},
    {"padding", Status::passed},  {"batch_independence", Status::passed}, {"kv_cache", Status::passed},
    {"dropout", Status::passed},  {"exact", Status::passed},              {"determinism", Status::passed}};

// What a broken test plugin must get: every check passed except `failed`, and skipped where the
// plugin declares neither kv_cache nor equals_softmax_with (`skipped`).
std::map<std::string, Status> only_failing(const std::string& failed,
                                           const std::vector<std::string>& skipped = {"kv_cache", "exact"}) {
    std::map<std::string, Status> out = kAllPassed;
    for (const std::string& name : skipped) out[name] = Status::skipped;
    out[failed] = Status::failed;
    return out;
}

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
        // exact passes: it compares with from = 1000000 (equals_softmax_with).
        CHECK(statuses(report) == only_failing("causality", {"kv_cache"}));
        const std::string detail = find_check(report, "causality").detail;
        CHECK_THAT(detail, Contains("causal, train, T = S = 17: query 3 of sequence 0 sees the later key 4: "));
        CHECK_THAT(detail, Contains("when only the input at position 4 changes"));
        CHECK_THAT(detail, Contains("queries seen to leak: 3, 4, 5, 6, 7, 8, 9, 10, ... (13 in all)"));
        CHECK_THAT(report.format(), Contains("FAIL causality: causal, train, T = S = 17: query 3 "));
        CHECK_THAT(report.format(), Contains("FAILED: 7 passed, 1 failed, 1 skipped"));
    }
    SECTION("leaking everywhere: the first offending query is 0") {
        lab::AttentionCheckReport report = f.check("leaky");
        INFO(report.format());
        CHECK(find_check(report, "causality").status == Status::failed);
        CHECK_THAT(find_check(report, "causality").detail, Contains("query 0 of sequence 0 sees the later key 1:"));
    }
}

TEST_CASE("attention check: a plugin whose values get no gradient fails the gradient check",
          "[attention][check]") {
    CheckFixture f;
    lab::AttentionCheckReport report = f.check("wrong_grad");
    INFO(report.format());
    CHECK_FALSE(report.passed());
    CHECK(statuses(report) == only_failing("gradients"));  // it declares no equals_softmax_with
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
    CHECK(statuses(report) == only_failing("exact", {"kv_cache"}));
    CHECK_THAT(find_check(report, "exact").detail,
               Contains("with learn_temperature=false the parameters do not map onto attention/softmax's by name "
                        "(extra temperature)"));
}

TEST_CASE("attention check: a leak that starts past the first 64-key tile fails causality at T = 129",
          "[attention][check]") {
    CheckFixture f;
    lab::AttentionCheckReport report = f.check("tile_leak");
    INFO(report.format());
    CHECK(statuses(report) == only_failing("causality"));
    // Lengths 1 .. 65 keep query 64 alone in its tile; 129 is the first that shows the leak.
    CHECK_THAT(find_check(report, "causality").detail,
               Contains("causal, train, T = S = 129: query 64 of sequence 0 sees the later key 65: "));
}

TEST_CASE("attention check: a leak in eval mode only fails causality in eval mode", "[attention][check]") {
    CheckFixture f;
    lab::AttentionCheckReport report = f.check("eval_leak");
    INFO(report.format());
    CHECK(statuses(report) == only_failing("causality"));
    CHECK_THAT(find_check(report, "causality").detail,
               Contains("causal, eval, T = S = 17: query 0 of sequence 0 sees the later key 1: "));
}

TEST_CASE("attention check: mixing the sequences of a batch fails batch independence, not padding",
          "[attention][check]") {
    CheckFixture f;
    lab::AttentionCheckReport report = f.check("batch_mixing");
    INFO(report.format());
    CHECK(statuses(report) == only_failing("batch_independence"));
    // Sequence 0 takes half of sequence 1's values; sequence 2 takes sequence 0's, which did not change.
    CHECK_THAT(find_check(report, "batch_independence").detail,
               Contains("non-causal, train, T = S = 1: changing only sequence 1 of 3 moves the output of sequence 0 "
                        "at position 0 by "));
    CHECK_THAT(find_check(report, "batch_independence").detail,
               Contains("information crosses between the sequences of a batch"));
    CHECK_THAT(find_check(report, "padding").detail, Contains("one sequence alone: batch independence failed"));
}

TEST_CASE("attention check: ignoring the padding mask fails padding", "[attention][check]") {
    CheckFixture f;
    lab::AttentionCheckReport report = f.check("padded_keys");
    INFO(report.format());
    CHECK(statuses(report) == only_failing("padding"));
    CHECK_THAT(find_check(report, "padding").detail,
               Contains("non-causal, train, T = S = 17, 9 real positions: a batch of two: the output at "
                        "position 0 of sequence 0 (9 real positions) differs from the same sequence run alone "
                        "(T = S = 9, no padding) by "));
    CHECK_THAT(find_check(report, "padding").detail, Contains("padded keys are attended to"));
}

TEST_CASE("attention check: a KV cache whose offset is ignored fails kv_cache", "[attention][check]") {
    CheckFixture f;
    lab::AttentionCheckReport report = f.check("cache_offset");
    INFO(report.format());
    CHECK(statuses(report) == only_failing("kv_cache", {"exact"}));
    // The first decoding step (one position, nothing cached) is right; the second sees key 0 only.
    CHECK_THAT(find_check(report, "kv_cache").detail,
               Contains("causal, train, decoding token by token, T = 1 of S = 2: the output at position 1 of "
                        "sequence 0 differs from the full causal forward's (T = S = 67) by "));
}

TEST_CASE("attention check: wrong dropout fails dropout", "[attention][check]") {
    CheckFixture f;
    SECTION("dropping 2p: the share is measured against p") {
        lab::AttentionCheckReport report = f.check("bad_dropout", {{"defect", "rate"}});
        INFO(report.format());
        CHECK(statuses(report) == only_failing("dropout"));
        const std::string detail = find_check(report, "dropout").detail;
        CHECK_THAT(detail, Contains("non-causal, train, dropout 0.1, T = S = 32: "));
        CHECK_THAT(detail, Contains("observed attention weights are dropped, a share of 0.2, expected 0.1 +- 0.006"));
    }
    SECTION("no 1 / (1 - p) on the kept weights") {
        lab::AttentionCheckReport report = f.check("bad_dropout", {{"defect", "unscaled"}});
        INFO(report.format());
        CHECK(statuses(report) == only_failing("dropout"));
        const std::string detail = find_check(report, "dropout").detail;
        CHECK_THAT(detail, Contains("kept attention weights are not scaled by 1 / (1 - p) = 1.1; first: head 0, "
                                    "query 0, key "));
        CHECK_THAT(detail, Contains("(ratio 1)"));
    }
    SECTION("dropping in eval mode") {
        lab::AttentionCheckReport report = f.check("bad_dropout", {{"defect", "eval"}});
        INFO(report.format());
        CHECK(statuses(report) == only_failing("dropout"));
        const std::string detail = find_check(report, "dropout").detail;
        CHECK_THAT(detail, Contains("non-causal, eval, dropout 0.1, T = S = 32: head 0, query 0, key "));
        CHECK_THAT(detail, Contains("eval mode must drop nothing"));
    }
}

TEST_CASE("attention check: every shipped attention plugin passes every check it applies to",
          "[attention][check]") {
    CheckFixture f;
    const std::vector<std::pair<std::string, std::map<std::string, std::string>>> plugins = {
        {"softmax", {}},
        {"softmax", {{"fused", "true"}}},
        {"gqa", {}},
        {"gqa", {{"kv_heads", "1"}}},
        {"local", {}},
        {"alibi", {}},
        {"alibi", {{"fused", "true"}}},
        {"linear", {}},
        {"sigmoid", {}},
        {"sigmoid", {{"bias_n", "64"}}},
        {"differential", {}},
        {"differential", {{"fused", "true"}}}};
    for (const auto& [name, options] : plugins) {
        const auto start = std::chrono::steady_clock::now();
        lab::AttentionCheckReport report = f.check(name, options);
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::cout << report.plugin << " (" << report.options << "): checks took " << seconds << " s\n";
        INFO(report.format());
        CHECK(report.passed());
        std::map<std::string, Status> expected = kAllPassed;
        // A bias softmax lacks, a sigmoid, a difference of two maps: exact under no option.
        if (name == "alibi" || name == "sigmoid" || name == "differential") expected["exact"] = Status::skipped;
        if (name == "differential")  // its per-head RMSNorm hides the kept weights' scale, not which are dropped
            CHECK_THAT(find_check(report, "dropout").detail, Contains("not observable"));
        if (name == "linear") {
            // Neither a KV cache nor an exact form; no probabilities to drop.
            expected["kv_cache"] = expected["exact"] = expected["dropout"] = Status::skipped;
            CHECK_THAT(find_check(report, "dropout").detail, Contains("applies no dropout to attention weights"));
        }
        CHECK(statuses(report) == expected);
    }
}

TEST_CASE("attention check: with rotary positions (--rope) every softmax-family plugin passes, KV cache included",
          "[attention][check][rope]") {
    CheckFixture f;
    for (const auto& [name, options] : std::vector<std::pair<std::string, std::map<std::string, std::string>>>{
             {"softmax", {}},
             {"softmax", {{"fused", "true"}}},
             {"gqa", {{"kv_heads", "1"}}},
             {"local", {}},
             {"alibi", {}},
             {"sigmoid", {}},
             {"differential", {}}}) {
        lab::AttentionCheckSettings settings;
        settings.options = options;
        settings.profile_lengths.clear();
        settings.rope = true;
        lab::AttentionCheckReport report = lab::check_attention(f.registry, f.backend, name, settings);
        INFO(report.format());
        CHECK(report.passed());
        CHECK_THAT(report.options, Contains("rope"));
        // The KV cache is checked at T < S, where the new positions' rotation must start at S - T.
        CHECK(find_check(report, "kv_cache").status == Status::passed);
    }
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
              std::vector<std::string>{"check/batch_independence|0|1.0", "check/causality|0|1.0",
                                       "check/determinism|0|1.0", "check/dropout|0|1.0", "check/exact|0|1.0",
                                       "check/gradients|0|1.0", "check/kv_cache|0|1.0", "check/padding|0|1.0",
                                       "check/shapes|0|1.0"});
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
        CHECK_THAT(printed.str(), Contains("FAIL causality: causal, train, T = S = 17: query 2 of sequence 0"));
        lab_test::PlainSqlite sql(db, lab_test::PlainSqlite::Access::read_only);
        CHECK(sql.one("SELECT status FROM runs").text == "failed");
        CHECK_THAT(sql.one("SELECT error FROM runs").text,
                   Contains("conformance check failed: causality: causal, train, T = S = 17: query 2 "));
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
