// task/causal_lm: next-token prediction on a text file.
// Data: the file is tokenised once; the first (1 - valid_fraction) of its tokens train, the rest
// validate (a contiguous split, as nanoGPT's shakespeare_char), or a separate `valid` file.
// Batches are random windows of seq_len + 1 tokens (inputs and shifted targets).
// Evaluation: the loss over a fixed set of validation windows (the same at every evaluation, so
// curves are comparable and not sampling noise), its perplexity, bits per byte, and a generated
// text sample. The output layer is tied to the model's token embedding.
//  - eval_stride = 0: non-overlapping windows of seq_len tokens; a partial tail window is dropped.
//  - eval_stride = S > 0: sliding windows as in Hugging Face's "Perplexity of fixed-length
//    models": a window of up to seq_len inputs starts every S tokens and scores only the targets
//    the previous window did not, so every validation token after the first is predicted exactly
//    once, with at least seq_len - S + 1 tokens of context after the first window. The last window
//    may be shorter than seq_len.
#include <algorithm>
#include <cmath>

#include "lab/error.h"
#include "lab/generate.h"
#include "lab/ops.h"
#include "lab/plugin.h"
#include "lab/text_file.h"

namespace {

using namespace lab;

std::string read_text(const std::string& path, const std::string& key) {
    return read_text_file(path, "task/causal_lm", key + " file",
                          "fetch the datasets with tools/get_data.sh or fix the path");
}

// The validation stride within a window (the validate hook and the constructor).
void check_causal_lm_options(const Options& opts, const TrainSettings& train) {
    const int64_t eval_stride = opts.get_int("eval_stride");
    if (eval_stride > train.seq_len)
        throw ConfigError("task/causal_lm: eval_stride = " + std::to_string(eval_stride) + " (" +
                          opts.origin("eval_stride") + ") exceeds [train] seq_len = " + std::to_string(train.seq_len) +
                          "; a larger stride would skip validation tokens: use a value in [1, seq_len], "
                          "or 0 for non-overlapping windows");
}

class CausalLm : public Task {
public:
    CausalLm(const Options& opts, BuildContext& ctx)
        : backend_(*ctx.backend),
          tokenizer_(*ctx.tokenizer),
          rng_(ctx.data_rng),
          seed_(ctx.seed),
          batch_(ctx.train.batch),
          seq_len_(ctx.train.seq_len),
          val_tokens_(opts.get_int("val_tokens")),
          eval_stride_(opts.get_int("eval_stride")),
          eval_batch_(opts.get_int("eval_batch")),
          sample_tokens_(opts.get_int("sample_tokens")),
          temperature_(static_cast<float>(opts.get_float("sample_temperature"))) {
        check_causal_lm_options(opts, ctx.train);
        std::string train_path = opts.get_string("train");
        std::string text = read_text(train_path, "train");
        if (!tokenizer_.ready()) {
            if (!tokenizer_.trainable())
                throw ConfigError("task/causal_lm: the tokenizer has no vocabulary and cannot be trained; give it one");
            ctx.log("building the tokenizer's vocabulary from " + train_path);
            tokenizer_.train(text);
        }
        if (!ctx.run_dir.empty()) vocab_file_ = tokenizer_.save(ctx.run_dir).string();
        std::vector<int32_t> ids = tokenizer_.encode(text);
        std::string valid_path = opts.get_string("valid");
        if (valid_path.empty()) {
            auto n_train = static_cast<size_t>(static_cast<double>(ids.size()) * (1.0 - opts.get_float("valid_fraction")));
            train_.assign(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(n_train));
            valid_.assign(ids.begin() + static_cast<std::ptrdiff_t>(n_train), ids.end());
        } else {
            train_ = std::move(ids);
            valid_ = tokenizer_.encode(read_text(valid_path, "valid"));
        }
        if (static_cast<int64_t>(train_.size()) < seq_len_ + 2)
            throw DataError("task/causal_lm: the training split of '" + train_path + "' has " +
                            std::to_string(train_.size()) + " tokens, fewer than [train] seq_len + 2 = " +
                            std::to_string(seq_len_ + 2));
        if (static_cast<int64_t>(valid_.size()) < seq_len_ + 1)
            throw DataError("task/causal_lm: the validation split has " + std::to_string(valid_.size()) +
                            " tokens, fewer than [train] seq_len + 1 = " + std::to_string(seq_len_ + 1) +
                            "; raise valid_fraction or give a longer valid file");
        ctx.log("causal_lm: " + std::to_string(train_.size()) + " train tokens, " + std::to_string(valid_.size()) +
                " validation tokens, vocabulary " + std::to_string(tokenizer_.vocab_size()));
        windows_ = validation_windows();
        // The scored targets are always one contiguous run valid_[1, 1 + scored): decoding it
        // as a whole keeps multi-token characters intact. For a char or byte-level tokenizer the
        // decoded text is exactly the text those tokens cover, so bits per byte is exact and
        // comparable across tokenizers; for a lossy tokenizer (e.g. a lowercasing wordpiece) it
        // counts the bytes of the decoded text.
        int64_t scored = 0;
        for (const Window& w : windows_) scored += w.length - w.first_scored;
        std::vector<int32_t> scored_ids(valid_.begin() + 1, valid_.begin() + 1 + scored);
        scored_bytes_ = static_cast<int64_t>(tokenizer_.decode(scored_ids).size());
    }

