// Task::part for every task, on the stacks an experiment builds (reference backend, exact f32; a
// 2-layer, 32-wide GPT or BERT; real data: tinyshakespeare, SST-2, WikiText-2): one batch of
// next_batch() split into uneven parts, into single rows and into parts of parts gives losses that
// add up to the whole batch's and gradients that add up to its gradients, with the shares of each
// loss term exact ratios of scored counts that sum to 1. The parts' own means (no shares) and, for
// mlm, shares by rows instead of masked positions break the sum. An mlm part without a masked
// position adds exactly 0, a task without part() refuses, and bad rows or a batch of another task
// are refused naming the task.
#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <utility>

#include "lab/autograd.h"
#include "lab/config.h"
#include "lab/error.h"
#include "lab/trainer.h"
#include "test_support.h"

namespace {

using Catch::Matchers::Contains;

// The message of the E that `run` throws ("<nothing thrown>" when it returns).
template <class E, class F>
std::string error_of(F&& run) {
    try {
        run();
    } catch (const E& e) {
        return e.what();
    }
    return "<nothing thrown>";
}

// What every stack here shares: exact f32 on the reference backend, 6 rows a batch, no dropout
// anywhere (a part's dropout masks are not the whole batch's).
const char* kCommon = R"(
[experiment]
seed = 7
[backend]
type = reference
[attention]
type = softmax
[optimizer]
type = sgd
[train]
steps = 1
batch = 6
seq_len = 32
)";

const char* kGpt = R"(
[model]
type = gpt
layers = 2
heads = 2
hidden = 32
dropout = 0
)";

const char* kBert = R"(
[tokenizer]
type = wordpiece
vocab = ${data}/bert-base-uncased/vocab.txt
[model]
type = bert
layers = 2
heads = 2
hidden = 32
intermediate = 64
max_position = 64
dropout = 0
attention_dropout = 0
)";

// The first `lines` lines of data/<from> written to the scratch folder as `name`.
std::string head_of(const lab_test::TempDir& dir, const std::string& from, const std::string& name, int lines) {
    std::ifstream in(lab_test::kDataDir / from, std::ios::binary);
    if (!in) FAIL("data/" << from << " is missing; run tools/get_data.sh --from ../shared/data");
    std::string text, line;
    for (int n = 0; n < lines && std::getline(in, line); ++n) text += line + "\n";
    return dir.write(name, text).string();
}

// One task under test: its experiment (after kCommon) and how its batches hold their targets (the
// blocks of ScoredLayout, one per loss term), which the test reads independently of the task.
struct PartsCase {
    std::string name;
    std::string ini;
    std::vector<int64_t> targets_per_row;
};

std::vector<PartsCase> parts_cases(const lab_test::TempDir& dir) {
    const std::string sst2_train = head_of(dir, "sst2/train.tsv", "sst2_train.tsv", 200);
    const std::string sst2_dev = head_of(dir, "sst2/dev.tsv", "sst2_dev.tsv", 40);
    const std::string wikitext = head_of(dir, "wikitext-2/valid.txt", "wikitext.txt", 300);
    const std::string mlm = std::string(kBert) + "[task]\ntype = mlm\ntrain = " + wikitext + "\nval_sequences = 4\n";
    return {
        {"causal_lm", std::string(kGpt) +
                          "[tokenizer]\ntype = char\n[task]\ntype = causal_lm\n"
                          "train = ${data}/tinyshakespeare/input.txt\nval_tokens = 64\nsample_tokens = 0\n",
         {32}},
        {"classify", std::string(kBert) + "[task]\ntype = classify\ntrain = " + sst2_train + "\nvalid = " + sst2_dev +
                         "\ndropout = 0\n",
         {1}},
        {"mlm", mlm, {32}},
        {"mlm with nsp", mlm + "nsp = true\n", {32, 1}},
        {"copy", std::string(kGpt) + "[tokenizer]\ntype = char\n[task]\ntype = copy\nlength = 8\nval_examples = 8\n",
         {32}},
        {"associative_recall", std::string(kGpt) +
                                   "[tokenizer]\ntype = char\n[task]\ntype = associative_recall\nvocab = 32\n"
                                   "pairs = 8\nqueries = 4\nval_examples = 8\n",
         {32}},
    };
}

