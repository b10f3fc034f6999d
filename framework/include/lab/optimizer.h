// Optimizer (plugin kind "optimizer") and Schedule (plugin kind "schedule").
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "lab/tensor.h"

namespace lab {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Optimizer {
public:
    virtual ~Optimizer() = default;
    // One update of every parameter from its grad() at learning rate lr (no autograd).
    virtual void step(double lr) = 0;
    virtual double base_lr() const = 0;
    // Sets every parameter's gradient to zero (keeping the buffers, so steps allocate nothing).
    virtual void zero_grad();
    // Moments and step count, for checkpoints.
    virtual std::map<std::string, Tensor> state() const { return {}; }
    // Restores what state() returned (resuming from a checkpoint): copies every tensor of state()
    // from `saved`. Throws DataError naming a missing or misshaped entry.
    virtual void load_state(const std::map<std::string, Tensor>& saved);

protected:
    NamedTensors params_;
};

struct ScheduleContext {
    double base_lr = 0;
    int64_t total_steps = 0;
};

class Schedule {
public:
    virtual ~Schedule() = default;
    virtual double lr(int64_t step) const = 0;  // step counts from 0
};

// Linear warmup as in nanoGPT: step s < warmup runs at base * (s + 1) / (warmup + 1).
inline bool in_warmup(int64_t step, int64_t warmup) { return step < warmup; }
inline double warmup_lr(double base, int64_t step, int64_t warmup) {
    return base * static_cast<double>(step + 1) / static_cast<double>(warmup + 1);
}

// The options every schedule shares: warmup, min_lr, decay_steps (0: the run's steps).
class OptionSchema;
class Options;
void add_schedule_options(OptionSchema& schema, bool with_decay);

// Those options resolved for a run: from `base` (after warmup) down to `min` at step `decay`.
struct DecaySettings {
    double base = 0, min = 0;
    int64_t warmup = 0, decay = 0;
    static DecaySettings from(const Options& opts, const ScheduleContext& ctx);
    // Progress through the decay in [0, 1] at a step past the warmup.
    double progress(int64_t step) const;
};

}  // namespace lab
