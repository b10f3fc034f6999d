// task/copy and task/associative_recall through their plugins: batch shapes, where the targets are
// scored and what they hold (reconstructed from the inputs), a validation set that depends only on
// the seed, a clear error for a too-short seq_len, and learning: a tiny GPT trained with AdamW
// for 100 steps copies well above chance.
#include <catch2/catch.hpp>
#include <cmath>
#include <algorithm>
#include <map>
#include <set>

#include "lab/autograd.h"
#include "lab/error.h"
#include "lab/host_backend.h"
#include "lab/ops.h"
#include "lab/registry.h"
#include "plugin_test_support.h"

namespace {

struct TaskFixture {
    lab::Registry registry;
    lab::HostBackend backend;
    lab::BuildContext ctx;
    std::shared_ptr<lab::Tokenizer> tokenizer;
    std::shared_ptr<lab::Task> task;
    std::shared_ptr<lab::Model> model;
    lab::Options attention_opts;

    lab::Options options(const std::string& kind, const std::string& name,
                         const std::map<std::string, std::string>& values) {
        return lab::plugin_options(registry, kind, name, values, "test");
    }

    TaskFixture(const std::string& task_name, const std::map<std::string, std::string>& task_options,
                int64_t batch, int64_t seq_len, uint64_t seed = 3, int64_t hidden = 16) {
        registry.load_directory(LAB_PLUGIN_DIR);
        lab_test::seed_context(ctx, backend, registry, seed);
        ctx.train.batch = batch;
        ctx.train.seq_len = seq_len;
        tokenizer = registry.factory<lab::TokenizerFactory>("tokenizer", "char")(options("tokenizer", "char", {}), ctx);
        ctx.tokenizer = tokenizer.get();
        task = registry.factory<lab::TaskFactory>("task", task_name)(options("task", task_name, task_options), ctx);
        attention_opts = options("attention", "softmax", {});
        const auto& make_attention = registry.factory<lab::AttentionFactory>("attention", "softmax");
        ctx.make_attention = [this, &make_attention](const lab::AttentionShape& s) {
            return make_attention(attention_opts, s, ctx);
        };
        model = registry.factory<lab::ModelFactory>("model", "gpt")(
            options("model", "gpt", {{"layers", "2"}, {"heads", "2"}, {"hidden", std::to_string(hidden)}}), ctx);
        task->attach(*model, ctx);
    }
};

struct HostBatch {
    std::vector<int64_t> ids, targets;
};

HostBatch to_host(const lab::Batch& batch) { return {batch.inputs.ids.to_ints(), batch.targets.to_ints()}; }

}  // namespace

TEST_CASE("copy: batches hold [x, SEP, x, PAD...] and score exactly the copied half", "[synthetic][plugins]") {
    const int64_t B = 5, T = 20, n = 6, V = 10;
    TaskFixture f("copy", {{"vocab", std::to_string(V)}, {"length", std::to_string(n)}, {"val_examples", "8"}}, B, T);
    CHECK(f.tokenizer->vocab_size() == V + 2);  // symbols, SEP, PAD
    CHECK(f.task->needs_causal_model());
    lab::Batch batch = f.task->next_batch();
    CHECK(batch.inputs.ids.shape() == lab::Shape{B, T});
    CHECK(batch.targets.shape() == lab::Shape{B * T});
    CHECK(batch.tokens == B * T);
    HostBatch h = to_host(batch);
    const int64_t sep = V, pad = V + 1;
    std::set<int64_t> symbols_seen;
    for (int64_t b = 0; b < B; ++b) {
        auto id = [&](int64_t t) { return h.ids[static_cast<size_t>(b * T + t)]; };
        auto target = [&](int64_t t) { return h.targets[static_cast<size_t>(b * T + t)]; };
        CHECK(id(n) == sep);
        for (int64_t t = 0; t < T; ++t) {
            INFO("example " << b << ", position " << t);
            if (t < n) {
                CHECK(id(t) >= 0);
                CHECK(id(t) < V);
                CHECK(id(n + 1 + t) == id(t));
                symbols_seen.insert(id(t));
            }
            if (t > 2 * n) CHECK(id(t) == pad);
            if (t >= n && t < 2 * n) {
                CHECK(target(t) == id(t - n));  // SEP predicts x_1, copied x_k predicts x_{k+1}
                CHECK(target(t) == id(t + 1));
            } else {
                CHECK(target(t) == -100);
            }
        }
    }
    CHECK(symbols_seen.size() > 5);  // the symbols are random, not a constant
    HostBatch next = to_host(f.task->next_batch());
    CHECK(next.ids != h.ids);
}

