#include "lab/run_plan.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>

#include "lab/config.h"
#include "lab/error.h"

#include "config_detail.h"

namespace lab {

using config_detail::prefix_of;

namespace {

// Every plugin's estimate, in build order; `validate` runs the validate hooks on the way.
struct Plan {
    PlanContext base;
    PluginEstimate tokenizer, model, attention, task, optimizer;
};

PlanContext context_for(const Plan& plan, const SectionChoice& choice) {
    PlanContext ctx = plan.base;
    ctx.options = &choice.options;
    return ctx;
}

const PluginInfo& info_of(const RunSpec& run, const Registry& registry, const std::string& section) {
    const SectionChoice& choice = run.plugins.at(section);
    return registry.find(choice.kind, choice.plugin);
}

PluginEstimate run_hooks(const RunSpec& run, const Registry& registry, const std::string& section, const Plan& plan,
                         bool validate) {
    auto found = run.plugins.find(section);
    if (found == run.plugins.end()) return {};
    const PluginInfo& info = registry.find(found->second.kind, found->second.plugin);
    const PlanContext ctx = context_for(plan, found->second);
    if (validate && info.validate) info.validate(ctx);
    return info.estimate ? info.estimate(ctx) : PluginEstimate{};
}

// The model's blocks' attention, with the shape the model builds it with.
PluginEstimate attention_hooks(const RunSpec& run, const Registry& registry, Plan& plan, bool validate) {
    if (!plan.model.attention_shape || !run.plugins.count("attention")) return {};
    plan.base.attention_shape = &*plan.model.attention_shape;
    PluginEstimate estimate = run_hooks(run, registry, "attention", plan, validate);
    plan.base.attention_shape = nullptr;
    return estimate;
}

Plan plan_run(const RunSpec& run, const Registry& registry, int64_t vocab_size, bool validate) {
    Plan plan;
    plan.base.sections["experiment"] = &run.experiment;
    plan.base.sections["train"] = &run.train;
    for (const auto& [section, choice] : run.plugins) {
        plan.base.sections[section] = &choice.options;
        plan.base.plugins[section] = choice.plugin;
    }
    plan.base.train = train_settings(run.train);
    if (auto attention = run.plugins.find("attention"); attention != run.plugins.end()) {
        plan.base.attention_plugin = attention->second.plugin;
        plan.base.attention = registry.find("attention", attention->second.plugin).attention;
    }
    plan.tokenizer = run_hooks(run, registry, "tokenizer", plan, validate);
    plan.base.vocab_size = vocab_size > 0 ? vocab_size : plan.tokenizer.vocab_size;
    plan.model = run_hooks(run, registry, "model", plan, validate);
    if (plan.base.vocab_size == 0) plan.base.vocab_size = plan.model.vocab_size;  // a pretrained model's
    plan.attention = attention_hooks(run, registry, plan, validate);
    plan.base.model = &plan.model;
    plan.task = run_hooks(run, registry, "task", plan, validate);
    // A synthetic task fixes the vocabulary itself (its symbols plus specials): size the
    // embeddings and heads with it (the hooks are pure functions of their context, so again).
    if (vocab_size <= 0 && plan.task.vocab_size > 0 && plan.task.vocab_size != plan.base.vocab_size) {
        plan.base.vocab_size = plan.task.vocab_size;
        plan.base.model = nullptr;
        plan.model = run_hooks(run, registry, "model", plan, false);
        plan.attention = attention_hooks(run, registry, plan, false);
        plan.base.model = &plan.model;
        plan.task = run_hooks(run, registry, "task", plan, false);
    }
    if (validate && run.plugins.count("task") && run.plugins.count("model") && info_of(run, registry, "model").estimate)
        check_model_for_task("task/" + run.plugins.at("task").plugin, plan.task.needs_causal_model,
                             plan.task.needs_bidirectional_model, plan.model.causal, plan.model.max_seq_len,
                             plan.base.train.seq_len);
    plan.optimizer = run_hooks(run, registry, "optimizer", plan, validate);
    run_hooks(run, registry, "schedule", plan, validate);
    run_hooks(run, registry, "backend", plan, validate);
    return plan;
}

// Rules of the framework's own sections.
void validate_train(const RunSpec& run) {
    const int64_t ckpt_every = run.train.get_int("ckpt_every"), log_every = run.train.get_int("log_every");
    if (ckpt_every % log_every != 0)
        throw ConfigError(prefix_of(run.train.origin("ckpt_every")) + "[train] ckpt_every = " +
                          std::to_string(ckpt_every) + " must be a multiple of log_every = " +
                          std::to_string(log_every) + " (" + run.train.origin("log_every") +
                          "), so that a resumed run logs the same intervals; change one of them");
}

double f32_bytes(double floats) { return floats * 4.0; }



}  // namespace

TrainSettings train_settings(const Options& train) {
    TrainSettings settings;
    settings.steps = train.get_int("steps");
    settings.batch = train.get_int("batch");
    settings.seq_len = train.get_int("seq_len");
    settings.eval_every = train.get_int("eval_every");
    settings.log_every = train.get_int("log_every");
    settings.grad_clip = train.get_float("grad_clip");
    settings.micro_batch = train.get_int("micro_batch");
    return settings;
}


void validate_run(const RunSpec& run, const Registry& registry) {
    validate_train(run);
    plan_run(run, registry, 0, true);
}

MemoryEstimate estimate_memory(const RunSpec& run, const Registry& registry, int64_t vocab_size) {
    const Plan plan = plan_run(run, registry, vocab_size, false);
    MemoryEstimate estimate;
    // Each block builds its own attention: the attention plugin's count is per block.
    const double parameters = plan.model.parameters +
                              static_cast<double>(plan.model.attention_layers) * plan.attention.parameters +
                              plan.task.parameters;
    estimate.parameters = parameters < 9e18 ? static_cast<int64_t>(parameters) : std::numeric_limits<int64_t>::max();
    estimate.vocab_size = plan.base.vocab_size;
    const TrainSettings& train = plan.base.train;
    estimate.tokens_per_pass = (train.micro_batch > 0 ? std::min(train.micro_batch, train.batch) : train.batch) *
                               train.seq_len;
    estimate.optimizer_floats_per_parameter = plan.optimizer.state_floats_per_parameter;
    const double per_token = plan.model.activation_floats_per_token +
                             static_cast<double>(plan.model.attention_layers) *
                                 plan.attention.activation_floats_per_token +
                             plan.task.activation_floats_per_token;
    estimate.parameter_bytes = f32_bytes(parameters);
    estimate.gradient_bytes = f32_bytes(parameters);  // one f32 gradient per parameter
    estimate.optimizer_bytes = f32_bytes(parameters * static_cast<double>(plan.optimizer.state_floats_per_parameter));
    estimate.activation_bytes = f32_bytes(per_token * static_cast<double>(estimate.tokens_per_pass));
    return estimate;
}

std::string memory_name(const Backend& backend) {
    return backend.device_kind() == DeviceKind::cpu ? "host memory" : backend.name() + " device memory";
}


std::string MemoryEstimate::str() const {
    std::ostringstream out;
    out << "parameters " << parameters << " (" << format_bytes(parameter_bytes) << "), gradients "
        << format_bytes(gradient_bytes) << ", optimizer state " << format_bytes(optimizer_bytes) << " ("
        << optimizer_floats_per_parameter << " f32 per parameter), activations " << format_bytes(activation_bytes)
        << " (" << tokens_per_pass << " tokens per pass), total " << format_bytes(total_bytes());
    if (vocab_size == 0) out << " (at least: the vocabulary is known only after the data is read)";
    return out.str();
}


void check_memory(const MemoryEstimate& estimate, size_t available_bytes, const std::string& where) {
    if (available_bytes == 0 || estimate.total_bytes() <= static_cast<double>(available_bytes)) return;
    throw ConfigError("the run needs about " + format_bytes(estimate.total_bytes()) + " but " +
                      format_bytes(static_cast<double>(available_bytes)) + " of " + where +
                      " is available (estimate: " + estimate.str() +
                      "); make the model smaller ([model] layers, hidden), lower [train] batch or seq_len, "
                      "or set [train] micro_batch");
}


}  // namespace lab
