// task/classify: sequence classification from TSV files (GLUE style: SST-2, MRPC, ...), the
// fine-tuning head of BertForSequenceClassification: dropout, then classifier [classes, C] on
// model.pool(hidden) (BERT's pooled [CLS] state).
// Data: each file holds rows `sentence<TAB>label` or `sentence<TAB>sentence<TAB>label` (the same
// column count in every row of a file), optionally after a header line. Each row is tokenised
// once into [CLS] a [SEP] (b [SEP]) of at most [train] seq_len tokens (longest_first truncation,
// as Hugging Face tokenizers). A training epoch is a permutation of the rows drawn from
// (seed, epoch), so the count of rows consumed (data_position) decides every later batch exactly.
// Batches are padded to their longest row with a padding mask, so the attention must support one.
// Evaluation covers the whole valid file: loss, accuracy and F1 (of class 1 for two classes,
// macro F1 otherwise).
#include <algorithm>
#include <charconv>
#include <fstream>
#include <numeric>

#include "lab/error.h"
#include "lab/ops.h"
#include "lab/plugin.h"
#include "lab/sentence_pair.h"

namespace {

using namespace lab;

constexpr uint64_t kStreamShuffle = 0x636c73U;  // "cls": the epochs' permutations

// One TSV row as text.
struct TextRow {
    std::string a, b;
    int32_t label = 0;
};

struct TextFile {
    std::vector<TextRow> rows;
    bool pairs = false;  // three columns: sentence, second sentence, label
};

std::vector<std::string> split_tabs(const std::string& line) {
    std::vector<std::string> cells;
    size_t from = 0;
    for (size_t tab; (tab = line.find('\t', from)) != std::string::npos; from = tab + 1)
        cells.push_back(line.substr(from, tab - from));
    cells.push_back(line.substr(from));
    return cells;
}

std::string trim(const std::string& s) {
    size_t first = s.find_first_not_of(" \t\r"), last = s.find_last_not_of(" \t\r");
    return first == std::string::npos ? std::string() : s.substr(first, last - first + 1);
}

// Reads and checks one TSV file. Every problem is a DataError naming file:line and what a row must be.
TextFile read_tsv(const std::string& path, const std::string& key, bool header, int64_t classes) {
    const std::string layout = "rows `sentence<TAB>label` or `sentence<TAB>sentence<TAB>label`";
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw DataError("task/classify: cannot read " + key + " file '" + path +
                        "'; fetch the datasets with tools/get_data.sh or fix the path");
    TextFile file;
    size_t columns = 0, columns_line = 0, line_no = 0;
    std::string line;
    while (std::getline(in, line)) {
        ++line_no;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (header && line_no == 1) continue;
        if (line.empty()) continue;  // a blank line holds no row (e.g. an extra newline at the end)
        std::string where = "task/classify: " + path + ":" + std::to_string(line_no) + ": ";
        std::vector<std::string> cells = split_tabs(line);
        if (cells.size() != 2 && cells.size() != 3)
            throw DataError(where + "found " + std::to_string(cells.size()) + " tab-separated column(s); expected " +
                            layout + (cells.size() == 1 ? " (is the label missing?)" : ""));
        if (columns == 0) {
            columns = cells.size();
            columns_line = line_no;
        } else if (cells.size() != columns) {
            throw DataError(where + "found " + std::to_string(cells.size()) + " columns, but line " +
                            std::to_string(columns_line) + " has " + std::to_string(columns) +
                            "; every row of a file must have the same columns (" + layout + ")");
        }
        std::string label_text = trim(cells.back());
        if (label_text.empty())
            throw DataError(where + "the label (the last column) is missing; expected " + layout +
                            " with an integer label in [0, " + std::to_string(classes) + ")");
        int64_t label = 0;
        auto [end, ec] = std::from_chars(label_text.data(), label_text.data() + label_text.size(), label);
        if (ec != std::errc() || end != label_text.data() + label_text.size())
            throw DataError(where + "the label '" + label_text + "' is not an integer; expected " + layout +
                            " with an integer label in [0, " + std::to_string(classes) + ")");
        if (label < 0 || label >= classes)
            throw DataError(where + "the label " + label_text + " is outside [0, " + std::to_string(classes) +
                            "); raise [task] classes or fix the label");
        file.rows.push_back({cells[0], cells.size() == 3 ? cells[1] : std::string(), static_cast<int32_t>(label)});
    }
    if (line_no == 0)
        throw DataError("task/classify: " + path + ": the " + key + " file is empty; expected " +
                        (header ? "a header line, then " : "") + layout);
    if (file.rows.empty())
        throw DataError("task/classify: " + path + ": no data rows" + (header ? " after the header line" : "") +
                        "; expected " + layout + (header ? " (set header = false if the file has none)" : ""));
    file.pairs = columns == 3;
    return file;
}

// Tokenised rows and their labels.
struct Dataset {
    std::vector<EncodedPair> rows;
    std::vector<int32_t> labels;
    int64_t truncated = 0;  // rows cut to [train] seq_len
};

// F1 of class 1 for two classes; otherwise the mean F1 over the classes that occur among the
// labels or the predictions (scikit-learn's f1_score, average="binary" / "macro").
double f1_score(const std::vector<std::vector<int64_t>>& confusion) {  // [truth][prediction]
    auto K = static_cast<int64_t>(confusion.size());
    auto f1_of = [&](int64_t k, bool* occurs) {
        int64_t tp = confusion[static_cast<size_t>(k)][static_cast<size_t>(k)], fp = 0, fn = 0;
        for (int64_t j = 0; j < K; ++j) {
            if (j == k) continue;
            fp += confusion[static_cast<size_t>(j)][static_cast<size_t>(k)];
            fn += confusion[static_cast<size_t>(k)][static_cast<size_t>(j)];
        }
        *occurs = tp + fp + fn > 0;
        return *occurs ? 2.0 * static_cast<double>(tp) / static_cast<double>(2 * tp + fp + fn) : 0.0;
    };
    bool occurs = false;
    if (K == 2) return f1_of(1, &occurs);
    double sum = 0;
    int64_t counted = 0;
    for (int64_t k = 0; k < K; ++k) {
        double f1 = f1_of(k, &occurs);
        if (occurs) {
            sum += f1;
            ++counted;
        }
    }
    return counted > 0 ? sum / static_cast<double>(counted) : 0.0;
}

// A row must hold [CLS] text [SEP] (the validate hook and the constructor). Sentence pairs need
// one more, which only the data can tell: make_pair_input refuses those rows.
void check_classify_options(const TrainSettings& train) {
    if (train.seq_len < 3)
        throw ConfigError("task/classify: [train] seq_len = " + std::to_string(train.seq_len) +
                          " cannot hold [CLS] text [SEP]; set [train] seq_len >= 3 (>= 4 for sentence pairs)");
}

class Classify : public Task {
public:
    Classify(const Options& opts, BuildContext& ctx)
        : backend_(*ctx.backend),
          dropout_rng_(&ctx.dropout_rng),
          seed_(ctx.seed),
          batch_(ctx.train.batch),
          seq_len_(ctx.train.seq_len),
          classes_(opts.get_int("classes")),
          eval_batch_(opts.get_int("eval_batch")),
          dropout_(static_cast<float>(opts.get_float("dropout"))) {
        if (!ctx.tokenizer)
            throw ConfigError("task/classify needs the experiment's tokenizer; give a [tokenizer] section");
        check_classify_options(ctx.train);
        Tokenizer& tokenizer = *ctx.tokenizer;
        bool header = opts.get_bool("header");
        std::string train_path = opts.get_string("train"), valid_path = opts.get_string("valid");
        TextFile train_text = read_tsv(train_path, "train", header, classes_);
        TextFile valid_text = read_tsv(valid_path, "valid", header, classes_);
        if (train_text.pairs != valid_text.pairs)
            throw DataError("task/classify: '" + train_path + "' has " +
                            (train_text.pairs ? "sentence pairs" : "single sentences") + " but '" + valid_path +
                            "' has " + (valid_text.pairs ? "sentence pairs" : "single sentences") +
                            "; give train and valid files of the same task");
        if (!tokenizer.ready()) {
            if (!tokenizer.trainable())
                throw ConfigError("task/classify: the tokenizer has no vocabulary and cannot be trained; give it one");
            ctx.log("building the tokenizer's vocabulary from " + train_path);
            std::string corpus;
            for (const TextRow& row : train_text.rows) corpus += row.a + "\n" + row.b + "\n";
            tokenizer.train(corpus);
        }
        if (!ctx.run_dir.empty()) tokenizer.save(ctx.run_dir);
        special_ = SpecialTokens::of(tokenizer, "task/classify");
        train_ = tokenize(tokenizer, train_text);
        valid_ = tokenize(tokenizer, valid_text);
        ctx.log("classify: " + describe(train_path, train_) + "; " + describe(valid_path, valid_) + "; " +
                (train_text.pairs ? "sentence pairs" : "single sentences") + ", at most " +
                std::to_string(seq_len_) + " tokens a row");
    }

