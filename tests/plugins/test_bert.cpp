// model/bert through its plugin: the pretrained all-MiniLM-L6-v2 against Hugging Face's outputs
// (tests/fixtures/minilm), the Hugging Face layout of export_state/import_state, gradients,
// padding, the pooler, and the errors of `pretrained = DIR`.
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <set>

#include "gradcheck.h"
#include "lab/autograd.h"
#include "lab/error.h"
#include "lab/finite_difference.h"
#include "lab/host_backend.h"
#include "lab/ops.h"
#include "lab/registry.h"
#include "lab/safetensors.h"
#include "plugin_test_support.h"
#include "test_support.h"

namespace fs = std::filesystem;

namespace {

using lab_test::FixedVocabTokenizer;

using Values = std::map<std::string, std::string>;

// Builds models through the registry with the experiment's [attention] choice.
struct Builder {
    lab::Registry registry;
    lab::HostBackend backend;
    lab::BuildContext ctx;
    FixedVocabTokenizer tokenizer;
    lab::Options attention_opts;
    std::vector<std::string> log;

    explicit Builder(int64_t vocab, const std::string& attention = "softmax", const Values& attention_values = {},
                     uint64_t seed = 7)
        : tokenizer(vocab) {
        registry.load_directory(LAB_PLUGIN_DIR);
        ctx.backend = &backend;
        ctx.registry = &registry;
        ctx.init_rng = lab::Generator(seed, lab::kStreamInit);
        ctx.dropout_rng = lab::Generator(seed, lab::kStreamDropout);
        ctx.train.seq_len = 16;
        ctx.tokenizer = &tokenizer;
        ctx.log = [this](const std::string& line) { log.push_back(line); };
        attention_opts = lab::plugin_options(registry, "attention", attention, attention_values, "test");
        const auto& make_attention = registry.factory<lab::AttentionFactory>("attention", attention);
        ctx.make_attention = [this, &make_attention](const lab::AttentionShape& s) {
            return make_attention(attention_opts, s, ctx);
        };
    }
    std::shared_ptr<lab::Model> build(const Values& values, const std::string& name = "bert") {
        return registry.factory<lab::ModelFactory>("model", name)(
            lab::plugin_options(registry, "model", name, values, "test"), ctx);
    }
    lab::Tensor ints(const lab::Shape& shape, const std::vector<int64_t>& values, lab::DType dtype = lab::DType::i32) {
        return lab::Tensor::from_ints(backend, shape, values, dtype);
    }
};

// 2 layers, C = 16, H = 4, FFN 32, 16 positions; vocabulary 30 (the Builder's).
const Values kTiny = {
    {"layers", "2"}, {"hidden", "16"}, {"heads", "4"}, {"intermediate", "32"}, {"max_position", "16"}};

// config.json of kTiny, with one key's JSON text replaced (or removed with "").
std::string tiny_config(const std::string& key = "", const std::string& value = "") {
    std::map<std::string, std::string> keys = {{"hidden_size", "16"},
                                               {"num_hidden_layers", "2"},
                                               {"num_attention_heads", "4"},
                                               {"intermediate_size", "32"},
                                               {"max_position_embeddings", "16"},
                                               {"type_vocab_size", "2"},
                                               {"layer_norm_eps", "1e-12"},
                                               {"vocab_size", "30"},
                                               {"hidden_act", "\"gelu\""},
                                               {"hidden_dropout_prob", "0.1"},
                                               {"attention_probs_dropout_prob", "0.1"},
                                               {"model_type", "\"bert\""}};
    if (!key.empty()) {
        if (value.empty())
            keys.erase(key);
        else
            keys[key] = value;
    }
    std::string json = "{";
    for (const auto& [k, v] : keys) json += (json.size() > 1 ? ", \"" : "\"") + k + "\": " + v;
    return json + "}";
}

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    REQUIRE(a.size() == b.size());
    float worst = 0;
    for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(a[i] - b[i]));
    return worst;
}

