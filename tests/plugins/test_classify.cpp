// task/classify through its plugin, with a tiny bidirectional model and a whitespace tokenizer
// defined here (the same two as test_mlm.cpp; each test file is self-contained): learning a
// generated TSV, loss/accuracy/F1 on hand-made predictions, epochs as permutations and exact
// resume from data_position, sentence pairs and padding, and every TSV error naming file:line.
#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include "lab/autograd.h"
#include "lab/error.h"
#include "lab/host_backend.h"
#include "lab/ops.h"
#include "lab/registry.h"
#include "plugin_test_support.h"
#include "test_support.h"
#include "text_task_support.h"

namespace {

using namespace text_task_test;

using Catch::Matchers::Contains;

// "p3": a word numbered n. (Written with append: GCC 12 warns falsely (-Wrestrict, PR 105329) on
// "p" + std::to_string(n).)
std::string numbered(const char* prefix, int64_t n) { return std::string(prefix).append(std::to_string(n)); }


// hidden = a fixed code of each token: word p<k> -> one-hot e_k of K, every other token 0; pool()
// reads position 1 (the first word). With classifier = identity the prediction is k, so a test
// chooses every prediction by the row's first word.
class FirstWordModel : public lab::Model {
public:
    FirstWordModel(lab::Backend& backend, const WordTokenizer& tokenizer, int64_t K) : K_(K) {
        int64_t V = tokenizer.vocab_size();
        std::vector<float> codes(static_cast<size_t>(V * K), 0.0f);
        for (int64_t k = 0; k < K; ++k) {
            std::vector<int32_t> id = tokenizer.encode(numbered("p", k));
            codes[static_cast<size_t>(id.at(0) * K + k)] = 1.0f;
        }
        codes_ = lab::Tensor::from_floats(backend, {V, K}, codes);
    }
    lab::Tensor forward(const lab::ModelInputs& in) override { return lab::ops::embedding(in.ids, codes_); }
    lab::Tensor pool(const lab::Tensor& hidden) override { return lab::ops::select(hidden, 1, 1); }
    lab::Tensor embedding_weight() const override { return codes_; }
    int64_t hidden_size() const override { return K_; }
    int64_t max_seq_len() const override { return 512; }
    bool causal() const override { return false; }

private:
    int64_t K_;
    lab::Tensor codes_;
};

struct ClassifyFixture {
    lab_test::TempDir dir;
    lab::Registry registry;
    lab::HostBackend backend;
    lab::BuildContext ctx;
    std::shared_ptr<WordTokenizer> tokenizer;
    std::shared_ptr<lab::Task> task;
    std::shared_ptr<lab::Model> model;
    std::vector<std::string> log;
    std::string train_path, valid_path;

    // Writes train.tsv and valid.tsv (unless `options` names the files) and builds the task.
    ClassifyFixture(const std::string& train_text, const std::string& valid_text,
                    std::map<std::string, std::string> options, const std::vector<std::string>& words,
                    int64_t batch = 4, int64_t seq_len = 16, uint64_t seed = 5) {
        registry.load_directory(LAB_PLUGIN_DIR);
        lab_test::seed_context(ctx, backend, registry, seed);
        ctx.train.batch = batch;
        ctx.train.seq_len = seq_len;
        ctx.log = [this](const std::string& line) { log.push_back(line); };
        tokenizer = std::make_shared<WordTokenizer>(words);
        ctx.tokenizer = tokenizer.get();
        if (!options.count("train")) options["train"] = dir.write("train.tsv", train_text).string();
        if (!options.count("valid")) options["valid"] = dir.write("valid.tsv", valid_text).string();
        train_path = options["train"];
        valid_path = options["valid"];
        task = registry.factory<lab::TaskFactory>("task", "classify")(
            lab::plugin_options(registry, "task", "classify", options, "test"), ctx);
    }

