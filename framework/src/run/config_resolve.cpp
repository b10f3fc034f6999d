// Resolving a RawConfig (lab/config.h): every section validated against the framework's or its
// plugin's schema, aliases, the attention's capabilities and the plugins' own rules -> one RunSpec
// with its canonical text and hash.
#include "lab/config.h"

#include <algorithm>
#include <boost/program_options/options_description.hpp>
#include <boost/program_options/parsers.hpp>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

#include "lab/error.h"
#include "lab/hash.h"
#include "lab/plugin_kinds.h"
#include "lab/registry.h"
#include "lab/run_plan.h"

#include "config_detail.h"

namespace lab {

namespace fs = std::filesystem;
using namespace config_detail;

namespace {

OptionSchema build_experiment_schema(const std::string& default_name) {
    OptionSchema schema;
    schema.string("name", default_name, "run name (default: the experiment file's name without extension)");
    schema.integer("seed", 1, "seed of every random stream (initialisation, dropout, data)").at_least(0);
    schema.choice("precision", "fp32", {"fp32", "bf16"},
                  "fp32, or bf16 mixed precision: matmul inputs rounded to bf16, f32 accumulation, f32 master "
                  "weights, gradients and other kernels");
    schema.path("db", std::string("results/lab.db"), "SQLite results database");
    schema.string("plugins", std::string(""), "extra plugin files or directories, comma separated, relative to this file");
    return schema;
}



// Options::validate places a missing-key error in the file the section's keys came from; for a
// section with no keys from any file (absent, or only overrides) the top file is the place to
// add it.
Options validate_section(const RawConfig& raw, const std::string& section, const std::string& owner,
                         const OptionSchema& schema, const std::map<std::string, OptionValue>& keys) {
    bool from_file = std::any_of(keys.begin(), keys.end(),
                                 [](const auto& entry) { return !file_of_origin(entry.second.origin).empty(); });
    // An unknown key is reported first (by validate): it is often the misspelt required one.
    bool only_known_keys =
        std::all_of(keys.begin(), keys.end(), [&](const auto& entry) { return schema.find(entry.first) != nullptr; });
    if (!from_file && only_known_keys) {
        for (const OptionSpec& spec : schema.specs()) {
            if (spec.default_value || keys.count(spec.name)) continue;
            throw ConfigError(prefix_of(top_file(raw)) + "[" + section + "] missing required key '" + spec.name +
                              "' (" + spec.expectation() + ": " + spec.help + ")");
        }
    }
    return Options::validate(section, owner, schema, keys);
}

std::string known_names(const Registry& registry, const std::string& kind) {
    std::vector<std::string> names = registry.names(kind);
    if (names.empty()) return "no " + kind + " plugins are loaded; check the plugin directories";
    return "known " + kind + "s: " + join(names, ", ");
}

// Options scoped to one plugin of the section's kind, `local.window = 16` in [attention], apply
// only when that plugin is chosen (and then win over an unscoped `window`), so one file can set
// the options of every variant a sweep over `type` visits. The scope must name a plugin of the kind.
void apply_scoped_options(const Registry& registry, const std::string& section, const std::string& chosen,
                          std::map<std::string, OptionValue>& keys) {
    std::map<std::string, OptionValue> scoped;
    for (auto it = keys.begin(); it != keys.end();) {
        size_t dot = it->first.find('.');
        if (dot == std::string::npos) {
            ++it;
            continue;
        }
        const std::string scope = it->first.substr(0, dot), key = it->first.substr(dot + 1);
        if (!registry.has(section, scope)) {
            std::vector<std::string> names = registry.names(section);
            std::string suggestion = closest_match(scope, names);
            throw ConfigError(prefix_of(it->second.origin) + "[" + section + "] " + it->first + ": '" + scope +
                              "' is not a known " + section + " plugin" +
                              (suggestion.empty() ? "" : "; did you mean '" + suggestion + "." + key + "'?") +
                              " (a dotted key 'NAME.option' sets an option of " + section + "/NAME only; " +
                              known_names(registry, section) + ")");
        }
        if (scope == chosen) scoped[key] = it->second;
        it = keys.erase(it);
    }
    for (auto& [key, value] : scoped) keys[key] = value;
}

// Old spellings, still read as aliases of a key of a plugin section so that files and recorded
// runs written before the plugin kinds were made alike keep working. A file that gives both keys
// with different values is refused, naming both; recorded runs list every key with its default,
// so an old key at `old_default` (threads = 0) yields to the new one.
struct KeyAlias {
    const char* old_section;
    const char* old_key;
    const char* section;
    const char* key;
    const char* old_default;  // nullptr: none (the alias names a plugin)
};
constexpr KeyAlias key_aliases[] = {
    {"experiment", "backend", "backend", "type", nullptr},
    {"experiment", "threads", "backend", "threads", "0"},
};

struct GivenAlias {
    const KeyAlias* alias;
    OptionValue value;
};

std::string alias_name(const KeyAlias& alias) {
    return std::string("[") + alias.old_section + "] " + alias.old_key;
}

ConfigError alias_conflict(const GivenAlias& given, const OptionValue& current) {
    const KeyAlias& a = *given.alias;
    return ConfigError(prefix_of(current.origin) + "[" + a.section + "] " + a.key + " = '" + current.text + "' and " +
                       prefix_of(given.value.origin) + alias_name(a) + " = '" + given.value.text +
                       "' disagree; keep only [" + a.section + "] " + a.key + " (" + alias_name(a) +
                       " is its old spelling)");
}

// `aliases`: the old keys given for this section (key_aliases), their values moved here.
SectionChoice choose_plugin(const RawConfig& raw, const Registry& registry, const PluginKind& kind_row,
                            const std::vector<GivenAlias>& aliases = {}) {
    const std::string& section = kind_row.section;
    const std::string& kind = kind_row.name;
    std::map<std::string, OptionValue> keys = section_keys(raw, section);
    SectionChoice choice;
    choice.section = section;
    choice.kind = kind;
    std::string chosen_by = "[" + section + "] type";  // the key named in errors about the choice
    const GivenAlias* type_alias = nullptr;
    for (const GivenAlias& given : aliases)
        if (std::string(given.alias->key) == "type") type_alias = &given;
    auto type = keys.find("type");
    if (type_alias && type != keys.end() && type_alias->value.text != type->second.text)
        throw alias_conflict(*type_alias, type->second);
    if (type != keys.end()) {
        choice.plugin = type->second.text;
        choice.plugin_origin = type->second.origin;
        keys.erase(type);
    } else if (type_alias) {
        choice.plugin = type_alias->value.text;
        choice.plugin_origin = type_alias->value.origin;
        chosen_by = alias_name(*type_alias->alias);
    } else if (!kind_row.default_type.empty()) {
        choice.plugin = kind_row.default_type;
        choice.plugin_origin = "default";
    } else if (!raw.sections.count(section)) {
        throw ConfigError(prefix_of(top_file(raw)) + "missing section [" + section + "]; add it with 'type = <name>' (" +
                          known_names(registry, kind) + ")");
    } else {
        auto where = raw.section_origins.find(section);
        throw ConfigError(prefix_of(where == raw.section_origins.end() ? top_file(raw) : where->second) + "[" +
                          section + "] has no 'type'; add 'type = <name>' (" + known_names(registry, kind) + ")");
    }
    const PluginInfo* info = nullptr;
    try {
        info = &registry.find(kind, choice.plugin);
    } catch (const PluginError& e) {
        std::string where = choice.plugin_origin == "default" ? "" : prefix_of(choice.plugin_origin);
        std::string note = choice.plugin_origin == "default" ? " (the default)" : "";
        throw ConfigError(where + chosen_by + " = '" + choice.plugin + "'" + note + ": " + e.what());
    }
    apply_scoped_options(registry, section, choice.plugin, keys);
    for (const GivenAlias& given : aliases) {
        const std::string key = given.alias->key;
        if (key == "type") continue;
        const bool at_old_default = given.alias->old_default && given.value.text == given.alias->old_default;
        const OptionSpec* spec = info->schema.find(key);
        if (!spec) {
            if (at_old_default) continue;  // a recorded run's default, e.g. threads = 0 of a cuda run
            throw ConfigError(prefix_of(given.value.origin) + alias_name(*given.alias) + " = '" + given.value.text +
                              "' is the old spelling of [" + section + "] " + key + ", which " + kind + "/" +
                              choice.plugin + " does not have; remove it (see labrun --describe " + kind + "/" +
                              choice.plugin + ")");
        }
        auto current = keys.find(key);
        if (current == keys.end()) {
            keys[key] = given.value;
        } else if (current->second.text != given.value.text && !at_old_default) {
            if (spec->default_value && current->second.text == *spec->default_value)
                current->second = given.value;  // a recorded run lists the new key at its default
            else
                throw alias_conflict(given, current->second);
        }
    }
    choice.options = validate_section(raw, section, kind + "/" + choice.plugin, info->schema, keys);
    return choice;
}


// The sections an experiment file may have: the run's sections and the sweep sections, sorted.
std::vector<std::string> file_sections() {
    std::vector<std::string> sections = known_sections();
    sections.push_back(grid_section);
    sections.push_back(zip_section);
    std::sort(sections.begin(), sections.end());
    return sections;
}



// The model and the task say what they need of the attention (PluginDecl::needs_attention); the
// attention says what it supports. A mismatch is an error now, before any data is read.
void check_attention_capabilities(const RunSpec& run, const Registry& registry) {
    auto found = run.plugins.find("attention");
    if (found == run.plugins.end()) return;
    const SectionChoice& attention = found->second;
    const PluginInfo& info = registry.find("attention", attention.plugin);
    for (const char* section : {"model", "task"}) {
        auto user = run.plugins.find(section);
        if (user == run.plugins.end()) continue;
        const PluginInfo& needer = registry.find(user->second.kind, user->second.plugin);
        std::vector<std::string> missing = info.attention.supports.missing(needer.needs_attention);
        if (missing.empty()) continue;
        throw ConfigError(prefix_of(attention.plugin_origin) + needer.kind + "/" + needer.name + " needs attention with " +
                          join(missing, " and ") + ", which attention/" + info.name + " does not support (it supports: " +
                          info.attention.supports.str() + "); choose another [attention] type");
    }
}

}  // namespace

namespace config_detail {

std::string top_file(const RawConfig& raw) { return raw.files.empty() ? "" : raw.files.front().string(); }

const std::map<std::string, OptionValue>& section_keys(const RawConfig& raw, const std::string& section) {
    static const std::map<std::string, OptionValue> none;
    auto it = raw.sections.find(section);
    return it == raw.sections.end() ? none : it->second;
}

void check_sections(const RawConfig& raw) {
    const std::vector<std::string> known = file_sections();
    for (const auto& [section, keys] : raw.sections) {
        if (std::find(known.begin(), known.end(), section) != known.end()) continue;
        auto where = raw.section_origins.find(section);
        std::string origin = where != raw.section_origins.end() ? where->second
                             : keys.empty()                      ? top_file(raw)
                                                                 : keys.begin()->second.origin;
        std::string message = prefix_of(origin) + "unknown section [" + section + "]";
        std::string suggestion = closest_match(section, known);
        if (!suggestion.empty()) message += "; did you mean [" + suggestion + "]?";
        throw ConfigError(message + " (known sections: " + join(known, ", ") + ")");
    }
}

std::string default_run_name(const RawConfig& raw) {
    return raw.files.empty() ? "run" : raw.files.front().stem().string();
}

// Resolves a RawConfig whose sections are all known; sweep sections are ignored.
RunSpec resolve_one(const RawConfig& raw, const Registry& registry) {
    RunSpec run;
    std::map<std::string, OptionValue> experiment_keys = section_keys(raw, "experiment");
    std::map<std::string, std::vector<GivenAlias>> aliases;  // section -> old keys given for it
    for (const KeyAlias& alias : key_aliases) {
        auto given = experiment_keys.find(alias.old_key);
        if (std::string(alias.old_section) != "experiment" || given == experiment_keys.end()) continue;
        aliases[alias.section].push_back({&alias, given->second});
        experiment_keys.erase(given);
    }
    run.experiment = validate_section(raw, "experiment", "experiment", build_experiment_schema(default_run_name(raw)),
                                      experiment_keys);
    run.name = run.experiment.get_string("name");
    if (run.name.empty())
        throw ConfigError(prefix_of(run.experiment.origin("name")) + "[experiment] name is empty; give the run a name");
    run.train = validate_section(raw, "train", "train", train_schema(), section_keys(raw, "train"));
    for (const PluginKind& kind : plugin_kinds())
        run.plugins[kind.section] = choose_plugin(raw, registry, kind, aliases[kind.section]);
    check_attention_capabilities(run, registry);
    validate_run(run, registry);  // the plugins' cross-option rules, before any data is read
    return run;
}

}  // namespace config_detail

const OptionSchema& experiment_schema() {
    static const OptionSchema schema = build_experiment_schema("");
    return schema;
}

const OptionSchema& train_schema() {
    static const OptionSchema schema = [] {
        OptionSchema s;
        s.integer("steps", std::nullopt, "optimizer steps to train").at_least(1);
        s.integer("batch", 12,
                  "sequences per optimizer step: the global batch, which data-parallel ranks split (each takes its "
                  "slice of every batch, so results do not depend on the number of ranks)")
            .at_least(1);
        s.integer("micro_batch", 0,
                  "gradient accumulation: sequences per forward/backward pass; each rank's slice of the batch is "
                  "split into parts of this size whose gradients add up before the step (0 = the whole slice)")
            .at_least(0);
        s.integer("seq_len", 64, "tokens per sequence").at_least(1);
        s.integer("eval_every", 0, "evaluate every N steps (0 = only at the end)").at_least(0);
        s.integer("log_every", 10, "log the training loss every N steps").at_least(1);
        s.real("grad_clip", 1.0, "clip the global gradient norm to this (0 = off)").at_least(0);
        s.boolean("eval_at_end", true, "evaluate after the last step");
        s.integer("ckpt_every", 0,
                  "checkpoint every N steps, a multiple of log_every (0 = at each evaluation and at the end)")
            .at_least(0);
        s.path("init_from", std::string(),
               "start from these model weights: a model.safetensors file, a checkpoint or run folder, a results "
               "database (its latest finished run; `file.db:NAME` for the latest run named NAME), or a Hugging "
               "Face model folder");
        return s;
    }();
    return schema;
}

const std::vector<std::string>& known_sections() {
    static const std::vector<std::string> sections = [] {
        std::vector<std::string> out = {"experiment", "train"};
        for (const PluginKind& kind : plugin_kinds()) out.push_back(kind.section);
        return out;
    }();
    return sections;
}

std::vector<std::string> experiment_plugin_paths(const RawConfig& raw) {
    std::vector<std::string> paths;
    auto plugins = section_keys(raw, "experiment").find("plugins");
    if (plugins == section_keys(raw, "experiment").end()) return paths;
    const fs::path base = fs::path(file_of_origin(plugins->second.origin)).parent_path();
    for (const std::string& entry : split_list(plugins->second.text)) {
        if (entry.empty()) continue;
        fs::path path(entry);
        paths.push_back(path.is_absolute() ? path.string() : (base / path).lexically_normal().string());
    }
    return paths;
}


std::string RunSpec::sweep_values_text() const {
    std::vector<std::string> parts;
    for (const auto& [key, value] : sweep_values) parts.push_back(key + "=" + value);
    return join(parts, ", ");
}

std::vector<std::pair<std::string, std::string>> RunSpec::entries() const {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& [key, value] : experiment.values()) out.emplace_back("experiment." + key, value.text);
    for (const auto& [key, value] : train.values()) out.emplace_back("train." + key, value.text);
    for (const auto& [section, choice] : plugins) {
        // Two lines keep the keys they were recorded under before [backend] type and [backend]
        // threads were the one way: experiment.backend (the backend's name) and experiment.threads
        // (a copy of [backend] threads, 0 for a backend without it). This text's sha256 is a run's
        // identity (a sweep skips finished runs by it) and params rows are compared across runs, so
        // a run written either way keeps the identity and params it always had. Both are read back
        // as aliases (key_aliases).
        if (section == "backend") {
            auto threads = choice.options.values().find("threads");
            out.emplace_back("experiment.threads", threads == choice.options.values().end() ? "0" : threads->second.text);
        }
        out.emplace_back(section == "backend" ? "experiment.backend" : section + ".type", choice.plugin);
        for (const auto& [key, value] : choice.options.values()) out.emplace_back(section + "." + key, value.text);
    }
    std::sort(out.begin(), out.end());
    return out;
}

std::string RunSpec::canonical_text() const {
    std::string text;
    for (const auto& [key, value] : entries()) text += key + " = " + value + "\n";
    return text;
}

std::string RunSpec::hash() const { return sha256_hex(canonical_text()); }


int64_t run_threads(const RunSpec& spec) {
    auto backend = spec.plugins.find("backend");
    if (backend == spec.plugins.end()) return 0;
    const Options& options = backend->second.options;
    return options.values().count("threads") ? options.get_int("threads") : 0;
}

}  // namespace lab