TEST_CASE("associative_recall: queries ask presented keys and their targets are the values", "[synthetic][plugins]") {
    const int64_t B = 6, T = 24, pairs = 8, queries = 5, V = 32;
    TaskFixture f("associative_recall",
                  {{"vocab", std::to_string(V)}, {"pairs", std::to_string(pairs)}, {"queries", std::to_string(queries)},
                   {"val_examples", "8"}},
                  B, T);
    CHECK(f.tokenizer->vocab_size() == V + 1);  // symbols, PAD
    lab::Batch batch = f.task->next_batch();
    CHECK(batch.inputs.ids.shape() == lab::Shape{B, T});
    CHECK(batch.targets.shape() == lab::Shape{B * T});
    HostBatch h = to_host(batch);
    for (int64_t b = 0; b < B; ++b) {
        auto id = [&](int64_t t) { return h.ids[static_cast<size_t>(b * T + t)]; };
        auto target = [&](int64_t t) { return h.targets[static_cast<size_t>(b * T + t)]; };
        std::map<int64_t, int64_t> value_of;
        for (int64_t p = 0; p < pairs; ++p) {
            INFO("example " << b << ", pair " << p);
            CHECK(id(2 * p) < V / 2);        // keys from the key half
            CHECK(id(2 * p + 1) >= V / 2);   // values from the value half
            CHECK(id(2 * p + 1) < V);
            CHECK(value_of.count(id(2 * p)) == 0);  // keys distinct
            value_of[id(2 * p)] = id(2 * p + 1);
        }
        std::set<int64_t> asked;
        for (int64_t t = 0; t < T; ++t) {
            INFO("example " << b << ", position " << t);
            bool is_query = t >= 2 * pairs && t < 2 * pairs + queries;
            if (is_query) {
                REQUIRE(value_of.count(id(t)) == 1);  // a presented key
                CHECK(target(t) == value_of.at(id(t)));
                asked.insert(id(t));
            } else {
                CHECK(target(t) == -100);
            }
            if (t >= 2 * pairs + queries) CHECK(id(t) == V);  // PAD
        }
        CHECK(asked.size() == static_cast<size_t>(queries));  // queries distinct
    }
}

TEST_CASE("synthetic tasks: the validation set depends only on the seed", "[synthetic][plugins]") {
    for (const std::string name : {"copy", "associative_recall"}) {
        INFO(name);
        TaskFixture a(name, {{"val_examples", "16"}}, 4, 40, 5), b(name, {{"val_examples", "16"}}, 4, 40, 5),
            c(name, {{"val_examples", "16"}}, 4, 40, 6);
        a.task->next_batch();  // training draws must not move the validation set
        lab::EvalResult ra = a.task->evaluate(*a.model), rb = b.task->evaluate(*b.model);
        CHECK(ra.metrics.at("val/loss") == rb.metrics.at("val/loss"));
        CHECK(ra.metrics.at("val/accuracy") == rb.metrics.at("val/accuracy"));
        CHECK(ra.metrics.at("val/loss") > 0.0);
        // Another seed: another model and another validation set, so another loss.
        CHECK(c.task->evaluate(*c.model).metrics.at("val/loss") != ra.metrics.at("val/loss"));
        // The training stream resumes where data_position says.
        uint64_t position = b.task->data_position();
        HostBatch first = to_host(b.task->next_batch());
        b.task->set_data_position(position);
        CHECK(to_host(b.task->next_batch()).ids == first.ids);
    }
}

