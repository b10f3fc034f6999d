// The CUDA backend under whole models: every attention plugin (softmax composite and fused, gqa,
// local, linear, alibi) inside model/gpt, and model/bert and model/transformer, built through the
// registry on backend 'reference' (lab::HostBackend) and on backend 'cuda' from the same seed, run
// forward and backward on the same batch: the initial parameters must be identical, the loss and
// every parameter's gradient must agree within 1e-4 (f32) or 1e-2 (precision bf16, where the GPU
// multiplies in bf16 and runs cuDNN's attention). (The steady state of training on the GPU is
// checked with the CPU's, in test_steady_state.cpp.)
#include <catch2/catch.hpp>

#include "cuda_test_support.h"
#include "lab/autograd.h"
#include "lab/config.h"
#include "lab/ops.h"
#include "lab/trainer.h"
#include "plugin_test_support.h"
#include "test_support.h"

using lab::Backend;
using lab::DType;
using lab::Tensor;
using namespace lab_test::cuda;

namespace {

using OptionMap = std::map<std::string, std::string>;

struct ModelCase {
    std::string model;
    OptionMap model_options;
    std::string attention;
    OptionMap attention_options;
    bool padding = false;  // the second sequence ends in padding (encoders)
};

std::string describe(const ModelCase& c) {
    std::string text = c.model + " + " + c.attention;
    for (const auto& [key, value] : c.attention_options) text += " " + key + "=" + value;
    if (c.model_options.count("dropout") && c.model_options.at("dropout") != "0") text += " dropout " + c.model_options.at("dropout");
    if (c.padding) text += " padded";
    return text;
}

struct ModelResult {
    float loss = 0;
    std::map<std::string, std::vector<float>> initial, grads;  // by parameter name
};

constexpr int64_t kBatch = 2, kSeqLen = 32, kVocab = 50, kHidden = 64;

// Builds case `c` on backend `backend_name` (seed 5, training mode) and runs forward, a tied
// output layer, cross-entropy and backward on a fixed batch.
ModelResult run_model(const std::string& backend_name, const ModelCase& c, DType precision) {
    lab::Registry& registry = plugin_registry();
    std::shared_ptr<Backend> backend = make_backend(backend_name);  // destroyed last
    backend->set_matmul_inputs(precision);
    lab::BuildContext ctx;
    lab_test::seed_context(ctx, *backend, registry, 5);
    ctx.train.seq_len = kSeqLen;
    ctx.train.batch = kBatch;
    lab_test::FixedVocabTokenizer tokenizer(kVocab);
    ctx.tokenizer = &tokenizer;
    const lab::Options attention_options =
        lab::plugin_options(registry, "attention", c.attention, c.attention_options, "test");
    const auto& make_attention = registry.factory<lab::AttentionFactory>("attention", c.attention);
    ctx.make_attention = [&](const lab::AttentionShape& shape) { return make_attention(attention_options, shape, ctx); };
    std::shared_ptr<lab::Model> model = registry.factory<lab::ModelFactory>("model", c.model)(
        lab::plugin_options(registry, "model", c.model, c.model_options, "test"), ctx);
    model->train(true);

    ModelResult result;
    for (const auto& [name, p] : model->named_parameters()) result.initial[name] = p.to_floats();

    std::vector<int64_t> ids(static_cast<size_t>(kBatch * kSeqLen)), targets(ids.size()), padding(ids.size(), 0);
    for (size_t i = 0; i < ids.size(); ++i) {
        ids[i] = static_cast<int64_t>((i * 31 + 7) % kVocab);
        targets[i] = static_cast<int64_t>((i * 17 + 3) % kVocab);
    }
    if (c.padding)
        for (int64_t t = kSeqLen - 6; t < kSeqLen; ++t) {
            padding[static_cast<size_t>(kSeqLen + t)] = 1;
            targets[static_cast<size_t>(kSeqLen + t)] = -100;  // ignored
        }
    lab::ModelInputs in;
    in.ids = Tensor::from_ints(*backend, {kBatch, kSeqLen}, ids, DType::i32);
    if (c.padding) in.padding_mask = Tensor::from_ints(*backend, {kBatch, kSeqLen}, padding, DType::u8);
    Tensor hidden = lab::ops::reshape(model->forward(in), {-1, kHidden});
    Tensor logits = lab::ops::linear(hidden, model->embedding_weight());
    Tensor loss = lab::ops::cross_entropy(logits, Tensor::from_ints(*backend, {kBatch * kSeqLen}, targets, DType::i32));
    lab::backward(loss);
    result.loss = loss.item();
    for (const auto& [name, p] : model->named_parameters())
        if (p.grad().defined()) result.grads[name] = p.grad().to_floats();
    return result;
}

std::vector<ModelCase> model_cases() {
    const OptionMap gpt = {{"layers", "2"}, {"heads", "4"}, {"hidden", std::to_string(kHidden)}, {"dropout", "0"}};
    OptionMap gpt_dropout = gpt;
    gpt_dropout["dropout"] = "0.1";
    OptionMap gpt_tanh = gpt;  // GPT-2's GELU: the cuBLASLt GELU_AUX_BIAS epilogue on cuda
    gpt_tanh["activation"] = "gelu_tanh";
    const OptionMap bert = {{"layers", "2"},     {"heads", "4"},          {"hidden", std::to_string(kHidden)},
                            {"dropout", "0"},    {"attention_dropout", "0"}, {"max_position", "64"}};
    OptionMap bert_dropout = bert;
    bert_dropout["dropout"] = bert_dropout["attention_dropout"] = "0.1";
    const OptionMap transformer = {{"layers", "2"}, {"heads", "4"}, {"hidden", std::to_string(kHidden)},
                                   {"dropout", "0"}, {"activation", "gelu"}};
    return {
        {"gpt", gpt, "softmax", {{"fused", "false"}}},
        {"gpt", gpt, "softmax", {{"fused", "true"}}},
        {"gpt", gpt_tanh, "softmax", {{"fused", "true"}}},
        {"gpt", gpt_dropout, "softmax", {{"fused", "true"}}},
        {"gpt", gpt_dropout, "softmax", {{"fused", "false"}}},
        {"gpt", gpt, "gqa", {{"kv_heads", "2"}, {"fused", "true"}}},
        {"gpt", gpt, "gqa", {{"kv_heads", "1"}, {"fused", "false"}}},
        {"gpt", gpt, "local", {{"window", "8"}, {"fused", "true"}}},
        {"gpt", gpt, "local", {{"window", "8"}, {"fused", "false"}}},
        {"gpt", gpt, "linear", {{"chunk", "8"}}},
        {"gpt", gpt, "alibi", {{"fused", "true"}}},
        {"gpt", gpt, "alibi", {{"fused", "false"}}},
        {"bert", bert, "softmax", {{"fused", "true"}}, true},
        {"bert", bert_dropout, "softmax", {{"fused", "false"}}, true},
        {"transformer", transformer, "softmax", {{"fused", "true"}}, true},
        {"transformer", transformer, "softmax", {{"fused", "false"}}, true},
    };
}

void compare_models(const ModelCase& c, DType precision) {
    const double tolerance = precision == DType::bf16 ? kBf16Tolerance : kF32Tolerance;
    const std::string name = describe(c) + (precision == DType::bf16 ? " [bf16]" : " [f32]");
    INFO(name);
    const ModelResult want = run_model("reference", c, precision);
    const ModelResult got = run_model("cuda", c, precision);
    // Initialisation draws on the host from the seed, so both start from the same bits.
    REQUIRE(got.initial.size() == want.initial.size());
    for (const auto& [param, values] : want.initial) {
        INFO("initial " << param);
        REQUIRE(got.initial.count(param) == 1);
        CHECK(got.initial.at(param) == values);
    }
    expect_close(name + " loss", std::vector<float>{got.loss}, std::vector<float>{want.loss}, tolerance);
    CHECK(std::isfinite(want.loss));
    CHECK(want.grads.size() + 2 >= want.initial.size());  // only BERT's pooler (weight, bias) gets no gradient
    for (const auto& [param, values] : want.grads) {
        INFO("gradient of " << param);
        REQUIRE(got.grads.count(param) == 1);
        expect_close(name + " d" + param, got.grads.at(param), values, tolerance);
    }
    CHECK(got.grads.size() == want.grads.size());
}

}  // namespace

TEST_CASE("cuda models: every attention plugin in gpt, and bert and transformer, match the host in f32",
          "[cuda]") {
    CUDA_BACKEND_OR_SKIP(cuda);
    for (const ModelCase& c : model_cases()) compare_models(c, DType::f32);
}

TEST_CASE("cuda models: every attention plugin in gpt, and bert and transformer, match the host in bf16",
          "[cuda]") {
    CUDA_BACKEND_OR_SKIP(cuda);
    for (const ModelCase& c : model_cases()) compare_models(c, DType::bf16);
}
