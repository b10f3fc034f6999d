// Batches split into parts (Task::part): the rows of a batch, and each part's share of the loss.
#include "lab/task.h"

#include <algorithm>
#include <cmath>

#include "lab/error.h"
#include "lab/ops.h"

namespace lab {

namespace {

// Rows [first, first + count) of a tensor whose first dimension has `rows` rows, as a contiguous
// tensor of its own (a part is computed on alone, as a whole batch would be).
Tensor rows_of(const Tensor& t, int64_t rows, int64_t first, int64_t count) {
    if (!t.defined()) return t;
    if (t.size(0) % rows != 0)
        throw ShapeError("a batch tensor of shape " + shape_str(t.shape()) + " does not hold " + std::to_string(rows) +
                         " rows of equal size; Task::part cannot split it");
    const int64_t per_row = t.size(0) / rows;
    return ops::contiguous(ops::slice(t, 0, first * per_row, (first + count) * per_row));
}

}  // namespace

Batch slice_batch_rows(const Batch& whole, int64_t first, int64_t count, const std::vector<int64_t>& targets_per_row) {
    const int64_t rows = whole.inputs.ids.size(0);
    if (first < 0 || count < 1 || first + count > rows)
        throw ShapeError("rows [" + std::to_string(first) + ", " + std::to_string(first + count) +
                         ") are not a part of a batch of " + std::to_string(rows) + " rows");
    Batch part;
    part.inputs.ids = rows_of(whole.inputs.ids, rows, first, count);
    part.inputs.segments = rows_of(whole.inputs.segments, rows, first, count);
    part.inputs.padding_mask = rows_of(whole.inputs.padding_mask, rows, first, count);
    if (whole.targets.defined()) {
        int64_t per_row = 0;
        for (int64_t n : targets_per_row) per_row += n;
        if (whole.targets.numel() != rows * per_row)
            throw ShapeError("a batch of " + std::to_string(rows) + " rows has " + std::to_string(whole.targets.numel()) +
                             " targets, not " + std::to_string(per_row) + " per row");
        if (targets_per_row.size() == 1) {
            part.targets = ops::contiguous(ops::slice(ops::reshape(whole.targets, {-1}), 0, first * per_row,
                                                      (first + count) * per_row));
        } else {
            // Several blocks: the part's rows of each, joined on the host (targets are small, and
            // ops has no concatenation).
            const std::vector<int64_t> all = whole.targets.to_ints();
            std::vector<int64_t> picked;
            int64_t block_start = 0;  // where block k begins in `all`
            for (int64_t n : targets_per_row) {
                picked.insert(picked.end(), all.begin() + block_start + first * n,
                              all.begin() + block_start + (first + count) * n);
                block_start += rows * n;
            }
            part.targets = Tensor::from_ints(whole.targets.backend(), {static_cast<int64_t>(picked.size())}, picked,
                                             whole.targets.dtype());
        }
    }
    // Each part's rounded share of the tokens ends where the next one's starts, so that the parts
    // of a split add up to the whole's count (tokens/s over a step stays the whole batch's).
    auto tokens_before = [&](int64_t row) { return whole.tokens * row / std::max<int64_t>(1, rows); };
    part.tokens = tokens_before(first + count) - tokens_before(first);
    return part;
}

Batch scored_part(const Batch& whole, int64_t first, int64_t count, const ScoredLayout& layout) {
    const std::string expected =
        "; split a batch of " + layout.task + "'s next_batch() (or a part of one) into rows [first, first + count)";
    const Tensor& ids = whole.inputs.ids;
    if (!ids.defined() || ids.dim() != 2 || (layout.width > 0 && ids.size(1) != layout.width))
        throw ShapeError(layout.task + ": a batch with ids " + (ids.defined() ? shape_str(ids.shape()) : "undefined") +
                         " is not one of its batches, whose ids are [rows, " +
                         (layout.width > 0 ? std::to_string(layout.width) : "longest row") + "]" + expected);
    const int64_t rows = ids.size(0);
    if (first < 0 || count < 1 || first + count > rows)
        throw ShapeError(layout.task + ": rows [" + std::to_string(first) + ", " + std::to_string(first + count) +
                         ") are not a part of a batch of " + std::to_string(rows) + " rows" + expected);
    int64_t per_row = 0;
    for (int64_t n : layout.targets_per_row) per_row += n;
    if (!whole.targets.defined() || whole.targets.numel() != rows * per_row)
        throw ShapeError(layout.task + ": a batch of " + std::to_string(rows) + " rows needs " +
                         std::to_string(rows * per_row) + " targets (" + std::to_string(per_row) + " per row), got " +
                         (whole.targets.defined() ? std::to_string(whole.targets.numel()) : "none") + expected);
    const size_t terms = layout.targets_per_row.size();
    if (!whole.loss_shares.empty() && whole.loss_shares.size() != terms)
        throw ShapeError(layout.task + ": the batch is a part with " + std::to_string(whole.loss_shares.size()) +
                         " loss shares, but this task's loss has " + std::to_string(terms) + " terms" + expected);

    Batch part = slice_batch_rows(whole, first, count, layout.targets_per_row);
    const std::vector<int64_t> targets = whole.targets.to_ints();
    auto scored = [&](int64_t begin, int64_t end) {
        return std::count_if(targets.begin() + begin, targets.begin() + end,
                             [&](int64_t t) { return t != layout.ignore_index; });
    };
    int64_t block_start = 0;
    for (size_t k = 0; k < terms; ++k) {
        const int64_t n = layout.targets_per_row[k];
        const auto in_whole = static_cast<int64_t>(scored(block_start, block_start + rows * n));
        const auto in_part = static_cast<int64_t>(scored(block_start + first * n, block_start + (first + count) * n));
        block_start += rows * n;
        if (whole.loss_shares.empty() && in_whole == 0)
            throw DataError(layout.task + ": the batch has no scored target in term " + std::to_string(k) +
                            " of its loss, whose mean then covers nothing and has no shares" + expected);
        if (in_part == 0) {
            part.loss_shares.push_back(0.0);
            continue;
        }
        // A part of a part: its parent's share is in_whole / (the original batch's count), a ratio
        // of integers rounded once, so dividing gives that count back exactly after rounding, and
        // the share is again one exact ratio of counts rather than a product of two roundings.
        const double parent_share = whole.loss_shares.empty() ? 1.0 : whole.loss_shares[k];
        if (!(parent_share > 0.0 && parent_share <= 1.0))
            throw ShapeError(layout.task + ": the batch is a part whose share of term " + std::to_string(k) +
                             " is " + std::to_string(parent_share) + " although it scores " + std::to_string(in_whole) +
                             " of its targets" + expected);
        const double original = std::round(static_cast<double>(in_whole) / parent_share);
        part.loss_shares.push_back(static_cast<double>(in_part) / original);
    }
    return part;
}

Tensor share_of(const Tensor& loss, double share) {
    return share == 1.0 ? loss : ops::scale(loss, static_cast<float>(share));
}

Tensor share_of(const Tensor& loss, const Batch& batch, size_t term) {
    if (batch.loss_shares.empty()) return loss;
    if (term >= batch.loss_shares.size())
        throw ShapeError("a part of a batch has " + std::to_string(batch.loss_shares.size()) +
                         " loss shares, but its task's loss asks for term " + std::to_string(term) +
                         "; give a task only parts made by its own part()");
    return share_of(loss, batch.loss_shares[term]);
}

Batch Task::part(const Batch&, int64_t, int64_t) const {
    throw ConfigError("this task does not split its batches into parts (it keeps Task::part's default), so it cannot "
                      "train data-parallel or with [train] micro_batch; run it as one process with micro_batch = 0");
}

void check_model_for_task(const std::string& task, bool needs_causal, bool needs_bidirectional, bool model_causal,
                          int64_t model_max_seq_len, int64_t seq_len) {
    if (needs_causal && !model_causal)
        throw ConfigError(task + " needs a causal model (each position may only see earlier tokens), but [model] "
                                 "type is bidirectional; use model/gpt");
    if (needs_bidirectional && model_causal)
        throw ConfigError(task + " needs a bidirectional model, but [model] type is causal; use model/bert or "
                                 "model/transformer");
    if (model_max_seq_len > 0 && seq_len > model_max_seq_len)
        throw ConfigError(task + ": [train] seq_len = " + std::to_string(seq_len) +
                          " exceeds the model's max_seq_len " + std::to_string(model_max_seq_len) +
                          "; lower [train] seq_len or raise the model's longest sequence (max_seq_len, max_position)");
}

}  // namespace lab
