#include "run_labels.h"

#include <algorithm>

#include "run_data.h"

namespace labdb {

std::string param_assignments(const std::vector<std::string>& keys, const std::map<std::string, std::string>& params) {
    std::string text;
    for (const std::string& key : keys) {
        const auto found = params.find(key);
        text += (text.empty() ? "" : " ") + key + "=" + (found == params.end() ? kUnsetParam : found->second);
    }
    return text;
}

std::vector<std::string> label_keys(const std::vector<std::map<std::string, std::string>>& params_per_run) {
    if (params_per_run.size() < 2) return {};
    std::vector<std::string> shown, optional;
    for (const std::string& key : param_keys(params_per_run, false)) {
        const bool everywhere = std::all_of(params_per_run.begin(), params_per_run.end(),
                                            [&](const auto& params) { return params.count(key) > 0; });
        (everywhere ? shown : optional).push_back(key);
    }
    // A key that only some runs have is mostly an option of a plugin that only those runs use
    // (attention.chunk of linear attention): shown only where it tells apart runs that the keys
    // chosen so far leave with the same label.
    for (const std::string& key : optional) {
        std::map<std::string, std::string> first_value;  // label so far -> the key's value in its first run
        bool splits = false;
        for (const auto& params : params_per_run) {
            const auto found = params.find(key);
            const std::string value = found == params.end() ? kUnsetParam : found->second;
            const auto [entry, inserted] = first_value.emplace(param_assignments(shown, params), value);
            splits = splits || (!inserted && entry->second != value);
        }
        if (splits) shown.push_back(key);
    }
    std::sort(shown.begin(), shown.end());
    return shown;
}

std::vector<std::string> run_labels(const std::vector<RunRef>& runs,
                                    const std::vector<std::map<std::string, std::string>>& params_per_run) {
    const std::vector<std::string> keys = label_keys(params_per_run);
    std::vector<std::string> labels;
    std::map<std::string, int> uses;
    for (size_t r = 0; r < runs.size(); ++r) {
        labels.push_back(keys.empty() ? "run " + std::to_string(runs[r].id) + " " + runs[r].name
                                      : param_assignments(keys, params_per_run.at(r)));
        ++uses[labels.back()];
    }
    for (size_t r = 0; r < runs.size(); ++r)
        if (uses[labels[r]] > 1) labels[r] += " (run " + std::to_string(runs[r].id) + ")";
    return labels;
}

}  // namespace labdb
