// model/transformer through its plugin: the sinusoid table against the paper's formula, the forward
// pass against a reference composed here from the model's own parameters, the use of positions
// and the padding mask.
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>

#include "lab/autograd.h"
#include "lab/error.h"
#include "lab/host_backend.h"
#include "lab/ops.h"
#include "lab/registry.h"
#include "plugin_test_support.h"

namespace {

namespace ops = lab::ops;
using Values = std::map<std::string, std::string>;

using lab_test::FixedVocabTokenizer;

struct TransformerFixture {
    lab::Registry registry;
    lab::HostBackend backend;
    lab::BuildContext ctx;
    FixedVocabTokenizer tokenizer{20};
    lab::Options attention_opts;
    std::shared_ptr<lab::Model> model;

    explicit TransformerFixture(const Values& values) {
        registry.load_directory(LAB_PLUGIN_DIR);
        ctx.backend = &backend;
        ctx.registry = &registry;
        ctx.init_rng = lab::Generator(3, lab::kStreamInit);
        ctx.dropout_rng = lab::Generator(3, lab::kStreamDropout);
        ctx.train.seq_len = 12;
        ctx.tokenizer = &tokenizer;
        attention_opts = lab::plugin_options(registry, "attention", "softmax", {}, "test");
        const auto& make_attention = registry.factory<lab::AttentionFactory>("attention", "softmax");
        ctx.make_attention = [this, &make_attention](const lab::AttentionShape& s) {
            return make_attention(attention_opts, s, ctx);
        };
        model = registry.factory<lab::ModelFactory>("model", "transformer")(
            lab::plugin_options(registry, "model", "transformer", values, "test"), ctx);
        model->eval();
    }
    lab::Tensor ids(const lab::Shape& shape, const std::vector<int64_t>& values, lab::DType dtype = lab::DType::i32) {
        return lab::Tensor::from_ints(backend, shape, values, dtype);
    }
    std::vector<float> forward(const lab::ModelInputs& in) {
        lab::NoGradGuard no_grad;
        return model->forward(in).to_floats();
    }
};

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    REQUIRE(a.size() == b.size());
    float worst = 0;
    for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(a[i] - b[i]));
    return worst;
}

// One post-LN encoder block of Vaswani et al. from the parameters `p` of layer `prefix`:
// x [B, T, C] -> LN(h + W2 act(W1 h)), h = LN(x + MHA(x)).
lab::Tensor reference_block(const lab::Tensor& x, const lab::TensorMap& p, const std::string& prefix, int64_t H,
                            bool relu) {
    const int64_t B = x.size(0), T = x.size(1), C = x.size(2), D = C / H;
    auto w = [&](const std::string& name) { return p.at(prefix + name); };
    lab::Tensor qkv = ops::linear(x, w("self_attn.c_attn.weight"), w("self_attn.c_attn.bias"));  // [B, T, 3C]
    auto heads = [&](int64_t part) {                                                             // -> [B, H, T, D]
        return ops::transpose(ops::reshape(ops::contiguous(ops::slice(qkv, 2, part * C, (part + 1) * C)), {B, T, H, D}),
                              1, 2);
    };
    lab::Tensor q = heads(0), k = heads(1), v = heads(2);
    lab::Tensor probs = ops::softmax(ops::scale(ops::matmul(q, ops::transpose(k, -1, -2)), 1.0f / std::sqrt(float(D))));
    lab::Tensor context = ops::reshape(ops::contiguous(ops::transpose(ops::matmul(probs, v), 1, 2)), {B, T, C});
    lab::Tensor attended = ops::linear(context, w("self_attn.c_proj.weight"), w("self_attn.c_proj.bias"));
    lab::Tensor h = ops::layer_norm(ops::add(x, attended), w("norm1.weight"), w("norm1.bias"), 1e-5f);
    lab::Tensor inner = ops::linear(h, w("linear1.weight"), w("linear1.bias"));
    inner = relu ? ops::relu(inner) : ops::gelu(inner, false);
    lab::Tensor f = ops::linear(inner, w("linear2.weight"), w("linear2.bias"));
    return ops::layer_norm(ops::add(h, f), w("norm2.weight"), w("norm2.bias"), 1e-5f);
}

}  // namespace

