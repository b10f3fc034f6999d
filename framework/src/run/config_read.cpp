// Reading experiment files (lab/config.h): INI text with includes, overrides, --sweep flags and
// ${...} expansion into a RawConfig that keeps every value's file:line; and the recorded
// canonical text of a run read back (parse_canonical_text).
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
namespace po = boost::program_options;
using namespace config_detail;

namespace config_detail {

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

}  // namespace config_detail

namespace {

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

}  // namespace lab
