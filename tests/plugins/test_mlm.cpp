// task/mlm through its plugin, with a tiny bidirectional model and a whitespace tokenizer defined
// here (the real BERT backbone has tests of its own): packing ([CLS] text [SEP] windows of the
// token stream), dynamic masking statistics (15% chosen, 80/10/10, specials never, at least one per
// sequence), fixed validation masks, exact resume from data_position, the masked-rows-only loss and
// its gradients against a dense [B*T, V] reference, and next-sentence pairs.
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


// The vocabulary of the generated text: "=" and w0 .. w39.
std::vector<std::string> text_words() {
    std::vector<std::string> words = {"="};
    for (int i = 0; i < 40; ++i)
        words.push_back(std::string("w").append(std::to_string(i)));  // not "w" + ...: GCC 12 -Wrestrict false positive
    return words;
}

// `lines` lines of 4-12 random words, a blank line after every fifth and a WikiText-style
// " = w7 w3 = " heading every tenth.
std::vector<std::string> make_lines(int lines, uint32_t seed) {
    std::mt19937 gen(seed);
    std::vector<std::string> out;
    for (int n = 0; n < lines; ++n) {
        std::string line = n % 10 == 0 ? " = " : "";
        auto words = 4 + gen() % 9;
        for (uint32_t w = 0; w < words; ++w) {
            line += w ? " w" : "w";
            line += std::to_string(gen() % 40);
        }
        out.push_back(n % 10 == 0 ? line + " = " : line);
        if (n % 5 == 4) out.emplace_back("");
    }
    return out;
}

std::string join_lines(const std::vector<std::string>& lines) {
    std::string text;
    for (const std::string& line : lines) text += line + "\n";
    return text;
}

struct MlmFixture {
    lab_test::TempDir dir;
    lab::Registry registry;
    lab::HostBackend backend;
    lab::BuildContext ctx;
    std::shared_ptr<WordTokenizer> tokenizer;
    std::shared_ptr<lab::Task> task;
    std::shared_ptr<MixModel> model;
    std::vector<std::string> train_lines = make_lines(300, 11), valid_lines = make_lines(60, 12);
    std::vector<std::string> log;

    MlmFixture(std::map<std::string, std::string> options, int64_t batch, int64_t seq_len, uint64_t seed = 5,
               bool trained_tokenizer = true, bool attach = true) {
        registry.load_directory(LAB_PLUGIN_DIR);
        lab_test::seed_context(ctx, backend, registry, seed);
        ctx.train.batch = batch;
        ctx.train.seq_len = seq_len;
        ctx.log = [this](const std::string& line) { log.push_back(line); };
        tokenizer =
            trained_tokenizer ? std::make_shared<WordTokenizer>(text_words()) : std::make_shared<WordTokenizer>();
        ctx.tokenizer = tokenizer.get();
        if (!options.count("train")) options["train"] = dir.write("train.txt", join_lines(train_lines)).string();
        if (!options.count("valid")) options["valid"] = dir.write("valid.txt", join_lines(valid_lines)).string();
        else if (options["valid"] == "none") options.erase("valid");
        task = registry.factory<lab::TaskFactory>("task", "mlm")(
            lab::plugin_options(registry, "task", "mlm", options, "test"), ctx);
        model = std::make_shared<MixModel>(backend, tokenizer->vocab_size(), 8, seq_len, 17);
        if (attach) task->attach(*model, ctx);
    }

    // The training text as the task must see it: every line's tokens, in order.
    std::vector<int32_t> stream(const std::vector<std::string>& lines) const {
        std::vector<int32_t> ids;
        for (const std::string& line : lines) {
            std::vector<int32_t> more = tokenizer->encode(line);
            ids.insert(ids.end(), more.begin(), more.end());
        }
        return ids;
    }
};

struct HostBatch {
    std::vector<int64_t> ids, segments, targets;
    bool operator==(const HostBatch& o) const { return ids == o.ids && segments == o.segments && targets == o.targets; }
};

