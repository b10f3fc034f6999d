// task/causal_lm's evaluation through its plugin: sliding-window perplexity (eval_stride) against a
// brute-force reference that runs the model once per scored token on the context the stride rule
// gives, every validation token scored exactly once, eval_stride = seq_len equal to the
// non-overlapping default, bits per byte over UTF-8 bytes, and the refusal of a stride > seq_len.
#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <random>

#include "lab/autograd.h"
#include "lab/error.h"
#include "lab/host_backend.h"
#include "lab/ops.h"
#include "lab/registry.h"
#include "plugin_test_support.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;
using Catch::Matchers::Contains;

// `count` characters drawn from `alphabet` (whole UTF-8 characters) by a fixed-seed generator.
std::string random_text(const std::vector<std::string>& alphabet, size_t count, uint32_t seed) {
    std::mt19937 gen(seed);
    std::string text;
    for (size_t i = 0; i < count; ++i) text += alphabet[gen() % alphabet.size()];
    return text;
}

const std::vector<std::string> kAscii = {"a", "b", "c", "d", "e", "f", "g", "h", " ", "."};
const std::vector<std::string> kMixed = {"红", "楼", "梦", "宝", "玉", "a", "b", " "};  // 3-byte and 1-byte characters

// A char tokenizer trained on `train_text`, a tiny GPT with its matrices scaled up (a fresh GPT's
// logits are nearly uniform, so a wrong context would hardly change the loss), and causal_lm tasks on the
// given train/valid texts with any options.
struct EvalFixture {
    lab::Registry registry;
    lab::HostBackend backend;
    lab::BuildContext ctx;
    lab_test::TempDir dir;
    std::string train_path, valid_path;
    std::shared_ptr<lab::Tokenizer> tokenizer;
    std::shared_ptr<lab::Model> model;
    lab::Options attention_opts;
    std::vector<int32_t> valid_ids;

    lab::Options options(const std::string& kind, const std::string& name,
                         const std::map<std::string, std::string>& values) {
        return lab::plugin_options(registry, kind, name, values, "test");
    }

    EvalFixture(const std::string& train_text, const std::string& valid_text, int64_t seq_len) {
        registry.load_directory(LAB_PLUGIN_DIR);
        lab_test::seed_context(ctx, backend, registry, 11);
        ctx.train.batch = 4;
        ctx.train.seq_len = seq_len;
        train_path = dir.write("train.txt", train_text).string();
        valid_path = dir.write("valid.txt", valid_text).string();
        tokenizer = registry.factory<lab::TokenizerFactory>("tokenizer", "char")(options("tokenizer", "char", {}), ctx);
        tokenizer->train(train_text);
        ctx.tokenizer = tokenizer.get();
        valid_ids = tokenizer->encode(valid_text);
        attention_opts = options("attention", "softmax", {});
        const auto& make_attention = registry.factory<lab::AttentionFactory>("attention", "softmax");
        ctx.make_attention = [this, &make_attention](const lab::AttentionShape& s) {
            return make_attention(attention_opts, s, ctx);
        };
        model = registry.factory<lab::ModelFactory>("model", "gpt")(
            options("model", "gpt", {{"layers", "2"}, {"heads", "2"}, {"hidden", "16"}}), ctx);
        lab::NoGradGuard no_grad;
        for (auto& [name, param] : model->state_dict()) {
            if (param.dim() != 2) continue;  // matrices only: LayerNorm gains and biases stay as made
            std::vector<float> values = param.to_floats();
            for (float& v : values) v *= 10.0f;
            param.copy_(lab::Tensor::from_floats(backend, param.shape(), values));
        }
        model->train(true);  // evaluate() must switch to eval mode and back by itself
    }

