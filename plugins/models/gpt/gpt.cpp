// model/gpt: a GPT-2 style decoder (Radford et al. 2019): learned token and position embeddings,
// pre-LayerNorm blocks x = x + attn(ln_1(x)); x = x + mlp(ln_2(x)), a final LayerNorm. The
// attention in each block is the experiment's [attention] choice. Parameter names follow the
// Hugging Face GPT2Model layout (wte, wpe, h.N.ln_1, h.N.attn, h.N.mlp.c_fc, ..., ln_f).
// `position` picks the position signal: learned (GPT-2's wpe table, the default), rope (no wpe;
// every block's attention rotates q and k, AttentionShape::rope, as GPT-NeoX and Llama do) or
// none (no wpe and no rotation: the attention must supply one, e.g. attention/alibi; with plain
// softmax attention only the causal mask tells positions apart). max_seq_len bounds the sequence
// in all three.
// Initialisation as GPT-2/nanoGPT: N(0, 0.02), biases 0, and residual projections (c_proj)
// N(0, 0.02 / sqrt(2 * layers)) so the residual stream's variance does not grow with depth.
#include <algorithm>
#include <cmath>
#include <map>

#include "lab/error.h"
#include "lab/layers.h"
#include "lab/ops.h"
#include "lab/plugin.h"

