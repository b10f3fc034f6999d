// Experiment files: loading INI files into raw sections, and resolving them into one validated run.
//
// An experiment file is INI (parsed with Boost.Program_options, one line at a time so that every
// value keeps its `file:line`):
//
//   include = base/model.ini, base/data.ini   ; top level, before any [section]
//   [experiment]
//   name = ablation                           # whole-line and inline comments: ';' or '#'
//   [model]
//   type = gpt                                ; `type` picks the plugin of the section's kind
//   layers = 4
//   [task]
//   train = ${data}/tinyshakespeare/input.txt ; ${data} and ${env:NAME} expand
//
// Inline comments start at whitespace followed by ';' or '#', so `name = run#2` keeps its '#'.
// Included paths are relative to the including file; later includes override earlier ones and
// the including file overrides what it includes. Command-line overrides (`section.key=value`)
// come last and override everything.
//
// Loading (load_config) knows nothing about plugins: it produces raw text with origins.
// Resolving (resolve_run) checks every section against the framework schemas and the schema of
// the plugin each section selects from the Registry, and fills in defaults. Errors are
// ConfigError messages that start with the origin ("experiments/x.ini:12", "override
// 'train.steps=0'") and end with what was expected.
#pragma once
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "lab/options.h"

namespace lab {

class Registry;

// What the host knows that an experiment file may refer to.
struct ConfigEnv {
    std::filesystem::path data_dir;  // what ${data} expands to
};

// An experiment file as written: text values with their origins, after includes, overrides and
// ${...} expansion, before any validation.
struct RawConfig {
    // Every file read, in read order: the top file first, then each include as the parser meets
    // it (depth first). A file included twice (not in a cycle) is listed once.
    std::vector<std::filesystem::path> files;
    // section -> key -> value. A section that appears only as a `[section]` header is present
    // with no keys. Top-level `include` is consumed by the loader and not stored.
    std::map<std::string, std::map<std::string, OptionValue>> sections;
    // section -> where it first appeared: "file:line" of its header, or the override that
    // created it. Used by errors about a whole section (unknown section, missing `type`).
    std::map<std::string, std::string> section_origins;
};

// Reads `file` (and its includes), applies `overrides` ("section.key=value", in order) and expands
// ${data} / ${env:NAME}. Throws ConfigError for a missing or unreadable file, a malformed line,
// an include cycle, a malformed override or an unknown expansion, naming file:line.
RawConfig load_config(const std::filesystem::path& file, const std::vector<std::string>& overrides,
                      const ConfigEnv& env);

// One plugin section after validation: [model] type = gpt -> {"model", "model", "gpt", options}.
struct SectionChoice {
    std::string section, kind, plugin;
    Options options;            // the plugin's options, validated against its schema
    std::string plugin_origin;  // where the plugin was chosen ("file:line", an override, "default")
};

// Everything one run needs, validated, with defaults filled in.
struct RunSpec {
    std::string name;
    Options experiment, train;
    // Keyed by section: tokenizer, model, attention, task, optimizer, schedule, backend. The
    // backend entry holds the options of the plugin named by [experiment] backend.
    std::map<std::string, SectionChoice> plugins;

    // Sorted "section.key = value" lines, one per resolved value including defaults, plus
    // "section.type = name" for each plugin section (the backend's name is experiment.backend).
    // Equal text <=> the same run; it is what the results database stores as the run's config.
    std::string canonical_text() const;
    // sha256 of canonical_text(), in hex: the run's identity.
    std::string hash() const;
};

// Framework sections. [experiment]'s `name` defaults to the top file's stem when resolved; the
// schema here shows an empty default for --describe.
const OptionSchema& experiment_schema();
const OptionSchema& train_schema();

// The sections resolve_run understands, in the order runs are printed.
const std::vector<std::string>& known_sections();

// `[experiment] plugins = a.so, dir/`: each entry resolved relative to the file that set it (an
// override's entries stay as written, relative to the working directory). Empty entries are
// dropped. Call before resolve_run so that those plugins are in the Registry.
std::vector<std::string> experiment_plugin_paths(const RawConfig& raw);

// Validates every section and chooses the plugins. Throws ConfigError for an unknown section,
// a missing required section or `type`, an unknown plugin name (with the closest known one), and
// any option problem (unknown key, bad value, missing required key).
RunSpec resolve_run(const RawConfig& raw, const Registry& registry);

// Human-readable resolved run for `labrun --dry-run`: each section, each `key = value` with its
// origin as a comment ('# default', '# file:line', '# override ...').
std::string format_run(const RunSpec& run);

}  // namespace lab
