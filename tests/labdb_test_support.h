// What the labdb tests share (test-only): the labdb binary of this build, its exit codes, and
// running it, as text or as the JSON of a --json command.
#pragma once
#include <catch2/catch.hpp>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "test_support.h"

namespace lab_test::labdb {

inline const std::filesystem::path kBinary = std::filesystem::path(LAB_BINARY_DIR) / "bin" / "labdb";

// labdb's exit codes (tools/labdb/database.h).
constexpr int kExitOk = 0, kExitFailure = 1, kExitUsage = 2, kExitNotFound = 3;

inline Outcome run(const std::vector<std::string>& args) { return run_program(kBinary, args); }

// Runs labdb and parses its stdout as JSON, requiring exit code 0.
inline nlohmann::json run_json(const std::vector<std::string>& args) {
    const Outcome outcome = run(args);
    INFO(outcome);
    REQUIRE(outcome.exit_code == kExitOk);
    return nlohmann::json::parse(outcome.out);
}

}  // namespace lab_test::labdb
