// Experiment files (see lab/config.h): INI loading with includes, overrides and expansion, then
// resolution against the framework schemas and the plugins' schemas.
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

namespace lab {

namespace fs = std::filesystem;
namespace po = boost::program_options;

namespace {

std::string trim(std::string_view text) {
    const char* space = " \t\r\n";
    size_t first = text.find_first_not_of(space);
    if (first == std::string_view::npos) return "";
    size_t last = text.find_last_not_of(space);
    return std::string(text.substr(first, last - first + 1));
}

// [sweep] crosses its keys' lists; [sweep.zip] keys vary together, crossed with the grid.
const std::string grid_section = "sweep";
const std::string zip_section = "sweep.zip";
constexpr int64_t max_sweep_runs = 10000;

bool is_sweep_section(const std::string& section) { return section == grid_section || section == zip_section; }

bool is_override(const std::string& origin) { return origin.rfind("override '", 0) == 0; }

std::string prefix_of(const std::string& origin) { return origin.empty() ? "" : origin + ": "; }

std::string position(const fs::path& file, int line) { return file.string() + ":" + std::to_string(line); }

// The file part of a "file:line" origin, or "" for overrides and defaults.
std::string file_of_origin(const std::string& origin) {
    if (origin.rfind("override '", 0) == 0) return "";
    auto colon = origin.rfind(':');
    if (colon == std::string::npos || colon + 1 == origin.size()) return "";
    for (size_t i = colon + 1; i < origin.size(); ++i)
        if (origin[i] < '0' || origin[i] > '9') return "";
    return origin.substr(0, colon);
}

std::vector<std::string> split_list(const std::string& text) {
    std::vector<std::string> parts;
    std::string part;
    std::istringstream in(text);
    while (std::getline(in, part, ',')) parts.push_back(trim(part));
    if (!text.empty() && text.back() == ',') parts.push_back("");
    return parts;
}

bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

bool is_valid_name(const std::string& name) {
    return !name.empty() && std::all_of(name.begin(), name.end(), is_name_char);
}

// Keys may contain dots so that a section such as [sweep] can name other sections' keys
// (`attention.type = softmax, linear`); no schema declares a dotted option.
bool is_valid_key(const std::string& key) {
    return !key.empty() && key.front() != '.' && key.back() != '.' &&
           std::all_of(key.begin(), key.end(), [](char c) { return is_name_char(c) || c == '.'; });
}

// Drops a whole-line comment, or an inline one: ';' or '#' preceded by whitespace.
std::string strip_comment(const std::string& line) {
    size_t first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == ';' || line[first] == '#') return "";
    for (size_t i = first + 1; i < line.size(); ++i) {
        bool marker = line[i] == ';' || line[i] == '#';
        if (marker && (line[i - 1] == ' ' || line[i - 1] == '\t')) return trim(line.substr(0, i));
    }
    return trim(line);
}

// Program_options' config parser cuts every line at the first '#', even inside a value, while
// our files only treat '#' after whitespace as a comment (already removed). So a '#' that
// survives comment stripping travels through the parser as this control character.
constexpr char hash_stand_in = '\x1f';

struct Assignment {
    std::string key, value;
};

// Parses one `key = value` line of `section` with Program_options (one chunk per line keeps the
// line number exact). `where` prefixes errors.
Assignment parse_assignment(const std::string& content, const std::string& section, const std::string& where) {
    const std::string expected = "expected 'key = value' or '[section]', got '" + content + "'";
    size_t equals = content.find('=');
    if (equals == std::string::npos || trim(content.substr(0, equals)).empty())
        throw ConfigError(where + ": " + expected);
    std::string key = trim(content.substr(0, equals));
    if (!is_valid_key(key))
        throw ConfigError(where + ": '" + key + "' is not a valid key; keys use letters, digits, '_', '-' and '.'");
    for (char c : content)
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t')
            throw ConfigError(where + ": the line contains a control character (code " +
                              std::to_string(static_cast<int>(c)) + "); remove it");

    std::string chunk = section.empty() ? "" : "[" + section + "]\n";
    for (char c : content) chunk += c == '#' ? hash_stand_in : c;
    std::istringstream stream(chunk);
    po::options_description no_registered_options;
    std::vector<po::option> parsed;
    try {
        parsed = po::parse_config_file(stream, no_registered_options, /*allow_unregistered=*/true).options;
    } catch (const po::error& e) {
        throw ConfigError(where + ": " + e.what() + "; " + expected);
    }
    const std::string section_prefix = section.empty() ? "" : section + ".";
    if (parsed.size() != 1 || parsed[0].value.size() != 1 || parsed[0].string_key != section_prefix + key)
        throw ConfigError(where + ": " + expected);
    Assignment assignment{key, parsed[0].value[0]};
    std::replace(assignment.value.begin(), assignment.value.end(), hash_stand_in, '#');
    return assignment;
}

// Reads files and overrides into a RawConfig.
class Loader {
public:
    Loader(const ConfigEnv& env, RawConfig& raw) : env_(env), raw_(raw) {}

