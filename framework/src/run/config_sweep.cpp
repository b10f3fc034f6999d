// Sweeps (lab/config.h): [sweep] lists crossed, [sweep.zip] lists varied together, whole files
// swept, each point resolved to a RunSpec with the sweep's id and its swept values.
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

}  // namespace lab
