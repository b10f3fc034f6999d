// schedule/constant: the optimizer's lr after an optional linear warmup.
#include "lab/plugin.h"

namespace {

class Constant : public lab::Schedule {
public:
    Constant(const lab::Options& opts, const lab::ScheduleContext& ctx)
        : base_(ctx.base_lr), warmup_(opts.get_int("warmup")) {}
    double lr(int64_t step) const override {
        return lab::in_warmup(step, warmup_) ? lab::warmup_lr(base_, step, warmup_) : base_;
    }

private:
    double base_;
    int64_t warmup_;
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::OptionSchema schema;
    lab::add_schedule_options(schema, false);
    registry.add_schedule({"constant", "1.0", "constant learning rate after linear warmup", schema},
                          [](const lab::Options& opts, const lab::ScheduleContext& ctx) {
                              return std::make_shared<Constant>(opts, ctx);
                          });
}
