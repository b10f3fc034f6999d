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
    // Set on a part of a batch (Task::part), empty on a whole one: for each term of the task's loss
    // (a mean over scored tokens, over sequences, ...), the part's count of what that term averages
    // over divided by the whole batch's count, so that the part's loss is its share of the whole's.
    std::vector<double> loss_shares;
};

// Rows [first, first + count) of every tensor of `whole` whose first dimension is its rows
// (inputs.ids, segments, padding_mask), and `targets_per_row` targets per row from targets (a
// [rows * targets_per_row] tensor). tokens counts the part's rows; loss_shares is left empty.
Batch slice_batch_rows(const Batch& whole, int64_t first, int64_t count, int64_t targets_per_row);

// How many of `targets` are scored (not ignore_index), as ops::cross_entropy counts them.
int64_t scored_targets(const Tensor& targets, int64_t ignore_index = -100);

// `loss` scaled by `share` (a part's share of the whole batch's loss term); share 1 returns it as it is.
Tensor share_of(const Tensor& loss, double share);

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
    // Rows [first, first + count) of `whole` (a batch of next_batch()) as a batch whose loss() is
    // that part's share of the whole batch's loss (Batch::loss_shares): the losses of the parts of
    // a split add up to the whole's, and so do their gradients. Data-parallel ranks and gradient
    // accumulation ([train] micro_batch) train on parts. A task that cannot split its batches
    // keeps this default, which throws ConfigError naming the task.
    virtual Batch part(const Batch& whole, int64_t first, int64_t count) const;
    // The number of rows (sequences, examples) of a batch of next_batch(): what part() splits.
    virtual int64_t rows(const Batch& batch) const { return batch.inputs.ids.size(0); }
    virtual EvalResult evaluate(Model& model) = 0;
    // Where the data stream is, so a resumed run continues with the same batches.
    virtual uint64_t data_position() const = 0;
    virtual void set_data_position(uint64_t position) = 0;
};

}  // namespace lab
