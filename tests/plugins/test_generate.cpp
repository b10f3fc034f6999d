// Generation (lab/generate.h) with model/gpt: the KV cache gives the hidden states and the tokens
// of full recomputation, for softmax, multi-query, sliding-window and ALiBi attention, with
// learned, rotary and no position embeddings; sampling filters; the context limits; attention
// without a cache recomputes; built blocks carry their plugin's declared capabilities.
#include <catch2/catch.hpp>
#include <cmath>
#include <set>

#include "lab/autograd.h"
#include "lab/error.h"
#include "lab/generate.h"
#include "lab/host_backend.h"
#include "lab/ops.h"
#include "lab/registry.h"
#include "plugin_test_support.h"

using Catch::Matchers::Contains;

namespace {

struct TinyGpt {
    lab::Registry registry;
    lab::HostBackend backend;
    lab::BuildContext ctx;
    lab_test::FixedVocabTokenizer tokenizer{23};
    lab::Options attention_opts;
    std::shared_ptr<lab::Model> model;

    TinyGpt(const std::string& attention, const std::map<std::string, std::string>& attention_values,
            int64_t context = 48, const std::string& position = "learned") {
        registry.load_directory(LAB_PLUGIN_DIR);
        lab_test::seed_context(ctx, backend, registry, 11);
        ctx.train.seq_len = context;
        ctx.tokenizer = &tokenizer;
        attention_opts = lab::plugin_options(registry, "attention", attention, attention_values, "test");
        const auto& make_attention = registry.factory<lab::AttentionFactory>("attention", attention);
        ctx.make_attention = [this, &make_attention](const lab::AttentionShape& s) {
            return make_attention(attention_opts, s, ctx);
        };
        // Larger than GPT-2's 0.02 initialisation, so that greedy decoding does not repeat one token.
        model = registry.factory<lab::ModelFactory>("model", "gpt")(
            lab::plugin_options(registry, "model", "gpt",
                                {{"layers", "2"}, {"heads", "4"}, {"hidden", "32"}, {"position", position}}, "test"),
            ctx);
        for (auto& [name, p] : model->named_parameters())
            if (p.dim() == 2) lab::ops::fill_normal(p, 0.0f, 0.3f, ctx.init_rng.next(static_cast<uint64_t>(p.numel())));
        model->eval();
    }
};

using AttentionChoices = std::vector<std::pair<std::string, std::map<std::string, std::string>>>;

const AttentionChoices kCachedAttention = {
    {"softmax", {}},
    {"softmax", {{"fused", "true"}}},
    {"gqa", {{"kv_heads", "1"}}},
    {"local", {{"window", "4"}}},  // the window slides past the prompt while generating
    {"local", {{"window", "4"}, {"fused", "false"}}},
    {"alibi", {}},
    {"alibi", {{"fused", "true"}}},
    {"sigmoid", {}},  // n counts each query's visible keys, so chunks of 5, 1, 6 see the same n
    {"differential", {}},
    {"differential", {{"fused", "true"}}}};

// Hidden states of 12 positions fed whole and as 5 + 1 + 6 through the cache agree, and decoding
// 30 tokens at `temperature` (0: greedy; otherwise sampled from a fixed seed, so both runs draw
// the same numbers) gives the same ids with and without the cache.
void check_cache_equals_recomputation(const std::string& position, double temperature) {
    for (auto [attention, values] : kCachedAttention) {
        std::string described = "attention/" + attention;
        for (const auto& [key, value] : values) described += " " + key + "=" + value;
        INFO(described << ", position = " << position);
        TinyGpt g(attention, values, 48, position);
        const std::vector<int64_t> ids = {3, 17, 5, 5, 9, 21, 0, 14, 2, 8, 8, 19};
        lab::NoGradGuard no_grad;
        lab::ModelInputs all;
        all.ids = lab::Tensor::from_ints(g.backend, {1, 12}, ids, lab::DType::i32);
        std::vector<float> full = g.model->forward(all).to_floats();  // [1, 12, 32]
        // The same sequence fed as 5 + 1 + 6 positions through the cache.
        lab::DecodeState state;
        std::vector<float> cached;
        for (auto [begin, end] : std::vector<std::pair<int64_t, int64_t>>{{0, 5}, {5, 6}, {6, 12}}) {
            lab::ModelInputs part;
            part.ids = lab::Tensor::from_ints(g.backend, {1, end - begin}, {ids.begin() + begin, ids.begin() + end},
                                              lab::DType::i32);
            std::vector<float> h = g.model->forward_cached(part, state).to_floats();
            cached.insert(cached.end(), h.begin(), h.end());
        }
        CHECK(state.length == 12);
        REQUIRE(cached.size() == full.size());
        float worst = 0;
        for (size_t i = 0; i < full.size(); ++i) worst = std::max(worst, std::abs(cached[i] - full[i]));
        CHECK(worst < 1e-5f);

        lab::SamplingOptions sampling;
        sampling.temperature = temperature;
        sampling.max_tokens = 30;
        lab::Generation with_cache = lab::generate(*g.model, {4, 1, 15}, sampling);
        sampling.kv_cache = false;
        lab::Generation without = lab::generate(*g.model, {4, 1, 15}, sampling);
        CHECK(with_cache.used_kv_cache);
        CHECK_FALSE(without.used_kv_cache);
        CHECK(with_cache.new_tokens == 30);
        CHECK(with_cache.ids == without.ids);
        std::set<int32_t> distinct(with_cache.ids.begin() + 3, with_cache.ids.end());
        CHECK(distinct.size() > 3);  // a sequence worth comparing, not one token repeated
    }
}

}  // namespace

