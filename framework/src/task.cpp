// Batches split into parts (Task::part): the rows of a batch, and each part's share of the loss.
#include "lab/task.h"

#include <algorithm>

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

Batch slice_batch_rows(const Batch& whole, int64_t first, int64_t count, int64_t targets_per_row) {
    const int64_t rows = whole.inputs.ids.size(0);
    if (first < 0 || count < 1 || first + count > rows)
        throw ShapeError("rows [" + std::to_string(first) + ", " + std::to_string(first + count) +
                         ") are not a part of a batch of " + std::to_string(rows) + " rows");
    Batch part;
    part.inputs.ids = rows_of(whole.inputs.ids, rows, first, count);
    part.inputs.segments = rows_of(whole.inputs.segments, rows, first, count);
    part.inputs.padding_mask = rows_of(whole.inputs.padding_mask, rows, first, count);
    if (whole.targets.defined()) {
        if (whole.targets.numel() != rows * targets_per_row)
            throw ShapeError("a batch of " + std::to_string(rows) + " rows has " + std::to_string(whole.targets.numel()) +
                             " targets, not " + std::to_string(targets_per_row) + " per row");
        part.targets = ops::contiguous(ops::slice(ops::reshape(whole.targets, {-1}), 0, first * targets_per_row,
                                                  (first + count) * targets_per_row));
    }
    part.tokens = whole.tokens * count / std::max<int64_t>(1, rows);
    return part;
}

int64_t scored_targets(const Tensor& targets, int64_t ignore_index) {
    const std::vector<int64_t> values = targets.to_ints();
    return static_cast<int64_t>(std::count_if(values.begin(), values.end(), [&](int64_t t) { return t != ignore_index; }));
}

Tensor share_of(const Tensor& loss, double share) {
    return share == 1.0 ? loss : ops::scale(loss, static_cast<float>(share));
}

Batch Task::part(const Batch&, int64_t, int64_t) const {
    throw ConfigError("this task does not split its batches into parts (it keeps Task::part's default), so it cannot "
                      "train data-parallel or with [train] micro_batch; run it as one process with micro_batch = 0");
}

}  // namespace lab