    void attach_mix_model(int64_t hidden = 16) {
        model = std::make_shared<MixModel>(backend, tokenizer->vocab_size(), hidden, ctx.train.seq_len, 17);
        task->attach(*model, ctx);
    }
};

struct HostBatch {
    std::vector<int64_t> ids, segments, padding, targets;
    int64_t tokens = 0;
    bool operator==(const HostBatch& o) const {
        return ids == o.ids && segments == o.segments && padding == o.padding && targets == o.targets &&
               tokens == o.tokens;
    }
};

HostBatch to_host(const lab::Batch& batch) {
    return {batch.inputs.ids.to_ints(), batch.inputs.segments.to_ints(), batch.inputs.padding_mask.to_ints(),
            batch.targets.to_ints(), batch.tokens};
}

const std::vector<std::string> kReviewWords = {"the",  "a",    "movie", "film", "plot",  "actor", "was", "is",
                                               "very", "quite", "bad",  "dull", "fine", "long", "short", "good"};

// `rows` rows "words<TAB>label" of 3-8 words, label 1 iff the sentence holds "good" (about half).
std::string review_tsv(int rows, uint32_t seed) {
    std::mt19937 gen(seed);
    std::string text = "sentence\tlabel\n";
    for (int r = 0; r < rows; ++r) {
        std::vector<std::string> words;
        auto length = 3 + gen() % 6;
        for (uint32_t w = 0; w < length; ++w) words.push_back(kReviewWords[gen() % (kReviewWords.size() - 1)]);
        bool good = gen() % 2 == 0;
        if (good) words[gen() % length] = "good";
        std::string sentence;
        for (const std::string& word : words) {
            if (!sentence.empty()) sentence += ' ';
            sentence += word;
        }
        text += sentence + "\t" + (good ? "1" : "0") + "\n";
    }
    return text;
}

// Rows "p<prediction> x<TAB>truth" for FirstWordModel, from (truth, prediction) counts.
std::string scripted_tsv(const std::map<std::pair<int, int>, int>& counts) {
    std::string text = "sentence\tlabel\n";
    for (const auto& [pair, count] : counts)
        for (int n = 0; n < count; ++n)
            text += numbered("p", pair.second) + " x\t" + std::to_string(pair.first) + "\n";
    return text;
}

}  // namespace

TEST_CASE("classify: learns which sentences hold 'good' with AdamW", "[classify][plugins]") {
    ClassifyFixture f(review_tsv(400, 1), review_tsv(200, 2), {{"dropout", "0.1"}}, kReviewWords, 16, 16);
    f.attach_mix_model();
    REQUIRE(f.task->named_parameters().size() == 2);
    CHECK(f.task->named_parameters()[0].first == "classifier.weight");
    CHECK(f.task->named_parameters()[0].second.shape() == lab::Shape{2, 16});
    CHECK(f.task->named_parameters()[1].first == "classifier.bias");

    lab::NamedTensors params;
    for (auto& [name, p] : f.model->named_parameters()) params.emplace_back("model." + name, p);
    for (auto& [name, p] : f.task->named_parameters()) params.emplace_back("task." + name, p);
    auto optimizer = f.registry.factory<lab::OptimizerFactory>("optimizer", "adamw")(
        lab::plugin_options(f.registry, "optimizer", "adamw", {{"lr", "0.01"}}, "test"), params, f.ctx);
    double before = f.task->evaluate(*f.model).metrics.at("val/loss");
    double first_losses = 0, last_losses = 0;
    for (int step = 0; step < 300; ++step) {
        lab::Batch batch = f.task->next_batch();
        lab::Tensor loss = f.task->loss(*f.model, batch);
        lab::backward(loss);
        lab::NoGradGuard no_grad;
        optimizer->step(0.01);
        optimizer->zero_grad();
        if (step < 20) first_losses += loss.item();
        if (step >= 280) last_losses += loss.item();
    }
    lab::EvalResult result = f.task->evaluate(*f.model);
    INFO("val/loss " << before << " -> " << result.metrics.at("val/loss") << ", train loss (20 steps) "
                     << first_losses / 20 << " -> " << last_losses / 20);
    CHECK(result.metrics.at("val/examples") == 200);
    CHECK(result.metrics.at("val/accuracy") >= 0.95);
    CHECK(result.metrics.at("val/f1") >= 0.95);
    CHECK(result.metrics.at("val/loss") < before / 2);
    CHECK(last_losses < first_losses / 2);
    CHECK(f.task->training());  // evaluate() restores the training mode
    CHECK(f.model->training());
}