TEST_CASE("transformer: the positional encoding is the paper's sinusoid table, a buffer", "[transformer][plugins]") {
    TransformerFixture f(Values{{"layers", "1"}, {"hidden", "16"}, {"heads", "2"}, {"max_seq_len", "10"}});
    lab::TensorMap state = f.model->state_dict();
    REQUIRE(state.count("positional_encoding") == 1);
    for (const auto& [name, t] : f.model->named_parameters()) CHECK(name != "positional_encoding");
    const lab::Tensor& table = state.at("positional_encoding");
    REQUIRE(table.shape() == lab::Shape{10, 16});
    std::vector<float> values = table.to_floats();
    double worst = 0;
    for (int pos = 0; pos < 10; ++pos)
        for (int i = 0; i < 8; ++i) {
            double angle = pos / std::pow(10000.0, 2.0 * i / 16.0);
            worst = std::max(worst, std::fabs(values[static_cast<size_t>(pos * 16 + 2 * i)] - std::sin(angle)));
            worst = std::max(worst, std::fabs(values[static_cast<size_t>(pos * 16 + 2 * i + 1)] - std::cos(angle)));
        }
    INFO("max |table - formula| = " << worst);
    CHECK(worst <= 1e-6);
    CHECK(values[1 * 16 + 0] == Approx(std::sin(1.0)));  // PE(1, 0) = sin(1)
    CHECK(f.model->max_seq_len() == 10);
    CHECK_FALSE(f.model->causal());
    for (const char* name :
         {"embedding.weight", "layers.0.self_attn.c_attn.weight", "layers.0.self_attn.c_proj.bias",
          "layers.0.linear1.weight", "layers.0.linear2.bias", "layers.0.norm1.weight", "layers.0.norm2.bias"})
        CHECK(state.count(name) == 1);
    CHECK(f.model->embedding_weight().id() == state.at("embedding.weight").id());
}

TEST_CASE("transformer: forward equals the encoder composed from its parameters", "[transformer][plugins]") {
    for (const std::string activation : {"relu", "gelu"}) {
        INFO("activation " << activation);
        TransformerFixture f(
            Values{{"layers", "2"}, {"hidden", "16"}, {"heads", "4"}, {"ffn", "24"}, {"activation", activation}});
        lab::ModelInputs in;
        in.ids = f.ids({2, 6}, {1, 2, 3, 4, 5, 6, 19, 18, 0, 0, 7, 7});
        std::vector<float> ours = f.forward(in);

        lab::NoGradGuard no_grad;
        lab::TensorMap p = f.model->state_dict();
        // sqrt(C) E[ids] + PE[:T]
        lab::Tensor x = ops::add(ops::scale(ops::embedding(in.ids, p.at("embedding.weight")), std::sqrt(16.0f)),
                                 ops::slice(p.at("positional_encoding"), 0, 0, 6));
        for (const std::string layer : {"layers.0.", "layers.1."})
            x = reference_block(x, p, layer, 4, activation == "relu");
        float diff = max_abs_diff(ours, x.to_floats());
        INFO("max |model - reference| = " << diff);
        CHECK(diff <= 1e-5f);
    }
}

TEST_CASE("transformer: outputs depend on position through the sinusoids only", "[transformer][plugins]") {
    TransformerFixture f(Values{{"layers", "2"}, {"hidden", "16"}, {"heads", "2"}});
    const int64_t T = 6, C = 16;
    lab::ModelInputs in;
    in.ids = f.ids({1, T}, std::vector<int64_t>(T, 5));  // one token repeated
    auto spread = [&](const std::vector<float>& y) {     // max difference between a position and position 0
        float worst = 0;
        for (int64_t t = 1; t < T; ++t)
            for (int64_t c = 0; c < C; ++c)
                worst = std::max(worst, std::fabs(y[static_cast<size_t>(t * C + c)] - y[static_cast<size_t>(c)]));
        return worst;
    };
    CHECK(spread(f.forward(in)) > 1e-2f);
    // Without the sinusoids a bidirectional encoder cannot tell the positions of equal tokens apart.
    f.model->state_dict().at("positional_encoding").fill_(0.0);
    CHECK(spread(f.forward(in)) <= 1e-5f);
}

TEST_CASE("transformer: padding appended to a sequence changes no real position", "[transformer][plugins]") {
    TransformerFixture f(Values{{"layers", "2"}, {"hidden", "16"}, {"heads", "4"}});
    const int64_t T = 4, C = 16;
    lab::ModelInputs short_in, padded;
    short_in.ids = f.ids({1, T}, {3, 9, 4, 12});
    padded.ids = f.ids({1, T + 3}, {3, 9, 4, 12, 0, 0, 0});
    padded.padding_mask = f.ids({1, T + 3}, {0, 0, 0, 0, 1, 1, 1}, lab::DType::u8);
    std::vector<float> reference = f.forward(short_in), with_padding = f.forward(padded);
    with_padding.resize(static_cast<size_t>(T * C));
    float diff = max_abs_diff(with_padding, reference);
    INFO("max |diff| at real positions: " << diff);
    CHECK(diff <= 1e-5f);
}

TEST_CASE("transformer: bad options are refused", "[transformer][plugins]") {
    CHECK_THROWS_AS(TransformerFixture(Values{{"activation", "swish"}}), lab::ConfigError);
    CHECK_THROWS_WITH(TransformerFixture(Values{{"hidden", "18"}, {"heads", "4"}}),
                      Catch::Contains("not divisible by heads"));
    lab::ModelInputs in;
    TransformerFixture f(Values{{"max_seq_len", "4"}});
    in.ids = f.ids({1, 5}, {1, 2, 3, 4, 5});
    CHECK_THROWS_WITH(f.forward(in), Catch::Contains("exceeds max_seq_len 4"));
}
