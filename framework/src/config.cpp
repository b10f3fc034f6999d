// Experiment files (see lab/config.h): INI loading with includes, overrides and expansion, then
// resolution against the framework schemas and the plugins' schemas.
#include "lab/config.h"

#include <algorithm>
#include <boost/program_options/options_description.hpp>
#include <boost/program_options/parsers.hpp>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "lab/error.h"
#include "lab/hash.h"
#include "lab/registry.h"

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

private:
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
            if (!is_valid_name(name))
                throw ConfigError(here + ": '[" + name + "]' is not a valid section name; use letters, digits, '_' and '-'");
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
        if (assignment.key == "include")
            throw ConfigError(here + ": include inside [" + section +
                              "]; includes must come before the first [section] of the file");
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
    Assignment assignment = parse_assignment(key + " = " + text.substr(equals + 1), section, origin);
    raw_.section_origins.emplace(section, origin);
    set(section, key, expand(assignment.value, origin, "[" + section + "] " + key), origin);
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
    raw_.sections[section][key] = OptionValue{text, origin};
}

// ---- resolution ------------------------------------------------------------------------------

OptionSchema build_experiment_schema(const std::string& default_name) {
    OptionSchema schema;
    schema.string("name", default_name, "run name (default: the experiment file's name without extension)");
    schema.integer("seed", 1, "seed of every random stream (initialisation, dropout, data)").at_least(0);
    schema.string("backend", std::string("onednn"), "backend plugin that runs the kernels (onednn, cuda, ...)");
    // bf16/fp16 (low-precision matmul inputs, fp32 accumulation and master weights) join the
    // choices when a backend implements mixed-precision training.
    schema.choice("precision", "fp32", {"fp32"}, "arithmetic precision of training (this version: fp32)");
    schema.path("db", std::string("results/lab.db"), "SQLite results database");
    schema.string("plugins", std::string(""), "extra plugin files or directories, comma separated, relative to this file");
    schema.integer("threads", 0, "CPU threads (0 = all cores)").at_least(0);
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

SectionChoice choose_plugin(const RawConfig& raw, const Registry& registry, const std::string& section,
                            const char* default_type) {
    const std::string& kind = section;
    std::map<std::string, OptionValue> keys = section_keys(raw, section);
    SectionChoice choice;
    choice.section = section;
    choice.kind = kind;
    auto type = keys.find("type");
    if (type != keys.end()) {
        choice.plugin = type->second.text;
        choice.plugin_origin = type->second.origin;
        keys.erase(type);
    } else if (default_type) {
        choice.plugin = default_type;
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
        throw ConfigError(where + "[" + section + "] type = '" + choice.plugin + "'" + note + ": " + e.what());
    }
    choice.options = validate_section(raw, section, kind + "/" + choice.plugin, info->schema, keys);
    return choice;
}

SectionChoice choose_backend(const RawConfig& raw, const Registry& registry, const Options& experiment) {
    std::map<std::string, OptionValue> keys = section_keys(raw, "backend");
    SectionChoice choice;
    choice.section = choice.kind = "backend";
    choice.plugin = experiment.get_string("backend");
    choice.plugin_origin = experiment.origin("backend");
    if (auto type = keys.find("type"); type != keys.end())
        throw ConfigError(prefix_of(type->second.origin) + "[backend] type is not an option: the backend is chosen by "
                          "[experiment] backend (now '" + choice.plugin + "'); set 'backend = " + type->second.text +
                          "' in [experiment] and keep only the backend's options in [backend]");
    const PluginInfo* info = nullptr;
    try {
        info = &registry.find("backend", choice.plugin);
    } catch (const PluginError& e) {
        std::string where = choice.plugin_origin == "default" ? "" : prefix_of(choice.plugin_origin);
        std::string note = choice.plugin_origin == "default" ? " (the default)" : "";
        throw ConfigError(where + "[experiment] backend = '" + choice.plugin + "'" + note + ": " + e.what());
    }
    choice.options = validate_section(raw, "backend", "backend/" + choice.plugin, info->schema, keys);
    return choice;
}

// Plugin sections other than backend, in resolution order; nullptr: the section is required.
struct PluginSectionRule {
    const char* section;
    const char* default_type;
};
constexpr PluginSectionRule plugin_section_rules[] = {
    {"tokenizer", nullptr}, {"model", nullptr},    {"attention", "softmax"},
    {"task", nullptr},      {"optimizer", nullptr}, {"schedule", "constant"},
};

}  // namespace