TEST_CASE("classify: loss, accuracy and F1 of hand-made predictions", "[classify][plugins]") {
    auto evaluate = [](const std::map<std::pair<int, int>, int>& counts, int classes) {
        std::vector<std::string> words = {"x"};
        for (int k = 0; k < classes; ++k) words.push_back(numbered("p", k));
        std::string tsv = scripted_tsv(counts);
        ClassifyFixture f(tsv, tsv, {{"classes", std::to_string(classes)}}, words, 4, 8);
        f.model = std::make_shared<FirstWordModel>(f.backend, *f.tokenizer, classes);
        f.task->attach(*f.model, f.ctx);
        std::vector<float> identity(static_cast<size_t>(classes * classes), 0.0f);
        for (int k = 0; k < classes; ++k) identity[static_cast<size_t>(k * classes + k)] = 1.0f;
        f.task->named_parameters()[0].second.copy_(lab::Tensor::from_floats(f.backend, {classes, classes}, identity));
        return f.task->evaluate(*f.model).metrics;
    };
    // Logits are one-hot at the prediction: cross entropy log(e + K - 1) - [prediction == truth].
    auto expected_loss = [](int classes, int correct, int wrong) {
        double lse = std::log(std::exp(1.0) + classes - 1);
        return (correct * (lse - 1) + wrong * lse) / (correct + wrong);
    };

    // Binary, (truth, prediction): TP 3, FP 1, FN 2, TN 4 -> F1 of class 1 = 2*3 / (2*3 + 1 + 2).
    auto binary = evaluate({{{1, 1}, 3}, {{0, 1}, 1}, {{1, 0}, 2}, {{0, 0}, 4}}, 2);
    CHECK(binary.at("val/examples") == 10);
    CHECK(binary.at("val/accuracy") == Approx(0.7));
    CHECK(binary.at("val/f1") == Approx(6.0 / 9.0));
    CHECK(binary.at("val/loss") == Approx(expected_loss(2, 7, 3)).epsilon(1e-5));

    // Three classes: F1 of 0 = 2*2/(4+2+1), of 1 = 2*3/(6+1+1), of 2 = 2*1/(2+1+2); macro = mean.
    std::map<std::pair<int, int>, int> three = {{{0, 0}, 2}, {{0, 1}, 1}, {{1, 1}, 3},
                                                {{1, 2}, 1}, {{2, 2}, 1}, {{2, 0}, 2}};
    double macro = (4.0 / 7.0 + 6.0 / 8.0 + 2.0 / 5.0) / 3.0;
    auto multi = evaluate(three, 3);
    CHECK(multi.at("val/accuracy") == Approx(6.0 / 10.0));
    CHECK(multi.at("val/f1") == Approx(macro));
    CHECK(multi.at("val/loss") == Approx(expected_loss(3, 6, 4)).epsilon(1e-5));
    // A class that neither occurs nor is predicted is left out of the mean (scikit-learn's macro F1).
    CHECK(evaluate(three, 4).at("val/f1") == Approx(macro));

    // All wrong: F1 of class 1 is 0, not a division by zero.
    auto none = evaluate({{{1, 0}, 3}, {{0, 1}, 2}}, 2);
    CHECK(none.at("val/accuracy") == 0.0);
    CHECK(none.at("val/f1") == 0.0);
}

