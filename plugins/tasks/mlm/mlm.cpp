// task/mlm: BERT masked language modelling (Devlin et al. 2019, "BERT", section 3.1 task #1 and, with
// nsp = true, task #2 next-sentence prediction).
// Data: each non-blank line of the text file is a document; every line is tokenised once and the
// tokens are joined into one stream. A training sequence is a random window of the stream packed as
// [CLS] tokens [SEP] (seq_len tokens, no padding), or with nsp [CLS] A [SEP] B [SEP] where B is the
// text that follows A (label 0) or, half of the time, a span from elsewhere (label 1), with segment
// ids 0 for [CLS] A [SEP] and 1 for B [SEP] (Hugging Face's next_sentence_label convention).
// Masking is dynamic (RoBERTa, Liu et al. 2019): every batch draws fresh masks. With
// mask_count = random each ordinary position is chosen with mask_prob (at least one per sequence,
// as Hugging Face's data collator); with mask_count = fixed exactly max(1, round(mask_prob * n)) of
// the n ordinary positions are chosen (Google's create_pretraining_data.py), so every batch scores
// the same number of rows and the decoder's shapes never change (a steady state with no new
// kernels). A chosen token becomes [MASK] with mask_token_prob, a random ordinary token with
// random_token_prob, and stays itself otherwise.
// Validation uses fixed windows and masks drawn from the seed on a stream of their own, so every
// evaluation scores the same predictions.
// Parts of a batch (Task::part) take the MLM and NSP terms each with its own share: a part with 7 of
// the batch's 61 masked positions contributes 7/61 of the MLM mean, one without any contributes 0.
// Heads (Hugging Face BertForPreTraining names, checkpointed as task.<name>): the prediction
// transform dense -> GELU (erf) -> LayerNorm(eps 1e-12), a decoder tied to the model's token
// embedding plus cls.predictions.bias, and cls.seq_relationship on model.pool(hidden) for NSP. The
// decoder runs only on the masked rows (~15% of B*T), so the [B*T, V] logits are never formed.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>

#include "lab/error.h"
#include "lab/ops.h"
#include "lab/plugin.h"
#include "lab/sentence_pair.h"

namespace {

using namespace lab;

constexpr int32_t kIgnore = -100;                  // ops::cross_entropy's default ignore_index
constexpr uint64_t kStreamValidation = 0x6d6c6dU;  // "mlm": the fixed validation windows and masks

// The non-blank lines of a text file (a trailing '\r' is dropped, so CRLF files read the same).
std::vector<std::string> read_lines(const std::string& path, const std::string& key) {
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw DataError("task/mlm: cannot read " + key + " file '" + path +
                        "'; fetch the datasets with tools/get_data.sh or fix the path");
    std::vector<std::string> lines;
    std::string line;
    while (std::getline(in, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.find_first_not_of(" \t\f\v") != std::string::npos) lines.push_back(line);
    }
    return lines;
}

// Dynamic BERT masking of one sequence.
class Masker {
public:
    Masker(const SpecialTokens& special, int64_t vocab, float mask_prob, bool fixed_count, float mask_token_prob,
           float random_token_prob)
        : special_(special),
          mask_prob_(mask_prob),
          fixed_count_(fixed_count),
          mask_token_prob_(mask_token_prob),
          random_token_prob_(random_token_prob) {
        std::set<int32_t> specials = {special.pad, special.unk, special.cls, special.sep, special.mask};
        excluded_.assign(specials.begin(), specials.end());
        ordinary_ = static_cast<uint32_t>(vocab - static_cast<int64_t>(excluded_.size()));
    }

    // How many random numbers one sequence of T tokens uses.
    static uint64_t numbers(int64_t T) { return static_cast<uint64_t>(3 * T + 1); }