    void read_file(const fs::path& file, const std::string& included_from);
    void apply_override(const std::string& text);
    // `--sweep KEY=V1,V2,...`: a line of [sweep] given on the command line (see load_config).
    void apply_sweep_flag(const std::string& text, std::set<std::string>& given);

private:
    // Loads every file of a sweep's `include = a.ini, b.ini` (relative to `file`) into
    // raw_.sweep_includes.
    void read_sweep_includes(const fs::path& file, const std::string& list, const std::string& here);
    std::string expand(const std::string& text, const std::string& origin, const std::string& what) const;
    void set(const std::string& section, const std::string& key, const std::string& text, const std::string& origin);

    const ConfigEnv& env_;
    RawConfig& raw_;
    std::vector<fs::path> reading_;       // canonical paths of the files being read (include chain)
    std::vector<std::string> chain_;      // the same files as written, for cycle messages
    std::set<fs::path> listed_;           // canonical paths already in raw_.files
};

void Loader::read_file(const fs::path& file, const std::string& included_from) {
    std::error_code error;
    if (!fs::exists(file, error) || fs::is_directory(file, error)) {
        const char* problem = fs::is_directory(file, error) ? "is a directory" : "does not exist";
        if (included_from.empty())
            throw ConfigError("experiment file '" + file.string() + "' " + problem + "; check the path");
        throw ConfigError(included_from + ": included file '" + file.string() + "' " + problem +
                          "; include paths are relative to the including file");
    }
    fs::path canonical = fs::weakly_canonical(file, error);
    if (error) canonical = fs::absolute(file).lexically_normal();
    auto seen = std::find(reading_.begin(), reading_.end(), canonical);
    if (seen != reading_.end()) {
        std::vector<std::string> cycle(chain_.begin() + (seen - reading_.begin()), chain_.end());
        cycle.push_back(file.string());
        throw ConfigError(included_from + ": include cycle: " + join(cycle, " -> ") + "; remove one of these includes");
    }
    std::ifstream in(file, std::ios::binary);
    if (!in) {
        throw ConfigError(prefix_of(included_from) + "cannot read '" + file.string() +
                          "'; check its permissions");
    }
    if (listed_.insert(canonical).second) raw_.files.push_back(file);
    reading_.push_back(canonical);
    chain_.push_back(file.string());

    std::string section;
    std::map<std::pair<std::string, std::string>, std::string> set_here;  // (section, key) -> origin
    std::string line;
    int number = 0;
    while (std::getline(in, line)) {
        ++number;
        if (number == 1 && line.rfind("\xEF\xBB\xBF", 0) == 0) line.erase(0, 3);  // UTF-8 byte order mark
        if (!line.empty() && line.back() == '\r') line.pop_back();
        const std::string content = strip_comment(line);
        if (content.empty()) continue;
        const std::string here = position(file, number);

        if (content.front() == '[') {
            if (content.back() != ']')
                throw ConfigError(here + ": expected 'key = value' or '[section]', got '" + content + "'");
            std::string name = trim(content.substr(1, content.size() - 2));
            if (!is_valid_name(name) && name != zip_section)
                throw ConfigError(here + ": '[" + name + "]' is not a valid section name; use letters, digits, '_' " +
                                  "and '-' (the one dotted section is [" + zip_section + "])");
            section = name;
            raw_.sections[section];
            raw_.section_origins.emplace(section, here);
            continue;
        }

        Assignment assignment = parse_assignment(content, section, here);
        if (section.empty()) {
            if (assignment.key != "include")
                throw ConfigError(here + ": key '" + assignment.key +
                                  "' is outside any section; only 'include' may come before the first [section]");
            for (const std::string& entry : split_list(expand(assignment.value, here, "include"))) {
                if (entry.empty())
                    throw ConfigError(here + ": include has an empty entry; write 'include = a.ini, b.ini'");
                read_file((file.parent_path() / entry).lexically_normal(), here);
            }
            continue;
        }
        if (assignment.key == "include" && is_sweep_section(section)) {
            read_sweep_includes(file, expand(assignment.value, here, "[" + section + "] include"), here);
        } else if (assignment.key == "include") {
            throw ConfigError(here + ": include inside [" + section +
                              "]; includes must come before the first [section] of the file (or go in [" +
                              grid_section + "] to sweep over files)");
        }
        auto [previous, inserted] = set_here.emplace(std::make_pair(section, assignment.key), here);
        if (!inserted)
            throw ConfigError(here + ": [" + section + "] " + assignment.key + " is already set at " +
                              previous->second + "; remove one of the two");
        set(section, assignment.key, expand(assignment.value, here, "[" + section + "] " + assignment.key), here);
    }
    if (in.bad()) throw ConfigError(prefix_of(included_from) + "error while reading '" + file.string() + "'");
    reading_.pop_back();
    chain_.pop_back();
}

void Loader::read_sweep_includes(const fs::path& file, const std::string& list, const std::string& here) {
    for (const std::string& entry : split_list(list)) {
        if (entry.empty())
            throw ConfigError(here + ": include has an empty entry; write 'include = a.ini, b.ini'");
        RawConfig fragment_raw;
        Loader fragment_loader(env_, fragment_raw);
        fragment_loader.read_file((file.parent_path() / entry).lexically_normal(), here);
        SweepFragment fragment;
        for (const auto& [section, keys] : fragment_raw.sections) {
            if (is_sweep_section(section))
                throw ConfigError(fragment_raw.section_origins[section] + ": a file included by a sweep (" + here +
                                  ") may not have a [" + section + "] of its own; move that sweep into the experiment");
            fragment.sections[section] = keys;
        }
        for (const fs::path& read : fragment_raw.files)
            if (listed_.insert(fs::weakly_canonical(read)).second) raw_.files.push_back(read);
        raw_.sweep_includes[entry] = std::move(fragment);
    }
}

void Loader::apply_override(const std::string& text) {
    const std::string origin = "override '" + text + "'";
    const std::string malformed = origin + " is malformed: expected 'section.key=value', e.g. train.steps=100";
    size_t equals = text.find('=');
    if (equals == std::string::npos) throw ConfigError(malformed);
    std::string target = trim(text.substr(0, equals));
    size_t dot = target.find('.');
    if (dot == std::string::npos) throw ConfigError(malformed);
    std::string section = trim(target.substr(0, dot)), key = trim(target.substr(dot + 1));
    if (!is_valid_name(section) || !is_valid_key(key)) throw ConfigError(malformed);
    if (section == grid_section)
        throw ConfigError(origin + ": sweeps are not overrides; sweep from the command line with --sweep " +
                          key + (equals + 1 < text.size() ? "=" + text.substr(equals + 1) : "=a,b") +
                          ", or override the swept key with one value (e.g. experiment.seed=2)");
    Assignment assignment = parse_assignment(key + " = " + text.substr(equals + 1), section, origin);
    raw_.section_origins.emplace(section, origin);
    set(section, key, expand(assignment.value, origin, "[" + section + "] " + key), origin);
}

void Loader::apply_sweep_flag(const std::string& text, std::set<std::string>& given) {
    const std::string origin = "--sweep '" + text + "'";
    size_t equals = text.find('=');
    std::string target = trim(text.substr(0, equals));
    if (equals == std::string::npos || target.empty())
        throw ConfigError(origin + " is malformed: expected --sweep section.key=value1,value2,..., e.g. "
                          "--sweep experiment.seed=1,2,3");
    if (!is_valid_key(target) || target.find('.') == std::string::npos || target.rfind(grid_section + ".", 0) == 0)
        throw ConfigError(origin + ": '" + target + "' is not a 'section.key' to sweep; write e.g. "
                          "--sweep experiment.seed=1,2,3 (sweeping over files is written in a [sweep] section)");
    if (!given.insert(target).second)
        throw ConfigError(origin + ": " + target + " is already swept by another --sweep flag; list all its values "
                          "in one flag, e.g. --sweep " + target + "=a,b,c");
    auto value_of = [this](const std::string& section, const std::string& key) -> const OptionValue* {
        auto keys = raw_.sections.find(section);
        if (keys == raw_.sections.end()) return nullptr;
        auto value = keys->second.find(key);
        return value == keys->second.end() ? nullptr : &value->second;
    };
    if (const OptionValue* zipped = value_of(zip_section, target))
        throw ConfigError(origin + ": " + target + " is zipped in the file's [" + zip_section + "] (" +
                          zipped->origin + "); a command-line sweep cannot replace one key of a zip group: "
                          "edit the file, or drop the flag");
    const size_t dot = target.find('.');
    if (const OptionValue* fixed = value_of(target.substr(0, dot), target.substr(dot + 1));
        fixed && is_override(fixed->origin))
        throw ConfigError(origin + " and " + fixed->origin + " both set " + target +
                          "; give it one value (the override) or several (--sweep), not both");
    Assignment assignment = parse_assignment(target + " = " + text.substr(equals + 1), grid_section, origin);
    // Replaces the file's own list of the key (in place, so the expansion order stays the file's):
    // the command line wins, as an override wins over a file's value.
    raw_.section_origins.emplace(grid_section, origin);
    set(grid_section, target, expand(assignment.value, origin, "--sweep " + target), origin);
}

// ${data} -> the data directory, ${env:NAME} -> the environment; nothing else is expanded, so a
// typo never silently becomes an empty string.
std::string Loader::expand(const std::string& text, const std::string& origin, const std::string& what) const {
    const std::string known = "known forms: ${data} (the data directory), ${env:NAME} (an environment variable)";
    std::string result;
    size_t done = 0;
    while (true) {
        size_t open = text.find("${", done);
        if (open == std::string::npos) break;
        result += text.substr(done, open - done);
        size_t close = text.find('}', open + 2);
        if (close == std::string::npos)
            throw ConfigError(origin + ": " + what + ": unterminated '${' in '" + text + "'; " + known);
        const std::string name = text.substr(open + 2, close - open - 2);
        if (name == "data") {
            if (env_.data_dir.empty())
                throw ConfigError(origin + ": " + what + " uses ${data} but no data directory is set; pass --data-dir or set LAB_DATA");
            std::string dir = env_.data_dir.string();
            while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
            result += dir;
        } else if (name.rfind("env:", 0) == 0 && name.size() > 4) {
            const std::string variable = name.substr(4);
            const char* value = std::getenv(variable.c_str());
            if (!value)
                throw ConfigError(origin + ": " + what + " uses ${env:" + variable + "} but the environment variable '" +
                                  variable + "' is not set; export it or override the key");
            result += value;
        } else {
            throw ConfigError(origin + ": " + what + ": unknown expansion '${" + name + "}'; " + known);
        }
        done = close + 1;
    }
    return result + text.substr(done);
}

void Loader::set(const std::string& section, const std::string& key, const std::string& text,
                 const std::string& origin) {
    auto& keys = raw_.sections[section];
    if (!keys.count(key)) raw_.key_order[section].push_back(key);
    keys[key] = OptionValue{text, origin};
}

// ---- resolution ------------------------------------------------------------------------------

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

std::string top_file(const RawConfig& raw) { return raw.files.empty() ? "" : raw.files.front().string(); }

const std::map<std::string, OptionValue>& section_keys(const RawConfig& raw, const std::string& section) {
    static const std::map<std::string, OptionValue> none;
    auto it = raw.sections.find(section);
    return it == raw.sections.end() ? none : it->second;
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

}  // namespace

// ---- public API ------------------------------------------------------------------------------

RawConfig load_config(const fs::path& file, const std::vector<std::string>& overrides, const ConfigEnv& env,
                      const std::vector<std::string>& sweeps) {
    RawConfig raw;
    Loader loader(env, raw);
    loader.read_file(file.lexically_normal(), "");
    for (const std::string& text : overrides) loader.apply_override(text);
    std::set<std::string> swept;
    for (const std::string& text : sweeps) loader.apply_sweep_flag(text, swept);
    return raw;
}

void apply_overrides(RawConfig& raw, const std::vector<std::string>& overrides, const ConfigEnv& env) {
    Loader loader(env, raw);
    for (const std::string& text : overrides) loader.apply_override(text);
}

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

namespace {

// The sections an experiment file may have: the run's sections and the sweep sections, sorted.
std::vector<std::string> file_sections() {
    std::vector<std::string> sections = known_sections();
    sections.push_back(grid_section);
    sections.push_back(zip_section);
    std::sort(sections.begin(), sections.end());
    return sections;
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

// ---- sweeps ----------------------------------------------------------------------------------

// One line of [sweep] or [sweep.zip].
struct SweepKey {
    std::string sweep_section;         // "sweep" or "sweep.zip"
    std::string target, section, key;  // "model.layers", "model", "layers"
    std::vector<std::string> values;   // the list's items as written, trimmed
    std::string position;              // "file:line" of the line
    std::string origin;                // "file:line [sweep]": the origin of the values it sets
};

struct Sweep {
    std::vector<SweepKey> grid, zip;  // in file order
    std::string origin;               // where the sweep starts: [sweep], else [sweep.zip]
};

// A group of keys that vary together: one grid key, or the whole zip group.
struct SweepDimension {
    std::vector<const SweepKey*> keys;
    size_t length = 0;
};

bool has_sweep(const RawConfig& raw) { return raw.sections.count(grid_section) || raw.sections.count(zip_section); }

std::vector<std::string> ordered_keys(const RawConfig& raw, const std::string& section) {
    std::vector<std::string> keys;
    const auto& present = section_keys(raw, section);
    if (auto order = raw.key_order.find(section); order != raw.key_order.end())
        for (const std::string& key : order->second)
            if (present.count(key) && std::find(keys.begin(), keys.end(), key) == keys.end()) keys.push_back(key);
    // A RawConfig assembled without key_order: the remaining keys in name order.
    for (const auto& entry : present)
        if (std::find(keys.begin(), keys.end(), entry.first) == keys.end()) keys.push_back(entry.first);
    return keys;
}

SweepKey read_sweep_key(const std::string& sweep_section, const std::string& target, const OptionValue& value) {
    SweepKey sweep_key;
    sweep_key.sweep_section = sweep_section;
    sweep_key.target = target;
    sweep_key.position = value.origin;
    sweep_key.origin = value.origin + " [" + sweep_section + "]";
    const std::string where = prefix_of(value.origin) + "[" + sweep_section + "] " + target;
    size_t dot = target.find('.');
    if (target == "include") {  // whole files: Loader::read_sweep_includes loaded them
        sweep_key.key = target;
        sweep_key.values = split_list(value.text);
        return sweep_key;
    }
    if (dot == std::string::npos)
        throw ConfigError(where + ": a sweep key names 'section.key' (or is 'include = a.ini, b.ini'); write e.g. "
                                  "'experiment.seed = 1, 2, 3'");
    sweep_key.section = target.substr(0, dot);
    sweep_key.key = target.substr(dot + 1);
    std::vector<std::string> known = known_sections();
    std::sort(known.begin(), known.end());
    if (std::find(known.begin(), known.end(), sweep_key.section) == known.end()) {
        std::string message = where + ": unknown section [" + sweep_key.section + "]";
        std::string suggestion = closest_match(sweep_key.section, known);
        if (!suggestion.empty()) message += "; did you mean [" + suggestion + "]?";
        throw ConfigError(message + " (known sections: " + join(known, ", ") + ")");
    }
    if (target == "experiment.name")
        throw ConfigError(where + ": every run of a sweep keeps the experiment's name (runs are told apart by their "
                                  "sweep values); set [experiment] name once, outside the sweep");
    if (target == "experiment.plugins")
        throw ConfigError(where + ": plugins are loaded once for all runs of a sweep; list every plugin in "
                                  "[experiment] plugins");
    if (trim(value.text).empty())
        throw ConfigError(where + " has an empty list; write '" + target + " = a, b, ...' with comma-separated values");
    sweep_key.values = split_list(value.text);
    for (size_t item = 0; item < sweep_key.values.size(); ++item)
        if (sweep_key.values[item].empty())
            throw ConfigError(where + " = " + value.text + ": item " + std::to_string(item + 1) +
                              " is empty; remove the extra comma");
    return sweep_key;
}

Sweep read_sweep(const RawConfig& raw) {
    Sweep sweep;
    for (const std::string& section : {grid_section, zip_section}) {
        auto present = raw.sections.find(section);
        if (present == raw.sections.end()) continue;
        auto where = raw.section_origins.find(section);
        const std::string origin = where == raw.section_origins.end() ? top_file(raw) : where->second;
        if (sweep.origin.empty()) sweep.origin = origin;
        if (present->second.empty())
            throw ConfigError(prefix_of(origin) + "[" + section + "] has no keys; add 'section.key = a, b' lines or "
                                                  "remove the section");
        std::vector<SweepKey>& keys = section == grid_section ? sweep.grid : sweep.zip;
        for (const std::string& target : ordered_keys(raw, section))
            keys.push_back(read_sweep_key(section, target, present->second.at(target)));
    }
    for (const SweepKey& zipped : sweep.zip) {
        for (const SweepKey& crossed : sweep.grid)
            if (crossed.target == zipped.target)
                throw ConfigError(prefix_of(zipped.position) + "[" + zip_section + "] " + zipped.target +
                                  " is also in [" + grid_section + "] at " + crossed.position +
                                  "; a key is either crossed ([sweep]) or zipped ([sweep.zip]): remove one of the two");
        const SweepKey& first = sweep.zip.front();
        if (zipped.values.size() != first.values.size())
            throw ConfigError(prefix_of(zipped.position) + "[" + zip_section + "] " + zipped.target + " has " +
                              std::to_string(zipped.values.size()) + " values but " + first.target + " (" +
                              first.position + ") has " + std::to_string(first.values.size()) +
                              "; zipped keys vary together, so their lists need the same length");
    }
    return sweep;
}

// The experiment before expansion (raw lines outside the sweep, sorted, with the name it
// resolves to) followed by the sweep definition as written.
std::string sweep_id(const RawConfig& raw, const Sweep& sweep) {
    std::vector<std::string> lines;
    for (const auto& [section, keys] : raw.sections) {
        if (is_sweep_section(section)) continue;
        for (const auto& [key, value] : keys) lines.push_back(section + "." + key + " = " + value.text);
    }
    if (!section_keys(raw, "experiment").count("name")) lines.push_back("experiment.name = " + default_run_name(raw));
    std::sort(lines.begin(), lines.end());
    std::string text;
    for (const std::string& line : lines) text += line + "\n";
    for (const auto& [header, keys] : {std::make_pair(&grid_section, &sweep.grid), {&zip_section, &sweep.zip}}) {
        text += "[" + *header + "]\n";
        for (const SweepKey& key : *keys) text += key.target + " = " + join(key.values, ", ") + "\n";
    }
    return sha256_hex(text).substr(0, 12);
}

// A key fixed by a command-line override leaves the sweep: the override wins for every run, so
// sweeping it would only repeat runs.
bool is_overridden(const RawConfig& raw, const SweepKey& key) {
    if (key.section.empty()) return false;  // include
    const auto& keys = section_keys(raw, key.section);
    auto value = keys.find(key.key);
    return value != keys.end() && is_override(value->second.origin);
}

// Grid keys in file order, then the zip group (innermost); the last dimension varies fastest.
std::vector<SweepDimension> sweep_dimensions(const RawConfig& raw, const Sweep& sweep) {
    std::vector<SweepDimension> dimensions;
    for (const SweepKey& key : sweep.grid)
        if (!is_overridden(raw, key)) dimensions.push_back({{&key}, key.values.size()});
    SweepDimension zipped;
    for (const SweepKey& key : sweep.zip)
        if (!is_overridden(raw, key)) zipped.keys.push_back(&key);
    if (!zipped.keys.empty()) {
        zipped.length = zipped.keys.front()->values.size();
        dimensions.push_back(zipped);
    }
    // Checked factor by factor, so the product never gets near overflow.
    int64_t runs = 1;
    std::vector<std::string> lengths;
    for (const SweepDimension& dimension : dimensions) lengths.push_back(std::to_string(dimension.length));
    for (const SweepDimension& dimension : dimensions)
        if ((runs *= static_cast<int64_t>(dimension.length)) > max_sweep_runs)
            throw ConfigError(prefix_of(sweep.origin) + "the sweep expands to " + join(lengths, " x ") +
                              " runs, more than the limit of " + std::to_string(max_sweep_runs) +
                              "; shorten its lists or split it into several experiment files");
    return dimensions;
}

// The item of each dimension that run `index` takes.
std::vector<size_t> sweep_positions(const std::vector<SweepDimension>& dimensions, int64_t index) {
    std::vector<size_t> positions(dimensions.size());
    for (size_t d = dimensions.size(); d-- > 0;) {
        positions[d] = static_cast<size_t>(index % static_cast<int64_t>(dimensions[d].length));
        index /= static_cast<int64_t>(dimensions[d].length);
    }
    return positions;
}

// The normalised value a run resolved for `section.key` (the plugin's name for `type`).
std::string resolved_value(const RunSpec& run, const SweepKey& key, const std::string& written) {
    const Options* options = nullptr;
    if (key.section == "experiment") {
        options = &run.experiment;
    } else if (key.section == "train") {
        options = &run.train;
    } else if (auto choice = run.plugins.find(key.section); choice != run.plugins.end()) {
        if (key.key == "type") return choice->second.plugin;
        options = &choice->second.options;
    }
    if (!options) return written;
    auto value = options->values().find(key.key);
    return value == options->values().end() ? written : value->second.text;
}

}  // namespace

RunSpec resolve_run(const RawConfig& raw, const Registry& registry) {
    check_sections(raw);
    if (!has_sweep(raw)) return resolve_one(raw, registry);
    std::vector<RunSpec> runs = resolve_runs(raw, registry);
    if (runs.size() == 1) return runs.front();
    throw ConfigError(prefix_of(read_sweep(raw).origin) + "the sweep expands to " + std::to_string(runs.size()) +
                      " runs but one run was asked for; resolve the experiment with resolve_runs, which expands it");
}

std::vector<RunSpec> resolve_runs(const RawConfig& raw, const Registry& registry) {
    check_sections(raw);
    if (!has_sweep(raw)) return {resolve_one(raw, registry)};
    const Sweep sweep = read_sweep(raw);
    const std::string id = sweep_id(raw, sweep);
    const std::vector<SweepDimension> dimensions = sweep_dimensions(raw, sweep);
    int64_t size = 1;
    for (const SweepDimension& dimension : dimensions) size *= static_cast<int64_t>(dimension.length);

    RawConfig base = raw;
    for (const std::string& section : {grid_section, zip_section}) {
        base.sections.erase(section);
        base.section_origins.erase(section);
        base.key_order.erase(section);
    }
    std::vector<RunSpec> runs;
    runs.reserve(static_cast<size_t>(size));
    std::map<std::string, int64_t> index_of_hash;
    for (int64_t index = 0; index < size; ++index) {
        RawConfig expanded = base;
        std::vector<std::string> written;  // "section.key=value" as written, for error messages
        const std::vector<size_t> positions = sweep_positions(dimensions, index);
        // Swept files first (command-line overrides still win over them), then the other keys.
        for (size_t d = 0; d < dimensions.size(); ++d) {
            for (const SweepKey* key : dimensions[d].keys) {
                if (!key->section.empty()) continue;
                const std::string& item = key->values[positions[d]];
                for (const auto& [section, keys] : raw.sweep_includes.at(item).sections) {
                    auto& target = expanded.sections[section];
                    for (const auto& [name, value] : keys) {
                        auto present = target.find(name);
                        if (present != target.end() && is_override(present->second.origin)) continue;
                        target[name] = value;
                        if (std::find(expanded.key_order[section].begin(), expanded.key_order[section].end(), name) ==
                            expanded.key_order[section].end())
                            expanded.key_order[section].push_back(name);
                    }
                    expanded.section_origins.emplace(section, key->origin);
                }
                written.push_back("include=" + item);
            }
        }
        for (size_t d = 0; d < dimensions.size(); ++d) {
            for (const SweepKey* key : dimensions[d].keys) {
                if (key->section.empty()) continue;
                const std::string& value = key->values[positions[d]];
                expanded.sections[key->section][key->key] = OptionValue{value, key->origin};
                expanded.section_origins.emplace(key->section, key->origin);
                written.push_back(key->target + "=" + value);
            }
        }
        const std::string which = "sweep run " + std::to_string(index + 1) + "/" + std::to_string(size);
        RunSpec run;
        try {
            if (!raw.sweep_includes.empty()) check_sections(expanded);  // sections a swept file brought
            run = resolve_one(expanded, registry);
        } catch (const ConfigError& e) {
            throw ConfigError(std::string(e.what()) + " (in " + which + ": " + join(written, ", ") + ")");
        }
        run.sweep_id = id;
        run.sweep_index = index;
        run.sweep_size = size;
        for (size_t d = 0; d < dimensions.size(); ++d)
            for (const SweepKey* key : dimensions[d].keys)
                run.sweep_values.emplace_back(key->target, resolved_value(run, *key, key->values[positions[d]]));

        auto [earlier, inserted] = index_of_hash.emplace(run.hash(), index);
        if (!inserted) {
            // Two positions give one configuration: in the first dimension where they differ, two
            // items of a list normalise to the same value (1e3 and 1000, or a value listed twice).
            const std::vector<size_t> earlier_positions = sweep_positions(dimensions, earlier->second);
            size_t d = 0;
            while (d + 1 < dimensions.size() && earlier_positions[d] == positions[d]) ++d;
            const SweepKey& key = *dimensions[d].keys.front();
            throw ConfigError(prefix_of(key.position) + "[" + key.sweep_section + "] " + key.target + ": items " +
                              std::to_string(earlier_positions[d] + 1) + " ('" + key.values[earlier_positions[d]] +
                              "') and " + std::to_string(positions[d] + 1) + " ('" + key.values[positions[d]] +
                              "') are the same value, so sweep runs " + std::to_string(earlier->second + 1) + " and " +
                              std::to_string(index + 1) + " would be the same run; remove one of them");
        }
        runs.push_back(std::move(run));
    }
    return runs;
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

RawConfig parse_canonical_text(const std::string& text, const std::string& origin) {
    RawConfig raw;
    std::istringstream lines(text);
    std::string line;
    int64_t line_no = 0;
    while (std::getline(lines, line)) {
        ++line_no;
        if (line.empty()) continue;
        // The key never holds " = " (keys are identifiers, dotted for scoped options), the value
        // may: the first " = " ends the key.
        const size_t eq = line.find(" = "), dot = line.find('.');
        if (eq == std::string::npos || dot == std::string::npos || dot > eq || dot == 0 || dot + 1 == eq)
            throw DataError(origin + ": recorded configuration line " + std::to_string(line_no) + " '" + line +
                            "' is not 'section.key = value'; the database may be damaged");
        const std::string section = line.substr(0, dot), key = line.substr(dot + 1, eq - dot - 1);
        if (!raw.sections[section].count(key)) raw.key_order[section].push_back(key);
        raw.sections[section][key] = {line.substr(eq + 3), origin};
        raw.section_origins.emplace(section, origin);
    }
    // The lines entries() writes under the old keys (and every run recorded before [backend] type
    // existed) become the keys they stand for, so that an override of [backend] type or threads
    // (labrun eval) replaces the recorded value instead of contradicting a copy of it.
    auto& experiment = raw.sections["experiment"];
    auto& backend = raw.sections["backend"];
    auto take = [&](const std::string& old_key, const std::string& key, bool keep_current) {
        auto old = experiment.find(old_key);
        if (old == experiment.end()) return;
        if (!keep_current || !backend.count(key)) {
            if (!backend.count(key)) raw.key_order["backend"].push_back(key);
            backend[key] = old->second;
        }
        experiment.erase(old);
        auto& order = raw.key_order["experiment"];
        order.erase(std::remove(order.begin(), order.end(), old_key), order.end());
    };
    take("backend", "type", false);
    // Before [backend] threads was the one setting, [experiment] threads applied first and a
    // backend's own threads (when not 0) then won; 0 was "not set". A backend without the option
    // (cuda) keeps the old key, which resolution accepts at 0 and refuses otherwise.
    if (auto threads = experiment.find("threads"); threads != experiment.end() && backend.count("threads"))
        take("threads", "threads", threads->second.text == "0" || backend["threads"].text != "0");
    if (backend.empty()) raw.sections.erase("backend");
    else raw.section_origins.emplace("backend", origin);
    return raw;
}

std::string format_run(const RunSpec& run) {
    struct Line {
        std::string assignment, origin;
    };
    std::string text;
    if (!run.sweep_id.empty()) {
        std::vector<std::string> values;
        for (const auto& [key, value] : run.sweep_values) values.push_back(key + "=" + value);
        text = "# sweep " + run.sweep_id + " run " + std::to_string(run.sweep_index + 1) + "/" +
               std::to_string(run.sweep_size) + (values.empty() ? "" : ": " + join(values, ", ")) + "\n";
    }
    text += "# run '" + run.name + "' (config hash " + run.hash().substr(0, 16) + ")\n";
    auto print_section = [&text](const std::string& header, const std::vector<Line>& lines) {
        size_t width = 0;
        for (const Line& line : lines) width = std::max(width, line.assignment.size());
        text += header + "\n";
        for (const Line& line : lines)
            text += line.assignment + std::string(width - line.assignment.size() + 2, ' ') + "# " + line.origin + "\n";
    };
    auto option_lines = [](const Options& options) {
        std::vector<Line> lines;
        for (const auto& [key, value] : options.values()) lines.push_back({key + " = " + value.text, value.origin});
        return lines;
    };
    for (const std::string& section : known_sections()) {
        if (section == "experiment") {
            print_section("[experiment]", option_lines(run.experiment));
        } else if (section == "train") {
            print_section("\n[train]", option_lines(run.train));
        } else if (auto choice = run.plugins.find(section); choice != run.plugins.end()) {
            std::vector<Line> lines;
            std::string header = "\n[" + section + "]";
            lines.push_back({"type = " + choice->second.plugin, choice->second.plugin_origin});
            for (Line& line : option_lines(choice->second.options)) lines.push_back(std::move(line));
            print_section(header, lines);
        }
    }
    return text;
}

int64_t run_threads(const RunSpec& spec) {
    auto backend = spec.plugins.find("backend");
    if (backend == spec.plugins.end()) return 0;
    const Options& options = backend->second.options;
    return options.values().count("threads") ? options.get_int("threads") : 0;
}

}  // namespace lab