HostBatch to_host(const lab::Batch& batch) {
    return {batch.inputs.ids.to_ints(), batch.inputs.segments.to_ints(), batch.targets.to_ints()};
}

bool contains_span(const std::vector<int32_t>& stream, const std::vector<int32_t>& span) {
    return std::search(stream.begin(), stream.end(), span.begin(), span.end()) != stream.end();
}

}  // namespace

TEST_CASE("mlm: packs [CLS] window [SEP] and masks 15% of it, 80/10/10, never specials", "[mlm][plugins]") {
    const int64_t B = 64, T = 64, batches = 20;
    MlmFixture f({}, B, T);
    std::vector<int32_t> stream = f.stream(f.train_lines);
    int64_t candidates = 0, chosen = 0, to_mask = 0, to_random = 0, kept = 0;
    HostBatch previous;
    for (int64_t n = 0; n < batches; ++n) {
        lab::Batch batch = f.task->next_batch();
        REQUIRE(batch.inputs.ids.shape() == lab::Shape{B, T});
        REQUIRE(batch.targets.shape() == lab::Shape{B * T});
        CHECK(batch.tokens == B * T);
        HostBatch h = to_host(batch);
        CHECK(h.ids != previous.ids);  // fresh windows and masks every batch
        previous = h;
        for (int64_t b = 0; b < B; ++b) {
            INFO("batch " << n << ", sequence " << b);
            auto id = [&](int64_t t) { return h.ids[static_cast<size_t>(b * T + t)]; };
            auto label = [&](int64_t t) { return h.targets[static_cast<size_t>(b * T + t)]; };
            CHECK(id(0) == kCls);
            CHECK(id(T - 1) == kSep);
            CHECK(label(0) == -100);
            CHECK(label(T - 1) == -100);
            std::vector<int32_t> original;
            int64_t chosen_here = 0;
            for (int64_t t = 1; t < T - 1; ++t) {
                ++candidates;
                CHECK(h.segments[static_cast<size_t>(b * T + t)] == 0);
                if (label(t) == -100) {
                    original.push_back(static_cast<int32_t>(id(t)));
                    continue;
                }
                ++chosen_here;
                original.push_back(static_cast<int32_t>(label(t)));
                CHECK(label(t) > kMask);  // the text holds no special token
                if (id(t) == kMask) ++to_mask;
                else if (id(t) == label(t)) ++kept;
                else {
                    ++to_random;
                    CHECK(id(t) > kMask);  // a random replacement is an ordinary token
                }
            }
            CHECK(chosen_here >= 1);
            chosen += chosen_here;
            CHECK(contains_span(stream, original));  // a window of the training text
        }
    }
    double chosen_fraction = static_cast<double>(chosen) / static_cast<double>(candidates);
    double c = static_cast<double>(chosen);
    INFO("chosen " << chosen_fraction << ", [MASK] " << to_mask / c << ", random " << to_random / c << ", kept "
                   << kept / c);
    CHECK(std::abs(chosen_fraction - 0.15) < 0.01);
    CHECK(std::abs(static_cast<double>(to_mask) / c - 0.8) < 0.02);
    CHECK(std::abs(static_cast<double>(to_random) / c - 0.1) < 0.02);
    CHECK(std::abs(static_cast<double>(kept) / c - 0.1) < 0.02);
}

TEST_CASE("mlm: every sequence has a masked position even when few are drawn", "[mlm][plugins]") {
    // 4 ordinary positions at mask_prob 0.15: about half the sequences would have none.
    const int64_t B = 50, T = 6;
    MlmFixture f({}, B, T);
    std::map<int64_t, int64_t> sequences_with;  // masked count -> sequences
    for (int n = 0; n < 10; ++n) {
        HostBatch h = to_host(f.task->next_batch());
        for (int64_t b = 0; b < B; ++b) {
            auto first = h.targets.begin() + b * T;
            ++sequences_with[std::count_if(first, first + T, [](int64_t label) { return label != -100; })];
        }
    }
    CHECK(sequences_with.count(0) == 0);
    CHECK(sequences_with[1] > 200);  // the fallback choice (about 0.52 + 0.37 of 500 sequences)
}

