#include "lab/sequence_task.h"

#include <algorithm>

#include "lab/error.h"
#include "lab/ops.h"
#include "lab/utf8.h"

namespace lab {

namespace {

// A validation stream of its own, so that drawing training batches never moves it.
constexpr uint64_t kValidationStream = kStreamData + 100;

// UTF-8 of code point U+0100 + id. The char tokenizer numbers its characters in code point order,
// so training it on these characters makes token id == task id. U+0100 .. U+07FF are two bytes,
// which bounds the vocabulary (the tasks' schemas keep vocab <= 1024).
std::string symbol_text(int64_t id) {
    std::string text;
    append_utf8(text, static_cast<char32_t>(0x100 + id));
    return text;
}

// Rows of z [N, V] whose argmax equals a scored target.
int64_t count_correct(const std::vector<float>& z, const int32_t* targets, int64_t N) {
    int64_t V = static_cast<int64_t>(z.size()) / N, correct = 0;
    for (int64_t row = 0; row < N; ++row) {
        if (targets[row] == SyntheticSequenceTask::kIgnoreTarget) continue;
        auto first = z.begin() + row * V;
        correct += (std::max_element(first, first + V) - first) == targets[row];
    }
    return correct;
}

}  // namespace

SyntheticSequenceTask::SyntheticSequenceTask(std::string name, BuildContext& ctx, int64_t eval_batch)
    : name_(std::move(name)),
      backend_(*ctx.backend),
      tokenizer_(ctx.tokenizer),
      rng_(ctx.data_rng),
      batch_(ctx.train.batch),
      seq_len_(ctx.train.seq_len),
      eval_batch_(eval_batch) {
    if (!tokenizer_) throw ConfigError(name_ + " needs the experiment's tokenizer; give a [tokenizer] section");
}

void SyntheticSequenceTask::prepare_tokenizer(int64_t total, BuildContext& ctx) {
    std::string all;
    for (int64_t id = 0; id < total; ++id) all += symbol_text(id);
    Tokenizer& tokenizer = *tokenizer_;
    if (!tokenizer.ready()) {
        if (!tokenizer.trainable())
            throw ConfigError(name_ + ": the tokenizer has no vocabulary and cannot be trained; use [tokenizer] type = char");
        tokenizer.train(all);
    } else if (tokenizer.vocab_size() != total) {
        throw ConfigError(name_ + ": the tokenizer already has a vocabulary of " + std::to_string(tokenizer.vocab_size()) +
                          " tokens, but this task needs exactly " + std::to_string(total) +
                          " (its symbols plus specials); use [tokenizer] type = char without vocab or corpus");
    }
    std::vector<int32_t> ids = tokenizer.encode(all);
    for (int64_t id = 0; id < total; ++id)
        if (static_cast<int64_t>(ids.size()) != total || ids[static_cast<size_t>(id)] != id)
            throw ConfigError(name_ + ": the tokenizer does not number the task's " + std::to_string(total) +
                              " symbols 0.." + std::to_string(total - 1) + " in order; use [tokenizer] type = char");
    if (!ctx.run_dir.empty()) tokenizer.save(ctx.run_dir);
}

void SyntheticSequenceTask::make_validation_set(int64_t examples, uint64_t seed) {
    Generator val_rng(seed, kValidationStream);
    val_inputs_.resize(static_cast<size_t>(examples * seq_len_));
    val_targets_.resize(static_cast<size_t>(examples * seq_len_));
    for (int64_t e = 0; e < examples; ++e)
        make_example(val_rng, val_inputs_.data() + e * seq_len_, val_targets_.data() + e * seq_len_);
}

void SyntheticSequenceTask::attach(Model& model, BuildContext&) {
    check_model_for_task(name_, true, false, model.causal(), model.max_seq_len(), seq_len_);
}

void SyntheticSequenceTask::validate(const std::string& name, const PlanContext& plan) {
    auto tokenizer = plan.plugins.find("tokenizer");
    if (tokenizer == plan.plugins.end()) return;  // the constructor names the missing section
    const Options& options = plan.section("tokenizer");
    std::string why;
    if (tokenizer->second != "char") why = "[tokenizer] type = " + tokenizer->second;
    for (const char* key : {"vocab", "corpus"})
        if (why.empty() && options.values().count(key) && !options.get_string(key).empty())
            why = std::string("[tokenizer] ") + key + " is set (" + options.origin(key) + ")";
    if (!why.empty())
        throw ConfigError(name + " numbers its own symbols, so it needs an empty character tokenizer, but " + why +
                          "; use [tokenizer] type = char without vocab or corpus");
}

PluginEstimate SyntheticSequenceTask::estimate(const PlanContext& plan) {
    PluginEstimate e;
    e.activation_floats_per_token = 2 * static_cast<double>(plan.vocab_size);
    e.needs_causal_model = true;
    return e;
}

Batch SyntheticSequenceTask::next_batch() {
    std::vector<int32_t> inputs(static_cast<size_t>(batch_ * seq_len_)), targets(inputs.size());
    for (int64_t b = 0; b < batch_; ++b) make_example(rng_, inputs.data() + b * seq_len_, targets.data() + b * seq_len_);
    return make_batch(inputs.data(), targets.data(), batch_);
}

Tensor SyntheticSequenceTask::loss(Model& model, const Batch& batch) {
    return share_of(ops::cross_entropy(logits(model, batch), batch.targets, kIgnoreTarget), batch);
}

Batch SyntheticSequenceTask::part(const Batch& whole, int64_t first, int64_t count) const {
    return scored_part(
        whole, first, count,
        {.task = name_, .width = seq_len_, .targets_per_row = {seq_len_}, .ignore_index = kIgnoreTarget});
}

EvalResult SyntheticSequenceTask::evaluate(Model& model) {
    NoGradGuard no_grad;
    bool was_training = model.training();
    model.eval();
    int64_t examples = static_cast<int64_t>(val_inputs_.size()) / seq_len_;
    double loss_sum = 0;
    int64_t scored = 0, correct = 0;
    for (int64_t e0 = 0; e0 < examples; e0 += eval_batch_) {
        int64_t B = std::min(eval_batch_, examples - e0);
        const int32_t* targets = val_targets_.data() + e0 * seq_len_;
        Batch batch = make_batch(val_inputs_.data() + e0 * seq_len_, targets, B);
        Tensor z = logits(model, batch);  // [B*T, V]
        int64_t here = std::count_if(targets, targets + B * seq_len_, [](int32_t t) { return t != kIgnoreTarget; });
        loss_sum += static_cast<double>(ops::cross_entropy(z, batch.targets, kIgnoreTarget).item()) *
                    static_cast<double>(here);
        scored += here;
        correct += count_correct(z.to_floats(), targets, B * seq_len_);
    }
    model.train(was_training);
    EvalResult result;
    double denominator = static_cast<double>(std::max<int64_t>(1, scored));
    result.set("val/loss", loss_sum / denominator, MetricGoal::minimize);
    result.set("val/accuracy", static_cast<double>(correct) / denominator, MetricGoal::maximize);
    return result;
}

Batch SyntheticSequenceTask::make_batch(const int32_t* inputs, const int32_t* targets, int64_t B) const {
    Batch batch;
    batch.inputs.ids = Tensor::from_host(backend_, {B, seq_len_}, DType::i32, inputs);
    batch.targets = Tensor::from_host(backend_, {B * seq_len_}, DType::i32, targets);
    batch.tokens = B * seq_len_;
    return batch;
}

Tensor SyntheticSequenceTask::logits(Model& model, const Batch& batch) const {
    Tensor hidden = model.forward(batch.inputs);                    // [B, T, C]
    Tensor flat = ops::reshape(hidden, {-1, model.hidden_size()});  // [B*T, C]
    return ops::linear(flat, model.embedding_weight());             // [B*T, V], tied weights
}

}  // namespace lab
