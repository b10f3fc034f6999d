// The causality probe (lab/causality_probe.h) on model/gpt: it names the first attention block that
// leaks (the leak put in one layer of three), in training or evaluation mode, and an honest model
// passes bitwise; it changes nothing a run computes (the loss curve of a run with dropout is bitwise
// the same with and without it).
#include <catch2/catch.hpp>

#include <filesystem>

#include "lab/causality_probe.h"
#include "lab/config.h"
#include "lab/error.h"
#include "lab/registry.h"
#include "lab/trainer.h"
#include "plugin_test_support.h"
#include "test_support.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

// A 3-layer GPT (T = 16, dropout 0.1) on backend `backend_name` whose block `odd_layer` (every block
// when it is -1) takes its attention from plugin `odd_attention` (with `odd_options`) and every other
// block attention/softmax.
struct ProbeFixture {
    lab::Registry registry;
    std::shared_ptr<lab::Backend> backend;
    lab::BuildContext ctx;
    lab_test::FixedVocabTokenizer tokenizer{32};
    std::shared_ptr<lab::Model> model;

    ProbeFixture(int64_t odd_layer, const std::string& odd_attention, const std::map<std::string, std::string>& odd_options,
                 const std::string& backend_name = "reference") {
        registry.load_directory(LAB_PLUGIN_DIR);
        for (const char* stem : {"leaky_attention", "eval_leak_attention"}) {
            fs::path file = fs::path(LAB_TEST_PLUGIN_DIR) / ("test_" + std::string(stem) + ".so");
            INFO("test plugin " << file << " is built by the lab_test_plugins target");
            REQUIRE(fs::is_regular_file(file));
            registry.load_library(file);
        }
        backend = registry.factory<lab::BackendFactory>("backend", backend_name)(
            lab::plugin_options(registry, "backend", backend_name, {}));
        lab_test::seed_context(ctx, *backend, registry, 7);
        ctx.tokenizer = &tokenizer;
        ctx.train.seq_len = 16;
        int64_t built = 0;
        ctx.make_attention = [this, built, odd_layer, odd_attention, odd_options](const lab::AttentionShape& shape) mutable {
            const bool odd = odd_layer < 0 || built++ == odd_layer;
            const std::string name = odd ? odd_attention : "softmax";
            return registry.factory<lab::AttentionFactory>("attention", name)(
                lab::plugin_options(registry, "attention", name, odd ? odd_options : std::map<std::string, std::string>{}),
                shape, ctx);
        };
        model = registry.factory<lab::ModelFactory>("model", "gpt")(
            lab::plugin_options(registry, "model", "gpt", {{"layers", "3"}, {"heads", "2"}, {"hidden", "16"}, {"dropout", "0.1"}}),
            ctx);
    }

    std::string refusal() {
        try {
            lab::probe_causality(*model, ctx, {"model/gpt", 2, 32});
        } catch (const lab::TrainingError& e) {
            return e.what();
        }
        return "<nothing thrown>";
    }
};

}  // namespace

TEST_CASE("the causality probe names the first attention block that leaks", "[probe][plugins]") {
    // Block 2 of 3 lets query i >= 5 see key i + 1: the earliest output that moves is position 7 when
    // the tokens from the middle cut (t = 8) on change.
    ProbeFixture f(2, "leaky", {{"from", "5"}});
    f.model->eval();
    const uint64_t dropout_offset = f.ctx.dropout_rng.offset();
    std::string message = f.refusal();
    INFO(message);
    CHECK_THAT(message, Contains("causality probe: model/gpt sees the future in training mode: its output at position 7 "
                                 "changed by"));
    CHECK_THAT(message, Contains("when only the tokens from position 8 on changed (2 x 16 random tokens)"));
    CHECK_THAT(message, Contains("the first attention block that leaks on its own is h.2.attn (attention/leaky): its "
                                 "output at position 7 changed by"));
    // A refusal leaves the model's mode and the run's dropout stream as they were.
    CHECK_FALSE(f.model->training());
    CHECK(f.ctx.dropout_rng.offset() == dropout_offset);
}

TEST_CASE("the causality probe catches a leak in evaluation mode only", "[probe][plugins]") {
    ProbeFixture f(1, "eval_leak", {});
    std::string message = f.refusal();
    INFO(message);
    CHECK_THAT(message, Contains("sees the future in evaluation mode: its output at position 0 changed by"));
    CHECK_THAT(message, Contains("when only the tokens from position 1 on changed"));
    CHECK_THAT(message, Contains("is h.1.attn (attention/eval_leak)"));
    CHECK(f.model->training());
}