TEST_CASE("mlm: mask_count = fixed chooses round(mask_prob * n) positions in every sequence", "[mlm][plugins]") {
    // 62 ordinary positions: round(0.15 * 62) = 9 in every sequence, spread over all positions.
    const int64_t B = 32, T = 64;
    MlmFixture f({{"mask_count", "fixed"}}, B, T);
    std::vector<int64_t> per_position(static_cast<size_t>(T), 0);
    int64_t to_mask = 0, chosen = 0;
    for (int n = 0; n < 10; ++n) {
        HostBatch h = to_host(f.task->next_batch());
        for (int64_t b = 0; b < B; ++b) {
            int64_t here = 0;
            for (int64_t t = 0; t < T; ++t) {
                auto i = static_cast<size_t>(b * T + t);
                if (h.targets[i] == -100) continue;
                ++here;
                ++per_position[static_cast<size_t>(t)];
                to_mask += h.ids[i] == kMask;
            }
            CHECK(here == 9);
            chosen += here;
        }
    }
    CHECK(per_position.front() == 0);  // [CLS] and [SEP] are never chosen
    CHECK(per_position.back() == 0);
    // 2880 choices over 62 positions: about 46 each; every position is chosen somewhere.
    CHECK(*std::min_element(per_position.begin() + 1, per_position.end() - 1) > 20);
    CHECK(std::abs(static_cast<double>(to_mask) / static_cast<double>(chosen) - 0.8) < 0.03);
}

TEST_CASE("mlm: mask_token_prob and random_token_prob decide what a chosen token becomes", "[mlm][plugins]") {
    for (auto [mask_token, random_token] : {std::pair<double, double>{1.0, 0.0}, {0.0, 0.0}, {0.0, 1.0}}) {
        INFO("mask_token_prob " << mask_token << ", random_token_prob " << random_token);
        MlmFixture f(
            {{"mask_token_prob", std::to_string(mask_token)}, {"random_token_prob", std::to_string(random_token)}}, 16,
            32);
        HostBatch h = to_host(f.task->next_batch());
        int64_t masks = 0, same = 0, chosen = 0;
        for (size_t i = 0; i < h.ids.size(); ++i) {
            if (h.targets[i] == -100) continue;
            ++chosen;
            masks += h.ids[i] == kMask;
            same += h.ids[i] == h.targets[i];
        }
        REQUIRE(chosen > 0);
        if (mask_token == 1.0) CHECK(masks == chosen);
        if (mask_token == 0.0 && random_token == 0.0) CHECK(same == chosen);
        if (random_token == 1.0) {
            CHECK(masks == 0);
            CHECK(same < chosen / 5);  // 41 ordinary tokens: a random one rarely equals the original
        }
    }
    CHECK_THAT(error_of<lab::ConfigError>([&] {
                   MlmFixture({{"mask_token_prob", "0.8"}, {"random_token_prob", "0.3"}}, 4, 16);
               }),
               Contains("exceeds 1"));
}