    // ids [T] are masked in place; labels [T] get the original token where one is scored, kIgnore
    // elsewhere. Number t of `key` decides whether position t is chosen (fixed count: the t-th
    // swap of a partial Fisher-Yates shuffle of the candidates), T + t what it becomes, 2T + t
    // which random token, 3T the position chosen when no other is.
    void apply(const RngKey& key, int32_t* ids, int32_t* labels, int64_t T) const {
        std::fill(labels, labels + T, kIgnore);
        std::vector<int64_t> candidates;
        for (int64_t t = 0; t < T; ++t) {
            if (never_masked(ids[t])) continue;
            candidates.push_back(t);
            if (!fixed_count_ && philox_uniform(key, static_cast<uint64_t>(t)) < mask_prob_)
                mask_at(key, t, ids, labels, T);
        }
        if (fixed_count_ && !candidates.empty()) {
            const size_t n = candidates.size();
            const size_t count = std::clamp<size_t>(
                static_cast<size_t>(std::lround(static_cast<double>(mask_prob_) * static_cast<double>(n))), 1, n);
            for (size_t i = 0; i < count; ++i) {
                size_t j = i + philox_u32(key, static_cast<uint64_t>(i)) % static_cast<uint32_t>(n - i);
                std::swap(candidates[i], candidates[j]);
                mask_at(key, candidates[i], ids, labels, T);
            }
            return;
        }
        bool any = std::any_of(labels, labels + T, [](int32_t label) { return label != kIgnore; });
        if (!any && !candidates.empty()) {
            uint32_t pick = philox_u32(key, static_cast<uint64_t>(3 * T)) % static_cast<uint32_t>(candidates.size());
            mask_at(key, candidates[pick], ids, labels, T);
        }
    }

private:
    bool never_masked(int32_t id) const {
        return id == special_.cls || id == special_.sep || id == special_.pad || id == special_.mask;
    }

    void mask_at(const RngKey& key, int64_t t, int32_t* ids, int32_t* labels, int64_t T) const {
        labels[t] = ids[t];
        float kind = philox_uniform(key, static_cast<uint64_t>(T + t));
        if (kind < mask_token_prob_) ids[t] = special_.mask;
        else if (kind < mask_token_prob_ + random_token_prob_)
            ids[t] = ordinary_token(philox_u32(key, static_cast<uint64_t>(2 * T + t)));
    }

    // The k-th id that is not a special token (a random replacement is never [CLS], [PAD], ...).
    int32_t ordinary_token(uint32_t bits) const {
        auto id = static_cast<int32_t>(bits % ordinary_);
        for (int32_t special : excluded_) {
            if (id < special) break;
            ++id;
        }
        return id;
    }

