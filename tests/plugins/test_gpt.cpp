// model/gpt through its plugin: causality (a later token never changes an earlier output), the
// tied output embedding, and the position choices (learned, rope, none): parameters, outputs,
// training and checkpoints of each. KV-cache decoding of each is in test_generate.cpp.
#include <catch2/catch.hpp>
#include <cmath>

#include "lab/error.h"
#include "lab/safetensors.h"
#include "test_support.h"

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

    // `model_values` add to or override the small model's options (e.g. position = rope).
    explicit GptFixture(float dropout = 0.0f, const std::map<std::string, std::string>& model_values = {}) {
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
        std::map<std::string, std::string> values = {
            {"layers", "2"}, {"heads", "2"}, {"hidden", "16"}, {"dropout", std::to_string(dropout)}};
        for (const auto& [key, value] : model_values) values[key] = value;
        model = registry.factory<lab::ModelFactory>("model", "gpt")(options("model", "gpt", values), ctx);
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

namespace {

// Mean next-token cross entropy of `ids` [B, T] under the model's tied output embedding.
lab::Tensor next_token_loss(GptFixture& f, const std::vector<int64_t>& ids, int64_t B, int64_t T) {
    lab::ModelInputs in;
    in.ids = lab::Tensor::from_ints(f.backend, {B, T}, ids, lab::DType::i32);
    lab::Tensor hidden = lab::ops::slice(f.model->forward(in), 1, 0, T - 1);           // [B, T - 1, C]
    lab::Tensor logits = lab::ops::linear(hidden, f.model->embedding_weight());        // [B, T - 1, V]
    std::vector<int64_t> targets;
    for (int64_t b = 0; b < B; ++b)
        targets.insert(targets.end(), ids.begin() + b * T + 1, ids.begin() + (b + 1) * T);
    return lab::ops::cross_entropy(lab::ops::reshape(logits, {B * (T - 1), -1}),
                                   lab::Tensor::from_ints(f.backend, {B * (T - 1)}, targets, lab::DType::i32));
}

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    REQUIRE(a.size() == b.size());
    float worst = 0.0f;
    for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(a[i] - b[i]));
    return worst;
}

}  // namespace

TEST_CASE("gpt: position = learned is the default, bit for bit", "[gpt][plugins]") {
    GptFixture implicit, learned(0.0f, {{"position", "learned"}});
    const std::vector<int64_t> ids = {3, 1, 4, 1, 5, 9, 2, 6};
    CHECK(implicit.forward(ids) == learned.forward(ids));
    CHECK(learned.model->state_dict().count("wpe.weight") == 1);
}

TEST_CASE("gpt: position = rope and none have no wpe, and rope is applied in every block", "[gpt][plugins]") {
    GptFixture learned, rope(0.0f, {{"position", "rope"}}), none(0.0f, {{"position", "none"}});
    const int64_t learned_count = learned.model->num_parameters();
    for (GptFixture* f : {&rope, &none}) {
        std::map<std::string, lab::Tensor> state = f->model->state_dict();
        CHECK(state.count("wpe.weight") == 0);
        CHECK(state.count("wte.weight") == 1);
        CHECK(f->model->num_parameters() == learned_count - 16 * 16);  // less wpe [max_seq_len, C]
        CHECK(f->model->max_seq_len() == 16);  // still the context limit
    }
    // rope and none draw the same parameters (neither draws wpe), so they differ by the rotation
    // alone: not at position 0 (angle 0, and causally it sees only itself), everywhere after it.
    const std::vector<int64_t> ids = {3, 1, 4, 1, 5, 9, 2, 6};
    const int64_t C = 16;
    std::vector<float> a = rope.forward(ids), b = none.forward(ids);
    CHECK(max_abs_diff({a.begin(), a.begin() + C}, {b.begin(), b.begin() + C}) < 1e-6f);
    for (size_t t = 1; t < ids.size(); ++t) {
        INFO("position " << t);
        CHECK(max_abs_diff({a.begin() + static_cast<long>(t) * C, a.begin() + static_cast<long>(t + 1) * C},
                           {b.begin() + static_cast<long>(t) * C, b.begin() + static_cast<long>(t + 1) * C}) > 1e-4f);
    }
    // Without a position signal a causal decoder still tells positions apart by how many tokens
    // each one sees, but a repeated token at the start gets the same output at every position.
    std::vector<float> same = none.forward({7, 7, 7});
    CHECK(max_abs_diff({same.begin(), same.begin() + C}, {same.begin() + 2 * C, same.end()}) < 1e-5f);
    std::vector<float> turned = rope.forward({7, 7, 7});
    CHECK(max_abs_diff({turned.begin(), turned.begin() + C}, {turned.begin() + 2 * C, turned.end()}) < 1e-5f);
}

TEST_CASE("gpt: an unknown position is refused with the choices", "[gpt][plugins]") {
    lab::Registry registry;
    registry.load_directory(LAB_PLUGIN_DIR);
    CHECK_THROWS_AS(lab::plugin_options(registry, "model", "gpt", {{"position", "rotary"}}, "x.ini"), lab::ConfigError);
    CHECK_THROWS_WITH(lab::plugin_options(registry, "model", "gpt", {{"position", "rotary"}}, "x.ini"),
                      Catch::Contains("position") && Catch::Contains("learned, rope, none"));
}

TEST_CASE("gpt: each position choice trains, and its checkpoint reloads", "[gpt][plugins]") {
    // Two repeating patterns; predicting the next token needs the previous ones, which every
    // choice sees through causal attention. 40 steps of plain SGD.
    const int64_t B = 2, T = 12;
    std::vector<int64_t> ids;
    for (int64_t t = 0; t < T; ++t) ids.push_back(t % 3);
    for (int64_t t = 0; t < T; ++t) ids.push_back(4 + (t / 2) % 4);
    for (const char* position : {"learned", "rope", "none"}) {
        INFO("position = " << position);
        GptFixture f(0.0f, {{"position", position}});
        std::vector<double> losses;
        for (int step = 0; step < 40; ++step) {
            lab::Tensor loss = next_token_loss(f, ids, B, T);
            losses.push_back(loss.to_floats()[0]);
            lab::backward(loss);
            lab::NoGradGuard no_grad;
            for (auto& [name, p] : f.model->named_parameters()) {
                REQUIRE(p.grad().defined());
                p.copy_(lab::ops::sub(p, lab::ops::scale(p.grad(), 0.5f)));
                p.grad().fill_(0.0);
            }
        }
        INFO("loss " << losses.front() << " -> " << losses[20] << " -> " << losses.back());
        CHECK(losses[20] < losses.front());
        CHECK(losses.back() < losses[20]);
        CHECK(losses.back() < 0.6 * losses.front());

        // The trained weights through a safetensors file into a freshly built (untrained) model.
        lab_test::TempDir dir;
        lab::save_safetensors(dir.path / "model.safetensors", f.model->state_dict());
        GptFixture other(0.0f, {{"position", position}});
        const std::vector<int64_t> probe = {0, 1, 2, 0, 1};
        CHECK(other.forward(probe) != f.forward(probe));
        other.model->load_state_dict(lab::load_safetensors(dir.path / "model.safetensors", other.backend));
        CHECK(other.forward(probe) == f.forward(probe));
    }
    // A checkpoint without wpe cannot stand in for a learned-position model's.
    GptFixture rope(0.0f, {{"position", "rope"}}), learned;
    CHECK_THROWS_WITH(learned.model->load_state_dict(rope.model->state_dict()), Catch::Contains("wpe.weight"));
}