void require_same_values(const lab::TensorMap& actual, const lab::TensorMap& expected) {
    std::set<std::string> actual_names, expected_names;
    for (const auto& [name, t] : actual) actual_names.insert(name);
    for (const auto& [name, t] : expected) expected_names.insert(name);
    REQUIRE(actual_names == expected_names);
    for (const auto& [name, t] : expected) {
        INFO(name);
        REQUIRE(actual.at(name).shape() == t.shape());
        CHECK(actual.at(name).to_floats() == t.to_floats());
    }
}

std::vector<float> forward(lab::Model& model, const lab::ModelInputs& in) {
    lab::NoGradGuard no_grad;
    return model.forward(in).to_floats();
}

}  // namespace

TEST_CASE("bert: all-MiniLM-L6-v2 matches Hugging Face's BertModel", "[bert][plugins]") {
    const fs::path dir = lab_test::kDataDir / "all-MiniLM-L6-v2";
    if (!fs::exists(dir / "model.safetensors")) {
        WARN("skipped: " << dir.string() << " is missing; run tools/get_pretrained.sh to fetch the pretrained MiniLM");
        return;
    }
    Builder b(30522);
    auto model = b.build({{"pretrained", dir.string()}});
    // 104 tensors in the file: position_ids dropped, query/key/value packed into c_attn (6 -> 2 per layer).
    bool reported = false;
    for (const auto& line : b.log)
        reported = reported || line.find("loaded 79 tensors; missing 0; unexpected 0") != std::string::npos;
    INFO("log: " << lab::join(b.log, "\n"));
    CHECK(reported);
    CHECK(model->hidden_size() == 384);
    CHECK(model->max_seq_len() == 512);

    lab::TensorMap golden = lab::load_safetensors(
        lab_test::kFixturesDir / "minilm" / "golden.safetensors", b.backend);
    const lab::Tensor& attention_mask = golden.at("attention_mask");  // [B, T], 1 = real token
    const int64_t B = attention_mask.size(0), T = attention_mask.size(1), C = 384;
    std::vector<int64_t> mask = attention_mask.to_ints(), padding(mask.size());
    for (size_t i = 0; i < mask.size(); ++i) padding[i] = mask[i] == 0 ? 1 : 0;
    lab::ModelInputs in;
    in.ids = golden.at("input_ids").to(lab::DType::i32);
    in.segments = golden.at("token_type_ids").to(lab::DType::i32);
    in.padding_mask = b.ints({B, T}, padding, lab::DType::u8);

    model->eval();
    lab::NoGradGuard no_grad;
    lab::Tensor hidden = model->forward(in);  // [B, T, C]
    REQUIRE(hidden.shape() == lab::Shape{B, T, C});
    std::vector<float> ours = hidden.to_floats(), theirs = golden.at("last_hidden_state").to_floats();
    float hidden_diff = 0;
    int64_t compared = 0;
    for (int64_t i = 0; i < B * T; ++i) {
        if (padding[static_cast<size_t>(i)]) continue;  // padded positions are never read
        for (int64_t c = 0; c < C; ++c) {
            size_t k = static_cast<size_t>(i * C + c);
            hidden_diff = std::max(hidden_diff, std::fabs(ours[k] - theirs[k]));
        }
        ++compared;
    }
    float pooled_diff = max_abs_diff(model->pool(hidden).to_floats(), golden.at("pooler_output").to_floats());
    WARN("MiniLM vs Hugging Face: max |diff| last_hidden_state " << hidden_diff << " over " << compared
                                                                 << " real positions, pooler_output " << pooled_diff);
    CHECK(compared > B);  // the batch is not all padding
    CHECK(hidden_diff <= 1e-4f);
    CHECK(pooled_diff <= 1e-4f);
}