    SpecialTokens special_;
    float mask_prob_;
    bool fixed_count_;
    float mask_token_prob_, random_token_prob_;
    std::vector<int32_t> excluded_;  // sorted special ids
    uint32_t ordinary_ = 1;
};

// Sequences on the host: ids and segments [N, T], MLM labels [N, T], NSP labels [N].
struct HostSequences {
    std::vector<int32_t> ids, segments, labels, nsp;
};

// What a sequence must hold and how chosen tokens may be replaced (the validate hook and the
// constructor).
void check_mlm_options(const Options& opts, const TrainSettings& train) {
    const bool nsp = opts.get_bool("nsp");
    const int64_t min_len = nsp ? 5 : 3;
    if (train.seq_len < min_len)
        throw ConfigError("task/mlm: [train] seq_len = " + std::to_string(train.seq_len) + " cannot hold " +
                          (nsp ? "[CLS] A [SEP] B [SEP] with A and B non-empty" : "[CLS] text [SEP]") +
                          "; set [train] seq_len >= " + std::to_string(min_len));
    auto mask_token_prob = static_cast<float>(opts.get_float("mask_token_prob"));
    auto random_token_prob = static_cast<float>(opts.get_float("random_token_prob"));
    if (mask_token_prob + random_token_prob > 1.0f + 1e-6f)
        throw ConfigError("task/mlm: mask_token_prob + random_token_prob = " +
                          std::to_string(mask_token_prob + random_token_prob) + " (" + opts.origin("mask_token_prob") +
                          ", " + opts.origin("random_token_prob") +
                          ") exceeds 1; the rest of the chosen tokens are kept, so lower one of them");
}

// The heads (exact) and activations: the transform's rows and the logits of the masked rows only
// (about mask_prob of the tokens), with their gradients.
PluginEstimate mlm_estimate(const PlanContext& plan) {
    PluginEstimate e;
    const double C = plan.model ? static_cast<double>(plan.model->hidden) : 0;
    const double V = static_cast<double>(plan.vocab_size);
    const bool nsp = plan.options->get_bool("nsp");
    e.parameters = C * C + C + 2 * C + V + (nsp ? 2 * C + 2 : 0);
    e.activation_floats_per_token = plan.options->get_float("mask_prob") * (4 * C + 2 * V);
    e.needs_bidirectional_model = true;
    return e;
}

class MaskedLm : public Task {
public:
    MaskedLm(const Options& opts, BuildContext& ctx)
        : backend_(*ctx.backend),
          rng_(ctx.data_rng),
          seed_(ctx.seed),
          batch_(ctx.train.batch),
          seq_len_(ctx.train.seq_len),
          eval_batch_(opts.get_int("eval_batch")),
          nsp_(opts.get_bool("nsp")) {
        if (!ctx.tokenizer) throw ConfigError("task/mlm needs the experiment's tokenizer; give a [tokenizer] section");
        Tokenizer& tokenizer = *ctx.tokenizer;
        check_mlm_options(opts, ctx.train);
        auto mask_token_prob = static_cast<float>(opts.get_float("mask_token_prob"));
        auto random_token_prob = static_cast<float>(opts.get_float("random_token_prob"));

        std::string train_path = opts.get_string("train"), valid_path = opts.get_string("valid");
        std::vector<std::string> train_lines = read_lines(train_path, "train"), valid_lines;
        if (valid_path.empty()) {
            if (train_lines.size() < 2)
                throw DataError(
                    "task/mlm: '" + train_path + "' has " + std::to_string(train_lines.size()) +
                    " non-blank lines, too few to hold out validation lines; give a longer file or `valid`");
            auto n_train = static_cast<size_t>(static_cast<double>(train_lines.size()) *
                                               (1.0 - opts.get_float("valid_fraction")));
            n_train = std::clamp<size_t>(n_train, 1, train_lines.size() - 1);
            valid_lines.assign(train_lines.begin() + static_cast<std::ptrdiff_t>(n_train), train_lines.end());
            train_lines.resize(n_train);
        } else {
            valid_lines = read_lines(valid_path, "valid");
        }
        if (!tokenizer.ready()) {
            if (!tokenizer.trainable())
                throw ConfigError("task/mlm: the tokenizer has no vocabulary and cannot be trained; give it one");
            ctx.log("building the tokenizer's vocabulary from " + train_path);
            std::string corpus;
            for (const std::string& line : train_lines) corpus += line + "\n";
            tokenizer.train(corpus);
        }
        if (!ctx.run_dir.empty()) tokenizer.save(ctx.run_dir);
        special_ = SpecialTokens::of(tokenizer, "task/mlm");
        vocab_ = tokenizer.vocab_size();
        masker_ = std::make_unique<Masker>(special_, vocab_, static_cast<float>(opts.get_float("mask_prob")),
                                           opts.get_string("mask_count") == "fixed", mask_token_prob,
                                           random_token_prob);

        train_ = tokenize(tokenizer, train_lines);
        valid_ = tokenize(tokenizer, valid_lines);
        if (static_cast<int64_t>(train_.size()) < span())
            throw DataError("task/mlm: the training text of '" + train_path + "' has " + std::to_string(train_.size()) +
                            " tokens, fewer than one sequence needs (" + std::to_string(span()) +
                            "); give a longer file or lower [train] seq_len");
        if (static_cast<int64_t>(valid_.size()) < span())
            throw DataError("task/mlm: the validation text has " + std::to_string(valid_.size()) +
                            " tokens, fewer than one sequence needs (" + std::to_string(span()) +
                            "); raise valid_fraction or give a longer valid file");
        make_validation_set(opts.get_int("val_sequences"));
        ctx.log("mlm: " + std::to_string(train_lines.size()) + " train lines (" + std::to_string(train_.size()) +
                " tokens), " + std::to_string(valid_lines.size()) + " validation lines (" +
                std::to_string(valid_.size()) + " tokens, " + std::to_string(val_count_) + " sequences of " +
                std::to_string(seq_len_) + "), vocabulary " + std::to_string(vocab_) +
                (nsp_ ? ", with next-sentence prediction" : ""));
    }

