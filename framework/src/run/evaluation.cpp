// Evaluating a trained run again (see lab/evaluation.h).
#include "lab/evaluation.h"

#include <chrono>
#include <map>
#include <sstream>

#include "lab/error.h"
#include "lab/safetensors.h"
#include "lab/threads.h"

namespace lab {

namespace fs = std::filesystem;

namespace {

// Keys an evaluation takes from elsewhere, and why.
const std::map<std::string, std::string>& fixed_keys() {
    static const std::map<std::string, std::string> keys = {
        {"experiment.db", "the run is read from, and its metrics recorded in, the database of --db FILE"},
        {"experiment.plugins", "the run's plugins are loaded from its configuration; add others with --plugin-path"},
        {"train.init_from", "the weights are those of the run's checkpoint"},
    };
    return keys;
}

// A value as it appears in a tag: the characters that structure a tagged name percent-encoded.
std::string tag_value(const std::string& value) {
    std::string out;
    for (char c : value) {
        switch (c) {
            case '%': out += "%25"; break;
            case '/': out += "%2F"; break;
            case ',': out += "%2C"; break;
            case '=': out += "%3D"; break;
            case '@': out += "%40"; break;
            default: out += c;
        }
    }
    return out;
}

// The overrides to blame when the checkpoint does not fit: the changed keys outside [train] and
// [experiment] (those sections hold no parameter shapes), else every change.
std::string shape_suspects(const EvaluationPlan& plan) {
    std::vector<std::string> model_side, all = plan.changed;
    for (const std::string& change : plan.changed)
        if (change.rfind("train.", 0) != 0 && change.rfind("experiment.", 0) != 0) model_side.push_back(change);
    if (plan.evaluated.train.get_int("seq_len") != plan.trained.train.get_int("seq_len"))
        all.push_back("train.seq_len=" + std::to_string(plan.evaluated.train.get_int("seq_len")));
    return join(model_side.empty() ? all : model_side, ", ");
}

// Every tensor of `module` must be in `state` with its shape: a mismatch with overrides is theirs
// (ConfigError), without any it is a damaged or foreign checkpoint (DataError).
void check_fits(const Module& module, const TensorMap& state, const std::string& what, const fs::path& file,
                const EvaluationPlan& plan) {
    const std::string suspects = shape_suspects(plan);
    for (const auto& [name, tensor] : module.state_dict()) {
        auto saved = state.find(name);
        if (saved != state.end() && saved->second.shape() == tensor.shape()) continue;
        const std::string found = saved == state.end() ? "has no tensor '" + what + name + "'"
                                                       : "holds '" + what + name + "' as " +
                                                             shape_str(saved->second.shape());
        if (suspects.empty())
            throw DataError("checkpoint '" + file.string() + "' " + found + ", but the run's own configuration " +
                            "builds " + shape_str(tensor.shape()) +
                            "; the checkpoint may be damaged or belong to another run");
        throw ConfigError("eval: with " + suspects + " the model's tensor '" + what + name + "' is " +
                          shape_str(tensor.shape()) + ", but the checkpoint " + file.string() + " " + found +
                          "; an evaluation cannot change the shapes of trained parameters (model size, vocabulary, "
                          "learned positions): drop the override");
    }
}

}  // namespace

namespace {

ConfigError longer_than_context(const std::string& origin, int64_t seq_len, int64_t context, const RunSpec& trained) {
    const Options& trained_model = trained.plugins.at("model").options;
    return ConfigError(origin + ": train.seq_len = " + std::to_string(seq_len) + " is longer than the " +
                       std::to_string(context) + " positions of the trained model/" + trained.plugins.at("model").plugin +
                       " (model.max_seq_len = " + trained_model.values().at("max_seq_len").text +
                       (trained_model.get_int("max_seq_len") > 0 ? "" : ", i.e. the trained train.seq_len") +
                       "), and positions past them were never trained; evaluate at train.seq_len <= " +
                       std::to_string(context) + ", or train the run with a larger model.max_seq_len");
}

// Resolving the evaluated configuration refuses a seq_len past the model's positions in the task's
// words (lab/run_plan.h); an evaluation says it in its own, naming the trained context.
void refuse_longer_than_trained(const RunSpec& trained, const RawConfig& raw) {
    const Options& trained_model = trained.plugins.at("model").options;
    if (!trained_model.values().count("max_seq_len")) return;
    auto raw_int = [&raw](const std::string& section, const std::string& key, int64_t* out) -> const OptionValue* {
        auto found = raw.sections.find(section);
        if (found == raw.sections.end()) return nullptr;
        auto value = found->second.find(key);
        return value != found->second.end() && Options::parse_int(value->second.text, out) ? &value->second : nullptr;
    };
    int64_t seq_len = 0, max_seq_len = trained_model.get_int("max_seq_len");
    const OptionValue* seq = raw_int("train", "seq_len", &seq_len);
    if (!seq) return;
    raw_int("model", "max_seq_len", &max_seq_len);
    const int64_t context = max_seq_len > 0 ? max_seq_len : trained.train.get_int("seq_len");
    if (seq_len > context) throw longer_than_context(seq->origin, seq_len, context, trained);
}

}  // namespace

EvaluationPlan plan_evaluation(const RawConfig& recorded, const std::vector<std::string>& overrides,
                               const ConfigEnv& env, const Registry& registry) {
    for (const std::string& text : overrides) {
        std::string target = text.substr(0, text.find('='));
        target.erase(0, target.find_first_not_of(" \t"));
        target.erase(target.find_last_not_of(" \t") + 1);
        if (auto fixed = fixed_keys().find(target); fixed != fixed_keys().end())
            throw ConfigError("override '" + text + "': eval cannot change " + target + ": " + fixed->second);
    }
    EvaluationPlan plan;
    plan.trained = resolve_run(recorded, registry);
    RawConfig raw = recorded;
    apply_overrides(raw, overrides, env);
    try {
        plan.evaluated = resolve_run(raw, registry);
    } catch (const ConfigError&) {
        refuse_longer_than_trained(plan.trained, raw);
        throw;
    }

    const auto trained_entries = plan.trained.entries();
    const std::map<std::string, std::string> before(trained_entries.begin(), trained_entries.end());
    for (const auto& [key, value] : plan.evaluated.entries()) {
        if (key == "train.seq_len") continue;
        auto was = before.find(key);
        if (was == before.end() || was->second != value) plan.changed.push_back(key + "=" + value);
    }
    const int64_t trained_seq_len = plan.trained.train.get_int("seq_len");
    const int64_t seq_len = plan.evaluated.train.get_int("seq_len");
    std::ostringstream tag;  // (not string concatenation: g++ 12 warns falsely on it, -Wrestrict)
    tag << seq_len;
    for (const std::string& change : plan.changed) {
        size_t eq = change.find('=');
        tag << ',' << change.substr(0, eq + 1) << tag_value(change.substr(eq + 1));
    }
    plan.tag = tag.str();

    // The model keeps the context it was trained with: `max_seq_len = 0` means "[train] seq_len"
    // (model/gpt, model/transformer), which would otherwise follow the evaluation's seq_len and
    // resize the position table.
    const Options& trained_model = plan.trained.plugins.at("model").options;
    const Options* model = &plan.evaluated.plugins.at("model").options;
    if (!trained_model.values().count("max_seq_len") || !model->values().count("max_seq_len")) return plan;
    const int64_t trained_context =
        trained_model.get_int("max_seq_len") > 0 ? trained_model.get_int("max_seq_len") : trained_seq_len;
    const bool pin = model->get_int("max_seq_len") == 0 && seq_len != trained_seq_len;
    // Refused here, before resolving the pinned model, whose own check would say it less plainly.
    const int64_t context = model->get_int("max_seq_len") > 0 ? model->get_int("max_seq_len")
                            : pin                             ? trained_context
                                                              : seq_len;
    if (seq_len > context)
        throw longer_than_context(plan.evaluated.train.origin("seq_len"), seq_len, context, plan.trained);
    if (pin) {
        apply_overrides(raw, {"model.max_seq_len=" + std::to_string(trained_context)}, env);
        plan.evaluated = resolve_run(raw, registry);
    }
    return plan;
}

std::string tagged_metric_name(const std::string& metric, const std::string& tag) {
    auto slash = metric.find('/');
    if (slash == std::string::npos) return metric + "@" + tag;
    return metric.substr(0, slash) + "@" + tag + metric.substr(slash);
}

CheckpointEvaluation evaluate_checkpoint(const EvaluationPlan& plan, const Registry& registry,
                                         const RunEnvironment& env, const fs::path& checkpoint_dir) {
    std::error_code ec;
    for (const char* file : {"model.safetensors", "trainer.safetensors"})
        if (!fs::exists(checkpoint_dir / file, ec))
            throw DataError("'" + checkpoint_dir.string() + "' is not a complete checkpoint (no " + file +
                            "); a run writes one at each evaluation and at the end");
    const RunSpec& spec = plan.evaluated;
    set_threads(run_threads(spec));
    // The whole training stack (the optimizer too, unused): built exactly as the run built it, so
    // the task's validation data and the model are the run's.
    TrainingStack stack = build_training_stack(spec, registry, env);
    // plan_evaluation checks models that declare max_seq_len; this covers the others (e.g. BERT's
    // max_position) whose task did not refuse the length already.
    if (const int64_t seq_len = spec.train.get_int("seq_len"); seq_len > stack.model->max_seq_len())
        throw ConfigError(spec.train.origin("seq_len") + ": train.seq_len = " + std::to_string(seq_len) +
                          " is longer than the " + std::to_string(stack.model->max_seq_len()) +
                          " positions of the trained model/" + spec.plugins.at("model").plugin +
                          "; evaluate at a train.seq_len within them");
    Metadata meta;
    const fs::path trainer_file = checkpoint_dir / "trainer.safetensors";
    const fs::path model_file = checkpoint_dir / "model.safetensors";
    TensorMap trainer = load_safetensors(trainer_file, *stack.backend, &meta);
    TensorMap model_state = stack.model->import_state(load_safetensors(model_file, *stack.backend));
    TensorMap task_state;
    for (auto& [name, tensor] : trainer)
        if (name.rfind("task.", 0) == 0) task_state[name.substr(5)] = tensor;
    check_fits(*stack.model, model_state, "", model_file, plan);
    check_fits(*stack.task, task_state, "task.", trainer_file, plan);
    stack.model->load_state_dict(model_state);
    stack.task->load_state_dict(task_state);
    stack.model->eval();
    stack.task->eval();

    CheckpointEvaluation out;
    try {
        out.step = std::stoll(meta["step"]);
    } catch (const std::exception&) {
        throw DataError("checkpoint '" + trainer_file.string() + "' has no valid 'step' in its metadata (got '" +
                        meta["step"] + "'); the checkpoint may be damaged");
    }
    auto t0 = std::chrono::steady_clock::now();
    out.result = stack.task->evaluate(*stack.model);
    out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return out;
}

}  // namespace lab