    std::shared_ptr<lab::Task> make_task(const std::map<std::string, std::string>& extra) {
        std::map<std::string, std::string> values = {
            {"train", train_path}, {"valid", valid_path}, {"sample_tokens", "0"}, {"eval_batch", "3"}};
        for (const auto& [key, value] : extra) values[key] = value;
        auto task = registry.factory<lab::TaskFactory>("task", "causal_lm")(options("task", "causal_lm", values), ctx);
        task->attach(*model, ctx);
        return task;
    }

    std::map<std::string, double> evaluate(const std::map<std::string, std::string>& extra) {
        return make_task(extra)->evaluate(*model).metrics;
    }

    // -log p(valid[j] | valid[begin, j)) from one forward pass over exactly that context.
    double nll(int64_t begin, int64_t j) {
        lab::NoGradGuard no_grad;
        std::vector<int32_t> context(valid_ids.begin() + begin, valid_ids.begin() + j);
        int64_t T = j - begin;
        lab::ModelInputs in;
        in.ids = lab::Tensor::from_host(backend, {1, T}, lab::DType::i32, context.data());
        lab::Tensor hidden = lab::ops::slice(model->forward(in), 1, T - 1, T);  // [1, 1, C]
        std::vector<float> z =
            lab::ops::linear(lab::ops::reshape(hidden, {1, model->hidden_size()}), model->embedding_weight()).to_floats();
        double zmax = *std::max_element(z.begin(), z.end()), sum = 0;
        for (float v : z) sum += std::exp(static_cast<double>(v) - zmax);
        return -(static_cast<double>(z[static_cast<size_t>(valid_ids[static_cast<size_t>(j)])]) - zmax - std::log(sum));
    }

    // The sliding-window loss computed token by token: the target at position j (1 <= j <= scored)
    // is scored by the first window [k*stride, k*stride + T) whose inputs reach position j - 1,
    // so its context starts at k*stride with k = max(0, ceil((j - T) / stride)).
    double reference_loss(int64_t T, int64_t stride, int64_t scored) {
        model->eval();
        double total = 0;
        for (int64_t j = 1; j <= scored; ++j) {
            int64_t k = j <= T ? 0 : (j - T + stride - 1) / stride;
            total += nll(k * stride, j);
        }
        model->train(true);
        return total / static_cast<double>(scored);
    }
};

}  // namespace

TEST_CASE("causal_lm: eval_stride = seq_len gives exactly the non-overlapping evaluation", "[causal_lm][plugins]") {
    const int64_t T = 16;
    // 6 * 16 + 1 validation tokens: whole windows, so both modes score the same 96 targets.
    EvalFixture f(random_text(kAscii, 400, 1), random_text(kAscii, 6 * T + 1, 2), T);
    std::map<std::string, double> plain = f.evaluate({});
    std::map<std::string, double> strided = f.evaluate({{"eval_stride", std::to_string(T)}});
    CHECK(plain.at("val/tokens") == 96);
    CHECK(f.model->training());  // restored after evaluation
    for (const char* name : {"val/loss", "val/ppl", "val/tokens", "val/bytes", "val/bpb"}) {
        INFO(name);
        CHECK(strided.at(name) == plain.at(name));
    }
    // The default keeps its old rule with a partial tail: whole windows only (and val_tokens rounds
    // up to whole windows), while a stride scores every token after the first.
    EvalFixture g(random_text(kAscii, 400, 1), random_text(kAscii, 6 * T + 10, 2), T);
    CHECK(g.evaluate({}).at("val/tokens") == 96);
    CHECK(g.evaluate({{"val_tokens", "20"}}).at("val/tokens") == 32);
    CHECK(g.evaluate({{"eval_stride", std::to_string(T)}}).at("val/tokens") == 6 * T + 9);
    CHECK(g.evaluate({{"eval_stride", std::to_string(T)}, {"val_tokens", "20"}}).at("val/tokens") == 20);
}

