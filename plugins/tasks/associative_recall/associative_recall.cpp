// task/associative_recall: multi-query associative recall (MQAR; Arora et al. 2023, "Zoology:
// Measuring and Improving Recall in Efficient Language Models"), the synthetic task whose accuracy
// tracks how well an attention variant retrieves from its context. An example is `pairs`
// key-value pairs k_1 v_1 .. k_p v_p (keys distinct, from the first half of the vocabulary;
// values from the second half), then `queries` distinct keys drawn from those presented; at each
// query position a causal model must output that key's value, and only there is it scored.
// Token ids: symbols 0 .. vocab-1, then PAD. Data, tokenizer, loss and metrics are
// lab::SyntheticSequenceTask's (sequence_task.h).
#include <algorithm>
#include <numeric>
#include <string>
#include <vector>

#include "lab/error.h"
#include "lab/plugin.h"
#include "lab/sequence_task.h"

namespace {

using namespace lab;

// Keys, queries and an example's length (the validate hook and the constructor).
void check_recall_options(const Options& opts, const TrainSettings& train) {
    const int64_t vocab = opts.get_int("vocab"), pairs = opts.get_int("pairs"), queries = opts.get_int("queries");
    if (pairs > vocab / 2)
        throw ConfigError("task/associative_recall: pairs = " + std::to_string(pairs) + " (" + opts.origin("pairs") +
                          ") distinct keys do not fit in the key half of vocab = " + std::to_string(vocab) + " (" +
                          std::to_string(vocab / 2) + " keys); raise vocab or lower pairs");
    if (queries > pairs)
        throw ConfigError("task/associative_recall: queries = " + std::to_string(queries) + " (" +
                          opts.origin("queries") + ") exceeds pairs = " + std::to_string(pairs) +
                          "; queries are distinct presented keys, so lower queries or raise pairs");
    const int64_t example_len = 2 * pairs + queries;
    if (train.seq_len < example_len)
        throw ConfigError("task/associative_recall: [train] seq_len = " + std::to_string(train.seq_len) +
                          " is shorter than one example, 2 * pairs + queries = " + std::to_string(example_len) +
                          "; raise seq_len or lower task.pairs / task.queries");
}

class AssociativeRecall : public SyntheticSequenceTask {
public:
    AssociativeRecall(const Options& opts, BuildContext& ctx)
        : SyntheticSequenceTask("task/associative_recall", ctx, opts.get_int("eval_batch")),
          vocab_(opts.get_int("vocab")),
          pairs_(opts.get_int("pairs")),
          queries_(opts.get_int("queries")),
          pad_(static_cast<int32_t>(vocab_)) {
        check_recall_options(opts, ctx.train);
        prepare_tokenizer(vocab_ + 1, ctx);
        int64_t n = opts.get_int("val_examples");
        make_validation_set(n, ctx.seed);
        ctx.log("associative_recall: vocabulary " + std::to_string(vocab_) + ", " + std::to_string(pairs_) +
                " pairs, " + std::to_string(queries_) + " queries, " + std::to_string(n) + " validation examples");
    }

private:
    void make_example(Generator& rng, int32_t* inputs, int32_t* targets) const override {
        std::fill(inputs, inputs + seq_len(), pad_);
        std::fill(targets, targets + seq_len(), kIgnoreTarget);
        // Distinct keys: the first `pairs` entries of a partial Fisher-Yates shuffle of the key half.
        std::vector<int32_t> keys(static_cast<size_t>(vocab_ / 2));
        std::iota(keys.begin(), keys.end(), 0);
        shuffle_prefix(rng, keys, pairs_);
        std::vector<int32_t> values(static_cast<size_t>(pairs_));
        auto value_count = static_cast<uint64_t>(vocab_ - vocab_ / 2);
        for (int64_t p = 0; p < pairs_; ++p) {
            values[static_cast<size_t>(p)] = static_cast<int32_t>(vocab_ / 2 + static_cast<int64_t>(rng.uniform_int(value_count)));
            inputs[2 * p] = keys[static_cast<size_t>(p)];
            inputs[2 * p + 1] = values[static_cast<size_t>(p)];
        }
        // Distinct queries: which presented pairs are asked for, in random order.
        std::vector<int32_t> asked(static_cast<size_t>(pairs_));
        std::iota(asked.begin(), asked.end(), 0);
        shuffle_prefix(rng, asked, queries_);
        for (int64_t q = 0; q < queries_; ++q) {
            auto pair = static_cast<size_t>(asked[static_cast<size_t>(q)]);
            inputs[2 * pairs_ + q] = keys[pair];
            targets[2 * pairs_ + q] = values[pair];
        }
    }

    static void shuffle_prefix(Generator& rng, std::vector<int32_t>& items, int64_t count) {
        for (int64_t i = 0; i < count; ++i) {
            auto j = static_cast<size_t>(i) + rng.uniform_int(items.size() - static_cast<size_t>(i));
            std::swap(items[static_cast<size_t>(i)], items[j]);
        }
    }

    int64_t vocab_, pairs_, queries_;
    int32_t pad_;
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::OptionSchema schema;
    schema.integer("vocab", 32, "symbols: the first half are keys, the second half values (PAD comes on top)").range(2, 1024);
    schema.integer("pairs", 8, "key-value pairs presented per example (at most vocab / 2)").at_least(1);
    schema.integer("queries", 4, "distinct presented keys asked for per example (at most pairs)").at_least(1);
    schema.integer("val_examples", 512, "examples in the fixed validation set").at_least(1);
    schema.integer("eval_batch", 64, "validation examples per forward pass").at_least(1);
    lab::PluginDecl decl{"associative_recall", "1.0",
                         "multi-query associative recall (Zoology MQAR): recall the value of each queried key", schema};
    decl.validate = [](const lab::PlanContext& plan) {
        lab::SyntheticSequenceTask::validate("task/associative_recall", plan);
        check_recall_options(*plan.options, plan.train);
    };
    decl.estimate = [](const lab::PlanContext& plan) {
        lab::PluginEstimate e = lab::SyntheticSequenceTask::estimate(plan);
        e.vocab_size = plan.options->get_int("vocab") + 1;  // the symbols and PAD
        return e;
    };
    registry.add_task(std::move(decl),
                      [](const lab::Options& opts, lab::BuildContext& ctx) {
                          return std::make_shared<AssociativeRecall>(opts, ctx);
                      });
}