TEST_CASE("mlm: validation masks are the same at every evaluation and depend on the seed", "[mlm][plugins]") {
    MlmFixture a({}, 8, 32, 5), b({}, 8, 32, 5), c({}, 8, 32, 6);
    lab::EvalResult first = a.task->evaluate(*a.model);
    for (int n = 0; n < 3; ++n) a.task->next_batch();  // training draws must not move the validation set
    lab::EvalResult second = a.task->evaluate(*a.model);
    lab::EvalResult other = b.task->evaluate(*b.model);
    CHECK(first.metrics == second.metrics);
    CHECK(first.metrics == other.metrics);
    for (const char* key : {"val/loss", "val/ppl", "val/mlm_accuracy", "val/masked_tokens"})
        CHECK(first.metrics.count(key));
    CHECK(first.metrics.count("val/nsp_accuracy") == 0);
    CHECK(first.metrics.at("val/ppl") == Approx(std::exp(first.metrics.at("val/loss"))));
    CHECK(first.metrics.at("val/mlm_accuracy") >= 0.0);
    CHECK(first.metrics.at("val/mlm_accuracy") <= 1.0);
    // 60 validation lines (~480 tokens) in windows of 30: 16 sequences, ~72 masked positions.
    double masked = first.metrics.at("val/masked_tokens");
    CHECK(masked > 16 * 30 * 0.1);
    CHECK(masked < 16 * 30 * 0.2);
    // Another seed draws other masks: with the same model (MixModel's init has its own seed) and
    // the same heads, only the masks can change the loss.
    c.task->load_state_dict(a.task->state_dict());
    CHECK(c.task->evaluate(*c.model).metrics.at("val/loss") != first.metrics.at("val/loss"));

    MlmFixture capped({{"val_sequences", "3"}, {"eval_batch", "2"}}, 8, 32);
    double capped_masked = capped.task->evaluate(*capped.model).metrics.at("val/masked_tokens");
    CHECK(capped_masked >= 3);
    CHECK(capped_masked < masked / 2);
}

TEST_CASE("mlm: set_data_position replays the same batches", "[mlm][plugins]") {
    for (const char* nsp : {"false", "true"}) {
        INFO("nsp = " << nsp);
        MlmFixture f({{"nsp", nsp}}, 6, 24);
        f.task->next_batch();
        uint64_t position = f.task->data_position();
        HostBatch second = to_host(f.task->next_batch()), third = to_host(f.task->next_batch());
        CHECK(!(second == third));
        f.task->set_data_position(position);
        CHECK(to_host(f.task->next_batch()) == second);
        CHECK(to_host(f.task->next_batch()) == third);

        MlmFixture resumed({{"nsp", nsp}}, 6, 24);  // a fresh process resuming from a checkpoint
        resumed.task->set_data_position(position);
        CHECK(to_host(resumed.task->next_batch()) == second);
    }
}

