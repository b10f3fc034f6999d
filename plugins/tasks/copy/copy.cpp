// task/copy: the copying task, a synthetic probe of whether a model can move information across
// the sequence. An example is [x_1 .. x_n, SEP, x_1 .. x_n] with x_i uniform over `vocab` symbols
// and n = `length`; a causal model reads it left to right and is scored only where it must
// reproduce the first half: the prediction at SEP is x_1, at the k-th copied token x_{k+1}.
// Token ids: symbols 0 .. vocab-1, then SEP and PAD. Data, tokenizer, loss and metrics are
// lab::SyntheticSequenceTask's (sequence_task.h).
#include <algorithm>
#include <string>

#include "lab/error.h"
#include "lab/plugin.h"
#include "lab/sequence_task.h"

namespace {

using namespace lab;

// An example must fit in a sequence (the validate hook and the constructor).
void check_copy_options(const Options& opts, const TrainSettings& train) {
    const int64_t length = opts.get_int("length"), example_len = 2 * length + 1;
    if (train.seq_len < example_len)
        throw ConfigError("task/copy: [train] seq_len = " + std::to_string(train.seq_len) +
                          " is shorter than one example, 2 * length + 1 = " + std::to_string(example_len) +
                          " (length = " + std::to_string(length) + ", " + opts.origin("length") +
                          "); raise seq_len or lower task.length");
}

class CopyTask : public SyntheticSequenceTask {
public:
    CopyTask(const Options& opts, BuildContext& ctx)
        : SyntheticSequenceTask("task/copy", ctx, opts.get_int("eval_batch")),
          vocab_(opts.get_int("vocab")),
          length_(opts.get_int("length")),
          sep_(static_cast<int32_t>(vocab_)),
          pad_(static_cast<int32_t>(vocab_ + 1)) {
        check_copy_options(opts, ctx.train);
        prepare_tokenizer(vocab_ + 2, ctx);
        int64_t n = opts.get_int("val_examples");
        make_validation_set(n, ctx.seed);
        ctx.log("copy: " + std::to_string(vocab_) + " symbols, length " + std::to_string(length_) + ", " +
                std::to_string(n) + " validation examples");
    }

private:
    void make_example(Generator& rng, int32_t* inputs, int32_t* targets) const override {
        std::fill(inputs, inputs + seq_len(), pad_);
        std::fill(targets, targets + seq_len(), kIgnoreTarget);
        for (int64_t i = 0; i < length_; ++i) {
            auto symbol = static_cast<int32_t>(rng.uniform_int(static_cast<uint64_t>(vocab_)));
            inputs[i] = symbol;
            inputs[length_ + 1 + i] = symbol;
            targets[length_ + i] = symbol;  // position length_ is SEP, which predicts x_1
        }
        inputs[length_] = sep_;
    }

    int64_t vocab_, length_;
    int32_t sep_, pad_;
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::OptionSchema schema;
    schema.integer("vocab", 16, "number of distinct symbols to copy (SEP and PAD come on top)").range(2, 1024);
    schema.integer("length", 16, "symbols per example (n); an example is 2n + 1 tokens").at_least(1);
    schema.integer("val_examples", 512, "examples in the fixed validation set").at_least(1);
    schema.integer("eval_batch", 64, "validation examples per forward pass").at_least(1);
    lab::PluginDecl decl{"copy", "1.0", "synthetic copying: reproduce a random sequence after a separator", schema};
    decl.validate = [](const lab::PlanContext& plan) {
        lab::SyntheticSequenceTask::validate("task/copy", plan);
        check_copy_options(*plan.options, plan.train);
    };
    decl.estimate = [](const lab::PlanContext& plan) {
        lab::PluginEstimate e = lab::SyntheticSequenceTask::estimate(plan);
        e.vocab_size = plan.options->get_int("vocab") + 2;  // the symbols, SEP and PAD
        return e;
    };
    registry.add_task(std::move(decl),
                      [](const lab::Options& opts, lab::BuildContext& ctx) {
                          return std::make_shared<CopyTask>(opts, ctx);
                      });
}
