// model/transformer: the encoder of Vaswani et al. (2017), "Attention Is All You Need". Token
// embeddings scaled by sqrt(C) plus fixed sinusoidal positions (section 3.5), then post-LayerNorm
// blocks
//   x = LN(x + attn(x));  x = LN(x + dropout(W_2 act(W_1 x)))
// with bidirectional attention (the experiment's [attention] choice) and a ReLU (or GELU)
// feed-forward layer. No final LayerNorm: in the post-LN encoder every block ends with one.
// Names follow PyTorch's nn.TransformerEncoderLayer (layers.N.self_attn, linear1, linear2, norm1,
// norm2); the sinusoid table is the buffer "positional_encoding" [max_seq_len, C].
// Initialisation: linear weights N(0, 0.02), biases 0; the embedding N(0, C^-1/2), so that after
// the sqrt(C) scale token vectors have unit variance, as the sinusoids do (fairseq's choice).
#include <cmath>
#include <map>

#include "lab/error.h"
#include "lab/layers.h"
#include "lab/ops.h"
#include "lab/plugin.h"

namespace {

using namespace lab;

// PE(pos, 2i) = sin(pos / 10000^(2i / C)), PE(pos, 2i + 1) = cos(pos / 10000^(2i / C)) -> [T, C]
Tensor sinusoid_table(Backend& be, int64_t T, int64_t C) {
    std::vector<float> table(static_cast<size_t>(T * C));
    for (int64_t pos = 0; pos < T; ++pos)
        for (int64_t j = 0; j < C; ++j) {
            double angle =
                static_cast<double>(pos) / std::pow(10000.0, static_cast<double>(2 * (j / 2)) / static_cast<double>(C));
            table[static_cast<size_t>(pos * C + j)] =
                static_cast<float>(j % 2 == 0 ? std::sin(angle) : std::cos(angle));
        }
    return Tensor::from_floats(be, {T, C}, table);
}

// The model's sizes from its options and [train] seq_len, with every rule between them checked:
// what the validate and estimate hooks and the constructor share.
struct TransformerConfig {
    int64_t layers = 0, hidden = 0, max_seq_len = 0, ffn = 0;
    AttentionShape shape;
};

TransformerConfig transformer_config(const Options& opts, const TrainSettings& train) {
    TransformerConfig c;
    c.layers = opts.get_int("layers");
    c.hidden = opts.get_int("hidden");
    c.max_seq_len = opts.get_int("max_seq_len") > 0 ? opts.get_int("max_seq_len") : train.seq_len;
    if (c.max_seq_len < 1)
        throw ConfigError("model/transformer: max_seq_len is 0 and [train] seq_len is not set; set one of them");
    c.shape = AttentionShape{c.hidden, opts.get_int("heads"), static_cast<float>(opts.get_float("dropout")), true};
    if (c.hidden % c.shape.heads != 0)
        throw ConfigError(opts.origin("heads") + ": [model] hidden = " + std::to_string(c.hidden) + " (" +
                          opts.origin("hidden") + ") is not divisible by heads = " + std::to_string(c.shape.heads) +
                          "; choose heads that divides hidden");
    c.ffn = opts.get_int("ffn") > 0 ? opts.get_int("ffn") : 4 * c.hidden;
    return c;
}

// Parameters (exact, without the blocks' attention; the sinusoid table is a buffer) and
// activations per token.
PluginEstimate transformer_estimate(const PlanContext& plan) {
    const TransformerConfig c = transformer_config(*plan.options, plan.train);
    const double C = static_cast<double>(c.hidden), F = static_cast<double>(c.ffn);
    PluginEstimate e;
    e.parameters = static_cast<double>(plan.vocab_size) * C +
                   static_cast<double>(c.layers) * (2 * F * C + F + C + 4 * C);
    // Per block: the residual sums and both LayerNorms' outputs, the feed-forward's [T, F] before
    // and after the nonlinearity, its output and dropout mask; then the scaled embedding sum.
    e.activation_floats_per_token = static_cast<double>(c.layers) * (7 * C + 2 * F + 4) + 3 * C;
    e.attention_shape = c.shape;
    e.attention_layers = c.layers;
    e.hidden = c.hidden;
    e.max_seq_len = c.max_seq_len;
    e.causal = false;
    return e;
}

class EncoderLayer : public Module {
public:
    EncoderLayer(BuildContext& ctx, const AttentionShape& shape, int64_t ffn, Activation activation, float eps)
        : activation_(activation), dropout_(shape.dropout), rng_(&ctx.dropout_rng) {
        Backend& be = *ctx.backend;
        // The attention plugin drops its probabilities and its output at shape.dropout.
        attention_ = add_module("self_attn", ctx.make_attention(shape));
        linear1_ = add_module("linear1", std::make_shared<Linear>(ctx, shape.hidden, ffn));
        linear2_ = add_module("linear2", std::make_shared<Linear>(ctx, ffn, shape.hidden));
        norm1_ = add_module("norm1", std::make_shared<LayerNorm>(be, shape.hidden, true, eps));
        norm2_ = add_module("norm2", std::make_shared<LayerNorm>(be, shape.hidden, true, eps));
    }
    // x [B, T, C] -> [B, T, C]
    Tensor forward(const Tensor& x, const AttentionContext& actx) {
        Tensor h = norm1_->forward(ops::add(x, attention_->forward(x, actx)));
        Tensor inner = linear1_->forward(h);
        // linear2 is the activation's only reader: gelu_matmul_input stores it as linear2 multiplies it.
        inner = activation_ == Activation::gelu ? ops::gelu_matmul_input(inner) : activate(inner, activation_);
        Tensor f = linear2_->forward(inner);  // [B, T, C]
        return norm2_->forward(ops::add(h, ops::dropout(f, dropout_, training(), *rng_)));
    }

private:
    Activation activation_;
    float dropout_;
    Generator* rng_;
    std::shared_ptr<Attention> attention_;
    std::shared_ptr<Linear> linear1_, linear2_;
    std::shared_ptr<LayerNorm> norm1_, norm2_;
};

class Transformer : public Model {
public:
    Transformer(const Options& opts, BuildContext& ctx) : rng_(&ctx.dropout_rng) {
        Backend& be = *ctx.backend;
        if (!ctx.tokenizer || !ctx.tokenizer->ready())
            throw ConfigError("model/transformer needs a tokenizer with a vocabulary to size its embeddings");
        const TransformerConfig config = transformer_config(opts, ctx.train);
        const int64_t V = ctx.tokenizer->vocab_size(), L = config.layers;
        C_ = config.hidden;
        max_T_ = config.max_seq_len;
        dropout_ = config.shape.dropout;
        AttentionShape shape = config.shape;
        const int64_t ffn = config.ffn;
        const Activation activation = activation_from_name(opts.get_string("activation"), "[model] activation");
        const float eps = static_cast<float>(opts.get_float("ln_eps"));

        embedding_ = add_parameter("embedding.weight", Tensor::empty(be, {V, C_}));
        ops::fill_normal(embedding_, 0.0f, 1.0f / std::sqrt(static_cast<float>(C_)),
                         ctx.init_rng.next(static_cast<uint64_t>(V * C_)));
        positional_ = add_buffer("positional_encoding", sinusoid_table(be, max_T_, C_));
        for (int64_t l = 0; l < L; ++l) {
            shape.layer = l;
            layers_.push_back(add_module("layers." + std::to_string(l),
                                         std::make_shared<EncoderLayer>(ctx, shape, ffn, activation, eps)));
        }
    }