TEST_CASE("mlm: the loss on masked rows only equals the dense [B*T, V] loss, gradients included", "[mlm][plugins]") {
    for (bool nsp : {false, true}) {
        INFO("nsp = " << nsp);
        const int64_t B = 4, T = 16;
        MlmFixture f({{"nsp", nsp ? "true" : "false"}}, B, T);
        std::map<std::string, lab::Tensor> task_params;
        for (auto& [name, p] : f.task->named_parameters()) task_params[name] = p;
        REQUIRE(task_params.count("cls.predictions.transform.dense.weight"));
        REQUIRE(task_params.count("cls.predictions.transform.LayerNorm.weight"));
        REQUIRE(task_params.count("cls.predictions.bias"));
        CHECK(task_params.count("cls.seq_relationship.weight") == (nsp ? 1U : 0U));
        CHECK(task_params.at("cls.predictions.transform.LayerNorm.weight").to_floats() == std::vector<float>(8, 1.0f));
        // Non-zero biases, so that a bias the sparse path forgot would show.
        for (const char* name : {"cls.predictions.transform.dense.bias", "cls.predictions.bias"})
            lab::ops::fill_normal(task_params.at(name), 0.0f, 0.3f, lab::RngKey{99, 1, 0});

        std::vector<std::pair<std::string, lab::Tensor>> params = f.model->named_parameters();
        for (auto& [name, p] : f.task->named_parameters()) params.emplace_back("task." + name, p);
        auto take_grads = [&] {
            std::map<std::string, std::vector<float>> grads;
            for (auto& [name, p] : params) {
                REQUIRE(p.grad().defined());
                grads[name] = p.grad().to_floats();
                p.set_grad(lab::Tensor());
            }
            return grads;
        };

        lab::Batch batch = f.task->next_batch();
        lab::Tensor sparse = f.task->loss(*f.model, batch);
        lab::backward(sparse);
        auto sparse_grads = take_grads();

        std::vector<int64_t> targets = batch.targets.to_ints();
        std::vector<int64_t> mlm_targets(targets.begin(), targets.begin() + B * T);
        lab::Tensor hidden = f.model->forward(batch.inputs);
        lab::Tensor h = lab::ops::linear(lab::ops::reshape(hidden, {B * T, 8}),
                                         task_params.at("cls.predictions.transform.dense.weight"),
                                         task_params.at("cls.predictions.transform.dense.bias"));
        h = lab::ops::layer_norm(lab::ops::gelu(h, false), task_params.at("cls.predictions.transform.LayerNorm.weight"),
                                 task_params.at("cls.predictions.transform.LayerNorm.bias"), 1e-12f);
        lab::Tensor logits = lab::ops::linear(h, f.model->embedding_weight(), task_params.at("cls.predictions.bias"));
        lab::Tensor dense = lab::ops::cross_entropy(
            logits, lab::Tensor::from_ints(f.backend, {B * T}, mlm_targets, lab::DType::i32), -100);
        if (nsp) {
            std::vector<int64_t> nsp_targets(targets.begin() + B * T, targets.end());
            REQUIRE(nsp_targets.size() == static_cast<size_t>(B));
            lab::Tensor nsp_logits =
                lab::ops::linear(f.model->pool(hidden), task_params.at("cls.seq_relationship.weight"),
                                 task_params.at("cls.seq_relationship.bias"));
            dense = lab::ops::add(
                dense, lab::ops::cross_entropy(nsp_logits,
                                               lab::Tensor::from_ints(f.backend, {B}, nsp_targets, lab::DType::i32)));
        }
        lab::backward(dense);
        auto dense_grads = take_grads();

        CHECK(std::abs(sparse.item() - dense.item()) < 1e-5);
        for (auto& [name, g] : dense_grads) {
            INFO(name);
            const std::vector<float>& s = sparse_grads.at(name);
            REQUIRE(s.size() == g.size());
            float worst = 0, largest = 0;
            for (size_t i = 0; i < g.size(); ++i) {
                worst = std::max(worst, std::abs(s[i] - g[i]));
                largest = std::max(largest, std::abs(g[i]));
            }
            CHECK(worst < 1e-5f);
            CHECK(largest > 0.0f);  // the gradient reaches this parameter (through the row gather)
        }
    }
}