TEST_CASE("synthetic tasks: seq_len shorter than an example is a clear error", "[synthetic][plugins]") {
    CHECK_THROWS_WITH(TaskFixture("copy", {{"length", "16"}}, 2, 20),
                      Catch::Contains("seq_len = 20") && Catch::Contains("33"));
    CHECK_THROWS_WITH(TaskFixture("associative_recall", {{"pairs", "8"}, {"queries", "4"}}, 2, 19),
                      Catch::Contains("seq_len = 19") && Catch::Contains("20"));
    CHECK_THROWS_AS(TaskFixture("associative_recall", {{"vocab", "8"}, {"pairs", "5"}}, 2, 32), lab::ConfigError);
}

TEST_CASE("copy: 100 AdamW steps of a tiny GPT copy far above chance", "[synthetic][plugins]") {
    const int64_t V = 8;
    TaskFixture f("copy", {{"vocab", std::to_string(V)}, {"length", "6"}, {"val_examples", "128"}}, 32, 13, 1, 32);
    std::vector<std::pair<std::string, lab::Tensor>> params = f.model->named_parameters();
    auto optimizer = f.registry.factory<lab::OptimizerFactory>("optimizer", "adamw")(
        f.options("optimizer", "adamw", {{"lr", "1e-2"}, {"weight_decay", "0"}}), params, f.ctx);
    double before = f.task->evaluate(*f.model).metrics.at("val/accuracy");
    for (int step = 0; step < 100; ++step) {
        lab::Batch batch = f.task->next_batch();
        lab::backward(f.task->loss(*f.model, batch));
        optimizer->step(1e-2);
        optimizer->zero_grad();
    }
    lab::EvalResult after = f.task->evaluate(*f.model);
    double accuracy = after.metrics.at("val/accuracy");
    INFO("accuracy before " << before << ", after " << accuracy << ", val/loss " << after.metrics.at("val/loss"));
    CHECK(accuracy > 3.0 / V);
    CHECK(after.metrics.at("val/loss") < std::log(static_cast<double>(V)));

    // The same model copies when it generates: fed only [x, SEP] it produces x greedily, one token
    // at a time (so the accuracy above cannot come from seeing the next input).
    lab::NoGradGuard no_grad;
    f.model->eval();
    HostBatch prompts = to_host(f.task->next_batch());  // [32, 13]: x_1..x_6 SEP x_1..x_6
    const int64_t n = 6, T = 13, examples = 16;
    int64_t generated_right = 0;
    for (int64_t b = 0; b < examples; ++b) {
        std::vector<int64_t> ids(prompts.ids.begin() + b * T, prompts.ids.begin() + b * T + n + 1);
        for (int64_t k = 0; k < n; ++k) {
            lab::ModelInputs in;
            auto len = static_cast<int64_t>(ids.size());
            in.ids = lab::Tensor::from_ints(f.backend, {1, len}, ids, lab::DType::i32);
            lab::Tensor last = lab::ops::reshape(lab::ops::slice(f.model->forward(in), 1, len - 1, len), {1, 32});
            std::vector<float> z = lab::ops::linear(last, f.model->embedding_weight()).to_floats();  // [V + 2]
            auto next = static_cast<int64_t>(std::max_element(z.begin(), z.end()) - z.begin());
            generated_right += next == prompts.ids[static_cast<size_t>(b * T + k)];
            ids.push_back(next);
        }
    }
    INFO("greedy copies right: " << generated_right << " of " << examples * n);
    CHECK(generated_right > examples * n * 3 / V);
}