TEST_CASE("bert: state_dict names are Hugging Face's, export and import convert attention", "[bert][plugins]") {
    Builder b(30);
    auto model = b.build(kTiny);
    CHECK_FALSE(model->causal());
    CHECK(model->embedding_weight().id() == model->state_dict().at("embeddings.word_embeddings.weight").id());

    std::set<std::string> names;
    for (const auto& [name, t] : model->export_state()) names.insert(name);
    std::set<std::string> expected = {"embeddings.word_embeddings.weight",
                                      "embeddings.position_embeddings.weight",
                                      "embeddings.token_type_embeddings.weight",
                                      "embeddings.LayerNorm.weight",
                                      "embeddings.LayerNorm.bias",
                                      "pooler.dense.weight",
                                      "pooler.dense.bias"};
    for (const std::string layer : {"encoder.layer.0.", "encoder.layer.1."})
        for (const std::string part :
             {"attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
              "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm"})
            for (const std::string suffix : {".weight", ".bias"}) expected.insert(layer + part + suffix);
    CHECK(names == expected);  // exactly BertModel's names (BertModel has no other parameters)
    CHECK(model->state_dict().count("encoder.layer.1.attention.c_attn.weight") == 1);
    CHECK(model->state_dict().count("encoder.layer.1.output.LayerNorm.bias") == 1);
}

TEST_CASE("bert: export_state and import_state are inverse (softmax and gqa attention)", "[bert][plugins]") {
    struct Case {
        std::string attention;
        Values options;
        int64_t kv_rows;  // Hkv * D
    };
    for (const Case& c : {Case{"softmax", {}, 16}, Case{"gqa", {{"kv_heads", "2"}}, 8}}) {
        INFO("attention/" << c.attention);
        Builder b(30, c.attention, c.options);
        auto model = b.build(kTiny);
        const lab::TensorMap own = model->state_dict();
        const lab::TensorMap published = model->export_state();

        // The packed rows [q; k; v] of c_attn, split.
        const std::vector<float> packed = own.at("encoder.layer.1.attention.c_attn.weight").to_floats();
        REQUIRE(packed.size() == static_cast<size_t>((16 + 2 * c.kv_rows) * 16));
        auto rows = [&](int64_t first, int64_t count) {
            return std::vector<float>(packed.begin() + first * 16, packed.begin() + (first + count) * 16);
        };
        CHECK(published.at("encoder.layer.1.attention.self.query.weight").shape() == lab::Shape{16, 16});
        CHECK(published.at("encoder.layer.1.attention.self.key.weight").shape() == lab::Shape{c.kv_rows, 16});
        CHECK(published.at("encoder.layer.1.attention.self.query.weight").to_floats() == rows(0, 16));
        CHECK(published.at("encoder.layer.1.attention.self.key.weight").to_floats() == rows(16, c.kv_rows));
        CHECK(published.at("encoder.layer.1.attention.self.value.weight").to_floats() ==
              rows(16 + c.kv_rows, c.kv_rows));
        CHECK(published.at("encoder.layer.0.attention.output.dense.weight").to_floats() ==
              own.at("encoder.layer.0.attention.c_proj.weight").to_floats());

        // import(export) = state_dict; export(import(x)) = x, through a second model (another seed)
        // that loads the published tensors, which must then compute what the first computes.
        require_same_values(model->import_state(published), own);
        auto copy = b.build(kTiny);  // the init generator has moved on: other weights
        REQUIRE(copy->state_dict().at("pooler.dense.weight").to_floats() != own.at("pooler.dense.weight").to_floats());
        copy->load_state_dict(copy->import_state(published));
        require_same_values(copy->export_state(), published);
        lab::ModelInputs in;
        in.ids = b.ints({1, 5}, {3, 1, 4, 1, 5});
        model->eval();
        copy->eval();
        CHECK(forward(*copy, in) == forward(*model, in));
    }
}