TEST_CASE("classify: epochs are permutations, and set_data_position replays the same batches", "[classify][plugins]") {
    // Ten rows of 2-4 words; the first word r<i> names the row.
    std::vector<std::string> words = {"x"};
    std::string tsv = "sentence\tlabel\n";
    for (int i = 0; i < 10; ++i) {
        words.push_back(numbered("r", i));
        tsv += numbered("r", i) + std::string(" x x x").substr(0, 2 * static_cast<size_t>(1 + i % 3)) + "\t" +
               std::to_string(i % 2) + "\n";
    }
    const int64_t B = 3;
    auto batches = [&](uint64_t seed, int count) {
        ClassifyFixture f(tsv, tsv, {}, words, B, 16, seed);
        std::vector<HostBatch> out;
        std::vector<uint64_t> positions;
        for (int n = 0; n < count; ++n) {
            positions.push_back(f.task->data_position());
            out.push_back(to_host(f.task->next_batch()));
        }
        return std::make_pair(out, positions);
    };
    auto [seen, positions] = batches(5, 8);  // 24 rows: epochs 0 and 1, and 4 rows of epoch 2
    std::vector<int64_t> rows;  // row index of each row consumed, in order
    for (const HostBatch& h : seen) {
        auto T = static_cast<int64_t>(h.ids.size()) / B;
        CHECK(h.tokens == std::count(h.padding.begin(), h.padding.end(), 0));
        for (int64_t b = 0; b < B; ++b) {
            INFO("row " << b);
            CHECK(h.ids[static_cast<size_t>(b * T)] == kCls);
            int64_t word = h.ids[static_cast<size_t>(b * T + 1)] - 6;  // ids: 5 specials, "x", then r0 .. r9
            rows.push_back(word);
            CHECK(h.targets[static_cast<size_t>(b)] == word % 2);
            for (int64_t t = 0; t < T; ++t)
                if (h.padding[static_cast<size_t>(b * T + t)]) CHECK(h.ids[static_cast<size_t>(b * T + t)] == kPad);
        }
    }
    std::vector<int64_t> epoch0(rows.begin(), rows.begin() + 10), epoch1(rows.begin() + 10, rows.begin() + 20);
    std::vector<int64_t> all(10);
    for (int i = 0; i < 10; ++i) all[static_cast<size_t>(i)] = i;
    std::vector<int64_t> sorted0 = epoch0, sorted1 = epoch1;
    std::sort(sorted0.begin(), sorted0.end());
    std::sort(sorted1.begin(), sorted1.end());
    CHECK(sorted0 == all);
    CHECK(sorted1 == all);
    CHECK(epoch0 != epoch1);
    CHECK(epoch0 != all);  // shuffled
    CHECK(positions[3] == 9);  // batch 3 takes the last row of epoch 0 and two of epoch 1

    for (int k : {0, 1, 3, 5, 7}) {
        INFO("resuming before batch " << k);
        ClassifyFixture resumed(tsv, tsv, {}, words, B, 16, 5);
        resumed.task->set_data_position(positions[static_cast<size_t>(k)]);
        CHECK(to_host(resumed.task->next_batch()) == seen[static_cast<size_t>(k)]);
    }
    auto [other_seed, ignored] = batches(6, 4);
    bool differs = false;
    for (int n = 0; n < 4; ++n)
        differs = differs || !(other_seed[static_cast<size_t>(n)] == seen[static_cast<size_t>(n)]);
    CHECK(differs);
}

TEST_CASE("classify: sentence pairs get segments, padding and truncation", "[classify][plugins]") {
    std::vector<std::string> words = {"a", "b", "c", "d"};
    std::string tsv = "first\tsecond\tlabel\n"
                      "a b\tc\t1\n"
                      "a\tb c d\t0\n"
                      "a b c d a b c d\tc d c d c d\t1\n";
    ClassifyFixture f(tsv, tsv, {}, words, 3, 10);
    f.attach_mix_model(8);
    REQUIRE(f.log.size() == 1);
    CHECK_THAT(f.log[0], Contains("3 rows (label 0: 1, label 1: 2), 1 truncated") && Contains("sentence pairs") &&
                             Contains("train.tsv") && Contains("valid.tsv"));
    // One epoch of three rows is one batch; find each row by its length.
    HostBatch h = to_host(f.task->next_batch());
    const int64_t T = static_cast<int64_t>(h.ids.size()) / 3;
    CHECK(T == 10);  // the longest row, truncated to seq_len
    const int32_t a = 5, b = 6, c = 7, d = 8;
    std::map<int64_t, std::vector<int64_t>> ids_by_length, segments_by_length;
    for (int64_t r = 0; r < 3; ++r) {
        auto first = static_cast<size_t>(r * T);
        int64_t length = std::count(h.padding.begin() + static_cast<std::ptrdiff_t>(first),
                                    h.padding.begin() + static_cast<std::ptrdiff_t>(first + static_cast<size_t>(T)), 0);
        ids_by_length[length].assign(h.ids.begin() + static_cast<std::ptrdiff_t>(first),
                                     h.ids.begin() + static_cast<std::ptrdiff_t>(first) + length);
        segments_by_length[length].assign(h.segments.begin() + static_cast<std::ptrdiff_t>(first),
                                          h.segments.begin() + static_cast<std::ptrdiff_t>(first) + length);
    }
    REQUIRE(ids_by_length.size() == 3);
    CHECK(ids_by_length[6] == std::vector<int64_t>{kCls, a, b, kSep, c, kSep});
    CHECK(segments_by_length[6] == std::vector<int64_t>{0, 0, 0, 0, 1, 1});
    CHECK(ids_by_length[7] == std::vector<int64_t>{kCls, a, kSep, b, c, d, kSep});
    CHECK(segments_by_length[7] == std::vector<int64_t>{0, 0, 0, 1, 1, 1, 1});
    // 8 + 6 tokens into 10 - 3: longest_first cuts the longer part first, then alternates.
    CHECK(ids_by_length[10] == std::vector<int64_t>{kCls, a, b, c, d, kSep, c, d, c, kSep});
    CHECK(h.tokens == 6 + 7 + 10);
    f.task->set_data_position(0);
    CHECK(to_host(f.task->next_batch()) == h);
    CHECK(f.task->loss(*f.model, f.task->next_batch()).item() > 0.0f);
}