TEST_CASE("causal_lm: sliding-window loss equals a token-by-token reference and scores each token once",
          "[causal_lm][plugins]") {
    const int64_t T = 16;
    EvalFixture f(random_text(kAscii, 400, 3), random_text(kAscii, 101, 4), T);  // 100 targets
    for (int64_t stride : {int64_t{5}, int64_t{1}, int64_t{7}, T}) {
        INFO("eval_stride " << stride);
        std::map<std::string, double> m = f.evaluate({{"eval_stride", std::to_string(stride)}});
        CHECK(m.at("val/tokens") == 100);
        double reference = f.reference_loss(T, stride, 100);
        CHECK(std::fabs(m.at("val/loss") - reference) < 1e-5);
        CHECK(m.at("val/ppl") == Approx(std::exp(m.at("val/loss"))).epsilon(1e-12));
    }
    // The reference can tell contexts apart: the non-overlapping contexts give another loss.
    double overlapping = f.reference_loss(T, 5, 100), non_overlapping = f.reference_loss(T, T, 100);
    INFO("stride 5: " << overlapping << ", stride 16: " << non_overlapping);
    CHECK(std::fabs(overlapping - non_overlapping) > 1e-3);

    // val_tokens caps the scored tokens exactly, and the capped loss is the reference's prefix.
    std::map<std::string, double> capped = f.evaluate({{"eval_stride", "5"}, {"val_tokens", "37"}});
    CHECK(capped.at("val/tokens") == 37);
    CHECK(std::fabs(capped.at("val/loss") - f.reference_loss(T, 5, 37)) < 1e-5);
}

TEST_CASE("causal_lm: bits per byte over ASCII and multi-byte UTF-8 text", "[causal_lm][plugins]") {
    const int64_t T = 8;
    SECTION("ASCII: one byte per character token") {
        EvalFixture f(random_text(kAscii, 300, 5), random_text(kAscii, 61, 6), T);
        for (const char* stride : {"0", "3"}) {
            INFO("eval_stride " << stride);
            std::map<std::string, double> m = f.evaluate({{"eval_stride", stride}});
            CHECK(m.at("val/bytes") == m.at("val/tokens"));
            CHECK(m.at("val/bpb") == Approx(m.at("val/loss") / std::log(2.0)).epsilon(1e-12));
        }
    }
    SECTION("Chinese characters count three bytes each") {
        std::string valid = random_text(kMixed, 61, 8);
        EvalFixture f(random_text(kMixed, 300, 7), valid, T);
        REQUIRE(f.valid_ids.size() == 61);
        // The scored targets are every character after the first.
        std::string first = f.tokenizer->decode({f.valid_ids.front()});
        const double bytes = static_cast<double>(valid.size() - first.size());
        std::map<std::string, double> m = f.evaluate({{"eval_stride", "3"}});
        CHECK(m.at("val/tokens") == 60);
        CHECK(m.at("val/bytes") == bytes);
        CHECK(bytes > 100);  // most characters are 3 bytes: 60 tokens hold well over 100 bytes
        CHECK(m.at("val/bpb") ==
              Approx(m.at("val/loss") * m.at("val/tokens") / std::log(2.0) / bytes).epsilon(1e-12));
        CHECK(m.at("val/bpb") < m.at("val/loss") / std::log(2.0));
    }
}

TEST_CASE("causal_lm: eval_stride > seq_len is refused naming the key", "[causal_lm][plugins]") {
    const int64_t T = 16;
    EvalFixture f(random_text(kAscii, 300, 9), random_text(kAscii, 50, 10), T);
    try {
        f.make_task({{"eval_stride", "17"}});
        FAIL("eval_stride 17 with seq_len 16 was accepted");
    } catch (const lab::ConfigError& e) {
        CHECK_THAT(e.what(), Contains("eval_stride") && Contains("17") && Contains("seq_len = 16"));
    }
    CHECK_THROWS_AS(f.make_task({{"eval_stride", "-1"}}), lab::ConfigError);
    CHECK_NOTHROW(f.make_task({{"eval_stride", "16"}}));
}
