// schedule/linear: linear warmup, then linear decay from the optimizer's lr to min_lr at
// decay_steps, then min_lr.
#include <algorithm>

#include "lab/plugin.h"

namespace {

class Linear : public lab::Schedule {
public:
    Linear(const lab::Options& opts, const lab::ScheduleContext& ctx)
        : base_(ctx.base_lr),
          min_(opts.get_float("min_lr")),
          warmup_(opts.get_int("warmup")),
          decay_(opts.get_int("decay_steps") > 0 ? opts.get_int("decay_steps") : ctx.total_steps) {}
    double lr(int64_t step) const override {
        if (lab::in_warmup(step, warmup_)) return lab::warmup_lr(base_, step, warmup_);
        if (step >= decay_ || decay_ <= warmup_) return min_;
        double progress = static_cast<double>(step - warmup_) / static_cast<double>(decay_ - warmup_);
        return base_ + (min_ - base_) * std::clamp(progress, 0.0, 1.0);
    }

private:
    double base_, min_;
    int64_t warmup_, decay_;
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::OptionSchema schema;
    lab::add_schedule_options(schema, true);
    registry.add_schedule({"linear", "1.0", "linear warmup, then linear decay to min_lr", schema},
                          [](const lab::Options& opts, const lab::ScheduleContext& ctx) {
                              return std::make_shared<Linear>(opts, ctx);
                          });
}