// The stack an experiment kCommon + `ini` trains (model and task in training mode).
lab::TrainingStack build_stack(const lab::Registry& registry, const lab_test::TempDir& dir, const std::string& ini) {
    lab::ConfigEnv env;
    env.data_dir = lab_test::kDataDir;
    lab::RawConfig raw = lab::load_config(dir.write("parts.ini", kCommon + ini), {}, env);
    lab::RunSpec spec = lab::resolve_run(raw, registry);
    lab::RunEnvironment run_env;
    run_env.data_dir = env.data_dir;
    run_env.quiet = true;
    return lab::build_training_stack(spec, registry, run_env);
}

// Every parameter's gradient ("" entries have none), taken and cleared.
using Grads = std::map<std::string, std::vector<float>>;
Grads take_grads(const lab::NamedTensors& params) {
    Grads grads;
    for (const auto& [name, p] : params) {
        lab::Tensor param = p;
        grads[name] = param.grad().defined() ? param.grad().to_floats() : std::vector<float>();
        param.set_grad(lab::Tensor());
    }
    return grads;
}

// loss() and backward on `batch`; the loss, gradients accumulating into the parameters.
double loss_backward(lab::TrainingStack& stack, const lab::Batch& batch) {
    lab::Tensor loss = stack.task->loss(*stack.model, batch);
    lab::backward(loss);
    return static_cast<double>(loss.item());
}

// The scored targets (not -100) of each loss term in rows [first, first + count), counted from the
// whole batch's targets by the test itself.
std::vector<int64_t> scored_counts(const std::vector<int64_t>& targets, const std::vector<int64_t>& targets_per_row,
                                   int64_t rows, int64_t first, int64_t count) {
    std::vector<int64_t> counts;
    int64_t block_start = 0;
    for (int64_t n : targets_per_row) {
        auto begin = targets.begin() + block_start + first * n;
        auto end = targets.begin() + block_start + (first + count) * n;
        counts.push_back(std::count_if(begin, end, [](int64_t t) { return t != -100; }));
        block_start += rows * n;
    }
    return counts;
}

using Split = std::vector<std::pair<int64_t, int64_t>>;  // (first, count) of each part

// The worst differences of a split against the whole batch, for the report line.
struct SplitResult {
    double loss_error = 0;  // |sum of the parts' losses - whole| / |whole|
    double grad_error = 0;  // max over parameters of max |sum of parts - whole| / max |whole|
};