TEST_CASE("mlm: next-sentence pairs are half continuations, half random spans, with segments", "[mlm][plugins]") {
    const int64_t B = 64, T = 32, batches = 30;
    MlmFixture f({{"nsp", "true"}}, B, T);
    std::vector<int32_t> stream = f.stream(f.train_lines);
    int64_t random_next = 0;
    for (int64_t n = 0; n < batches; ++n) {
        lab::Batch batch = f.task->next_batch();
        HostBatch h = to_host(batch);
        REQUIRE(h.targets.size() == static_cast<size_t>(B * T + B));
        for (int64_t b = 0; b < B; ++b) {
            INFO("batch " << n << ", sequence " << b);
            int64_t label = h.targets[static_cast<size_t>(B * T + b)];
            REQUIRE((label == 0 || label == 1));
            random_next += label;
            std::vector<int32_t> a, second;
            int64_t seps = 0;
            CHECK(h.ids[static_cast<size_t>(b * T)] == kCls);
            CHECK(h.ids[static_cast<size_t>(b * T + T - 1)] == kSep);
            for (int64_t t = 0; t < T; ++t) {
                auto at = static_cast<size_t>(b * T + t);
                CHECK(h.segments[at] == (seps == 0 ? 0 : 1));  // [CLS] A [SEP] is 0, B [SEP] is 1
                if (h.ids[at] == kSep) {
                    ++seps;
                    continue;
                }
                if (t == 0) continue;
                auto original = static_cast<int32_t>(h.targets[at] == -100 ? h.ids[at] : h.targets[at]);
                (seps == 0 ? a : second).push_back(original);
            }
            CHECK(seps == 2);
            CHECK(!a.empty());
            CHECK(!second.empty());
            CHECK(a.size() + second.size() == static_cast<size_t>(T - 3));
            CHECK(contains_span(stream, a));
            CHECK(contains_span(stream, second));
            std::vector<int32_t> joined = a;
            joined.insert(joined.end(), second.begin(), second.end());
            // A random B of a few tokens may follow A somewhere by chance; four and more do not.
            if (label == 0) CHECK(contains_span(stream, joined));
            else if (a.size() >= 4 && second.size() >= 4) CHECK_FALSE(contains_span(stream, joined));
        }
    }
    double fraction = static_cast<double>(random_next) / static_cast<double>(B * batches);
    INFO("random-next fraction " << fraction);
    CHECK(std::abs(fraction - 0.5) < 0.04);

    lab::EvalResult result = f.task->evaluate(*f.model);
    REQUIRE(result.metrics.count("val/nsp_accuracy"));
    CHECK(result.metrics.at("val/nsp_accuracy") >= 0.0);
    CHECK(result.metrics.at("val/nsp_accuracy") <= 1.0);
}

TEST_CASE("mlm: trains the tokenizer and splits validation lines off the training file", "[mlm][plugins]") {
    MlmFixture f({{"valid", "none"}, {"valid_fraction", "0.2"}}, 4, 16, 5, false);
    REQUIRE(f.tokenizer->ready());
    CHECK(f.tokenizer->vocab_size() == 5 + 41);  // specials, "=" and w0 .. w39
    REQUIRE(!f.log.empty());
    // 300 lines (blank ones skipped): 240 train, 60 validation.
    CHECK_THAT(f.log.back(), Contains("240 train lines") && Contains("60 validation lines"));
    CHECK(f.task->evaluate(*f.model).metrics.at("val/masked_tokens") > 0);
}

TEST_CASE("mlm: bad settings are refused with what to change", "[mlm][plugins]") {
    CHECK_THAT(error_of<lab::DataError>([&] {
                   MlmFixture({{"train", "/nonexistent/train.txt"}}, 4, 16);
               }),
               Contains("/nonexistent/train.txt") && Contains("get_data.sh"));
    CHECK_THAT(error_of<lab::ConfigError>([&] { MlmFixture({}, 4, 2); }), Contains("seq_len >= 3"));
    CHECK_THAT(error_of<lab::ConfigError>([&] { MlmFixture({{"nsp", "true"}}, 4, 4); }), Contains("seq_len >= 5"));
    CHECK_THAT(error_of<lab::DataError>([&] { MlmFixture({}, 4, 4000); }), Contains("fewer than one sequence needs"));

    MlmFixture f({}, 4, 16, 5, true, false);
    MixModel causal(f.backend, f.tokenizer->vocab_size(), 8, 16, 1, true);
    CHECK_THAT(error_of<lab::ConfigError>([&] { f.task->attach(causal, f.ctx); }), Contains("bidirectional"));
    MixModel short_model(f.backend, f.tokenizer->vocab_size(), 8, 8, 1);
    CHECK_THAT(error_of<lab::ConfigError>([&] { f.task->attach(short_model, f.ctx); }), Contains("max_seq_len"));
    MixModel other_vocab(f.backend, 7, 8, 16, 1);
    CHECK_THAT(error_of<lab::ConfigError>([&] { f.task->attach(other_vocab, f.ctx); }), Contains("token embedding"));
    f.task->attach(*f.model, f.ctx);
    CHECK_THAT(error_of<lab::ConfigError>([&] { f.task->attach(*f.model, f.ctx); }), Contains("already called"));
}
