// SyntheticSequenceTask: the shared part of synthetic sequence tasks (task/copy,
// task/associative_recall, ...). A derived task only says how one example is generated; this
// base does the rest:
//  - token ids are the task's own: the experiment's (char) tokenizer is given exactly `total`
//    symbols numbered 0 .. total-1 (prepare_tokenizer), so the model's vocabulary is the task's;
//  - an example is seq_len input ids and seq_len targets, kIgnoreTarget where nothing is scored;
//  - training batches come from the run's data stream, a fixed validation set from its own stream;
//  - loss is cross entropy over the scored positions, with the output layer tied to the model's
//    token embedding; part() splits a batch by rows, each part's loss its share of that mean;
//    evaluate() reports val/loss and val/accuracy over the validation set.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "lab/registry.h"
#include "lab/task.h"

namespace lab {

class SyntheticSequenceTask : public Task {
public:
    static constexpr int32_t kIgnoreTarget = -100;  // ops::cross_entropy's default ignore_index

    void attach(Model& model, BuildContext& ctx) override;
    bool needs_causal_model() const override { return true; }
    Batch next_batch() override;
    Tensor loss(Model& model, const Batch& batch) override;
    // One loss term, the mean over the scored targets (not kIgnoreTarget).
    Batch part(const Batch& whole, int64_t first, int64_t count) const override;
    EvalResult evaluate(Model& model) override;
    uint64_t data_position() const override { return rng_.offset(); }
    void set_data_position(uint64_t position) override { rng_.set_offset(position); }

    // For the derived tasks' hooks (PluginDecl::validate and estimate). validate: the task numbers
    // its own symbols, so the tokenizer must be tokenizer/char without vocab or corpus (what
    // prepare_tokenizer needs). estimate: a causal model; logits and their gradient, 2 V floats
    // per token (the output layer is the tied embedding: no parameters of its own).
    static void validate(const std::string& name, const PlanContext& plan);
    static PluginEstimate estimate(const PlanContext& plan);

protected:
    // `name` ("task/copy") prefixes errors; eval_batch is validation examples per forward pass.
    SyntheticSequenceTask(std::string name, BuildContext& ctx, int64_t eval_batch);
    // Writes one example into inputs[0, seq_len) and targets[0, seq_len).
    virtual void make_example(Generator& rng, int32_t* inputs, int32_t* targets) const = 0;
    // Makes the tokenizer hold exactly `total` tokens whose ids are the task's ids (trains an empty
    // trainable tokenizer; refuses one with another vocabulary) and saves it with the run.
    void prepare_tokenizer(int64_t total, BuildContext& ctx);
    // Draws the fixed validation set; call at the end of the derived constructor.
    void make_validation_set(int64_t examples, uint64_t seed);
    int64_t seq_len() const { return seq_len_; }
    const std::string& name() const { return name_; }

private:
    Batch make_batch(const int32_t* inputs, const int32_t* targets, int64_t B) const;
    Tensor logits(Model& model, const Batch& batch) const;  // [B*T, V]

    std::string name_;
    Backend& backend_;
    Tokenizer* tokenizer_;
    Generator rng_;
    int64_t batch_, seq_len_, eval_batch_;
    std::vector<int32_t> val_inputs_, val_targets_;  // [val_examples, T] each
};

}  // namespace lab
