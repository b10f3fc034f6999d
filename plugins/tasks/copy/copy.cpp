// task/copy: the copying task, a synthetic probe of whether a model can move information across
// the sequence. An example is [x_1 .. x_n, SEP, x_1 .. x_n] with x_i uniform over `vocab` symbols
// and n = `length`; a causal model reads it left to right and is scored only where it must
// reproduce the first half: the prediction at SEP is x_1, at the k-th copied token x_{k+1}.
// Data is generated on the fly from the run's seed (training batches from the data stream, a fixed
// validation set from its own stream), so the task needs no files. Token ids are the task's own:
// symbols 0 .. vocab-1, then SEP and PAD; the char tokenizer is given exactly that vocabulary.
// The output layer is tied to the model's token embedding.
#include <algorithm>
#include <string>
#include <vector>

#include "lab/error.h"
#include "lab/ops.h"
#include "lab/plugin.h"

namespace {

using namespace lab;

constexpr int32_t kIgnore = -100;                  // ops::cross_entropy's ignore_index
constexpr uint64_t kValidationStream = kStreamData + 100;

// UTF-8 of code point U+0100 + id. The char tokenizer numbers its characters in code point order,
// so training it on these characters makes token id == task id. U+0100 .. U+07FF are two bytes,
// which bounds the vocabulary (see the schema's range).
std::string symbol_text(int64_t id) {
    auto cp = static_cast<uint32_t>(0x100 + id);
    return {static_cast<char>(0xC0 | (cp >> 6)), static_cast<char>(0x80 | (cp & 0x3F))};
}

// Makes the experiment's tokenizer hold exactly `total` tokens whose ids are the task's ids.
void prepare_tokenizer(Tokenizer& tokenizer, int64_t total, const std::string& who, BuildContext& ctx) {
    std::string all;
    for (int64_t id = 0; id < total; ++id) all += symbol_text(id);
    if (!tokenizer.ready()) {
        if (!tokenizer.trainable())
            throw ConfigError(who + ": the tokenizer has no vocabulary and cannot be trained; use [tokenizer] type = char");
        tokenizer.train(all);
    } else if (tokenizer.vocab_size() != total) {
        throw ConfigError(who + ": the tokenizer already has a vocabulary of " + std::to_string(tokenizer.vocab_size()) +
                          " tokens, but this task needs exactly " + std::to_string(total) +
                          " (its symbols plus specials); use [tokenizer] type = char without vocab or corpus");
    }
    std::vector<int32_t> ids = tokenizer.encode(all);
    for (int64_t id = 0; id < total; ++id)
        if (static_cast<int64_t>(ids.size()) != total || ids[static_cast<size_t>(id)] != id)
            throw ConfigError(who + ": the tokenizer does not number the task's " + std::to_string(total) +
                              " symbols 0.." + std::to_string(total - 1) + " in order; use [tokenizer] type = char");
    if (!ctx.run_dir.empty()) tokenizer.save(ctx.run_dir);
}

class CopyTask : public Task {
public:
    CopyTask(const Options& opts, BuildContext& ctx)
        : backend_(*ctx.backend),
          rng_(ctx.data_rng),
          vocab_(opts.get_int("vocab")),
          length_(opts.get_int("length")),
          batch_(ctx.train.batch),
          seq_len_(ctx.train.seq_len),
          eval_batch_(opts.get_int("eval_batch")),
          sep_(static_cast<int32_t>(vocab_)),
          pad_(static_cast<int32_t>(vocab_ + 1)) {
        if (!ctx.tokenizer) throw ConfigError("task/copy needs the experiment's tokenizer; give a [tokenizer] section");
        int64_t example_len = 2 * length_ + 1;
        if (seq_len_ < example_len)
            throw ConfigError("task/copy: [train] seq_len = " + std::to_string(seq_len_) +
                              " is shorter than one example, 2 * length + 1 = " + std::to_string(example_len) +
                              " (length = " + std::to_string(length_) + "); raise seq_len or lower task.length");
        prepare_tokenizer(*ctx.tokenizer, vocab_ + 2, "task/copy", ctx);
        Generator val_rng(ctx.seed, kValidationStream);
        int64_t n = opts.get_int("val_examples");
        val_inputs_.resize(static_cast<size_t>(n * seq_len_));
        val_targets_.resize(static_cast<size_t>(n * seq_len_));
        for (int64_t e = 0; e < n; ++e)
            make_example(val_rng, val_inputs_.data() + e * seq_len_, val_targets_.data() + e * seq_len_);
        ctx.log("copy: " + std::to_string(vocab_) + " symbols, length " + std::to_string(length_) + ", " +
                std::to_string(n) + " validation examples");
    }