TEST_CASE("generate: the KV cache gives the hidden states and tokens of full recomputation", "[generate]") {
    check_cache_equals_recomputation("learned", 0.0);
}

TEST_CASE("generate: the KV cache matches recomputation with rotary and with no positions", "[generate]") {
    // rope: the cache holds rotated keys, new tokens are rotated from the cache's length on.
    // Sampled at temperature 1: without learned position embeddings these random models fall
    // into greedy cycles of one to three tokens, which would compare little.
    check_cache_equals_recomputation("rope", 1.0);
    check_cache_equals_recomputation("none", 1.0);
}

TEST_CASE("generate: context limits and attention without a KV cache", "[generate]") {
    TinyGpt g("softmax", {}, 16);
    lab::SamplingOptions options;
    options.max_tokens = 100;
    options.temperature = 0.8;
    lab::Generation out = lab::generate(*g.model, {1, 2, 3, 4, 5, 6}, options);
    CHECK(out.ids.size() == 16);  // stops when the context is full
    CHECK(out.new_tokens == 10);
    CHECK(out.stop_reason == "context");
    std::vector<int32_t> long_prompt(17, 3);
    CHECK_THROWS_WITH(lab::generate(*g.model, long_prompt, options),
                      Contains("the prompt has 17 tokens, more than the model's context of 16"));
    CHECK_THROWS_WITH(lab::generate(*g.model, {}, options), Contains("no tokens"));

    // attention/linear declares no kv_cache: the model answers from its attention's declaration,
    // so generation recomputes instead of handing the attention a cache it would refuse.
    TinyGpt linear("linear", {});
    CHECK(g.model->supports_kv_cache());
    CHECK_FALSE(linear.model->supports_kv_cache());
    lab::SamplingOptions cached;
    cached.max_tokens = 2;
    lab::Generation recomputed = lab::generate(*linear.model, {1, 2}, cached);
    CHECK_FALSE(recomputed.used_kv_cache);
    CHECK(recomputed.new_tokens == 2);
    lab::DecodeState state;
    lab::ModelInputs in;
    in.ids = lab::Tensor::from_ints(linear.backend, {1, 2}, {1, 2}, lab::DType::i32);
    CHECK_THROWS_WITH(linear.model->forward_cached(in, state), Contains("has no KV cache"));
}

TEST_CASE("attention capabilities: every built block carries its plugin's declaration", "[generate]") {
    lab::Registry registry;
    registry.load_directory(LAB_PLUGIN_DIR);
    lab::HostBackend backend;
    lab::BuildContext ctx;
    lab_test::seed_context(ctx, backend, registry, 3);
    lab::AttentionShape shape;
    shape.hidden = 16;
    shape.heads = 2;
    for (const std::string name : {"softmax", "gqa", "local", "alibi", "sigmoid", "differential", "linear"}) {
        INFO("attention/" << name);
        const lab::PluginInfo& info = registry.find("attention", name);
        auto block = registry.factory<lab::AttentionFactory>("attention", name)(
            lab::plugin_options(registry, "attention", name, {}, "test"), shape, ctx);
        CHECK(block->capabilities().str() == info.attention.supports.str());
        CHECK(block->capabilities().kv_cache == (name != "linear"));
    }
}

TEST_CASE("sample_token: temperature, top-k and top-p", "[generate]") {
    std::vector<float> logits = {1.0f, 3.0f, 2.0f, 0.0f};
    lab::SamplingOptions o;
    o.temperature = 0;
    CHECK(lab::sample_token(logits, o, 0.99) == 1);
    o.temperature = 1;
    o.top_k = 1;
    CHECK(lab::sample_token(logits, o, 0.99) == 1);
    o.top_k = 2;  // tokens 1 and 2 with p = e^3 / (e^3 + e^2) = 0.731, 0.269
    CHECK(lab::sample_token(logits, o, 0.70) == 1);
    CHECK(lab::sample_token(logits, o, 0.75) == 2);
    o.top_k = 0;
    o.top_p = 0.5;  // the nucleus is token 1 alone (p = 0.644 >= 0.5)
    CHECK(lab::sample_token(logits, o, 0.99) == 1);
    o.top_p = 1.0;  // all four: cumulative 0.644, 0.881, 0.968, 1
    CHECK(lab::sample_token(logits, o, 0.60) == 1);
    CHECK(lab::sample_token(logits, o, 0.90) == 0);
    CHECK(lab::sample_token(logits, o, 0.99) == 3);
}
