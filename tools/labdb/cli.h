// The labdb commands and what they share: option parsing (Boost.Program_options) with the common
// options --db and --help, and the JSON/table output switch.
#pragma once
#include <boost/program_options.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "database.h"

namespace labdb {

namespace po = boost::program_options;

inline constexpr const char* kDefaultDatabase = "results/lab.db";

struct GlobalOptions {
    std::filesystem::path db = kDefaultDatabase;
};

struct CommandLine {
    po::variables_map values;
    bool help = false;  // --help was given and the help text is printed: the command does nothing
    std::filesystem::path db;
};

// Parses a command's arguments against `options` (plus --help, and --db defaulting to the global
// --db unless `reads_db` is false) and `hidden` (the targets of the positional arguments, left out
// of the help text). `usage` is the first lines of the help text. Option errors become UsageError.
CommandLine parse_command_line(const std::string& usage, const po::options_description& options,
                               const po::options_description& hidden,
                               const po::positional_options_description& positional,
                               const std::vector<std::string>& args, const GlobalOptions& global,
                               bool reads_db = true);

// The same for a command whose positional arguments are runs (compare, curves, export): every one
// lands in values["run"], a std::vector<std::string>.
CommandLine parse_runs_command_line(const std::string& usage, const po::options_description& options,
                                    const std::vector<std::string>& args, const GlobalOptions& global);

// JSON text of `value` (indented by `indent` spaces; one line when negative). Bytes that are not
// UTF-8 (a text sample cut inside a multi-byte character) become U+FFFD instead of an exception.
std::string json_text(const nlohmann::json& value, int indent = 2);

// Each command returns its exit code; errors are thrown (UsageError, NotFoundError, lab::Error).
int command_runs(const std::vector<std::string>& args, const GlobalOptions& global);
int command_show(const std::vector<std::string>& args, const GlobalOptions& global);
int command_compare(const std::vector<std::string>& args, const GlobalOptions& global);
int command_curves(const std::vector<std::string>& args, const GlobalOptions& global);
int command_export(const std::vector<std::string>& args, const GlobalOptions& global);
int command_report(const std::vector<std::string>& args, const GlobalOptions& global);
int command_merge(const std::vector<std::string>& args, const GlobalOptions& global);
int command_ablate(const std::vector<std::string>& args, const GlobalOptions& global);
int command_serve(const std::vector<std::string>& args, const GlobalOptions& global);

}  // namespace labdb