    void attach(Model& model, BuildContext& ctx) override {
        if (dense_weight_.defined())
            throw ConfigError("task/mlm: attach() was already called; a task holds the heads of one model");
        // Bidirectional: a masked token is predicted from both sides.
        check_model_for_task("task/mlm", false, true, model.causal(), model.max_seq_len(), seq_len_);
        Tensor embedding = model.embedding_weight();
        if (embedding.size(0) != vocab_)
            throw ConfigError("task/mlm: the model's token embedding has " + std::to_string(embedding.size(0)) +
                              " rows but the tokenizer has " + std::to_string(vocab_) +
                              " tokens; build the model with the experiment's tokenizer");
        int64_t C = model.hidden_size();
        auto normal = [&](const std::string& name, const Shape& shape) {
            Tensor t = add_parameter(name, Tensor::empty(backend_, shape));
            ops::fill_normal(t, 0.0f, 0.02f, ctx.init_rng.next(static_cast<uint64_t>(t.numel())));
            return t;
        };
        dense_weight_ = normal("cls.predictions.transform.dense.weight", {C, C});
        dense_bias_ = add_parameter("cls.predictions.transform.dense.bias", Tensor::zeros(backend_, {C}));
        norm_weight_ = add_parameter("cls.predictions.transform.LayerNorm.weight", Tensor::full(backend_, {C}, 1.0));
        norm_bias_ = add_parameter("cls.predictions.transform.LayerNorm.bias", Tensor::zeros(backend_, {C}));
        decoder_bias_ = add_parameter("cls.predictions.bias", Tensor::zeros(backend_, {vocab_}));
        if (nsp_) {
            nsp_weight_ = normal("cls.seq_relationship.weight", {2, C});
            nsp_bias_ = add_parameter("cls.seq_relationship.bias", Tensor::zeros(backend_, {2}));
        }
    }

    // targets: the MLM labels [B*T] (the original token where one is scored, -100 elsewhere),
    // followed with nsp by the next-sentence labels [B] (0: B follows A, 1: B is random).
    Batch next_batch() override {
        int64_t T = seq_len_;
        HostSequences host;
        host.ids.resize(static_cast<size_t>(batch_ * T));
        host.segments.resize(host.ids.size());
        host.labels.resize(host.ids.size());
        host.nsp.resize(static_cast<size_t>(batch_));
        uint64_t starts = train_.size() - static_cast<uint64_t>(span()) + 1;
        for (int64_t b = 0; b < batch_; ++b) {
            size_t at = static_cast<size_t>(b * T);
            host.nsp[static_cast<size_t>(b)] =
                write_sequence(train_, rng_.uniform_int(starts), rng_, &host.ids[at], &host.segments[at]);
            masker_->apply(rng_.next(Masker::numbers(T)), &host.ids[at], &host.labels[at], T);
        }
        return make_batch(host, 0, batch_);
    }

    Tensor loss(Model& model, const Batch& batch) override {
        Heads out = heads(model, batch);
        Tensor loss = share_of(ops::cross_entropy(out.mlm_logits, out.mlm_labels), batch, 0);
        if (nsp_) loss = ops::add(loss, share_of(ops::cross_entropy(out.nsp_logits, out.nsp_labels), batch, 1));
        return loss;
    }

    // Two loss terms with their own shares: the MLM mean over the masked positions (the targets'
    // first B*T) and, with nsp, the NSP mean over the sequences (the last B).
    Batch part(const Batch& whole, int64_t first, int64_t count) const override {
        if (!whole.inputs.segments.defined())
            throw ShapeError("task/mlm: a batch without segment ids is not one of its batches; split a batch of "
                             "task/mlm's next_batch() (or a part of one)");
        std::vector<int64_t> targets_per_row = {seq_len_};
        if (nsp_) targets_per_row.push_back(1);
        return scored_part(whole, first, count,
                           {.task = "task/mlm", .width = seq_len_, .targets_per_row = targets_per_row,
                            .ignore_index = kIgnore});
    }

