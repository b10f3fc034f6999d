// schedule/cosine: linear warmup, then cosine decay (Loshchilov & Hutter 2017, SGDR without
// restarts) from the optimizer's lr to min_lr at decay_steps, then min_lr. Same formula as
// nanoGPT's get_lr.
#include <cmath>

#include "lab/plugin.h"

namespace {

class Cosine : public lab::Schedule {
public:
    Cosine(const lab::Options& opts, const lab::ScheduleContext& ctx) : d_(lab::DecaySettings::from(opts, ctx)) {}
    double lr(int64_t step) const override {
        if (lab::in_warmup(step, d_.warmup)) return lab::warmup_lr(d_.base, step, d_.warmup);
        double coeff = 0.5 * (1.0 + std::cos(M_PI * d_.progress(step)));
        return d_.min + coeff * (d_.base - d_.min);
    }

private:
    lab::DecaySettings d_;
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::OptionSchema schema;
    lab::add_schedule_options(schema, true);
    registry.add_schedule({"cosine", "1.0", "linear warmup, then cosine decay to min_lr", schema},
                          [](const lab::Options& opts, const lab::ScheduleContext& ctx) {
                              return std::make_shared<Cosine>(opts, ctx);
                          });
}