    // ids [B, T] i32, padding_mask [B, T] u8 (optional) -> [B, T, C]. Segments are not used.
    Tensor forward(const ModelInputs& in) override {
        const Tensor& ids = in.ids;
        if (ids.dim() != 2) throw ShapeError("model/transformer: expected ids [B, T], got " + shape_str(ids.shape()));
        const int64_t T = ids.size(1);
        if (T > max_T_)
            throw ShapeError("model/transformer: sequence length " + std::to_string(T) + " exceeds max_seq_len " +
                             std::to_string(max_T_) + "; raise [model] max_seq_len");
        // sqrt(C) * E[ids] + PE[:T]: the scale keeps the embedding from being drowned by the
        // unit-amplitude sinusoids (section 3.4).
        Tensor x = ops::add(ops::scale(ops::embedding(ids, embedding_), std::sqrt(static_cast<float>(C_))),
                            ops::slice(positional_, 0, 0, T));  // [B, T, C]
        x = ops::dropout(x, dropout_, training(), *rng_);
        AttentionContext actx{false, in.padding_mask};
        for (auto& layer : layers_) x = layer->forward(x, actx);
        return x;
    }

    Tensor embedding_weight() const override { return embedding_; }
    int64_t hidden_size() const override { return C_; }
    int64_t max_seq_len() const override { return max_T_; }
    bool causal() const override { return false; }

private:
    Generator* rng_;
    int64_t C_ = 0, max_T_ = 0;
    float dropout_ = 0.0f;
    Tensor embedding_, positional_;
    std::vector<std::shared_ptr<EncoderLayer>> layers_;
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::OptionSchema schema;
    schema.integer("layers", 4, "number of encoder blocks (L)").at_least(1);
    schema.integer("hidden", 128, "model width (C)").at_least(1);
    schema.integer("heads", 4, "attention heads per block (H); hidden must be divisible by it").at_least(1);
    schema.integer("ffn", 0, "feed-forward width (0: 4 * hidden)").at_least(0);
    schema.choice("activation", "relu", {"relu", "gelu"}, "feed-forward nonlinearity (the paper: relu)");
    schema.real("dropout", 0.1, "dropout on embeddings, attention and residual branches").range(0, 0.99);
    schema.integer("max_seq_len", 0, "longest sequence, rows of the sinusoid table (0: [train] seq_len)").at_least(0);
    schema.real("ln_eps", 1e-5, "LayerNorm epsilon").range(1e-12, 1e-1);
    lab::PluginDecl decl{
        "transformer", "1.0",
        "Vaswani et al. (2017) encoder: sinusoidal positions, post-LayerNorm blocks, ReLU feed-forward", schema};
    decl.needs_attention.padding_mask = true;  // batches of sentences of different lengths
    decl.validate = [](const lab::PlanContext& plan) { transformer_config(*plan.options, plan.train); };
    decl.estimate = transformer_estimate;
    registry.add_model(std::move(decl), [](const lab::Options& opts, lab::BuildContext& ctx) {
        return std::make_shared<Transformer>(opts, ctx);
    });
}