    void attach(Model& model, BuildContext&) override {
        check_model_for_task("task/causal_lm", true, false, model.causal(), model.max_seq_len(), seq_len_);
    }
    bool needs_causal_model() const override { return true; }

    Batch next_batch() override {
        int64_t B = batch_, T = seq_len_;
        std::vector<int32_t> inputs(static_cast<size_t>(B * T)), targets(static_cast<size_t>(B * T));
        uint64_t starts = train_.size() - static_cast<uint64_t>(T);  // window start in [0, len - T)
        for (int64_t b = 0; b < B; ++b) {
            uint64_t start = rng_.uniform_int(starts);
            for (int64_t t = 0; t < T; ++t) {
                inputs[static_cast<size_t>(b * T + t)] = train_[start + static_cast<uint64_t>(t)];
                targets[static_cast<size_t>(b * T + t)] = train_[start + static_cast<uint64_t>(t) + 1];
            }
        }
        Batch batch;
        batch.inputs.ids = Tensor::from_host(backend_, {B, T}, DType::i32, inputs.data());
        batch.targets = Tensor::from_host(backend_, {B * T}, DType::i32, targets.data());
        batch.tokens = B * T;
        return batch;
    }

    Tensor loss(Model& model, const Batch& batch) override {
        Tensor hidden = model.forward(batch.inputs);                        // [B, T, C]
        Tensor flat = ops::reshape(hidden, {-1, model.hidden_size()});      // [B*T, C]
        Tensor logits = ops::linear(flat, model.embedding_weight());        // [B*T, V], tied weights
        return share_of(ops::cross_entropy(logits, batch.targets), batch);
    }

    // One loss term: the mean over the scored next-token targets (all B*T of a training batch).
    Batch part(const Batch& whole, int64_t first, int64_t count) const override {
        return scored_part(whole, first, count,
                           {.task = "task/causal_lm", .width = seq_len_, .targets_per_row = {seq_len_}});
    }

    EvalResult evaluate(Model& model) override {
        NoGradGuard no_grad;
        bool was_training = model.training();
        model.eval();
        int64_t T = seq_len_;
        auto n_windows = static_cast<int64_t>(windows_.size());
        double total = 0;  // nats summed over the scored targets
        int64_t counted = 0;
        for (int64_t w0 = 0; w0 < n_windows; w0 += eval_batch_) {
            int64_t B = std::min(eval_batch_, n_windows - w0);
            // A short (tail) window is padded at its end: the model is causal, so the padding
            // changes no scored position, and its targets are ignored (-100).
            std::vector<int32_t> inputs(static_cast<size_t>(B * T), valid_.front()), targets(static_cast<size_t>(B * T), -100);
            int64_t batch_scored = 0;
            for (int64_t b = 0; b < B; ++b) {
                const Window& w = windows_[static_cast<size_t>(w0 + b)];
                for (int64_t t = 0; t < w.length; ++t) {
                    size_t at = static_cast<size_t>(w.start + t);
                    inputs[static_cast<size_t>(b * T + t)] = valid_[at];
                    if (t >= w.first_scored) targets[static_cast<size_t>(b * T + t)] = valid_[at + 1];
                }
                batch_scored += w.length - w.first_scored;
            }
            Batch batch;
            batch.inputs.ids = Tensor::from_host(backend_, {B, T}, DType::i32, inputs.data());
            batch.targets = Tensor::from_host(backend_, {B * T}, DType::i32, targets.data());
            // cross_entropy is the mean over the scored (not -100) targets.
            total += static_cast<double>(loss(model, batch).item()) * static_cast<double>(batch_scored);
            counted += batch_scored;
        }
        EvalResult result;
        double mean_loss = total / static_cast<double>(std::max<int64_t>(1, counted));
        result.set("val/loss", mean_loss, MetricGoal::minimize);
        result.set("val/ppl", std::exp(mean_loss), MetricGoal::minimize);
        result.set("val/tokens", static_cast<double>(counted), MetricGoal::none);
        result.set("val/bytes", static_cast<double>(scored_bytes_), MetricGoal::none);
        result.set("val/bpb", total / std::log(2.0) / static_cast<double>(std::max<int64_t>(1, scored_bytes_)),
                   MetricGoal::minimize);
        if (sample_tokens_ > 0) result.texts.emplace_back("sample", sample(model));
        model.train(was_training);
        return result;
    }

    uint64_t data_position() const override { return rng_.offset(); }
    void set_data_position(uint64_t position) override { rng_.set_offset(position); }

private:
    // One validation window: inputs valid_[start, start + length), targets shifted by one; the
    // targets at offsets >= first_scored count (the earlier ones were scored by the window before).
    struct Window {
        int64_t start, length, first_scored;
    };