// ---- public API ------------------------------------------------------------------------------

RawConfig load_config(const fs::path& file, const std::vector<std::string>& overrides, const ConfigEnv& env) {
    RawConfig raw;
    Loader loader(env, raw);
    loader.read_file(file.lexically_normal(), "");
    for (const std::string& text : overrides) loader.apply_override(text);
    return raw;
}

const OptionSchema& experiment_schema() {
    static const OptionSchema schema = build_experiment_schema("");
    return schema;
}

const OptionSchema& train_schema() {
    static const OptionSchema schema = [] {
        OptionSchema s;
        s.integer("steps", std::nullopt, "optimizer steps to train").at_least(1);
        s.integer("batch", 12, "sequences per batch").at_least(1);
        s.integer("seq_len", 64, "tokens per sequence").at_least(1);
        s.integer("eval_every", 0, "evaluate every N steps (0 = only at the end)").at_least(0);
        s.integer("log_every", 10, "log the training loss every N steps").at_least(1);
        s.real("grad_clip", 1.0, "clip the global gradient norm to this (0 = off)").at_least(0);
        s.boolean("eval_at_end", true, "evaluate after the last step");
        return s;
    }();
    return schema;
}

const std::vector<std::string>& known_sections() {
    static const std::vector<std::string> sections = {"experiment", "train",     "backend",   "tokenizer", "model",
                                                      "attention",  "task",      "optimizer", "schedule"};
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

RunSpec resolve_run(const RawConfig& raw, const Registry& registry) {
    std::vector<std::string> known = known_sections();
    std::sort(known.begin(), known.end());
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

    RunSpec run;
    const std::string default_name = raw.files.empty() ? "run" : raw.files.front().stem().string();
    run.experiment = validate_section(raw, "experiment", "experiment", build_experiment_schema(default_name),
                                      section_keys(raw, "experiment"));
    run.name = run.experiment.get_string("name");
    if (run.name.empty())
        throw ConfigError(prefix_of(run.experiment.origin("name")) + "[experiment] name is empty; give the run a name");
    run.train = validate_section(raw, "train", "train", train_schema(), section_keys(raw, "train"));
    run.plugins["backend"] = choose_backend(raw, registry, run.experiment);
    for (const PluginSectionRule& rule : plugin_section_rules)
        run.plugins[rule.section] = choose_plugin(raw, registry, rule.section, rule.default_type);
    return run;
}

std::string RunSpec::canonical_text() const {
    std::vector<std::pair<std::string, std::string>> entries;
    for (const auto& [key, value] : experiment.values()) entries.emplace_back("experiment." + key, value.text);
    for (const auto& [key, value] : train.values()) entries.emplace_back("train." + key, value.text);
    for (const auto& [section, choice] : plugins) {
        // The backend's name is already experiment.backend.
        if (section != "backend") entries.emplace_back(section + ".type", choice.plugin);
        for (const auto& [key, value] : choice.options.values()) entries.emplace_back(section + "." + key, value.text);
    }
    std::sort(entries.begin(), entries.end());
    std::string text;
    for (const auto& [key, value] : entries) text += key + " = " + value + "\n";
    return text;
}

std::string RunSpec::hash() const { return sha256_hex(canonical_text()); }

std::string format_run(const RunSpec& run) {
    struct Line {
        std::string assignment, origin;
    };
    std::string text = "# run '" + run.name + "' (config hash " + run.hash().substr(0, 16) + ")\n";
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
            if (section == "backend")
                header += "  # backend/" + choice->second.plugin + ", chosen by [experiment] backend";
            else
                lines.push_back({"type = " + choice->second.plugin, choice->second.plugin_origin});
            for (Line& line : option_lines(choice->second.options)) lines.push_back(std::move(line));
            print_section(header, lines);
        }
    }
    return text;
}

}  // namespace lab