    void attach(Model& model, BuildContext&) override {
        if (!model.causal())
            throw ConfigError("task/copy needs a causal model (each position may only see earlier tokens)");
        if (model.max_seq_len() < seq_len_)
            throw ConfigError("task/copy: [train] seq_len = " + std::to_string(seq_len_) +
                              " exceeds the model's max_seq_len " + std::to_string(model.max_seq_len()));
    }
    bool needs_causal_model() const override { return true; }

    Batch next_batch() override {
        std::vector<int32_t> inputs(static_cast<size_t>(batch_ * seq_len_)), targets(inputs.size());
        for (int64_t b = 0; b < batch_; ++b) make_example(rng_, inputs.data() + b * seq_len_, targets.data() + b * seq_len_);
        return make_batch(inputs.data(), targets.data(), batch_);
    }

    Tensor loss(Model& model, const Batch& batch) override {
        return ops::cross_entropy(logits(model, batch), batch.targets, kIgnore);
    }

    EvalResult evaluate(Model& model) override {
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
            int64_t here = std::count_if(targets, targets + B * seq_len_, [](int32_t t) { return t != kIgnore; });
            loss_sum += static_cast<double>(ops::cross_entropy(z, batch.targets, kIgnore).item()) * static_cast<double>(here);
            scored += here;
            correct += count_correct(z.to_floats(), targets, B * seq_len_);
        }
        model.train(was_training);
        EvalResult result;
        double denominator = static_cast<double>(std::max<int64_t>(1, scored));
        result.metrics["val/loss"] = loss_sum / denominator;
        result.metrics["val/accuracy"] = static_cast<double>(correct) / denominator;
        return result;
    }

    uint64_t data_position() const override { return rng_.offset(); }
    void set_data_position(uint64_t position) override { rng_.set_offset(position); }

private:
    // Writes one example into inputs[0, T) and targets[0, T) (T = seq_len, the tail padded).
    void make_example(Generator& rng, int32_t* inputs, int32_t* targets) const {
        std::fill(inputs, inputs + seq_len_, pad_);
        std::fill(targets, targets + seq_len_, kIgnore);
        for (int64_t i = 0; i < length_; ++i) {
            auto symbol = static_cast<int32_t>(rng.uniform_int(static_cast<uint64_t>(vocab_)));
            inputs[i] = symbol;
            inputs[length_ + 1 + i] = symbol;
            targets[length_ + i] = symbol;  // position length_ is SEP, which predicts x_1
        }
        inputs[length_] = sep_;
    }

    Batch make_batch(const int32_t* inputs, const int32_t* targets, int64_t B) const {
        Batch batch;
        batch.inputs.ids = Tensor::from_host(backend_, {B, seq_len_}, DType::i32, inputs);
        batch.targets = Tensor::from_host(backend_, {B * seq_len_}, DType::i32, targets);
        batch.tokens = B * seq_len_;
        return batch;
    }

    Tensor logits(Model& model, const Batch& batch) const {
        Tensor hidden = model.forward(batch.inputs);                        // [B, T, C]
        Tensor flat = ops::reshape(hidden, {-1, model.hidden_size()});      // [B*T, C]
        return ops::linear(flat, model.embedding_weight());                 // [B*T, V], tied weights
    }

    // Rows of z [N, V] whose argmax equals a scored target.
    static int64_t count_correct(const std::vector<float>& z, const int32_t* targets, int64_t N) {
        int64_t V = static_cast<int64_t>(z.size()) / N, correct = 0;
        for (int64_t row = 0; row < N; ++row) {
            if (targets[row] == kIgnore) continue;
            auto first = z.begin() + row * V;
            correct += (std::max_element(first, first + V) - first) == targets[row];
        }
        return correct;
    }

    Backend& backend_;
    Generator rng_;
    int64_t vocab_, length_, batch_, seq_len_, eval_batch_;
    int32_t sep_, pad_;
    std::vector<int32_t> val_inputs_, val_targets_;  // [val_examples, T] each
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::OptionSchema schema;
    schema.integer("vocab", 16, "number of distinct symbols to copy (SEP and PAD come on top)").range(2, 1024);
    schema.integer("length", 16, "symbols per example (n); an example is 2n + 1 tokens").at_least(1);
    schema.integer("val_examples", 512, "examples in the fixed validation set").at_least(1);
    schema.integer("eval_batch", 64, "validation examples per forward pass").at_least(1);
    registry.add_task({"copy", "1.0", "synthetic copying: reproduce a random sequence after a separator", schema},
                      [](const lab::Options& opts, lab::BuildContext& ctx) {
                          return std::make_shared<CopyTask>(opts, ctx);
                      });
}