namespace {

using namespace lab;

class Mlp : public Module {
public:
    Mlp(BuildContext& ctx, int64_t C, int64_t hidden, bool bias, float dropout, bool gelu_tanh)
        : dropout_(dropout), gelu_tanh_(gelu_tanh), rng_(&ctx.dropout_rng) {
        Backend& be = *ctx.backend;
        fc_weight_ = add_parameter("c_fc.weight", Tensor::empty(be, {hidden, C}));
        proj_weight_ = add_parameter("c_proj.weight", Tensor::empty(be, {C, hidden}));
        ops::fill_normal(fc_weight_, 0.0f, 0.02f, ctx.init_rng.next(hidden * C));
        ops::fill_normal(proj_weight_, 0.0f, 0.02f, ctx.init_rng.next(hidden * C));
        if (bias) {
            fc_bias_ = add_parameter("c_fc.bias", Tensor::zeros(be, {hidden}));
            proj_bias_ = add_parameter("c_proj.bias", Tensor::zeros(be, {C}));
        }
    }
    // residual + the MLP of x; without dropout in effect the residual joins inside the
    // projection's product (ops::linear_dropout_residual).
    Tensor forward(const Tensor& x, const Tensor& residual) const {
        Tensor h = gelu_tanh_ ? ops::linear_gelu_tanh(x, fc_weight_, fc_bias_)
                              : ops::linear_gelu_matmul_input(x, fc_weight_, fc_bias_);
        return ops::linear_dropout_residual(h, proj_weight_, proj_bias_, dropout_, training(), *rng_, residual);
    }

private:
    float dropout_;
    bool gelu_tanh_;
    Generator* rng_;
    Tensor fc_weight_, fc_bias_, proj_weight_, proj_bias_;
};

class Block : public Module {
public:
    Block(BuildContext& ctx, const AttentionShape& shape, int64_t mlp_hidden, float eps, bool gelu_tanh) {
        ln_1_ = add_module("ln_1", std::make_shared<LayerNorm>(*ctx.backend, shape.hidden, shape.bias, eps));
        attn_ = add_module("attn", ctx.make_attention(shape));
        ln_2_ = add_module("ln_2", std::make_shared<LayerNorm>(*ctx.backend, shape.hidden, shape.bias, eps));
        mlp_ = add_module("mlp",
                          std::make_shared<Mlp>(ctx, shape.hidden, mlp_hidden, shape.bias, shape.dropout, gelu_tanh));
        // MultiHeadAttention (every variant built on it) reads its input only through its
        // projections, and adds a residual inside its output projection; another Attention may
        // read its input as f32.
        mha_ = std::dynamic_pointer_cast<MultiHeadAttention>(attn_);
    }
    Tensor forward(const Tensor& x, const AttentionContext& actx) {
        // Both LayerNorms feed linears only: under mixed precision they write bf16.
        Tensor h = mha_ ? mha_->forward_residual(ln_1_->forward_matmul_input(x), actx, x)
                        : ops::add(x, attn_->forward(ln_1_->forward(x), actx));
        return mlp_->forward(ln_2_->forward_matmul_input(h), h);
    }
    const Attention& attention() const { return *attn_; }

private:
    std::shared_ptr<LayerNorm> ln_1_, ln_2_;
    std::shared_ptr<Attention> attn_;
    std::shared_ptr<Mlp> mlp_;
    std::shared_ptr<MultiHeadAttention> mha_;  // attn_ when it is one, else null
};

// The model's sizes from its options and [train] seq_len, with every rule between them checked:
// what the validate and estimate hooks and the constructor share.
struct GptConfig {
    int64_t layers = 0, hidden = 0, max_seq_len = 0, mlp_hidden = 0;
    bool learned_positions = true;
    AttentionShape shape;
};

GptConfig gpt_config(const Options& opts, const TrainSettings& train) {
    GptConfig c;
    c.layers = opts.get_int("layers");
    c.hidden = opts.get_int("hidden");
    c.max_seq_len = opts.get_int("max_seq_len") > 0 ? opts.get_int("max_seq_len") : train.seq_len;
    if (c.max_seq_len < 1)
        throw ConfigError("model/gpt: max_seq_len is 0 and [train] seq_len is not set; set one of them");
    c.shape = AttentionShape{c.hidden, opts.get_int("heads"), static_cast<float>(opts.get_float("dropout")),
                             opts.get_bool("bias")};
    const std::string position = opts.get_string("position");  // the schema's choices checked it
    c.learned_positions = position == "learned";
    c.shape.rope = position == "rope";
    c.shape.rope_base = static_cast<float>(opts.get_float("rope_base"));
    if (c.hidden % c.shape.heads != 0)
        throw ConfigError(opts.origin("heads") + ": [model] hidden = " + std::to_string(c.hidden) + " (" +
                          opts.origin("hidden") + ") is not divisible by heads = " + std::to_string(c.shape.heads) +
                          "; choose heads that divides hidden (e.g. " +
                          std::to_string(c.hidden % 4 == 0 ? 4 : 1) + ")");
    c.mlp_hidden = opts.get_int("mlp_ratio") * c.hidden;
    return c;
}

// Parameters (exact, without the blocks' attention) and activations per token.
PluginEstimate gpt_estimate(const PlanContext& plan) {
    const GptConfig c = gpt_config(*plan.options, plan.train);
    const double C = static_cast<double>(c.hidden), L = static_cast<double>(c.layers);
    const double F = static_cast<double>(c.mlp_hidden), V = static_cast<double>(plan.vocab_size);
    const double norm = c.shape.bias ? 2 * C : C;  // a LayerNorm's gain (and shift)
    PluginEstimate e;
    e.parameters = V * C + (c.learned_positions ? static_cast<double>(c.max_seq_len) * C : 0) +
                   L * (2 * norm + 2 * F * C + (c.shape.bias ? F + C : 0)) + norm;
    // Per block: both LayerNorms' inputs and outputs, the residual sums, the MLP's pre- and
    // post-GELU [T, F] and its output; then the embedding sum and ln_f.
    e.activation_floats_per_token = L * (6 * C + 2 * F + 4) + 3 * C;
    e.attention_shape = c.shape;
    e.attention_layers = c.layers;
    e.hidden = c.hidden;
    e.max_seq_len = c.max_seq_len;
    e.causal = true;
    return e;
}

class Gpt : public Model {
public:
    Gpt(const Options& opts, BuildContext& ctx) : backend_(*ctx.backend), rng_(&ctx.dropout_rng) {
        if (!ctx.tokenizer || !ctx.tokenizer->ready())
            throw ConfigError("model/gpt needs a tokenizer with a vocabulary to size its embeddings");
        int64_t V = ctx.tokenizer->vocab_size();
        const GptConfig config = gpt_config(opts, ctx.train);
        const int64_t L = config.layers;
        C_ = config.hidden;
        max_T_ = config.max_seq_len;
        dropout_ = config.shape.dropout;
        AttentionShape shape = config.shape;
        learned_positions_ = config.learned_positions;
        float eps = static_cast<float>(opts.get_float("ln_eps"));
        const bool gelu_tanh = opts.get_string("activation") == "gelu_tanh";

        wte_ = add_parameter("wte.weight", Tensor::empty(backend_, {V, C_}));
        if (learned_positions_) wpe_ = add_parameter("wpe.weight", Tensor::empty(backend_, {max_T_, C_}));
        ops::fill_normal(wte_, 0.0f, 0.02f, ctx.init_rng.next(V * C_));
        if (learned_positions_) ops::fill_normal(wpe_, 0.0f, 0.02f, ctx.init_rng.next(max_T_ * C_));
        const int64_t mlp_hidden = config.mlp_hidden;
        for (int64_t l = 0; l < L; ++l) {
            shape.layer = l;
            blocks_.push_back(add_module("h." + std::to_string(l),
                                         std::make_shared<Block>(ctx, shape, mlp_hidden, eps, gelu_tanh)));
        }
        ln_f_ = add_module("ln_f", std::make_shared<LayerNorm>(backend_, C_, shape.bias, eps));

        float proj_std = 0.02f / std::sqrt(2.0f * static_cast<float>(L));
        for (auto& [name, p] : named_parameters())
            if (name.size() >= 13 && name.compare(name.size() - 13, 13, "c_proj.weight") == 0)
                ops::fill_normal(p, 0.0f, proj_std, ctx.init_rng.next(p.numel()));
    }

