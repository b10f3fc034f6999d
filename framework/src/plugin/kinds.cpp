// Default behaviour of the plugin kinds' base classes.
#include "lab/error.h"
#include "lab/optimizer.h"
#include "lab/options.h"
#include "lab/tokenizer.h"

namespace lab {

void Tokenizer::train(std::string_view) {
    throw DataError("this tokenizer cannot be trained from a corpus; give it a vocabulary file instead");
}

void Optimizer::load_state(const std::map<std::string, Tensor>& saved) {
    for (const auto& [name, t] : state()) {
        auto it = saved.find(name);
        if (it == saved.end()) throw DataError("optimizer state '" + name + "' is missing from the checkpoint");
        if (it->second.shape() != t.shape() || it->second.dtype() != t.dtype())
            throw DataError("optimizer state '" + name + "' in the checkpoint has shape " +
                            shape_str(it->second.shape()) + " " + dtype_name(it->second.dtype()) + ", expected " +
                            shape_str(t.shape()) + " " + dtype_name(t.dtype()));
        t.copy_(it->second);
    }
}

void Optimizer::zero_grad() {
    for (auto& [name, p] : params_) {
        Tensor g = p.grad();
        if (g.defined()) g.fill_(0.0);
    }
}


void add_schedule_options(OptionSchema& schema, bool with_decay) {
    schema.integer("warmup", 0, "steps of linear warmup from ~0 to the optimizer's lr").at_least(0);
    if (!with_decay) return;
    schema.real("min_lr", 0.0, "learning rate at the end of the decay").range(0, 10);
    schema.integer("decay_steps", 0, "step at which the decay reaches min_lr (0: [train] steps)").at_least(0);
}

DecaySettings DecaySettings::from(const Options& opts, const ScheduleContext& ctx) {
    DecaySettings d;
    d.base = ctx.base_lr;
    d.min = opts.get_float("min_lr");
    d.warmup = opts.get_int("warmup");
    d.decay = opts.get_int("decay_steps") > 0 ? opts.get_int("decay_steps") : ctx.total_steps;
    return d;
}

double DecaySettings::progress(int64_t step) const {
    if (decay <= warmup) return 1.0;
    double p = static_cast<double>(step - warmup) / static_cast<double>(decay - warmup);
    return p < 0 ? 0.0 : p > 1 ? 1.0 : p;
}

}  // namespace lab