// Splits `whole` as `split` says, runs loss + backward on every part with the gradients adding up,
// and checks the sum against the whole's loss and gradients, the shares against the counts, and
// the tokens. Tolerances: a part's loss is its own mean times its share, both in f32, and its
// gradients sum the same per-position terms as the whole's, grouped otherwise; f32 sums of a few
// hundred terms then differ by some ulps of the larger terms: up to 6e-7 of a parameter's largest
// gradient entry and 1e-7 of the loss in these runs (printed). 1e-5 of each leaves a margin of 15
// and more, while wrong shares (the parts' own means; mlm shares by rows) miss the whole's loss
// by 3e-4 and more (the tests below).
SplitResult check_split(lab::TrainingStack& stack, const PartsCase& c, const lab::Batch& whole, double whole_loss,
                        const Grads& whole_grads, const Split& split) {
    const int64_t rows = stack.task->rows(whole);
    const std::vector<int64_t> targets = whole.targets.to_ints();
    const std::vector<int64_t> whole_counts = scored_counts(targets, c.targets_per_row, rows, 0, rows);
    double loss_sum = 0;
    int64_t tokens = 0, covered = 0;
    std::vector<double> share_sums(c.targets_per_row.size(), 0.0);
    for (auto [first, count] : split) {
        INFO("part rows [" << first << ", " << first + count << ")");
        REQUIRE(first == covered);  // the split covers the batch once, in order
        covered += count;
        lab::Batch part = stack.task->part(whole, first, count);
        CHECK(stack.task->rows(part) == count);
        CHECK(part.inputs.ids.shape() == lab::Shape{count, whole.inputs.ids.size(1)});
        REQUIRE(part.loss_shares.size() == c.targets_per_row.size());
        const std::vector<int64_t> counts = scored_counts(targets, c.targets_per_row, rows, first, count);
        for (size_t k = 0; k < counts.size(); ++k) {
            // Exact: the ratio of the two counts, rounded once.
            CHECK(part.loss_shares[k] ==
                  static_cast<double>(counts[k]) / static_cast<double>(whole_counts[k]));
            share_sums[k] += part.loss_shares[k];
        }
        tokens += part.tokens;
        loss_sum += loss_backward(stack, part);
    }
    REQUIRE(covered == rows);
    Grads summed = take_grads(stack.params);

    SplitResult result;
    for (size_t k = 0; k < share_sums.size(); ++k) {
        INFO("loss term " << k);
        CHECK(std::abs(share_sums[k] - 1.0) < 1e-12);
    }
    CHECK(tokens == whole.tokens);
    result.loss_error = std::abs(loss_sum - whole_loss) / std::abs(whole_loss);
    INFO("sum of the parts' losses " << loss_sum << ", whole " << whole_loss);
    CHECK(result.loss_error < 1e-5);
    for (const auto& [name, g] : whole_grads) {
        INFO(name);
        const std::vector<float>& s = summed.at(name);
        REQUIRE(s.size() == g.size());  // the same parameters get gradients
        float worst = 0, largest = 0;
        for (size_t i = 0; i < g.size(); ++i) {
            worst = std::max(worst, std::abs(s[i] - g[i]));
            largest = std::max(largest, std::abs(g[i]));
        }
        CHECK(worst <= 1e-5f * largest);
        if (largest > 0) result.grad_error = std::max(result.grad_error, static_cast<double>(worst / largest));
    }
    return result;
}

// The sum of the parts' losses of `split` when each part's shares are replaced by `shares(part)`
// (no gradients kept).
template <class Shares>
double loss_sum_with(lab::TrainingStack& stack, const lab::Batch& whole, const Split& split, Shares&& shares) {
    lab::NoGradGuard no_grad;
    double sum = 0;
    for (auto [first, count] : split) {
        lab::Batch part = stack.task->part(whole, first, count);
        part.loss_shares = shares(part);
        sum += static_cast<double>(stack.task->loss(*stack.model, part).item());
    }
    return sum;
}

// A batch tensor's values (none for an absent one), for comparing two parts.
std::vector<int64_t> ints_of(const lab::Tensor& t) { return t.defined() ? t.to_ints() : std::vector<int64_t>(); }

}  // namespace