TEST_CASE("classify: every TSV problem is refused naming file:line and what a row must be", "[classify][plugins]") {
    const std::string good = "sentence\tlabel\na b\t1\nc d\t0\n";
    std::vector<std::string> words = {"a", "b", "c", "d"};
    struct Case {
        std::string what, train, valid;
        std::map<std::string, std::string> options;
        std::vector<std::string> expected;  // substrings; "@train"/"@valid" become the file's path
    };
    std::vector<Case> cases = {
        {"missing file",
         "",
         good,
         {{"train", "/nonexistent/train.tsv"}},
         {"cannot read train file", "/nonexistent/train.tsv"}},
        {"missing label", good + "a b\t\n", good, {}, {"@train:4:", "label (the last column) is missing"}},
        {"one column", good + "a b c\n", good, {}, {"@train:4:", "found 1 tab-separated column", "label missing"}},
        {"four columns", good + "a\tb\tc\t1\n", good, {}, {"@train:4:", "found 4 tab-separated column"}},
        {"column count changes", good + "a\tb\t1\n", good, {}, {"@train:4:", "found 3 columns, but line 2 has 2"}},
        {"label not an integer", good + "a b\tpositive\n", good, {}, {"@train:4:", "'positive' is not an integer"}},
        {"fractional label", good + "a b\t1.5\n", good, {}, {"@train:4:", "'1.5' is not an integer"}},
        {"label too large", good + "a b\t2\n", good, {}, {"@train:4:", "label 2 is outside [0, 2)", "classes"}},
        {"negative label", good + "a b\t-1\n", good, {}, {"@train:4:", "label -1 is outside [0, 2)"}},
        {"label beyond classes = 3", good + "a b\t3\n", good, {{"classes", "3"}}, {"@train:4:", "outside [0, 3)"}},
        {"empty file", "", good, {}, {"@train:", "is empty"}},
        {"header only", "sentence\tlabel\n", good, {}, {"@train:", "no data rows after the header line"}},
        {"no header, no rows", "\n\n", good, {{"header", "false"}}, {"@train:", "no data rows", "expected rows"}},
        {"error in the valid file", good, good + "a b\tx\n", {}, {"@valid:4:", "'x' is not an integer"}},
        {"pairs and single sentences", good, "s\tt\tlabel\na\tb\t1\n", {}, {"sentence pairs", "single sentences"}},
    };
    for (const Case& c : cases) {
        INFO(c.what);
        lab_test::TempDir dir;
        std::map<std::string, std::string> options = c.options;
        std::string train = dir.write("train.tsv", c.train).string(), valid = dir.write("valid.tsv", c.valid).string();
        if (!options.count("train")) options["train"] = train;
        options["valid"] = valid;
        try {
            ClassifyFixture f("", "", options, words);
            FAIL("no error");
        } catch (const lab::DataError& e) {
            std::string message = e.what();
            INFO(message);
            for (std::string part : c.expected) {
                if (part.rfind("@train", 0) == 0) part = train + part.substr(6);
                if (part.rfind("@valid", 0) == 0) part = valid + part.substr(6);
                CHECK_THAT(message, Contains(part));
            }
        }
    }
    // Rows with a header, CRLF line ends and a blank last line are fine.
    ClassifyFixture crlf("s\tl\r\na b\t1\r\n\r\nc\t0\r\n", good, {}, words);
    CHECK_THAT(crlf.log.at(0), Contains("2 rows (label 0: 1, label 1: 1)"));
}

TEST_CASE("classify: refuses a causal model and declares that it needs a padding mask", "[classify][plugins]") {
    ClassifyFixture f("s\tl\na b\t1\n", "s\tl\na b\t1\n", {}, {"a", "b"});
    MixModel causal(f.backend, f.tokenizer->vocab_size(), 8, 16, 1, true);
    CHECK_THAT(error_of<lab::ConfigError>([&] { f.task->attach(causal, f.ctx); }), Contains("bidirectional"));
    CHECK(f.registry.find("task", "classify").needs_attention.padding_mask);
    CHECK_FALSE(f.registry.find("task", "mlm").needs_attention.padding_mask);
}
