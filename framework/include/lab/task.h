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
#include "lab/metric_goal.h"
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
// (inputs.ids, segments, padding_mask), and of targets held as blocks one after another, block k
// a [rows * targets_per_row[k]] tensor (task/mlm: T token labels per row, then one sentence label
// per row; one block for most tasks). tokens is the whole's in proportion to the part's rows,
// rounded so that the parts of any split add up to the whole's; loss_shares is left empty.
Batch slice_batch_rows(const Batch& whole, int64_t first, int64_t count, const std::vector<int64_t>& targets_per_row);

// The batches of a task whose loss is a sum of terms, each a mean over the scored targets of one
// block of Batch::targets (what scored_part splits): ids [rows, width] and the blocks one after
// another, block k holding targets_per_row[k] targets per row.
struct ScoredLayout {
    std::string task;                      // "task/mlm", for errors
    int64_t width = 0;                     // the ids' second dimension; 0: any (batches padded to their longest row)
    std::vector<int64_t> targets_per_row;  // one entry per loss term
    int64_t ignore_index = -100;           // a target that is not scored
};
// Task::part for such a task: rows [first, first + count) of `whole` (slice_batch_rows), with
// loss_shares[k] = the part's scored targets in block k / the whole batch's, an exact ratio of
// counts (0 where the part has none). `whole` may itself be a part (a data-parallel rank's rows
// split again into micro-batches): the shares are then still of the batch it was cut from. Throws
// ShapeError naming layout.task for rows outside `whole` or a batch of another layout, and
// DataError for a whole batch with nothing scored in a term (its mean has no share to give).
Batch scored_part(const Batch& whole, int64_t first, int64_t count, const ScoredLayout& layout);

// `loss` scaled by `share` (a part's share of the whole batch's loss term); share 1 returns it as it is.
Tensor share_of(const Tensor& loss, double share);
// `loss`, term `term` of a task's loss computed on `batch`, scaled by the batch's share of it:
// loss_shares[term] for a part, 1 for a whole batch. Throws ShapeError for a part without that term.
Tensor share_of(const Tensor& loss, const Batch& batch, size_t term = 0);

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
    // keeps this default, which throws ConfigError saying that the task cannot train so.
    virtual Batch part(const Batch& whole, int64_t first, int64_t count) const;
    // The number of rows (sequences, examples) of a batch of next_batch(): what part() splits.
    virtual int64_t rows(const Batch& batch) const { return batch.inputs.ids.size(0); }
    virtual EvalResult evaluate(Model& model) = 0;
    // Where the data stream is, so a resumed run continues with the same batches.
    virtual uint64_t data_position() const = 0;
    virtual void set_data_position(uint64_t position) = 0;
};

// The rule between a task and the model it trains, shared by run planning (from the model's
// estimate, lab/run_plan.h) and Task::attach (from the built model): a causal or bidirectional
// model as the task needs, and [train] seq_len within the model's longest sequence. Throws
// ConfigError.
void check_model_for_task(const std::string& task, bool needs_causal, bool needs_bidirectional, bool model_causal,
                          int64_t model_max_seq_len, int64_t seq_len);

}  // namespace lab
