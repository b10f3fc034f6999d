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
// A [sweep] section (anywhere in the file or its includes) makes one file several runs:
//
//   [sweep]                        ; grid: the cross product of every key's list
//   attention.type = softmax, linear
//   experiment.seed = 1, 2, 3
//   [sweep.zip]                    ; zipped: equal-length lists that vary together, crossed with the grid
//   optimizer.lr = 1e-3, 3e-4
//   schedule.warmup = 100, 200     ; -> 2 x 3 x 2 = 12 runs
//
// A sweep may also list whole files: `include = tasks/recall.ini, tasks/shakespeare.ini` in [sweep]
// or [sweep.zip] gives each run the settings of one file (paths relative to the sweeping file), so
// one experiment can ablate across tasks whose options differ. A file's settings apply first; the
// other sweep keys and command-line overrides win over them. A swept file may not sweep itself.
//
// Each sweep value is applied like a command-line override of `section.key` (same validation and
// normalisation) with the origin "file:line [sweep]"; an actual override of the same key wins and
// takes the key out of the sweep.
//
// `labrun FILE.ini --sweep KEY=V1,V2 ...` (load_config's `sweeps`) adds lines to [sweep] from the
// command line: the same expansion, sweep id and records as the file with those lines (origin
// "--sweep 'KEY=V1,V2' [sweep]"). Values are split at every comma, as in the file (a value
// cannot contain one). A flag's key that the file's [sweep] also lists replaces the file's list
// in place; a key of [sweep.zip], a key given by two flags, or by a flag and an override is an error.
//
// Loading (load_config) knows nothing about plugins: it produces raw text with origins.
// Resolving (resolve_runs) checks every section against the framework schemas and the schema of
// the plugin each section selects from the Registry, and fills in defaults. Errors are
// ConfigError messages that start with the origin ("experiments/x.ini:12", "override
// 'train.steps=0'") and end with what was expected.
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "lab/options.h"

namespace lab {

class Registry;

// What the host knows that an experiment file may refer to.
struct ConfigEnv {
    std::filesystem::path data_dir;  // what ${data} expands to
};

// One file listed by a sweep's `include`: its settings (and its own includes), loaded with the
// experiment so that errors in it surface before any run.
struct SweepFragment {
    std::map<std::string, std::map<std::string, OptionValue>> sections;
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
    // section -> its keys in the order they were first set (files in read order, then overrides).
    // A sweep expands its keys in this order.
    std::map<std::string, std::vector<std::string>> key_order;
    // A sweep's `include` items (as written) -> the settings of each file.
    std::map<std::string, SweepFragment> sweep_includes;
};

// Reads `file` (and its includes), applies `overrides` ("section.key=value", in order) and expands
// ${data} / ${env:NAME}. Throws ConfigError for a missing or unreadable file, a malformed line,
// an include cycle, a malformed override or an unknown expansion, naming file:line.
// `sweeps` ("section.key=v1,v2,...", the --sweep flags) are read after the overrides into [sweep];
// errors name the flag.
RawConfig load_config(const std::filesystem::path& file, const std::vector<std::string>& overrides,
                      const ConfigEnv& env, const std::vector<std::string>& sweeps = {});

// Applies "section.key=value" overrides to an already loaded configuration (e.g. a recorded run's,
// for `labrun eval`), with load_config's validation, expansion and errors.
void apply_overrides(RawConfig& raw, const std::vector<std::string>& overrides, const ConfigEnv& env);

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
    // Keyed by section (plugin_kinds(): backend, tokenizer, model, attention, task, optimizer,
    // schedule), each chosen by its section's `type` ([experiment] backend is the old spelling of
    // [backend] type, [experiment] threads of [backend] threads).
    std::map<std::string, SectionChoice> plugins;

    // Sweeps. sweep_id is empty for a file without [sweep]; else 12 hex digits of the sha256 of
    // the experiment before expansion (its raw `section.key = value` lines outside the sweep
    // sections, overrides included, sorted) followed by the sweep definition as written: the same
    // file and overrides give the same id, every run of the sweep shares it.
    std::string sweep_id;
    // Position in the expansion order: grid keys in file order, the last one varying fastest, the
    // zip group as the innermost key.
    int64_t sweep_index = 0;
    int64_t sweep_size = 1;
    // "section.key" -> normalised value set by the sweep for this run, in expansion order (keys
    // fixed by a command-line override are not listed: they are no longer swept).
    std::vector<std::pair<std::string, std::string>> sweep_values;
    // "attention.type=local, experiment.seed=1": sweep_values as one line ("" outside a sweep).
    std::string sweep_values_text() const;

    // Sorted ("section.key", value) pairs, one per resolved value including defaults, plus
    // ("section.type", name) for each plugin section: the lines of canonical_text(), unjoined.
    std::vector<std::pair<std::string, std::string>> entries() const;
    // Sorted "section.key = value" lines, one per resolved value including defaults, plus
    // "section.type = name" for each plugin section, except that the backend keeps the keys runs
    // always recorded it under: experiment.backend = name, and experiment.threads = its [backend]
    // threads (0 when it has none), so identities did not change when [backend] type came in.
    // Equal text <=> the same run; it is what the results database stores as the run's config.
    // Sweep fields are not part of it: a sweep run equals the same run given as plain overrides.
    std::string canonical_text() const;
    // sha256 of canonical_text(), in hex: the run's identity.
    std::string hash() const;
};

// The inverse of RunSpec::canonical_text: a run's recorded configuration ("section.key = value"
// lines, runs.config) as a RawConfig whose every value has the origin `origin` ("run 3 of
// results/lab.db"), so that resolve_run rebuilds exactly the run that was recorded (--resume, eval,
// generate, rerun). The experiment.backend and experiment.threads lines become [backend] type
// and threads (for threads, a recorded 0 was "not set"), so an override of either replaces the
// recorded value. The one parser of canonical text. Throws DataError naming the origin and the
// line for a line that is not `section.key = value` (a damaged database).
RawConfig parse_canonical_text(const std::string& text, const std::string& origin);

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
// any option problem (unknown key, bad value, missing required key), and any rule between options
// that building the run would refuse (each plugin's PluginDecl::validate, lab/run_plan.h), so that
// --dry-run refuses what the run would. A file with a sweep is accepted only when the sweep
// expands to a single run.
RunSpec resolve_run(const RawConfig& raw, const Registry& registry);

// Expands the sweep and resolves every run (one run, with an empty sweep_id, when the file has no
// sweep), so that any error stops before the first run starts. Besides resolve_run's errors,
// throws ConfigError naming file:line for a sweep key that is not `section.key` of a known
// section, an empty list or list item, a key both in [sweep] and [sweep.zip], zipped lists of
// different lengths, two runs that resolve to the same configuration (a value listed twice), and
// a sweep of more than 10,000 runs.
std::vector<RunSpec> resolve_runs(const RawConfig& raw, const Registry& registry);

// Human-readable resolved run for `labrun --dry-run`: each section, each `key = value` with its
// origin as a comment ('# default', '# file:line', '# override ...'). A sweep run starts with
// `# sweep <id> run <i+1>/<n>: key=value, ...`.
std::string format_run(const RunSpec& run);

// A run's [backend] threads (0 when its backend has no such option, e.g. cuda): what the trainer
// and evaluation hand to set_threads (lab/threads.h).
int64_t run_threads(const RunSpec& spec);

}  // namespace lab