    EvalResult evaluate(Model& model) override {
        NoGradGuard no_grad;
        bool model_was_training = model.training(), task_was_training = training();
        model.eval();
        eval();
        double mlm_loss = 0, nsp_loss = 0;
        int64_t masked = 0, mlm_correct = 0, nsp_correct = 0;
        for (int64_t first = 0; first < val_count_; first += eval_batch_) {
            int64_t B = std::min(eval_batch_, val_count_ - first);
            Heads out = heads(model, make_batch(val_, first, B));
            auto M = static_cast<int64_t>(out.mlm_labels_host.size());
            mlm_loss += static_cast<double>(ops::cross_entropy(out.mlm_logits, out.mlm_labels).item()) *
                        static_cast<double>(M);
            masked += M;
            mlm_correct += count_correct(out.mlm_logits.to_floats(), out.mlm_labels_host);
            if (nsp_) {
                nsp_loss += static_cast<double>(ops::cross_entropy(out.nsp_logits, out.nsp_labels).item()) *
                            static_cast<double>(B);
                nsp_correct += count_correct(out.nsp_logits.to_floats(), out.nsp_labels_host);
            }
        }
        model.train(model_was_training);
        train(task_was_training);
        EvalResult result;
        double mean_loss = mlm_loss / static_cast<double>(std::max<int64_t>(1, masked));
        result.set("val/loss", mean_loss, MetricGoal::minimize);
        result.set("val/ppl", std::exp(mean_loss), MetricGoal::minimize);
        const double mlm_accuracy = static_cast<double>(mlm_correct) / static_cast<double>(std::max<int64_t>(1, masked));
        result.set("val/mlm_accuracy", mlm_accuracy, MetricGoal::maximize);
        result.set("val/masked_tokens", static_cast<double>(masked), MetricGoal::none);
        if (nsp_) {
            result.set("val/nsp_loss", nsp_loss / static_cast<double>(val_count_), MetricGoal::minimize);
            const double nsp_accuracy = static_cast<double>(nsp_correct) / static_cast<double>(val_count_);
            result.set("val/nsp_accuracy", nsp_accuracy, MetricGoal::maximize);
        }
        return result;
    }

    uint64_t data_position() const override { return rng_.offset(); }
    void set_data_position(uint64_t position) override { rng_.set_offset(position); }

private:
    struct Heads {
        Tensor mlm_logits;  // [M, V], M = masked positions of the batch
        Tensor mlm_labels;  // [M] i32
        Tensor nsp_logits;  // [B, 2] (nsp only)
        Tensor nsp_labels;  // [B] i32 (nsp only)
        std::vector<int32_t> mlm_labels_host, nsp_labels_host;
    };

    // Text tokens per sequence: T - 2 without nsp (A + B = T - 3 with it).
    int64_t span() const { return nsp_ ? seq_len_ - 3 : seq_len_ - 2; }

    static std::vector<int32_t> tokenize(const Tokenizer& tokenizer, const std::vector<std::string>& lines) {
        std::vector<int32_t> stream;
        for (const std::string& line : lines) {
            std::vector<int32_t> ids = tokenizer.encode(line);
            stream.insert(stream.end(), ids.begin(), ids.end());
        }
        return stream;
    }

    // Writes the sequence whose text starts at `start` of `stream` into ids and segments [T];
    // returns its NSP label (kIgnore without nsp). With nsp, A is 1 .. span-1 tokens and B fills
    // the rest, either the text after A or (label 1) a span that does not overlap this window.
    int32_t write_sequence(const std::vector<int32_t>& stream, uint64_t start, Generator& rng, int32_t* ids,
                           int32_t* segments) const {
        auto text = [&](uint64_t from, int64_t count) {
            auto first = stream.begin() + static_cast<std::ptrdiff_t>(from);
            return std::vector<int32_t>(first, first + count);
        };
        EncodedPair pair;
        int32_t label = kIgnore;
        if (!nsp_) {
            pair = make_pair_input(text(start, span()), {}, seq_len_, special_, false);
        } else {
            auto a_len = static_cast<int64_t>(1 + rng.uniform_int(static_cast<uint64_t>(span() - 1)));
            int64_t b_len = span() - a_len;
            uint64_t b_start = start + static_cast<uint64_t>(a_len);
            label = rng.uniform() < 0.5f ? 1 : 0;
            if (label == 1) b_start = random_span_start(rng, stream.size(), start, b_len);
            pair = make_pair_input(text(start, a_len), text(b_start, b_len), seq_len_, special_, true);
        }
        std::copy(pair.ids.begin(), pair.ids.end(), ids);
        std::copy(pair.segments.begin(), pair.segments.end(), segments);
        return label;
    }

