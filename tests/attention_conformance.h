// The attention conformance check as one Catch2 assertion, for every attention plugin's tests:
//
//   TEST_CASE("gqa: conformance", "[gqa][attention]") {
//       lab_test::require_conformant("gqa", {{"kv_heads", "1"}});
//   }
//
// It loads the build's plugins (LAB_PLUGIN_DIR), makes the backend through the registry
// (`reference`, the HostBackend, unless named), runs lab::check_attention with a short cost
// profile (lengths 128 and 256) and REQUIREs that no check failed. The report (each check's
// measured worst errors, the profile) is printed whatever the outcome, so a failure explains
// itself and a pass shows its margins.
#pragma once
#include <catch2/catch.hpp>

#include <iostream>
#include <map>
#include <string>

#include "lab/attention_check.h"
#include "lab/registry.h"

namespace lab_test {

inline lab::AttentionCheckReport require_conformant(const std::string& name,
                                                    std::map<std::string, std::string> options = {},
                                                    const std::string& backend_name = "reference") {
    lab::Registry registry;
    registry.load_directory(LAB_PLUGIN_DIR);
    std::shared_ptr<lab::Backend> backend = registry.factory<lab::BackendFactory>("backend", backend_name)(
        lab::plugin_options(registry, "backend", backend_name, {}, "require_conformant"));
    lab::AttentionCheckSettings settings;
    settings.options = std::move(options);
    settings.profile_lengths = {128, 256};
    lab::AttentionCheckReport report = lab::check_attention(registry, *backend, name, settings);
    std::cout << report.format();
    INFO(report.format());
    REQUIRE(report.passed());
    return report;
}

}  // namespace lab_test
