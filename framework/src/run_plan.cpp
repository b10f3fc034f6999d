#include "lab/run_plan.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>

#include "lab/config.h"
#include "lab/error.h"

namespace lab {

namespace {

std::string prefix_of(const std::string& origin) { return origin.empty() ? "" : origin + ": "; }

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

// `key: value` of /proc/meminfo in kB, or -1.
int64_t meminfo_kb(const std::string& key) {
    std::ifstream in("/proc/meminfo");
    std::string name;
    int64_t value = 0;
    std::string unit;
    while (in >> name >> value) {
        std::getline(in, unit);
        if (name == key + ":") return value;
    }
    return -1;
}

// A cgroup v2 (or v1) number from `file`, or -1 for "max", a missing file or no number.
int64_t cgroup_number(const std::string& file) {
    std::ifstream in(file);
    std::string text;
    if (!(in >> text) || text == "max") return -1;
    try {
        return std::stoll(text);
    } catch (const std::exception&) {
        return -1;
    }
}

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

const Options& PlanContext::section(const std::string& name) const {
    auto found = sections.find(name);
    if (found == sections.end() || !found->second)
        throw ConfigError("the run has no [" + name + "] section, which a plugin's check needs; add one");
    return *found->second;
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

std::string format_bytes(double bytes) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int unit = 0;
    while (bytes >= 1024.0 && unit < 6) bytes /= 1024.0, ++unit;
    char text[64];
    std::snprintf(text, sizeof text, unit == 0 ? "%.0f %s" : "%.1f %s", bytes, units[unit]);
    return text;
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

size_t host_available_memory() {
    double available = -1;
    if (int64_t kb = meminfo_kb("MemAvailable"); kb >= 0) available = static_cast<double>(kb) * 1024.0;
    // A container's limit may be far below the machine's free memory: the cgroup kills past it.
    for (const auto& [limit_file, usage_file] :
         {std::pair<const char*, const char*>{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"},
          {"/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"}}) {
        const int64_t limit = cgroup_number(limit_file), usage = cgroup_number(usage_file);
        if (limit <= 0 || usage < 0 || limit > (int64_t{1} << 60)) continue;  // v1 says "no limit" with 2^63
        const double left = static_cast<double>(std::max<int64_t>(0, limit - usage));
        if (available < 0 || left < available) available = left;
        break;
    }
    return available < 0 ? 0 : static_cast<size_t>(available);
}

void check_memory(const MemoryEstimate& estimate, size_t available_bytes, const std::string& where) {
    if (available_bytes == 0 || estimate.total_bytes() <= static_cast<double>(available_bytes)) return;
    throw ConfigError("the run needs about " + format_bytes(estimate.total_bytes()) + " but " +
                      format_bytes(static_cast<double>(available_bytes)) + " of " + where +
                      " is available (estimate: " + estimate.str() +
                      "); make the model smaller ([model] layers, hidden), lower [train] batch or seq_len, "
                      "or set [train] micro_batch");
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
