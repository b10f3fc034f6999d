// Option schemas and validated option values.
//
// Each plugin (and each framework section such as [experiment] and [train]) declares its options
// once: name, type, default, allowed range or choices, help. The same declaration validates INI
// sections and overrides, prints `labrun --describe`, and documents defaults. There are no hidden
// knobs: a key that is not declared is an error naming the closest declared key.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace lab {

enum class OptionType { integer, real, boolean, string, path, choice };
const char* option_type_name(OptionType t);

struct OptionSpec {
    std::string name;
    OptionType type = OptionType::string;
    std::optional<std::string> default_value;  // none: the option is required
    std::optional<double> min, max;            // inclusive bounds for integer/real
    std::vector<std::string> choices;          // for choice
    std::string help;

    OptionSpec& range(double lo, double hi) { min = lo; max = hi; return *this; }
    OptionSpec& at_least(double lo) { min = lo; return *this; }
    OptionSpec& required() { default_value.reset(); return *this; }
    // "integer >= 1", "one of: a, b", ... (used in errors and --describe)
    std::string expectation() const;
};

class OptionSchema {
public:
    OptionSpec& integer(const std::string& name, std::optional<int64_t> def, const std::string& help);
    OptionSpec& real(const std::string& name, std::optional<double> def, const std::string& help);
    OptionSpec& boolean(const std::string& name, bool def, const std::string& help);
    OptionSpec& string(const std::string& name, std::optional<std::string> def, const std::string& help);
    OptionSpec& path(const std::string& name, std::optional<std::string> def, const std::string& help);
    OptionSpec& choice(const std::string& name, const std::string& def, std::vector<std::string> choices,
                       const std::string& help);

    const OptionSpec* find(const std::string& name) const;
    const std::vector<OptionSpec>& specs() const { return specs_; }
    std::vector<std::string> names() const;

private:
    OptionSpec& add(OptionSpec spec);
    std::vector<OptionSpec> specs_;
};

// Where a value came from, for error messages: "experiments/x.ini:12", "override 'model.layers=4'",
// or "default".
struct OptionValue {
    std::string text;
    std::string origin;
};

// The validated options of one section, as the plugin sees them.
class Options {
public:
    Options() = default;
    // Checks every raw key against the schema (unknown key, type, range, choices, required).
    // Throws ConfigError naming origin, [section], key, what was expected and the closest key.
    static Options validate(const std::string& section, const std::string& owner, const OptionSchema& schema,
                            const std::map<std::string, OptionValue>& raw);

    int64_t get_int(const std::string& name) const;
    double get_float(const std::string& name) const;
    bool get_bool(const std::string& name) const;
    const std::string& get_string(const std::string& name) const;  // also path and choice
    bool is_set(const std::string& name) const;  // given explicitly (not a default)
    std::string origin(const std::string& name) const;
    const std::string& section() const { return section_; }
    const std::map<std::string, OptionValue>& values() const { return values_; }

    // Parse helpers shared with the config loader.
    static bool parse_int(const std::string& text, int64_t* out);
    static bool parse_real(const std::string& text, double* out);
    static bool parse_bool(const std::string& text, bool* out);

private:
    const OptionValue& at(const std::string& name) const;
    std::string section_, owner_;
    std::map<std::string, OptionValue> values_;
    std::map<std::string, bool> explicit_;
};

// The Levenshtein distance: single-character insertions, deletions and substitutions.
size_t edit_distance(const std::string& a, const std::string& b);
// Levenshtein-closest candidate within a sensible distance, or "" when nothing is close.
std::string closest_match(const std::string& name, const std::vector<std::string>& candidates);
std::string join(const std::vector<std::string>& parts, const std::string& sep);

}  // namespace lab