TEST_CASE("bert: import_state reads BertForPreTraining files, TF-era LayerNorm names and skips position_ids",
          "[bert][plugins]") {
    Builder b(30);
    auto model = b.build(kTiny);
    lab::TensorMap file;
    for (const auto& [name, t] : model->export_state()) {
        std::string renamed = "bert." + name;
        if (renamed.size() > 16 && renamed.compare(renamed.size() - 16, 16, "LayerNorm.weight") == 0)
            renamed.replace(renamed.size() - 6, 6, "gamma");
        if (renamed.size() > 14 && renamed.compare(renamed.size() - 14, 14, "LayerNorm.bias") == 0)
            renamed.replace(renamed.size() - 4, 4, "beta");
        file[renamed] = t;
    }
    file["bert.embeddings.position_ids"] = b.ints({1, 16}, std::vector<int64_t>(16, 0), lab::DType::i64);
    file["cls.predictions.bias"] = lab::Tensor::zeros(b.backend, {30});
    CHECK(file.count("bert.encoder.layer.0.output.LayerNorm.gamma") == 1);

    auto fresh = b.build(kTiny);
    lab::LoadReport report = fresh->load_matching(fresh->import_state(file), "test file");
    INFO(report.summary());
    CHECK(report.loaded.size() == model->state_dict().size());
    CHECK(report.missing.empty());
    CHECK(report.unexpected == std::vector<std::string>{"cls.predictions.bias"});  // a head: left for the task
    require_same_values(fresh->state_dict(), model->state_dict());
}

TEST_CASE("bert: exported weights survive a safetensors file and load as a pretrained folder", "[bert][plugins]") {
    lab_test::TempDir dir;
    Builder b(30);
    auto model = b.build(kTiny);
    lab::save_safetensors(dir.path / "model.safetensors", model->export_state());
    dir.write("config.json", tiny_config());

    Builder loader(30, "softmax", {}, 1234);
    auto loaded = loader.build({{"pretrained", dir.path.string()}, {"layers", "2"}});  // agreeing options are fine
    bool reported = false;
    for (const auto& line : loader.log)
        reported = reported || line.find("loaded 31 tensors; missing 0; unexpected 0") != std::string::npos;
    INFO("log: " << lab::join(loader.log, "\n"));
    CHECK(reported);  // 5 embedding + 2 x 12 per layer + 2 pooler
    require_same_values(loaded->state_dict(), model->state_dict());
    CHECK(loaded->max_seq_len() == 16);
}

TEST_CASE("bert: pretrained folders that are wrong are refused with the file and key", "[bert][plugins]") {
    lab_test::TempDir dir;
    Builder b(30);
    auto error_of = [&](const Values& values) -> std::string {
        try {
            b.build(values);
        } catch (const lab::ConfigError& e) {
            return e.what();
        }
        return "no error";
    };
    using Catch::Matchers::Contains;
    const std::string folder = dir.path.string();

    CHECK_THAT(error_of({{"max_position", "8"}}), Contains("seq_len = 16") && Contains("max_position"));
    CHECK_THAT(error_of({{"pretrained", (dir.path / "absent").string()}}),
               Contains("is not a folder") && Contains("tools/get_pretrained.sh"));
    CHECK_THAT(error_of({{"pretrained", folder}}), Contains("config.json"));  // no config.json yet

    dir.write("config.json", "{\"hidden_size\": 16,");
    CHECK_THAT(error_of({{"pretrained", folder}}),
               Contains((dir.path / "config.json").string()) && Contains("not valid JSON"));
    dir.write("config.json", tiny_config("num_hidden_layers", ""));
    CHECK_THAT(error_of({{"pretrained", folder}}), Contains("config.json") && Contains("'num_hidden_layers'"));
    dir.write("config.json", tiny_config("hidden_size", "\"big\""));
    CHECK_THAT(error_of({{"pretrained", folder}}), Contains("config.json") && Contains("'hidden_size'"));
    dir.write("config.json", tiny_config("hidden_act", "\"relu\""));
    CHECK_THAT(error_of({{"pretrained", folder}}), Contains("'hidden_act'") && Contains("relu"));

    dir.write("config.json", tiny_config());
    CHECK_THAT(error_of({{"pretrained", folder}, {"layers", "3"}}),
               Contains("layers = 3") && Contains("num_hidden_layers = 2") && Contains("config.json"));
    CHECK_THAT(error_of({{"pretrained", folder}, {"ln_eps", "1e-5"}}), Contains("layer_norm_eps"));
    dir.write("config.json", tiny_config("vocab_size", "31"));
    CHECK_THAT(error_of({{"pretrained", folder}}),
               Contains("vocab_size = 31") && Contains("30 entries") && Contains("vocab.txt"));

    dir.write("config.json", tiny_config());
    dir.write("pytorch_model.bin", "not read");
    CHECK_THAT(error_of({{"pretrained", folder}}), Contains("python3 tools/hf_to_safetensors.py " + folder));
    fs::remove(dir.path / "pytorch_model.bin");
    CHECK_THAT(error_of({{"pretrained", folder}}), Contains("model.safetensors does not exist"));
}

