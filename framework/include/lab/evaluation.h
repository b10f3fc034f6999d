// Evaluating a trained run again (`labrun eval RUN [section.key=value ...]`): the run's recorded
// configuration with overrides, its checkpoint's weights, the task's evaluation.
//
// What may change. Anything that leaves the shapes of the trained parameters alone: [train]
// seq_len, the task's evaluation options (val_tokens, eval_stride, eval_batch, ...), the backend,
// the precision. An override that changes a parameter's shape (model width or depth, the
// vocabulary, a table of learned positions) is refused naming the override. The model keeps the
// context it was trained with: a model option `max_seq_len` of 0 ("[train] seq_len") is pinned to
// the trained seq_len, and a seq_len beyond that context is refused naming train.seq_len and
// model.max_seq_len (positions past a learned table were never trained). experiment.db,
// experiment.plugins and train.init_from cannot be overridden (the run, its plugins and its
// weights are given).
//
// Metric names. Every metric of the evaluation is recorded as a metric of the run at the step of
// its checkpoint under a tagged name: "val/loss" becomes "val@TAG/loss" (a name without '/'
// becomes "name@TAG"). TAG is the evaluation's train.seq_len, followed by every other key whose
// resolved value differs from the run's configuration, sorted, as ",section.key=value":
//   labrun eval 3 train.seq_len=256                       -> val@256/loss, val@256/accuracy, ...
//   labrun eval 3                                         -> val@64/loss (the run's own seq_len)
//   labrun eval 3 train.seq_len=256 task.eval_stride=128  -> val@256,task.eval_stride=128/loss
// In a value, '%', '/', ',', '=' and '@' are written %25, %2F, %2C, %3D and %40, so that a tagged
// name always splits back into metric, seq_len and changes. The same evaluation gives the same
// names, and recording it again replaces the earlier values (ResultStore::replace_metrics).
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "lab/config.h"
#include "lab/registry.h"
#include "lab/task.h"
#include "lab/trainer.h"

namespace lab {

// What one evaluation of a trained run will do: the configuration it builds and its tag.
struct EvaluationPlan {
    RunSpec trained;    // the run's recorded configuration
    RunSpec evaluated;  // with the overrides (and the pinned model context)
    std::string tag;    // "256", "256,task.eval_stride=128"
    std::vector<std::string> changed;  // "section.key=value" of each changed key but train.seq_len
};

// Resolves `recorded` (a run's configuration) with `overrides` ("section.key=value"). Throws
// ConfigError for a malformed or unknown override, a key that cannot change (see above), and a
// seq_len beyond the trained model's context.
EvaluationPlan plan_evaluation(const RawConfig& recorded, const std::vector<std::string>& overrides,
                               const ConfigEnv& env, const Registry& registry);

// "val/loss" + "256" -> "val@256/loss"; "perplexity" + "256" -> "perplexity@256".
std::string tagged_metric_name(const std::string& metric, const std::string& tag);

struct CheckpointEvaluation {
    EvalResult result;  // the task's metrics (with their goals) and texts, untagged
    int64_t step = 0;   // the checkpoint's step
    double seconds = 0; // wall time of the evaluation itself
};

// Builds plan.evaluated, loads the model and the task heads of `checkpoint_dir` (which must be a
// checkpoint of plan.trained's configuration) and runs the task's evaluation. Throws ConfigError
// naming the changed keys when the checkpoint's tensors do not fit the model they build, DataError
// for a missing or foreign checkpoint.
CheckpointEvaluation evaluate_checkpoint(const EvaluationPlan& plan, const Registry& registry,
                                         const RunEnvironment& env, const std::filesystem::path& checkpoint_dir);

}  // namespace lab
