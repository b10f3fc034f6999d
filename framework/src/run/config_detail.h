// Private to the experiment-file code (framework/src/run/config_*.cpp, and run_plan.cpp, which
// checks the resolved runs): the helpers that more than one of its parts uses. Reading files
// (config_read.cpp), resolving against the schemas (config_resolve.cpp), sweeps
// (config_sweep.cpp) and the --dry-run printout (config_print.cpp).
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "lab/config.h"

namespace lab {

class Registry;

namespace config_detail {

std::string trim(std::string_view text);

// [sweep] crosses its keys' lists; [sweep.zip] keys vary together, crossed with the grid.
extern const std::string grid_section;

extern const std::string zip_section;

inline constexpr int64_t max_sweep_runs = 10000;

bool is_sweep_section(const std::string& section);

bool is_override(const std::string& origin);

std::string prefix_of(const std::string& origin);

std::string position(const std::filesystem::path& file, int line);

// The file part of a "file:line" origin, or "" for overrides and defaults.
std::string file_of_origin(const std::string& origin);

std::vector<std::string> split_list(const std::string& text);

std::string top_file(const RawConfig& raw);

const std::map<std::string, OptionValue>& section_keys(const RawConfig& raw, const std::string& section);

void check_sections(const RawConfig& raw);

std::string default_run_name(const RawConfig& raw);

// Resolves a RawConfig whose sections are all known; sweep sections are ignored.
RunSpec resolve_one(const RawConfig& raw, const Registry& registry);

}  // namespace config_detail

}  // namespace lab