    // The fixed evaluation windows (see the header comment); targets valid_[1, 1 + scored) in order.
    std::vector<Window> validation_windows() const {
        const int64_t T = seq_len_;
        const int64_t targets = static_cast<int64_t>(valid_.size()) - 1;  // every token after the first
        std::vector<Window> windows;
        if (eval_stride_ == 0) {
            // Whole windows only; val_tokens rounds up to whole windows (the behaviour before
            // eval_stride existed, kept so earlier results stay comparable).
            int64_t count = targets / T;
            if (val_tokens_ > 0) count = std::min(count, (val_tokens_ + T - 1) / T);
            for (int64_t w = 0; w < count; ++w) windows.push_back({w * T, T, 0});
            return windows;
        }
        const int64_t last = val_tokens_ > 0 ? std::min(targets, val_tokens_) : targets;  // scored inputs end here
        int64_t scored_end = 0;  // inputs [0, scored_end) have had their next token scored
        for (int64_t start = 0; scored_end < last; start += eval_stride_) {
            int64_t end = std::min(start + T, last);
            windows.push_back({start, end - start, scored_end - start});
            scored_end = end;
        }
        return windows;
    }

    // Ancestral sampling at the configured temperature (lab::sample_token, as labrun generate)
    // from the first validation token. Unlike lab::generate, which stops when the context is full,
    // the context slides: it is cropped to the model's window and recomputed for every token.
    std::string sample(Model& model) {
        // The sample's random numbers are keyed by the data position, so that a resumed run draws
        // the same samples as an uninterrupted one (each evaluation gets its own 2^20 numbers).
        Generator sample_rng(seed_, kStreamSample);
        sample_rng.set_offset(rng_.offset() << 20);
        SamplingOptions options;
        options.temperature = temperature_;
        std::vector<int32_t> ids = {valid_.front()};
        for (int64_t n = 0; n < sample_tokens_; ++n) {
            int64_t start = std::max<int64_t>(0, static_cast<int64_t>(ids.size()) - model.max_seq_len());
            std::vector<int32_t> window(ids.begin() + start, ids.end());
            int64_t T = static_cast<int64_t>(window.size());
            ModelInputs in;
            in.ids = Tensor::from_host(backend_, {1, T}, DType::i32, window.data());
            Tensor hidden = ops::slice(model.forward(in), 1, T - 1, T);                       // [1, 1, C]
            Tensor logits = ops::linear(ops::reshape(hidden, {1, model.hidden_size()}), model.embedding_weight());
            ids.push_back(sample_token(logits.to_floats(), options, sample_rng.uniform()));
        }
        return tokenizer_.decode(ids);
    }

    Backend& backend_;
    Tokenizer& tokenizer_;
    Generator rng_;
    uint64_t seed_;
    int64_t batch_, seq_len_, val_tokens_, eval_stride_, eval_batch_, sample_tokens_;
    float temperature_;
    std::vector<int32_t> train_, valid_;
    std::string vocab_file_;
    std::vector<Window> windows_;
    int64_t scored_bytes_ = 0;  // UTF-8 bytes of the text the scored targets decode to
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::OptionSchema schema;
    schema.path("train", std::nullopt, "UTF-8 text file to train on (its tail validates unless `valid` is set)");
    schema.path("valid", std::string(), "separate validation text file (default: the tail of `train`)");
    schema.real("valid_fraction", 0.1, "fraction of `train`'s tokens held out for validation").range(0.0001, 0.5);
    schema.integer("val_tokens", 0, "validation tokens per evaluation (0: the whole validation split)").at_least(0);
    schema.integer("eval_stride", 0,
                   "sliding-window evaluation: a window of seq_len tokens every eval_stride tokens, each scoring only "
                   "tokens the previous one did not (0: non-overlapping windows; at most seq_len)")
        .at_least(0);
    schema.integer("eval_batch", 64, "validation windows per forward pass").at_least(1);
    schema.integer("sample_tokens", 200, "tokens generated as a text sample at each evaluation (0: none)").at_least(0);
    schema.real("sample_temperature", 1.0, "sampling temperature (0: greedy)").range(0, 10);
    lab::PluginDecl decl{"causal_lm", "1.0", "next-token language modelling on a text file", schema};
    decl.validate = [](const lab::PlanContext& plan) { check_causal_lm_options(*plan.options, plan.train); };
    // The output layer is the tied embedding (no parameters); logits and their gradient: 2 V per token.
    decl.estimate = [](const lab::PlanContext& plan) {
        lab::PluginEstimate e;
        e.activation_floats_per_token = 2 * static_cast<double>(plan.vocab_size);
        e.needs_causal_model = true;
        return e;
    };
    registry.add_task(std::move(decl),
                      [](const lab::Options& opts, lab::BuildContext& ctx) {
                          return std::make_shared<CausalLm>(opts, ctx);
                      });
}
