// Task (plugin kind "task"): data, heads, loss and metrics. A task is built after the tokenizer
// (it may train it on its data) and before the model (whose vocabulary size it fixes); attach()
// then adds the heads for the model it will train.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "lab/model.h"
#include "lab/module.h"
#include "lab/results.h"
#include "lab/tensor.h"

namespace lab {

struct BuildContext;

struct Batch {
    ModelInputs inputs;
    Tensor targets;      // task-specific (next tokens, labels, ...)
    int64_t tokens = 0;  // tokens processed, for tokens/s
};

struct EvalResult {
    std::map<std::string, double> metrics;                     // "val/loss" -> 1.93
    std::map<std::string, MetricGoal> goals;                   // "val/loss" -> minimize
    std::vector<std::pair<std::string, std::string>> texts;   // ("sample", generated text)

    // Records a metric with the way it improves; the trainer stores both (a metric put straight
    // into `metrics` has no declared goal, and labdb shows no best value for it).
    void set(const std::string& name, double value, MetricGoal goal) {
        metrics[name] = value;
        goals[name] = goal;
    }
};

class Task : public Module {
public:
    virtual void attach(Model& model, BuildContext& ctx) = 0;
    virtual bool needs_causal_model() const { return false; }
    virtual Batch next_batch() = 0;
    virtual Tensor loss(Model& model, const Batch& batch) = 0;  // one-element f32
    virtual EvalResult evaluate(Model& model) = 0;
    // Where the data stream is, so a resumed run continues with the same batches.
    virtual uint64_t data_position() const = 0;
    virtual void set_data_position(uint64_t position) = 0;
};

}  // namespace lab