    void attach(Model& model, BuildContext& ctx) override {
        if (classifier_weight_.defined())
            throw ConfigError("task/classify: attach() was already called; a task holds the head of one model");
        // Bidirectional: it reads the pooled [CLS] position, which a causal model computes from [CLS] alone.
        check_model_for_task("task/classify", false, true, model.causal(), model.max_seq_len(), seq_len_);
        int64_t C = model.hidden_size();
        classifier_weight_ = add_parameter("classifier.weight", Tensor::empty(backend_, {classes_, C}));
        ops::fill_normal(classifier_weight_, 0.0f, 0.02f, ctx.init_rng.next(static_cast<uint64_t>(classes_ * C)));
        classifier_bias_ = add_parameter("classifier.bias", Tensor::zeros(backend_, {classes_}));
    }

    // targets: the labels [B] i32.
    Batch next_batch() override {
        auto N = static_cast<uint64_t>(train_.rows.size());
        std::vector<size_t> rows;
        for (int64_t b = 0; b < batch_; ++b, ++position_)
            rows.push_back(epoch_order(position_ / N)[position_ % N]);
        return make_batch(train_, rows);
    }

    Tensor loss(Model& model, const Batch& batch) override {
        return share_of(ops::cross_entropy(logits(model, batch), batch.targets), batch);
    }

