// The --dry-run printout of a resolved run (format_run, lab/config.h).
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

using namespace config_detail;

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

}  // namespace lab
