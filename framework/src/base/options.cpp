// Option schemas and their validation (see lab/options.h).
//
// Values are kept as text after validation, but normalised (integers in decimal, reals in their
// shortest round-trip form, booleans as true/false) so that `steps = 1e3` and `steps = 1000`
// resolve to the same configuration and therefore the same run hash.
#include "lab/options.h"

#include <algorithm>
#include <charconv>
#include <cctype>
#include <cmath>
#include <limits>
#include <tuple>

#include "lab/error.h"

namespace lab {

namespace {

std::string lowercase(std::string text) {
    for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return text;
}

// Shortest text that parses back to the same double, in printf's %g style ("0.0005", "1",
// "1e-05"): decimal where that is short, scientific otherwise.
std::string format_real(double value) {
    char buffer[64];
    auto result = std::to_chars(buffer, buffer + sizeof(buffer), value, std::chars_format::general);
    return std::string(buffer, result.ptr);
}

std::string format_bound(OptionType type, double bound) {
    if (type == OptionType::integer) return std::to_string(static_cast<int64_t>(bound));
    return format_real(bound);
}

bool within_range(const OptionSpec& spec, double value) {
    if (spec.min && value < *spec.min) return false;
    if (spec.max && value > *spec.max) return false;
    return true;
}

// "expected an integer >= 1", "expected one of: a, b".
std::string expected_phrase(const OptionSpec& spec) {
    switch (spec.type) {
        case OptionType::integer: return "expected an " + spec.expectation();
        case OptionType::choice: return "expected " + spec.expectation();
        default: return "expected a " + spec.expectation();
    }
}

std::string prefix_of(const std::string& origin) { return origin.empty() ? "" : origin + ": "; }

// The file part of a "file:line" origin, or "" when the origin is not a file position.
std::string file_of_origin(const std::string& origin) {
    auto colon = origin.rfind(':');
    if (colon == std::string::npos || colon + 1 == origin.size()) return "";
    for (size_t i = colon + 1; i < origin.size(); ++i)
        if (!std::isdigit(static_cast<unsigned char>(origin[i]))) return "";
    if (origin.rfind("override '", 0) == 0) return "";
    return origin.substr(0, colon);
}

// Sort key of an origin: file positions first (by file, then line), then everything else.
std::tuple<int, std::string, long> origin_order(const std::string& origin) {
    std::string file = file_of_origin(origin);
    if (file.empty()) return {1, origin, 0};
    long line = 0;
    std::from_chars(origin.data() + file.size() + 1, origin.data() + origin.size(), line);
    return {0, file, line};
}

struct Checked {
    bool ok = false;
    std::string normalised;  // when ok
    std::string problem;     // when not ok: the message after "[section] key = ...: "
};

// Parses and range-checks one value. An unparsable value is quoted in the message, a parsable
// one out of range is shown as written (`steps = 0: expected an integer >= 1`).
Checked check_value(const OptionSpec& spec, const std::string& text) {
    Checked checked;
    const std::string quoted = "'" + text + "'";
    switch (spec.type) {
        case OptionType::integer: {
            int64_t value = 0;
            if (!Options::parse_int(text, &value)) {
                checked.problem = quoted + ": " + expected_phrase(spec);
            } else if (!within_range(spec, static_cast<double>(value))) {
                checked.problem = text + ": " + expected_phrase(spec);
            } else {
                checked.ok = true;
                checked.normalised = std::to_string(value);
            }
            break;
        }
        case OptionType::real: {
            double value = 0;
            if (!Options::parse_real(text, &value)) {
                checked.problem = quoted + ": " + expected_phrase(spec);
            } else if (!within_range(spec, value)) {
                checked.problem = text + ": " + expected_phrase(spec);
            } else {
                checked.ok = true;
                checked.normalised = format_real(value);
            }
            break;
        }
        case OptionType::boolean: {
            bool value = false;
            if (!Options::parse_bool(text, &value)) {
                checked.problem = quoted + ": " + expected_phrase(spec);
            } else {
                checked.ok = true;
                checked.normalised = value ? "true" : "false";
            }
            break;
        }
        case OptionType::choice: {
            if (std::find(spec.choices.begin(), spec.choices.end(), text) != spec.choices.end()) {
                checked.ok = true;
                checked.normalised = text;
            } else {
                checked.problem = quoted + ": " + expected_phrase(spec);
                std::string suggestion = closest_match(text, spec.choices);
                if (!suggestion.empty()) checked.problem += "; did you mean '" + suggestion + "'?";
            }
            break;
        }
        case OptionType::string:
        case OptionType::path:
            checked.ok = true;
            checked.normalised = text;
            break;
    }
    return checked;
}

}  // namespace

size_t edit_distance(const std::string& a, const std::string& b) {
    std::vector<size_t> previous(b.size() + 1), current(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) previous[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
        current[0] = i;
        for (size_t j = 1; j <= b.size(); ++j) {
            size_t substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
            current[j] = std::min({previous[j] + 1, current[j - 1] + 1, substitution});
        }
        std::swap(previous, current);
    }
    return previous[b.size()];
}

const char* option_type_name(OptionType t) {
    switch (t) {
        case OptionType::integer: return "integer";
        case OptionType::real: return "real";
        case OptionType::boolean: return "boolean";
        case OptionType::string: return "string";
        case OptionType::path: return "path";
        case OptionType::choice: return "choice";
    }
    return "unknown";
}

std::string OptionSpec::expectation() const {
    switch (type) {
        case OptionType::integer:
        case OptionType::real: {
            std::string text = type == OptionType::integer ? "integer" : "real number";
            if (min && max) return text + " in [" + format_bound(type, *min) + ", " + format_bound(type, *max) + "]";
            if (min) return text + " >= " + format_bound(type, *min);
            if (max) return text + " <= " + format_bound(type, *max);
            return text;
        }
        case OptionType::boolean: return "boolean (true/false, yes/no, on/off, 1/0)";
        case OptionType::string: return "string";
        case OptionType::path: return "path";
        case OptionType::choice: return "one of: " + join(choices, ", ");
    }
    return "value";
}

// ---- OptionSchema ----------------------------------------------------------------------------

OptionSpec& OptionSchema::add(OptionSpec spec) {
    if (spec.name.empty()) throw Error("an option schema declares an option with an empty name; give every option a name");
    if (find(spec.name))
        throw Error("option '" + spec.name + "' is declared twice in one schema; remove one declaration");
    specs_.push_back(std::move(spec));
    return specs_.back();
}

OptionSpec& OptionSchema::integer(const std::string& name, std::optional<int64_t> def, const std::string& help) {
    OptionSpec spec{name, OptionType::integer, std::nullopt, std::nullopt, std::nullopt, {}, help};
    if (def) spec.default_value = std::to_string(*def);
    return add(std::move(spec));
}

OptionSpec& OptionSchema::real(const std::string& name, std::optional<double> def, const std::string& help) {
    OptionSpec spec{name, OptionType::real, std::nullopt, std::nullopt, std::nullopt, {}, help};
    if (def) spec.default_value = format_real(*def);
    return add(std::move(spec));
}

OptionSpec& OptionSchema::boolean(const std::string& name, bool def, const std::string& help) {
    return add({name, OptionType::boolean, std::string(def ? "true" : "false"), std::nullopt, std::nullopt, {}, help});
}

OptionSpec& OptionSchema::string(const std::string& name, std::optional<std::string> def, const std::string& help) {
    return add({name, OptionType::string, std::move(def), std::nullopt, std::nullopt, {}, help});
}

OptionSpec& OptionSchema::path(const std::string& name, std::optional<std::string> def, const std::string& help) {
    return add({name, OptionType::path, std::move(def), std::nullopt, std::nullopt, {}, help});
}

OptionSpec& OptionSchema::choice(const std::string& name, const std::string& def, std::vector<std::string> choices,
                                 const std::string& help) {
    if (std::find(choices.begin(), choices.end(), def) == choices.end())
        throw Error("option '" + name + "': default '" + def + "' is not one of its choices (" + join(choices, ", ") +
                    "); fix the schema declaration");
    return add({name, OptionType::choice, def, std::nullopt, std::nullopt, std::move(choices), help});
}

const OptionSpec* OptionSchema::find(const std::string& name) const {
    for (const OptionSpec& spec : specs_)
        if (spec.name == name) return &spec;
    return nullptr;
}

std::vector<std::string> OptionSchema::names() const {
    std::vector<std::string> result;
    for (const OptionSpec& spec : specs_) result.push_back(spec.name);
    return result;
}

// ---- Options ---------------------------------------------------------------------------------

Options Options::validate(const std::string& section, const std::string& owner, const OptionSchema& schema,
                          const std::map<std::string, OptionValue>& raw) {
    Options options;
    options.section_ = section;
    options.owner_ = owner;
    const std::string tag = "[" + section + "] ";

    std::vector<std::string> known = schema.names();
    std::sort(known.begin(), known.end());

    // Report the first problem as written in the files (the map itself is alphabetical), then
    // problems in overrides.
    std::vector<std::pair<std::string, OptionValue>> in_order(raw.begin(), raw.end());
    std::stable_sort(in_order.begin(), in_order.end(), [](const auto& a, const auto& b) {
        return origin_order(a.second.origin) < origin_order(b.second.origin);
    });
    for (const auto& [key, value] : in_order) {
        const OptionSpec* spec = schema.find(key);
        if (!spec) {
            std::string message = prefix_of(value.origin) + tag + "key '" + key + "' is not an option of " + owner;
            std::string suggestion = closest_match(key, known);
            if (!suggestion.empty()) message += "; did you mean '" + suggestion + "'?";
            message += known.empty() ? " (it takes no options)" : " (known: " + join(known, ", ") + ")";
            throw ConfigError(message);
        }
        Checked checked = check_value(*spec, value.text);
        if (!checked.ok) throw ConfigError(prefix_of(value.origin) + tag + key + " = " + checked.problem);
        options.values_[key] = OptionValue{checked.normalised, value.origin};
        options.explicit_[key] = true;
    }

    // Where a missing key should be added: the file the section's other keys came from.
    std::string section_file;
    for (const auto& [key, value] : in_order) {
        section_file = file_of_origin(value.origin);
        if (!section_file.empty()) break;
    }

    for (const OptionSpec& spec : schema.specs()) {
        if (raw.count(spec.name)) continue;
        if (!spec.default_value) {
            throw ConfigError(prefix_of(section_file) + tag + "missing required key '" + spec.name + "' (" +
                              spec.expectation() + ": " + spec.help + ")");
        }
        Checked checked = check_value(spec, *spec.default_value);
        if (!checked.ok)
            throw Error(tag + "the default of '" + spec.name + "' in the schema of " + owner + " is invalid (" +
                        spec.name + " = " + checked.problem + "); fix the plugin's option declaration");
        options.values_[spec.name] = OptionValue{checked.normalised, "default"};
        options.explicit_[spec.name] = false;
    }
    return options;
}

const OptionValue& Options::at(const std::string& name) const {
    auto it = values_.find(name);
    if (it == values_.end()) {
        std::vector<std::string> known;
        for (const auto& [key, value] : values_) known.push_back(key);
        std::string message = "[" + section_ + "] " + (owner_.empty() ? "" : owner_ + " ") + "asked for option '" +
                              name + "', which its schema does not declare";
        std::string suggestion = closest_match(name, known);
        if (!suggestion.empty()) message += "; did you mean '" + suggestion + "'?";
        message += " (declared: " + (known.empty() ? std::string("none") : join(known, ", ")) + ")";
        throw ConfigError(message);
    }
    return it->second;
}

int64_t Options::get_int(const std::string& name) const {
    const OptionValue& value = at(name);
    int64_t result = 0;
    if (!parse_int(value.text, &result))
        throw ConfigError(prefix_of(value.origin) + "[" + section_ + "] " + name + " = '" + value.text +
                          "' is read as an integer but is not one; declare it as an integer option");
    return result;
}

double Options::get_float(const std::string& name) const {
    const OptionValue& value = at(name);
    double result = 0;
    if (!parse_real(value.text, &result))
        throw ConfigError(prefix_of(value.origin) + "[" + section_ + "] " + name + " = '" + value.text +
                          "' is read as a real number but is not one; declare it as a real option");
    return result;
}

bool Options::get_bool(const std::string& name) const {
    const OptionValue& value = at(name);
    bool result = false;
    if (!parse_bool(value.text, &result))
        throw ConfigError(prefix_of(value.origin) + "[" + section_ + "] " + name + " = '" + value.text +
                          "' is read as a boolean but is not one; declare it as a boolean option");
    return result;
}

const std::string& Options::get_string(const std::string& name) const { return at(name).text; }

bool Options::is_set(const std::string& name) const {
    auto it = explicit_.find(name);
    return it != explicit_.end() && it->second;
}

std::string Options::origin(const std::string& name) const { return at(name).origin; }

bool Options::parse_int(const std::string& text, int64_t* out) {
    std::string_view digits = text;
    if (!digits.empty() && digits.front() == '+') digits.remove_prefix(1);
    if (digits.empty()) return false;
    int64_t value = 0;
    auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (error == std::errc() && end == digits.data() + digits.size()) {
        *out = value;
        return true;
    }
    // "1e3", "2.0": accepted when the real number is exactly an integer that fits.
    double real = 0;
    if (!parse_real(text, &real)) return false;
    if (real != std::floor(real)) return false;
    // 2^63 is exactly representable; anything at or beyond it does not fit in int64_t.
    if (real < -9223372036854775808.0 || real >= 9223372036854775808.0) return false;
    *out = static_cast<int64_t>(real);
    return true;
}

bool Options::parse_real(const std::string& text, double* out) {
    std::string_view digits = text;
    if (!digits.empty() && digits.front() == '+') digits.remove_prefix(1);
    if (digits.empty()) return false;
    double value = 0;
    auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (error != std::errc() || end != digits.data() + digits.size()) return false;
    if (!std::isfinite(value)) return false;  // "inf"/"nan" are never a sensible setting
    *out = value;
    return true;
}

bool Options::parse_bool(const std::string& text, bool* out) {
    const std::string word = lowercase(text);
    if (word == "true" || word == "1" || word == "yes" || word == "on") {
        *out = true;
        return true;
    }
    if (word == "false" || word == "0" || word == "no" || word == "off") {
        *out = false;
        return true;
    }
    return false;
}

// ---- helpers ---------------------------------------------------------------------------------

std::string closest_match(const std::string& name, const std::vector<std::string>& candidates) {
    const std::string wanted = lowercase(name);
    const size_t allowed = std::max<size_t>(2, wanted.size() / 3);
    std::string best;
    size_t best_distance = std::numeric_limits<size_t>::max();
    for (const std::string& candidate : candidates) {
        const std::string folded = lowercase(candidate);
        size_t distance = edit_distance(wanted, folded);
        // A candidate that shares nothing with the name (e.g. "x" vs "lr") is no suggestion.
        if (distance >= std::max(wanted.size(), folded.size())) continue;
        if (distance <= allowed && distance < best_distance) {
            best = candidate;
            best_distance = distance;
        }
    }
    return best;
}

std::string join(const std::vector<std::string>& parts, const std::string& sep) {
    std::string result;
    for (size_t i = 0; i < parts.size(); ++i) {
        if (i) result += sep;
        result += parts[i];
    }
    return result;
}

}  // namespace lab
