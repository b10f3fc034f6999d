// model/gpt through its plugin: causality (a later token never changes an earlier output) and the
// tied output embedding.
#include <catch2/catch.hpp>
#include <cmath>

#include "lab/autograd.h"
#include "lab/host_backend.h"
#include "lab/ops.h"
#include "lab/registry.h"

namespace {

struct GptFixture {
    lab::Registry registry;
    lab::HostBackend backend;
    lab::BuildContext ctx;
    std::shared_ptr<lab::Tokenizer> tokenizer;
    std::shared_ptr<lab::Model> model;
    lab::Options attention_opts;

    lab::Options options(const std::string& kind, const std::string& name,
                         const std::map<std::string, std::string>& values) {
        return lab::plugin_options(registry, kind, name, values, "test");
    }

    explicit GptFixture(float dropout = 0.0f) {
        registry.load_directory(LAB_PLUGIN_DIR);
        ctx.backend = &backend;
        ctx.registry = &registry;
        ctx.init_rng = lab::Generator(7, lab::kStreamInit);
        ctx.dropout_rng = lab::Generator(7, lab::kStreamDropout);
        ctx.train.seq_len = 16;
        tokenizer = registry.factory<lab::TokenizerFactory>("tokenizer", "char")(options("tokenizer", "char", {}), ctx);
        tokenizer->train("abcdefghijklmnop");
        ctx.tokenizer = tokenizer.get();
        attention_opts = options("attention", "softmax", {});
        const auto& make_attention = registry.factory<lab::AttentionFactory>("attention", "softmax");
        ctx.make_attention = [this, &make_attention](const lab::AttentionShape& s) {
            return make_attention(attention_opts, s, ctx);
        };
        model = registry.factory<lab::ModelFactory>("model", "gpt")(
            options("model", "gpt",
                    {{"layers", "2"}, {"heads", "2"}, {"hidden", "16"}, {"dropout", std::to_string(dropout)}}),
            ctx);
    }

    std::vector<float> forward(const std::vector<int64_t>& ids) {
        lab::NoGradGuard no_grad;
        lab::ModelInputs in;
        in.ids = lab::Tensor::from_ints(backend, {1, static_cast<int64_t>(ids.size())}, ids, lab::DType::i32);
        return model->forward(in).to_floats();  // [1, T, C]
    }
};

}  // namespace

TEST_CASE("gpt: changing a later token changes no earlier output", "[gpt][plugins]") {
    GptFixture f;
    f.model->eval();
    const int64_t T = 12, C = 16;
    std::vector<int64_t> ids = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    std::vector<float> base = f.forward(ids);
    REQUIRE(base.size() == static_cast<size_t>(T * C));
    for (int64_t changed : {int64_t{0}, int64_t{5}, T - 1}) {
        std::vector<int64_t> other = ids;
        other[static_cast<size_t>(changed)] = 15;
        std::vector<float> out = f.forward(other);
        for (int64_t t = 0; t < T; ++t) {
            float max_diff = 0;
            for (int64_t c = 0; c < C; ++c) {
                size_t i = static_cast<size_t>(t * C + c);
                max_diff = std::max(max_diff, std::fabs(out[i] - base[i]));
            }
            INFO("changed position " << changed << ", output position " << t << ", max diff " << max_diff);
            if (t < changed) CHECK(max_diff == 0.0f);  // earlier positions: bitwise identical
            else if (t == changed) CHECK(max_diff > 1e-4f);  // the changed position itself must move
        }
    }
}

TEST_CASE("gpt: parameters follow the GPT-2 layout and the output embedding is the input embedding", "[gpt][plugins]") {
    GptFixture f;
    std::map<std::string, lab::Tensor> state = f.model->state_dict();
    for (const char* name : {"wte.weight", "wpe.weight", "h.0.ln_1.weight", "h.0.attn.c_attn.weight",
                             "h.0.attn.c_proj.weight", "h.1.mlp.c_fc.weight", "h.1.mlp.c_proj.bias", "ln_f.weight"})
        CHECK(state.count(name) == 1);
    CHECK(state.at("wte.weight").shape() == lab::Shape{16, 16});
    CHECK(state.at("wpe.weight").shape() == lab::Shape{16, 16});
    CHECK(f.model->embedding_weight().id() == state.at("wte.weight").id());
    // 16*16 (wte) + 16*16 (wpe) + 2 blocks * (2*2*16 LN + 16*48+48 + 16*16+16 + 16*64+64 + 64*16+16) + 2*16 (ln_f)
    CHECK(f.model->num_parameters() == 256 + 256 + 2 * (64 + 816 + 272 + 1088 + 1040) + 32);
}

TEST_CASE("gpt: dropout is active in training mode only and reproducible from the seed", "[gpt][plugins]") {
    std::vector<int64_t> ids = {1, 2, 3, 4, 5, 6};
    GptFixture a(0.5f), b(0.5f);
    a.model->eval();
    std::vector<float> e1 = a.forward(ids), e2 = a.forward(ids);
    CHECK(e1 == e2);
    a.model->train(true);
    b.model->train(true);
    std::vector<float> t1 = a.forward(ids), t2 = b.forward(ids);
    CHECK(t1 == t2);   // the same seed draws the same masks
    CHECK(t1 != e1);   // masks change the output
}
