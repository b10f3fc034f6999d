// The learning-rate schedules through their plugins, against nanoGPT's get_lr formula.
#include <catch2/catch.hpp>
#include <cmath>

#include "lab/registry.h"

namespace {

std::shared_ptr<lab::Schedule> make_schedule(lab::Registry& registry, const std::string& name,
                                             const std::map<std::string, std::string>& values, double base,
                                             int64_t steps) {
    lab::Options opts = lab::plugin_options(registry, "schedule", name, values, "test");
    return registry.factory<lab::ScheduleFactory>("schedule", name)(opts, lab::ScheduleContext{base, steps});
}

// nanoGPT train.py get_lr(it) with warmup_iters, lr_decay_iters, learning_rate, min_lr.
double nanogpt_lr(int64_t it, int64_t warmup, int64_t decay, double lr, double min_lr) {
    if (it < warmup) return lr * static_cast<double>(it + 1) / static_cast<double>(warmup + 1);
    if (it > decay) return min_lr;
    double ratio = static_cast<double>(it - warmup) / static_cast<double>(decay - warmup);
    return min_lr + 0.5 * (1.0 + std::cos(M_PI * ratio)) * (lr - min_lr);
}

}  // namespace

TEST_CASE("schedules: cosine is nanoGPT's warmup + cosine, linear and constant warm up the same way", "[schedules]") {
    lab::Registry registry;
    registry.load_directory(LAB_PLUGIN_DIR);
    auto cosine = make_schedule(registry, "cosine", {{"warmup", "100"}, {"min_lr", "1e-4"}}, 1e-3, 2000);
    for (int64_t step : {0, 1, 50, 99, 100, 101, 500, 1050, 1999, 2000, 2001, 3000})
        CHECK(cosine->lr(step) == Approx(nanogpt_lr(step, 100, 2000, 1e-3, 1e-4)).epsilon(1e-12));
    CHECK(cosine->lr(1050) == Approx(5.5e-4).epsilon(1e-12));  // half way: the mean of lr and min_lr

    auto linear = make_schedule(registry, "linear", {{"warmup", "10"}, {"min_lr", "0"}, {"decay_steps", "110"}}, 2.0, 500);
    CHECK(linear->lr(0) == Approx(2.0 / 11));
    CHECK(linear->lr(10) == Approx(2.0));
    CHECK(linear->lr(60) == Approx(1.0));
    CHECK(linear->lr(110) == Approx(0.0).margin(1e-15));
    CHECK(linear->lr(400) == Approx(0.0).margin(1e-15));

    auto constant = make_schedule(registry, "constant", {{"warmup", "3"}}, 0.5, 100);
    CHECK(constant->lr(0) == Approx(0.125));
    CHECK(constant->lr(2) == Approx(0.375));
    CHECK(constant->lr(3) == Approx(0.5));
    CHECK(constant->lr(99) == Approx(0.5));
}