TEST_CASE("task parts: the parts' losses and gradients add up to the whole batch's for every task",
          "[parts][plugins]") {
    lab_test::TempDir dir;
    lab::Registry registry;
    registry.load_directory(LAB_PLUGIN_DIR);
    for (const PartsCase& c : parts_cases(dir)) {
        INFO("task " << c.name);
        lab::TrainingStack stack = build_stack(registry, dir, c.ini);
        lab::Batch whole = stack.task->next_batch();
        const int64_t rows = stack.task->rows(whole);
        REQUIRE(rows == 6);
        CHECK(whole.loss_shares.empty());
        const double whole_loss = loss_backward(stack, whole);
        const Grads whole_grads = take_grads(stack.params);
        for (const auto& [name, g] : whole_grads) {
            INFO(name);
            // The task's heads get gradients (only the model's pooler may not: mlm without nsp skips it).
            if (name.rfind("task.", 0) == 0) CHECK(!g.empty());
        }

        const Split uneven = {{0, 1}, {1, 3}, {4, 2}}, singles = {{0, 1}, {1, 1}, {2, 1}, {3, 1}, {4, 1}, {5, 1}};
        SplitResult a = check_split(stack, c, whole, whole_loss, whole_grads, uneven);
        SplitResult b = check_split(stack, c, whole, whole_loss, whole_grads, singles);
        std::printf("[parts] %-18s whole loss %.6f; rows 0|1-3|4-5: loss %.1e, gradients %.1e; single rows: loss "
                    "%.1e, gradients %.1e (relative)\n",
                    c.name.c_str(), whole_loss, a.loss_error, a.grad_error, b.loss_error, b.grad_error);

        // A part of a part (a rank's rows split into micro-batches) is the same part of the whole,
        // shares included: exact ratios of the whole's counts, not products of two roundings.
        lab::Batch rank = stack.task->part(whole, 1, 5);
        for (auto [first, count] : Split{{0, 2}, {2, 3}, {3, 1}}) {
            INFO("rows [" << first << ", " << first + count << ") of rows [1, 6)");
            lab::Batch nested = stack.task->part(rank, first, count);
            lab::Batch direct = stack.task->part(whole, 1 + first, count);
            CHECK(nested.loss_shares == direct.loss_shares);
            CHECK(ints_of(nested.inputs.ids) == ints_of(direct.inputs.ids));
            CHECK(ints_of(nested.inputs.segments) == ints_of(direct.inputs.segments));
            CHECK(ints_of(nested.inputs.padding_mask) == ints_of(direct.inputs.padding_mask));
            CHECK(ints_of(nested.targets) == ints_of(direct.targets));
        }

        // The test can fail: the parts' own means (no shares) do not add up to the whole's mean.
        const double own_means = loss_sum_with(stack, whole, uneven, [](const lab::Batch&) {
            return std::vector<double>();
        });
        INFO("sum of the parts' own means " << own_means << ", whole " << whole_loss);
        CHECK(std::abs(own_means - whole_loss) > 0.1 * whole_loss);
    }
}

TEST_CASE("task parts: mlm shares follow the masked positions, not the rows", "[parts][plugins]") {
    lab_test::TempDir dir;
    lab::Registry registry;
    registry.load_directory(LAB_PLUGIN_DIR);
    for (const PartsCase& c : parts_cases(dir)) {
        if (c.name.rfind("mlm", 0) != 0) continue;
        INFO("task " << c.name);
        lab::TrainingStack stack = build_stack(registry, dir, c.ini);
        lab::Batch whole = stack.task->next_batch();
        double whole_loss = 0;
        {
            lab::NoGradGuard no_grad;
            whole_loss = static_cast<double>(stack.task->loss(*stack.model, whole).item());
        }
        const Split singles = {{0, 1}, {1, 1}, {2, 1}, {3, 1}, {4, 1}, {5, 1}};
        // Rows hold different numbers of masked positions, so a share of rows (1/6 each) is wrong.
        std::vector<int64_t> counts;
        const std::vector<int64_t> targets = whole.targets.to_ints();
        for (auto [first, count] : singles)
            counts.push_back(scored_counts(targets, c.targets_per_row, 6, first, count)[0]);
        REQUIRE(*std::min_element(counts.begin(), counts.end()) != *std::max_element(counts.begin(), counts.end()));
        const double by_rows = loss_sum_with(stack, whole, singles, [&](const lab::Batch& part) {
            std::vector<double> shares = part.loss_shares;
            shares[0] = 1.0 / 6.0;
            return shares;
        });
        const double by_masks = loss_sum_with(stack, whole, singles, [](const lab::Batch& part) {
            return part.loss_shares;
        });
        INFO("whole " << whole_loss << ", parts by masked positions " << by_masks << ", by rows " << by_rows);
        CHECK(std::abs(by_masks - whole_loss) < 1e-5 * whole_loss);
        // An untrained model's losses are all near ln V, so weighting rows wrongly moves the sum
        // little, but by far more than the 1e-5 that check_split allows.
        CHECK(std::abs(by_rows - whole_loss) > 1e-4 * whole_loss);
    }
}