    // One loss term: the mean over the sequences. A part keeps the whole batch's padded length;
    // the padding it may not need is masked, so its rows compute as they do in the whole.
    Batch part(const Batch& whole, int64_t first, int64_t count) const override {
        return scored_part(whole, first, count, {.task = "task/classify", .width = 0, .targets_per_row = {1}});
    }

    EvalResult evaluate(Model& model) override {
        NoGradGuard no_grad;
        bool model_was_training = model.training(), task_was_training = training();
        model.eval();
        eval();
        auto N = static_cast<int64_t>(valid_.rows.size());
        std::vector<std::vector<int64_t>> confusion(static_cast<size_t>(classes_),
                                                    std::vector<int64_t>(static_cast<size_t>(classes_), 0));
        double loss_sum = 0;
        for (int64_t first = 0; first < N; first += eval_batch_) {
            std::vector<size_t> rows(static_cast<size_t>(std::min(eval_batch_, N - first)));
            std::iota(rows.begin(), rows.end(), static_cast<size_t>(first));
            Batch batch = make_batch(valid_, rows);
            Tensor z = logits(model, batch);  // [B, classes]
            loss_sum +=
                static_cast<double>(ops::cross_entropy(z, batch.targets).item()) * static_cast<double>(rows.size());
            std::vector<float> values = z.to_floats();
            for (size_t r = 0; r < rows.size(); ++r) {
                auto first_logit = values.begin() + static_cast<std::ptrdiff_t>(r * static_cast<size_t>(classes_));
                auto predicted = std::max_element(first_logit, first_logit + classes_) - first_logit;
                ++confusion[static_cast<size_t>(valid_.labels[rows[r]])][static_cast<size_t>(predicted)];
            }
        }
        model.train(model_was_training);
        train(task_was_training);
        int64_t correct = 0;
        for (int64_t k = 0; k < classes_; ++k) correct += confusion[static_cast<size_t>(k)][static_cast<size_t>(k)];
        EvalResult result;
        result.set("val/loss", loss_sum / static_cast<double>(N), MetricGoal::minimize);
        result.set("val/accuracy", static_cast<double>(correct) / static_cast<double>(N), MetricGoal::maximize);
        result.set("val/f1", f1_score(confusion), MetricGoal::maximize);
        result.set("val/examples", static_cast<double>(N), MetricGoal::none);
        return result;
    }

    // Training rows consumed since the start: the epoch is position / rows, the place in its
    // permutation position % rows.
    uint64_t data_position() const override { return position_; }
    void set_data_position(uint64_t position) override { position_ = position; }

private:
    Dataset tokenize(const Tokenizer& tokenizer, const TextFile& file) const {
        Dataset data;
        int64_t specials = file.pairs ? 3 : 2;
        for (const TextRow& row : file.rows) {
            std::vector<int32_t> a = tokenizer.encode(row.a), b;
            if (file.pairs) b = tokenizer.encode(row.b);
            if (static_cast<int64_t>(a.size() + b.size()) + specials > seq_len_) ++data.truncated;
            data.rows.push_back(make_pair_input(std::move(a), std::move(b), seq_len_, special_, file.pairs));
            data.labels.push_back(row.label);
        }
        return data;
    }

