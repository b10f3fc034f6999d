// schedule/linear: linear warmup, then linear decay from the optimizer's lr to min_lr at
// decay_steps, then min_lr.
#include "lab/plugin.h"

namespace {

class Linear : public lab::Schedule {
public:
    Linear(const lab::Options& opts, const lab::ScheduleContext& ctx) : d_(lab::DecaySettings::from(opts, ctx)) {}
    double lr(int64_t step) const override {
        if (lab::in_warmup(step, d_.warmup)) return lab::warmup_lr(d_.base, step, d_.warmup);
        return d_.base + (d_.min - d_.base) * d_.progress(step);
    }

private:
    lab::DecaySettings d_;
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