TEST_CASE("bert: padding appended to a sequence changes no real position", "[bert][plugins]") {
    Builder b(30);
    auto model = b.build(kTiny);
    model->eval();
    const int64_t T = 5, P = 4, C = 16;
    lab::ModelInputs short_in;
    short_in.ids = b.ints({1, T}, {2, 7, 11, 3, 9});
    short_in.segments = b.ints({1, T}, {0, 0, 0, 1, 1});
    lab::ModelInputs padded;
    padded.ids = b.ints({1, T + P}, {2, 7, 11, 3, 9, 0, 0, 0, 0});
    padded.segments = b.ints({1, T + P}, {0, 0, 0, 1, 1, 0, 0, 0, 0});
    padded.padding_mask = b.ints({1, T + P}, {0, 0, 0, 0, 0, 1, 1, 1, 1}, lab::DType::u8);
    std::vector<float> reference = forward(*model, short_in), with_padding = forward(*model, padded);
    with_padding.resize(static_cast<size_t>(T * C));  // the real positions come first
    float diff = max_abs_diff(with_padding, reference);
    INFO("max |diff| at real positions: " << diff);
    CHECK(diff <= 1e-5f);

    lab::ModelInputs unmasked = padded;  // the same padding, attended to: the mask is what protects
    unmasked.padding_mask = lab::Tensor();
    std::vector<float> leaked = forward(*model, unmasked);
    leaked.resize(static_cast<size_t>(T * C));
    CHECK(max_abs_diff(leaked, reference) > 1e-3f);
}

TEST_CASE("bert: the pooler is tanh(dense(first position)) and segments change the output", "[bert][plugins]") {
    Builder b(30);
    auto model = b.build(kTiny);
    model->eval();
    lab::NoGradGuard no_grad;
    lab::ModelInputs in;
    in.ids = b.ints({2, 3}, {1, 2, 3, 4, 5, 6});
    lab::Tensor hidden = model->forward(in);  // [2, 3, 16]
    std::vector<float> h = hidden.to_floats(), pooled = model->pool(hidden).to_floats();
    lab::TensorMap state = model->state_dict();
    std::vector<float> w = state.at("pooler.dense.weight").to_floats(),
                       bias = state.at("pooler.dense.bias").to_floats();
    REQUIRE(pooled.size() == 32);
    for (int64_t row = 0; row < 2; ++row)
        for (int64_t o = 0; o < 16; ++o) {
            double acc = bias[static_cast<size_t>(o)];
            for (int64_t i = 0; i < 16; ++i)
                acc +=
                    static_cast<double>(w[static_cast<size_t>(o * 16 + i)]) * h[static_cast<size_t>(row * 3 * 16 + i)];
            CHECK(pooled[static_cast<size_t>(row * 16 + o)] == Approx(std::tanh(acc)).margin(1e-6));
        }

    lab::ModelInputs zeros = in, ones = in;
    zeros.segments = b.ints({2, 3}, std::vector<int64_t>(6, 0));
    ones.segments = b.ints({2, 3}, std::vector<int64_t>(6, 1));
    CHECK(model->forward(zeros).to_floats() == h);  // absent segments are segment 0
    CHECK(max_abs_diff(model->forward(ones).to_floats(), h) > 1e-3f);
}