TEST_CASE("the causality probe passes a causal model bitwise and changes nothing", "[probe][plugins]") {
    ProbeFixture f(0, "softmax", {});
    const auto before = f.model->state_dict();
    std::map<std::string, std::vector<float>> values;
    for (const auto& [name, t] : before) values[name] = t.to_floats();
    for (bool training : {true, false}) {
        f.model->train(training);
        const uint64_t dropout_offset = f.ctx.dropout_rng.offset();
        lab::CausalityProbeResult r = lab::probe_causality(*f.model, f.ctx, {"model/gpt", 2, 32});
        CHECK(r.batch == 2);
        CHECK(r.seq_len == 16);  // the model's max_seq_len
        CHECK(r.forward_passes == 8);  // 2 modes x (the batch + 3 cuts)
        CHECK(r.max_change == 0.0);  // the host backend computes earlier positions in the same order
        CHECK(r.scale > 0.1);
        CHECK(r.notes.empty());
        CHECK(f.model->training() == training);
        CHECK(f.ctx.dropout_rng.offset() == dropout_offset);
        CHECK_THAT(r.summary("model/gpt"), Contains("sees no later token in training or evaluation mode (2 x 16 random "
                                                    "tokens, replaced from t = 1, 8, 15 on: 8 forward passes") &&
                                               Contains("outputs before t bitwise equal"));
    }
    for (const auto& [name, t] : f.model->state_dict()) {
        INFO(name);
        CHECK(t.to_floats() == values.at(name));
    }
}

TEST_CASE("a run's losses are bitwise the same with and without the causality probe", "[probe][plugins]") {
    lab_test::TempDir dir;
    lab::Registry registry;
    registry.load_directory(LAB_PLUGIN_DIR);
    // Dropout everywhere, so that a probe drawing from the run's dropout stream would show.
    const fs::path ini = dir.write("probe.ini",
                                   "[experiment]\nseed = 3\n[backend]\ntype = onednn\n[tokenizer]\ntype = char\n"
                                   "[task]\ntype = copy\nvocab = 8\nlength = 4\nval_examples = 32\n"
                                   "[model]\ntype = gpt\nlayers = 2\nheads = 2\nhidden = 16\ndropout = 0.2\n"
                                   "[attention]\ntype = softmax\n[optimizer]\ntype = adamw\n"
                                   "[train]\nsteps = 12\nbatch = 8\nseq_len = 9\n");
    lab::RunSpec spec = lab::resolve_run(lab::load_config(ini, {}, lab::ConfigEnv{}), registry);
    lab::RunEnvironment env;
    env.quiet = true;
    auto losses = [&](bool probe) {
        lab::TrainingStack stack = lab::build_training_stack(spec, registry, env);
        if (probe) {
            lab::CausalityProbeResult r = lab::probe_causality(*stack.model, *stack.ctx, {"model/gpt", 2, 9});
            CHECK(r.forward_passes == 8);
        }
        std::vector<double> out;
        for (int64_t step = 1; step <= 12; ++step) out.push_back(lab::train_step(stack, step).loss);
        out.push_back(static_cast<double>(stack.ctx->dropout_rng.offset()));
        return out;
    };
    const std::vector<double> without = losses(false), with = losses(true);
    CHECK(with == without);
    CHECK(without.front() != without[10]);  // the model trains: the curve is not flat
}

TEST_CASE("every shipped causal attention in GPT passes the causality probe", "[probe][plugins]") {
    // Each attention plugin that declares causal support, with its default options and with the
    // options that take another code path (the fused kernel, a window shorter than T).
    std::vector<std::pair<std::string, std::map<std::string, std::string>>> variants = {
        {"softmax", {{"fused", "true"}}}, {"alibi", {{"fused", "true"}}}, {"gqa", {{"kv_heads", "1"}}},
        {"local", {{"window", "4"}}}, {"local", {{"window", "4"}, {"fused", "false"}}}};
    {
        ProbeFixture names(0, "softmax", {});
        for (const std::string& name : names.registry.names("attention")) {
            const lab::PluginInfo& info = names.registry.find("attention", name);
            if (info.attention.supports.causal && info.file.find("test_plugins") == std::string::npos)
                variants.push_back({name, {}});
        }
    }
    REQUIRE(variants.size() >= 10);  // the 5 above + softmax, gqa, local, linear, alibi
    for (const char* backend : {"reference", "onednn"}) {
        for (const auto& [name, options] : variants) {
            std::string text = std::string(backend) + " attention/" + name;
            for (const auto& [key, value] : options) text += " " + key + "=" + value;
            INFO(text);
            ProbeFixture f(-1, name, options, backend);
            lab::CausalityProbeResult r = lab::probe_causality(*f.model, f.ctx, {"model/gpt", 2, 32});
            CHECK(r.forward_passes == 8);
            CHECK(r.notes.empty());
            CHECK(r.max_change == 0.0);  // bitwise: a later key's masked weight is an exact 0 on both backends
            std::printf("[probe] %s: %s\n", text.c_str(), r.summary("model/gpt").c_str());
        }
    }
}