    // A start for b_len tokens whose span does not overlap the window [start, start + span()).
    // Only a stream shorter than about two windows has no such place; then any start is taken.
    uint64_t random_span_start(Generator& rng, uint64_t length, uint64_t start, int64_t b_len) const {
        uint64_t starts = length - static_cast<uint64_t>(b_len) + 1;
        uint64_t excluded_lo = start + 1 > static_cast<uint64_t>(b_len) ? start + 1 - static_cast<uint64_t>(b_len) : 0;
        uint64_t excluded_hi = std::min(start + static_cast<uint64_t>(span()), starts);
        uint64_t excluded = excluded_hi - excluded_lo;
        if (excluded >= starts) return rng.uniform_int(starts);
        uint64_t k = rng.uniform_int(starts - excluded);
        return k < excluded_lo ? k : k + excluded;
    }

    // Non-overlapping windows of the validation text with masks (and NSP choices) from the seed.
    void make_validation_set(int64_t cap) {
        int64_t T = seq_len_;
        val_count_ = static_cast<int64_t>(valid_.size()) / span();
        if (cap > 0) val_count_ = std::min(val_count_, cap);
        Generator val_rng(seed_, kStreamValidation);
        val_.ids.resize(static_cast<size_t>(val_count_ * T));
        val_.segments.resize(val_.ids.size());
        val_.labels.resize(val_.ids.size());
        val_.nsp.resize(static_cast<size_t>(val_count_));
        for (int64_t n = 0; n < val_count_; ++n) {
            size_t at = static_cast<size_t>(n * T);
            val_.nsp[static_cast<size_t>(n)] = write_sequence(valid_, static_cast<uint64_t>(n * span()), val_rng,
                                                              &val_.ids[at], &val_.segments[at]);
            masker_->apply(val_rng.next(Masker::numbers(T)), &val_.ids[at], &val_.labels[at], T);
        }
    }

    // Sequences [first, first + B) of `host` as a batch on the backend.
    Batch make_batch(const HostSequences& host, int64_t first, int64_t B) const {
        int64_t T = seq_len_;
        size_t at = static_cast<size_t>(first * T), count = static_cast<size_t>(B * T);
        Batch batch;
        batch.inputs.ids = Tensor::from_host(backend_, {B, T}, DType::i32, host.ids.data() + at);
        batch.inputs.segments = Tensor::from_host(backend_, {B, T}, DType::i32, host.segments.data() + at);
        std::vector<int32_t> targets(host.labels.begin() + static_cast<std::ptrdiff_t>(at),
                                     host.labels.begin() + static_cast<std::ptrdiff_t>(at + count));
        if (nsp_)
            targets.insert(targets.end(), host.nsp.begin() + first, host.nsp.begin() + first + B);
        batch.targets = Tensor::from_host(backend_, {static_cast<int64_t>(targets.size())}, DType::i32, targets.data());
        batch.tokens = B * T;
        return batch;
    }