TEST_CASE("task parts: an mlm part without a masked position adds exactly 0 to the MLM term", "[parts][plugins]") {
    lab_test::TempDir dir;
    lab::Registry registry;
    registry.load_directory(LAB_PLUGIN_DIR);
    for (const PartsCase& c : parts_cases(dir)) {
        if (c.name.rfind("mlm", 0) != 0) continue;
        const bool nsp = c.targets_per_row.size() == 2;
        INFO("task " << c.name);
        lab::TrainingStack stack = build_stack(registry, dir, c.ini);
        // next_batch() masks a position in every sequence; take the masks off rows 2 and 3.
        lab::Batch whole = stack.task->next_batch();
        std::vector<int64_t> targets = whole.targets.to_ints();
        std::fill(targets.begin() + 2 * 32, targets.begin() + 4 * 32, -100);
        whole.targets =
            lab::Tensor::from_ints(whole.targets.backend(), whole.targets.shape(), targets, lab::DType::i32);

        const double whole_loss = loss_backward(stack, whole);
        const Grads whole_grads = take_grads(stack.params);

        lab::Batch unmasked = stack.task->part(whole, 2, 2);
        REQUIRE(unmasked.loss_shares.size() == c.targets_per_row.size());
        CHECK(unmasked.loss_shares[0] == 0.0);
        if (nsp) CHECK(unmasked.loss_shares[1] == 2.0 / 6.0);
        const double loss = loss_backward(stack, unmasked);
        Grads grads = take_grads(stack.params);
        if (!nsp) CHECK(loss == 0.0);
        else CHECK(loss > 0.0);  // its share of the NSP term
        for (const auto& [name, g] : grads) {
            INFO(name);
            // The parameters that have a gradient in any other part have one here too.
            REQUIRE(g.size() == whole_grads.at(name).size());
            if (g.empty()) continue;
            const float largest = std::abs(*std::max_element(g.begin(), g.end(), [](float x, float y) {
                return std::abs(x) < std::abs(y);
            }));
            const bool mlm_head = name.rfind("task.cls.predictions", 0) == 0;
            if (mlm_head || !nsp) CHECK(largest == 0.0f);
            else if (name.rfind("task.cls.seq_relationship", 0) == 0) CHECK(largest > 0.0f);
        }

        // The split with that part still adds up to the (modified) whole batch.
        SplitResult r = check_split(stack, c, whole, whole_loss, whole_grads, {{0, 2}, {2, 2}, {4, 2}});
        std::printf("[parts] %-18s with an unmasked part: loss %.1e, gradients %.1e (relative)\n", c.name.c_str(),
                    r.loss_error, r.grad_error);

        // A whole batch without any masked position is still a bug, and has no parts.
        std::vector<int64_t> none = targets;
        std::fill(none.begin(), none.begin() + 6 * 32, -100);
        lab::Batch empty = whole;
        empty.targets = lab::Tensor::from_ints(whole.targets.backend(), whole.targets.shape(), none, lab::DType::i32);
        CHECK_THAT(error_of<lab::DataError>([&] { stack.task->loss(*stack.model, empty); }),
                   Contains("no masked position"));
        CHECK_THAT(error_of<lab::DataError>([&] { stack.task->part(empty, 0, 3); }),
                   Contains("task/mlm") && Contains("no scored target in term 0"));
    }
}

