// Names for runs in chart legends, made for ablations: runs plotted together are named by the
// parameters whose values differ among them ("attention.type=sigmoid experiment.seed=2"), since
// in a sweep that is what tells them apart and their names do not. `labdb curves` and `labdb
// report` both name runs this way.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "run_lookup.h"

namespace labdb {

// What a run without the parameter shows as its value.
inline constexpr const char* kUnsetParam = "(unset)";

// "key=value key2=value2" for `keys` in the order given; a key the run lacks reads key=(unset).
std::string param_assignments(const std::vector<std::string>& keys, const std::map<std::string, std::string>& params);

// The parameters that name the runs apart, sorted: every key whose value differs among the runs
// (param_keys) and that every run has; and a key that only some runs have (an option of a plugin
// that only they use, such as attention.chunk of linear attention) only where it tells apart runs
// that the other keys leave alike. Empty for fewer than two runs.
std::vector<std::string> label_keys(const std::vector<std::map<std::string, std::string>>& params_per_run);

// One label per run (params_per_run[i] belongs to runs[i]): param_assignments of label_keys.
// Where no parameter differs (one run, or reruns of one configuration), a run is "run ID NAME";
// runs that would share a label (same values of those parameters) get " (run ID)" appended, so
// every label names exactly one run.
std::vector<std::string> run_labels(const std::vector<RunRef>& runs,
                                    const std::vector<std::map<std::string, std::string>>& params_per_run);

}  // namespace labdb