TEST_CASE("bert: parameter gradients match finite differences", "[bert][plugins]") {
    Builder b(30);
    auto model =
        b.build({{"layers", "2"}, {"hidden", "8"}, {"heads", "2"}, {"intermediate", "16"}, {"max_position", "16"}});
    model->eval();
    lab::ModelInputs in;
    in.ids = b.ints({2, 4}, {1, 5, 9, 2, 4, 8, 0, 0});
    in.segments = b.ints({2, 4}, {0, 0, 1, 1, 0, 1, 0, 0});
    in.padding_mask = b.ints({2, 4}, {0, 0, 0, 0, 0, 0, 1, 1}, lab::DType::u8);
    lab::TensorMap state = model->state_dict();
    // Larger weights than the N(0, 0.02) initialisation, so that every path carries signal.
    uint32_t draw = 100;
    for (const auto& [name, t] : state)
        if (name.find("LayerNorm") == std::string::npos)
            t.copy_(lab::testing::random_input(b.backend, t.shape(), ++draw, [](float x) { return 0.3f * x; }));

    // L = sum(R * [hidden, pooled]) for fixed random R, through both outputs.
    auto outputs = [&]() {
        lab::Tensor hidden = model->forward(in);
        return std::make_pair(hidden, model->pool(hidden));
    };
    auto [hidden0, pooled0] = outputs();
    std::vector<float> r_hidden = lab::testing::normal_floats(static_cast<size_t>(hidden0.numel()), 1),
                       r_pooled = lab::testing::normal_floats(static_cast<size_t>(pooled0.numel()), 2);
    lab::Tensor seed = lab::Tensor::from_floats(b.backend, pooled0.shape(), r_pooled);
    lab::backward(lab::ops::add(
        lab::ops::sum(lab::ops::mul(hidden0, lab::Tensor::from_floats(b.backend, hidden0.shape(), r_hidden))),
        lab::ops::sum(lab::ops::mul(pooled0, seed))));
    auto loss = [&]() {
        lab::NoGradGuard no_grad;
        auto [hidden, pooled] = outputs();
        return lab::weighted_sum(hidden.to_floats(), r_hidden) + lab::weighted_sum(pooled.to_floats(), r_pooled);
    };
    for (const std::string name : {"embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight",
                                   "encoder.layer.0.attention.c_attn.weight", "encoder.layer.1.intermediate.dense.bias",
                                   "encoder.layer.1.output.LayerNorm.bias", "pooler.dense.weight"}) {
        const lab::Tensor& param = state.at(name);
        REQUIRE(param.grad().defined());
        std::vector<float> values = param.to_floats(), analytic = param.grad().to_floats();
        lab::FiniteDifferenceReport report = lab::central_differences(analytic, values, 1e-2f, [&]() {
            param.copy_(lab::Tensor::from_floats(b.backend, param.shape(), values));
            return loss();
        });
        param.copy_(lab::Tensor::from_floats(b.backend, param.shape(), values));
        INFO(name << ": max |analytic - numeric| " << report.max_abs_diff << ", worst scaled error "
                  << report.worst_ratio << " at " << report.worst_index << " (analytic " << report.worst_analytic
                  << ", numeric " << report.worst_numeric << ")");
        CHECK(report.worst_ratio <= 1e-2);
    }
}