    Heads heads(Model& model, const Batch& batch) const {
        if (!dense_weight_.defined())
            throw ConfigError("task/mlm: attach(model) must run before loss() or evaluate(); it creates the heads");
        int64_t B = batch.inputs.ids.size(0), T = batch.inputs.ids.size(1), C = model.hidden_size();
        std::vector<int64_t> targets = batch.targets.to_ints();
        size_t expected = static_cast<size_t>(B * T + (nsp_ ? B : 0));
        if (targets.size() != expected)
            throw ShapeError("task/mlm: a batch of ids " + shape_str(batch.inputs.ids.shape()) + " needs " +
                             std::to_string(expected) + " targets, got " + std::to_string(targets.size()) +
                             "; make batches with this task's next_batch()");
        Heads out;
        std::vector<int32_t> positions;
        for (int64_t i = 0; i < B * T; ++i)
            if (targets[static_cast<size_t>(i)] != kIgnore) {
                positions.push_back(static_cast<int32_t>(i));
                out.mlm_labels_host.push_back(static_cast<int32_t>(targets[static_cast<size_t>(i)]));
            }
        if (positions.empty()) {
            // Every sequence of next_batch() has a masked position, so a whole batch without one is a bug.
            if (batch.loss_shares.empty())
                throw DataError("task/mlm: a batch has no masked position to score; make batches with next_batch()");
            // A part may have none (its MLM share is 0). It still scores one row, ignored, so the
            // term is exactly 0 while the heads and the model get (zero) gradients as in any other
            // part: every part's backward reaches the same parameters.
            positions.push_back(0);
            out.mlm_labels_host.push_back(kIgnore);
        }
        auto M = static_cast<int64_t>(positions.size());
        out.mlm_labels = Tensor::from_host(backend_, {M}, DType::i32, out.mlm_labels_host.data());
        Tensor positions_t = Tensor::from_host(backend_, {M}, DType::i32, positions.data());

        Tensor hidden = model.forward(batch.inputs);                             // [B, T, C]
        Tensor rows = ops::embedding(positions_t, ops::reshape(hidden, {B * T, C}));  // [M, C], a row gather
        Tensor h = ops::gelu(ops::linear(rows, dense_weight_, dense_bias_), false);
        h = ops::layer_norm(h, norm_weight_, norm_bias_, 1e-12f);
        out.mlm_logits = ops::linear(h, model.embedding_weight(), decoder_bias_);  // [M, V], tied decoder
        if (nsp_) {
            out.nsp_labels_host.assign(targets.begin() + B * T, targets.end());
            out.nsp_labels = Tensor::from_host(backend_, {B}, DType::i32, out.nsp_labels_host.data());
            out.nsp_logits = ops::linear(model.pool(hidden), nsp_weight_, nsp_bias_);  // [B, 2]
        }
        return out;
    }

    // Rows of z [N, K] whose argmax equals their label.
    static int64_t count_correct(const std::vector<float>& z, const std::vector<int32_t>& labels) {
        auto N = static_cast<int64_t>(labels.size());
        int64_t K = static_cast<int64_t>(z.size()) / N, correct = 0;
        for (int64_t row = 0; row < N; ++row) {
            auto first = z.begin() + row * K;
            correct += (std::max_element(first, first + K) - first) == labels[static_cast<size_t>(row)];
        }
        return correct;
    }

    Backend& backend_;
    Generator rng_;
    uint64_t seed_;
    int64_t batch_, seq_len_, eval_batch_, vocab_ = 0, val_count_ = 0;
    bool nsp_;
    SpecialTokens special_;
    std::unique_ptr<Masker> masker_;
    std::vector<int32_t> train_, valid_;  // token streams
    HostSequences val_;
    Tensor dense_weight_, dense_bias_, norm_weight_, norm_bias_, decoder_bias_, nsp_weight_, nsp_bias_;
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::OptionSchema schema;
    schema.path("train", std::nullopt, "text file to train on; each non-blank line is a document");
    schema.path("valid", std::string(), "separate validation text file (default: the last lines of `train`)");
    schema.real("valid_fraction", 0.1, "fraction of `train`'s lines held out for validation when `valid` is not set")
        .range(0.0001, 0.5);
    schema.real("mask_prob", 0.15, "probability that an ordinary token is chosen for prediction").range(0.0001, 1);
    schema.choice("mask_count", "random", {"random", "fixed"},
                  "random: each ordinary token is chosen with mask_prob (at least one per sequence); fixed: "
                  "exactly round(mask_prob * ordinary tokens) per sequence, so every batch has the same shapes");
    schema.real("mask_token_prob", 0.8, "of the chosen tokens, the fraction replaced by [MASK]").range(0, 1);
    schema.real("random_token_prob", 0.1, "of the chosen tokens, the fraction replaced by a random token (others stay)")
        .range(0, 1);
    schema.boolean("nsp", false, "also train next-sentence prediction on [CLS] A [SEP] B [SEP] pairs");
    schema.integer("val_sequences", 0, "validation sequences per evaluation (0: every window of the validation text)")
        .at_least(0);
    schema.integer("eval_batch", 64, "validation sequences per forward pass").at_least(1);
    lab::PluginDecl decl{"mlm", "1.0", "BERT masked language modelling (with optional next-sentence prediction)",
                         schema};
    decl.validate = [](const lab::PlanContext& plan) { check_mlm_options(*plan.options, plan.train); };
    decl.estimate = mlm_estimate;
    registry.add_task(std::move(decl),
                      [](const lab::Options& opts, lab::BuildContext& ctx) {
                          return std::make_shared<MaskedLm>(opts, ctx);
                      });
}