    // "train.tsv: 67349 rows (label 0: 29780, label 1: 37569), 12 truncated"
    std::string describe(const std::string& path, const Dataset& data) const {
        std::vector<int64_t> counts(static_cast<size_t>(classes_), 0);
        for (int32_t label : data.labels) ++counts[static_cast<size_t>(label)];
        std::string text = path + ": " + std::to_string(data.rows.size()) + " rows (";
        for (int64_t k = 0; k < classes_; ++k)
            text +=
                (k ? ", label " : "label ") + std::to_string(k) + ": " + std::to_string(counts[static_cast<size_t>(k)]);
        return text + "), " + std::to_string(data.truncated) + " truncated";
    }

    // The permutation of the training rows for `epoch`: a Fisher-Yates shuffle whose numbers
    // come from (seed, kStreamShuffle) at an offset of the epoch's own, so any epoch can be
    // rebuilt without replaying the ones before it.
    const std::vector<size_t>& epoch_order(uint64_t epoch) {
        if (order_epoch_ == epoch && !order_.empty()) return order_;
        order_.resize(train_.rows.size());
        std::iota(order_.begin(), order_.end(), size_t{0});
        Generator shuffle(seed_, kStreamShuffle);
        shuffle.set_offset(epoch << 36);  // 2^34 draws of 4 numbers per epoch
        for (size_t i = order_.size(); i > 1; --i) std::swap(order_[i - 1], order_[shuffle.uniform_int(i)]);
        order_epoch_ = epoch;
        return order_;
    }

    Batch make_batch(const Dataset& data, const std::vector<size_t>& rows) const {
        std::vector<const EncodedPair*> pairs;
        std::vector<int32_t> labels;
        Batch batch;
        for (size_t row : rows) {
            pairs.push_back(&data.rows[row]);
            labels.push_back(data.labels[row]);
            batch.tokens += static_cast<int64_t>(data.rows[row].ids.size());
        }
        batch.inputs = pad_batch(backend_, pairs, special_.pad);
        batch.targets = Tensor::from_host(backend_, {static_cast<int64_t>(labels.size())}, DType::i32, labels.data());
        return batch;
    }

    Tensor logits(Model& model, const Batch& batch) const {
        if (!classifier_weight_.defined())
            throw ConfigError("task/classify: attach(model) must run before loss() or evaluate(); it creates the head");
        Tensor pooled = model.pool(model.forward(batch.inputs));  // [B, C]
        pooled = ops::dropout(pooled, dropout_, training(), *dropout_rng_);
        return ops::linear(pooled, classifier_weight_, classifier_bias_);  // [B, classes]
    }

    Backend& backend_;
    Generator* dropout_rng_;
    uint64_t seed_;
    int64_t batch_, seq_len_, classes_, eval_batch_;
    float dropout_;
    SpecialTokens special_;
    Dataset train_, valid_;
    uint64_t position_ = 0;
    uint64_t order_epoch_ = 0;
    std::vector<size_t> order_;
    Tensor classifier_weight_, classifier_bias_;
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::OptionSchema schema;
    schema.path("train", std::nullopt,
                "TSV file of training rows: sentence<TAB>label or sentence<TAB>sentence<TAB>label");
    schema.path("valid", std::nullopt, "TSV file of validation rows, with the same columns as `train`");
    schema.boolean("header", true, "the first line of each file is a header (skipped)");
    schema.integer("classes", 2, "number of classes; labels are integers 0 .. classes-1").range(2, 1000000);
    schema.real("dropout", 0.1, "dropout on the pooled state before the classifier").range(0, 0.99);
    schema.integer("eval_batch", 64, "validation rows per forward pass").at_least(1);
    lab::PluginDecl decl{"classify", "1.0",
                         "sequence (pair) classification from TSV files with a linear head on the pooled state",
                         schema};
    decl.needs_attention.padding_mask = true;  // batches are padded to their longest row
    decl.validate = [](const lab::PlanContext& plan) { check_classify_options(plan.train); };
    // The head: classifier.weight [classes, C] and its bias; the pooled rows are all it keeps.
    decl.estimate = [](const lab::PlanContext& plan) {
        lab::PluginEstimate e;
        const double classes = static_cast<double>(plan.options->get_int("classes"));
        e.parameters = plan.model ? classes * static_cast<double>(plan.model->hidden) + classes : 0;
        e.needs_bidirectional_model = true;
        return e;
    };
    registry.add_task(std::move(decl), [](const lab::Options& opts, lab::BuildContext& ctx) {
        return std::make_shared<Classify>(opts, ctx);
    });
}