    Tensor forward(const ModelInputs& in) override { return run(in, nullptr); }

    // run() decodes with a cache whenever every block's attention declared kv_cache; the model
    // states nothing of its own, so the attention plugin's declaration is the one answer.
    bool supports_kv_cache() const override {
        return std::all_of(blocks_.begin(), blocks_.end(),
                           [](const auto& block) { return block->attention().capabilities().kv_cache; });
    }
    Tensor forward_cached(const ModelInputs& in, DecodeState& state) override { return run(in, &state); }

    Tensor embedding_weight() const override { return wte_; }
    int64_t hidden_size() const override { return C_; }
    int64_t max_seq_len() const override { return max_T_; }
    bool causal() const override { return true; }

private:
    // The whole sequence (state == nullptr), or the positions after state->length, appending to
    // each block's KV cache.
    Tensor run(const ModelInputs& in, DecodeState* state) {
        const Tensor& ids = in.ids;  // [B, T]
        if (ids.dim() != 2) throw ShapeError("model/gpt: expected ids [B, T], got " + shape_str(ids.shape()));
        int64_t T = ids.size(1), past = state ? state->length : 0;
        if (past + T > max_T_)
            throw ShapeError("model/gpt: sequence length " + std::to_string(past + T) +
                             " exceeds the model's max_seq_len " + std::to_string(max_T_));
        Tensor x = ops::embedding(ids, wte_);  // [B, T, C]
        if (learned_positions_) {
            Tensor pos = ops::slice(positions(past + T), 0, past, past + T);
            x = ops::add(x, ops::embedding(pos, wpe_));
        }
        x = ops::dropout(x, dropout_, training(), *rng_);
        if (state) state->layers.resize(blocks_.size());
        for (size_t l = 0; l < blocks_.size(); ++l) {
            // RoPE's positions continue after the cache's length (MultiHeadAttention reads it).
            AttentionContext actx{true, in.padding_mask, state ? &state->layers[l] : nullptr};
            x = blocks_[l]->forward(x, actx);
        }
        if (state) state->length += T;
        return ln_f_->forward(x);
    }

    const Tensor& positions(int64_t T) { return position_ids_.get(backend_, T); }

    Backend& backend_;
    Generator* rng_;
    int64_t C_ = 0, max_T_ = 0;
    float dropout_ = 0.0f;
    bool learned_positions_ = true;  // position = learned: wpe is added to the token embeddings
    Tensor wte_, wpe_;               // wpe undefined unless learned_positions_
    std::vector<std::shared_ptr<Block>> blocks_;
    std::shared_ptr<LayerNorm> ln_f_;
    PositionIds position_ids_;
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::OptionSchema schema;
    schema.integer("layers", 4, "number of transformer blocks (L)").at_least(1);
    schema.integer("heads", 4, "attention heads per block (H); hidden must be divisible by it").at_least(1);
    schema.integer("hidden", 128, "model width (C)").at_least(1);
    schema.real("dropout", 0.0, "dropout on embeddings, attention and residual branches").range(0, 0.99);
    schema.boolean("bias", true, "biases in linear layers and LayerNorms (GPT-2: true; nanoGPT's default: false)");
    schema.integer("max_seq_len", 0,
                   "longest sequence the model takes, and with position = learned its number of learned positions "
                   "(0: [train] seq_len)")
        .at_least(0);
    schema.integer("mlp_ratio", 4, "feed-forward width as a multiple of hidden").at_least(1);
    schema.real("ln_eps", 1e-5, "LayerNorm epsilon").range(1e-12, 1e-1);
    schema.choice("activation", "gelu", {"gelu", "gelu_tanh"},
                  "MLP nonlinearity: gelu (erf form, nanoGPT's nn.GELU) or gelu_tanh (GPT-2's tanh approximation, "
                  "gelu_new; fused into the matmul on the cuda backend)");
    schema.choice("position", "learned", {"learned", "rope", "none"},
                  "position signal: learned (GPT-2's wpe table of max_seq_len rows), rope (rotary embeddings on "
                  "every block's queries and keys, Su et al. 2021; no wpe) or none (no wpe, no rotation: for "
                  "attention that brings its own, e.g. attention/alibi)");
    schema.real("rope_base", 10000.0, "RoPE's base (position = rope): channel pair i turns by base^(-2i / D) per "
                                      "position; Llama 3 uses 500000")
        .at_least(1.0);
    lab::PluginDecl decl{"gpt", "1.1", "GPT-2 style pre-LayerNorm decoder (learned, rotary or no positions)", schema};
    decl.needs_attention.causal = true;  // every block attends causally
    decl.validate = [](const lab::PlanContext& plan) { gpt_config(*plan.options, plan.train); };
    decl.estimate = gpt_estimate;
    registry.add_model(std::move(decl),
                       [](const lab::Options& opts, lab::BuildContext& ctx) {
                           return std::make_shared<Gpt>(opts, ctx);
                       });
}
