// The GPT that the benchmarks time, built from the same plugins an experiment uses (backend,
// tokenizer/char, attention/softmax, model/gpt) with GPT-2's initialisation (seed 1).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "lab/config.h"
#include "lab/error.h"
#include "lab/registry.h"
#include "lab/rng.h"
#include "lab/utf8.h"

namespace lab_bench {

struct GptShape {
    int64_t layers = 4, heads = 4, hidden = 128;
    int64_t vocab = 65;        // the embedding's rows
    int64_t seq_len = 64;      // [train] seq_len; also the learned positions unless max_seq_len is set
    int64_t batch = 1;         // [train] batch
    int64_t max_seq_len = 0;   // learned positions (0: seq_len)
    bool bias = false;
    std::string fused_attention = "true";  // attention/softmax's fused: true (the tiled kernel), false, auto
    std::string activation = "gelu";  // model/gpt activation: gelu (erf) or gelu_tanh (GPT-2's)
    std::string backend = "onednn";
    std::map<std::string, std::string> backend_options;  // the [backend] section (e.g. cuda: tf32)
    std::string plugin_dir;
};

struct BenchGpt {
    lab::Registry registry;
    std::shared_ptr<lab::Backend> backend;
    lab::BuildContext ctx;
    std::shared_ptr<lab::Tokenizer> tokenizer;
    lab::Options attention_options;
    std::shared_ptr<lab::Model> model;
};

// Owned by a unique_ptr: the attention factory in ctx points into the object.
inline std::unique_ptr<BenchGpt> make_bench_gpt(const GptShape& shape) {
    // Code points U+0100 .. U+0100 + vocab - 1, below the surrogates at U+D800.
    constexpr int64_t kMaxVocab = 0xD800 - 0x100;
    if (shape.vocab < 1 || shape.vocab > kMaxVocab)
        throw lab::ConfigError("--vocab must be in [1, " + std::to_string(kMaxVocab) + "]");
    auto g = std::make_unique<BenchGpt>();
    g->registry.load_directory(shape.plugin_dir);
    g->backend = g->registry.factory<lab::BackendFactory>("backend", shape.backend)(
        lab::plugin_options(g->registry, "backend", shape.backend, shape.backend_options));
    lab::BuildContext& ctx = g->ctx;
    ctx.backend = g->backend.get();
    ctx.registry = &g->registry;
    ctx.init_rng = lab::Generator(1, lab::kStreamInit);
    ctx.dropout_rng = lab::Generator(1, lab::kStreamDropout);
    ctx.train.seq_len = shape.seq_len;
    ctx.train.batch = shape.batch;
    // A character vocabulary of exactly `vocab` symbols sizes the embedding as in an experiment.
    g->tokenizer = g->registry.factory<lab::TokenizerFactory>("tokenizer", "char")(
        lab::plugin_options(g->registry, "tokenizer", "char", {}), ctx);
    std::string alphabet;
    for (int64_t i = 0; i < shape.vocab; ++i) lab::append_utf8(alphabet, static_cast<char32_t>(0x100 + i));
    g->tokenizer->train(alphabet);
    ctx.tokenizer = g->tokenizer.get();
    g->attention_options = lab::plugin_options(g->registry, "attention", "softmax",
                                               {{"fused", shape.fused_attention}});
    const auto& make_attention = g->registry.factory<lab::AttentionFactory>("attention", "softmax");
    BenchGpt* self = g.get();
    ctx.make_attention = [self, &make_attention](const lab::AttentionShape& s) {
        return make_attention(self->attention_options, s, self->ctx);
    };
    g->model = g->registry.factory<lab::ModelFactory>("model", "gpt")(
        lab::plugin_options(g->registry, "model", "gpt",
                            {{"layers", std::to_string(shape.layers)},
                             {"heads", std::to_string(shape.heads)},
                             {"hidden", std::to_string(shape.hidden)},
                             {"max_seq_len", std::to_string(shape.max_seq_len)},
                             {"bias", shape.bias ? "true" : "false"},
                             {"activation", shape.activation}}),
        ctx);
    return g;
}

}  // namespace lab_bench
