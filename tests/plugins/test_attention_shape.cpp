// What the models put in AttentionShape for each block: model/gpt, model/bert and
// model/transformer number their blocks' attention 0 .. L - 1 (AttentionShape::layer, which
// depth-dependent variants read), and only gpt with position = rope turns rope on.
#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

#include "lab/host_backend.h"
#include "lab/registry.h"
#include "plugin_test_support.h"

namespace {

// The shapes `model` (with `values`) asks attention/softmax for, in the order it asks.
std::vector<lab::AttentionShape> shapes_asked_by(const std::string& model,
                                                 const std::map<std::string, std::string>& values) {
    lab::Registry registry;
    registry.load_directory(LAB_PLUGIN_DIR);
    lab::HostBackend backend;
    lab::BuildContext ctx;
    lab_test::seed_context(ctx, backend, registry, 3);
    ctx.train.seq_len = 8;
    lab_test::FixedVocabTokenizer tokenizer(11);
    ctx.tokenizer = &tokenizer;
    lab::Options attention_opts = lab::plugin_options(registry, "attention", "softmax", {}, "test");
    const auto& make_attention = registry.factory<lab::AttentionFactory>("attention", "softmax");
    std::vector<lab::AttentionShape> asked;
    ctx.make_attention = [&](const lab::AttentionShape& s) {
        asked.push_back(s);
        return make_attention(attention_opts, s, ctx);
    };
    registry.factory<lab::ModelFactory>("model", model)(lab::plugin_options(registry, "model", model, values, "test"),
                                                        ctx);
    return asked;
}

}  // namespace

TEST_CASE("models: each block's attention gets its 0-based layer index, rope only where asked",
          "[plugins][attention]") {
    const std::map<std::string, std::string> small = {{"layers", "3"}, {"heads", "2"}, {"hidden", "16"}};
    for (const char* model : {"gpt", "bert", "transformer"}) {
        INFO("model/" << model);
        std::vector<lab::AttentionShape> asked = shapes_asked_by(model, small);
        REQUIRE(asked.size() == 3);
        for (int64_t l = 0; l < 3; ++l) {
            CHECK(asked[static_cast<size_t>(l)].layer == l);
            CHECK_FALSE(asked[static_cast<size_t>(l)].rope);
            CHECK(asked[static_cast<size_t>(l)].hidden == 16);
        }
    }
    std::map<std::string, std::string> rope = small;
    rope["position"] = "rope";
    rope["rope_base"] = "500000";
    for (const lab::AttentionShape& s : shapes_asked_by("gpt", rope)) {
        CHECK(s.rope);
        CHECK(s.rope_base == 500000.0f);
    }
    rope["position"] = "none";
    for (const lab::AttentionShape& s : shapes_asked_by("gpt", rope)) CHECK_FALSE(s.rope);
}