TEST_CASE("task parts: bad rows, a batch of another task and a task without part() are refused", "[parts][plugins]") {
    lab_test::TempDir dir;
    lab::Registry registry;
    registry.load_directory(LAB_PLUGIN_DIR);
    std::map<std::string, PartsCase> cases;
    for (const PartsCase& c : parts_cases(dir)) cases.emplace(c.name, c);
    lab::TrainingStack lm = build_stack(registry, dir, cases.at("causal_lm").ini);
    lab::Batch whole = lm.task->next_batch();
    for (auto [first, count] : Split{{-1, 2}, {5, 2}, {2, 0}, {6, 1}}) {
        INFO("rows [" << first << ", " << first + count << ")");
        CHECK_THAT(error_of<lab::ShapeError>([&] { lm.task->part(whole, first, count); }),
                   Contains("task/causal_lm") && Contains("not a part of a batch of 6 rows"));
    }

    // A classify batch is padded to its longest row, not seq_len wide, and has one target a row.
    lab::TrainingStack classify = build_stack(registry, dir, cases.at("classify").ini);
    lab::Batch sentences = classify.task->next_batch();
    for (int tries = 0; tries < 20 && sentences.inputs.ids.size(1) == 32; ++tries)
        sentences = classify.task->next_batch();
    REQUIRE(sentences.inputs.ids.size(1) != 32);
    CHECK_THAT(error_of<lab::ShapeError>([&] { lm.task->part(sentences, 0, 2); }),
               Contains("task/causal_lm") && Contains("[rows, 32]"));
    CHECK_THAT(error_of<lab::ShapeError>([&] { classify.task->part(whole, 0, 2); }),
               Contains("task/classify") && Contains("needs 6 targets (1 per row), got 192"));
    lab::TrainingStack copy = build_stack(registry, dir, cases.at("copy").ini);
    CHECK_THAT(error_of<lab::ShapeError>([&] { copy.task->part(sentences, 0, 2); }), Contains("task/copy"));
    // An mlm batch with nsp has 33 targets a row; the mlm task without nsp expects 32.
    lab::TrainingStack mlm = build_stack(registry, dir, cases.at("mlm").ini);
    lab::TrainingStack mlm_nsp = build_stack(registry, dir, cases.at("mlm with nsp").ini);
    lab::Batch pairs = mlm_nsp.task->next_batch();
    CHECK_THAT(error_of<lab::ShapeError>([&] { mlm.task->part(pairs, 0, 2); }),
               Contains("task/mlm") && Contains("32 per row"));
    CHECK_THAT(error_of<lab::ShapeError>([&] { mlm.task->part(whole, 0, 2); }),
               Contains("task/mlm") && Contains("without segment ids"));
    // A part whose shares are not one per term of this task's loss.
    lab::Batch one_share = mlm_nsp.task->part(pairs, 0, 3);
    one_share.loss_shares = {0.5};
    CHECK_THAT(error_of<lab::ShapeError>([&] { mlm_nsp.task->part(one_share, 0, 2); }),
               Contains("task/mlm") && Contains("1 loss shares, but this task's loss has 2 terms"));
    CHECK_THAT(error_of<lab::ShapeError>([&] { mlm_nsp.task->loss(*mlm_nsp.model, one_share); }),
               Contains("asks for term 1"));

    // A task that keeps Task::part's default cannot be split.
    class WholeOnly : public lab::Task {
    public:
        void attach(lab::Model&, lab::BuildContext&) override {}
        lab::Batch next_batch() override { return {}; }
        lab::Tensor loss(lab::Model&, const lab::Batch&) override { return {}; }
        lab::EvalResult evaluate(lab::Model&) override { return {}; }
        uint64_t data_position() const override { return 0; }
        void set_data_position(uint64_t) override {}
    };
    WholeOnly whole_only;
    CHECK_THAT(error_of<lab::ConfigError>([&] { whole_only.part(whole, 0, 2); }),
               Contains("does not split its batches") && Contains("micro_batch = 0"));
}
