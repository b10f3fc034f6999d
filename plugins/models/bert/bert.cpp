// model/bert: the BERT encoder (Devlin et al. 2019). Token, position and segment (token type)
// embeddings are summed, normalised and dropped out; each post-LayerNorm block computes
//   x = LN(x + attn(x));  x = LN(x + dropout(W_out gelu(W_in x)))
// with bidirectional attention (the experiment's [attention] choice) and erf GELU; the pooler
// (dense + tanh on position 0) is Model::pool. Parameter names are those of Hugging Face's
// BertModel except inside attention, which the [attention] plugin owns (c_attn packs query, key
// and value; c_proj is the output dense); export_state()/import_state() convert, so
// model.safetensors files are Hugging Face's. `pretrained = DIR` builds the model from DIR's
// config.json and loads DIR/model.safetensors.
//
// Dropout: the attention plugin has one rate (AttentionShape::dropout) for the attention
// probabilities and its output projection; it gets attention_dropout (BERT's
// attention_probs_dropout_prob), so the attention output is dropped at that rate instead of
// hidden_dropout_prob. Both are 0.1 in every published BERT, where this is exactly BERT.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "lab/autograd.h"
#include "lab/error.h"
#include "lab/layers.h"
#include "lab/ops.h"
#include "lab/plugin.h"
#include "lab/safetensors.h"

namespace {

using namespace lab;
namespace fs = std::filesystem;

// The architecture, from [model] options or a pretrained folder's config.json.
struct BertConfig {
    int64_t layers = 0, hidden = 0, heads = 0, intermediate = 0, max_position = 0, type_vocab = 0;
    double dropout = 0, attention_dropout = 0, ln_eps = 0;
    int64_t vocab = 0;  // config.json's vocab_size (pretrained only)
};

BertConfig config_from_options(const Options& opts) {
    BertConfig c;
    c.layers = opts.get_int("layers");
    c.hidden = opts.get_int("hidden");
    c.heads = opts.get_int("heads");
    c.intermediate = opts.get_int("intermediate") > 0 ? opts.get_int("intermediate") : 4 * c.hidden;
    c.max_position = opts.get_int("max_position");
    c.type_vocab = opts.get_int("type_vocab");
    c.dropout = opts.get_float("dropout");
    c.attention_dropout = opts.get_float("attention_dropout");
    c.ln_eps = opts.get_float("ln_eps");
    return c;
}

// Reads config.json keys with errors that name the file and the key.
class HfConfig {
public:
    explicit HfConfig(fs::path file) : file_(std::move(file)) {
        std::ifstream in(file_);
        if (!in)
            throw ConfigError("model/bert: cannot read " + file_.string() +
                              "; a pretrained folder holds a Hugging Face config.json and model.safetensors");
        try {
            json_ = nlohmann::json::parse(in);
        } catch (const nlohmann::json::exception& e) {
            throw ConfigError("model/bert: " + file_.string() + " is not valid JSON (" + e.what() +
                              "); restore the file from the model's original folder");
        }
        if (!json_.is_object())
            throw ConfigError("model/bert: " + file_.string() + " must hold a JSON object of BERT settings");
    }
    int64_t positive_int(const char* key) const {
        const nlohmann::json& v = at(key);
        if (!v.is_number_integer() || v.get<int64_t>() < 1) bad(key, "a positive integer");
        return v.get<int64_t>();
    }
    double real(const char* key, double lo, double hi) const {
        const nlohmann::json& v = at(key);
        if (!v.is_number() || !(v.get<double>() >= lo && v.get<double>() < hi))
            bad(key, "a number in [" + std::to_string(lo) + ", " + std::to_string(hi) + ")");
        return v.get<double>();
    }
    std::string string_or(const char* key, const std::string& fallback) const {
        if (!json_.contains(key)) return fallback;
        if (!json_[key].is_string()) bad(key, "a string");
        return json_[key].get<std::string>();
    }
    const fs::path& file() const { return file_; }

private:
    const nlohmann::json& at(const char* key) const {
        if (!json_.contains(key))
            throw ConfigError("model/bert: " + file_.string() + " has no key '" + key +
                              "'; it is not a Hugging Face BERT config (see the model's original config.json)");
        return json_[key];
    }
    [[noreturn]] void bad(const char* key, const std::string& expected) const {
        throw ConfigError("model/bert: " + file_.string() + ": key '" + key + "' = " + json_[key].dump() + " is not " +
                          expected + "; fix the value or restore the original config.json");
    }
    fs::path file_;
    nlohmann::json json_;
};

// An option given explicitly in the experiment must agree with the pretrained config.
void require_agreement(const Options& opts, const std::string& option, double from_file, const HfConfig& config,
                       const char* key) {
    if (!opts.is_set(option)) return;
    double given = opts.get_float(option);
    if (option == "intermediate" && given == 0) return;  // 0 means "the default", whatever config.json says
    if (std::fabs(given - from_file) <= 1e-9 * std::max(std::fabs(given), std::fabs(from_file))) return;
    std::ostringstream value;
    value << from_file;
    throw ConfigError("[" + opts.section() + "] " + option + " = " + opts.values().at(option).text + " (" +
                      opts.origin(option) + ") disagrees with " + key + " = " + value.str() + " in " +
                      config.file().string() + "; remove the option to use the pretrained model's value");
}

BertConfig config_from_pretrained(const Options& opts, const fs::path& dir, int64_t tokenizer_vocab) {
    if (!fs::is_directory(dir))
        throw ConfigError("model/bert: pretrained = " + dir.string() + " (" + opts.origin("pretrained") +
                          ") is not a folder; run tools/get_pretrained.sh or point it at a Hugging Face BERT folder");
    HfConfig hf(dir / "config.json");
    BertConfig c;
    c.layers = hf.positive_int("num_hidden_layers");
    c.hidden = hf.positive_int("hidden_size");
    c.heads = hf.positive_int("num_attention_heads");
    c.intermediate = hf.positive_int("intermediate_size");
    c.max_position = hf.positive_int("max_position_embeddings");
    c.type_vocab = hf.positive_int("type_vocab_size");
    c.dropout = hf.real("hidden_dropout_prob", 0.0, 1.0);
    c.attention_dropout = hf.real("attention_probs_dropout_prob", 0.0, 1.0);
    c.ln_eps = hf.real("layer_norm_eps", 1e-30, 1.0);
    int64_t vocab = hf.positive_int("vocab_size");
    if (std::string act = hf.string_or("hidden_act", ""); act != "gelu")
        throw ConfigError("model/bert: " + hf.file().string() + ": key 'hidden_act' = \"" + act +
                          "\"; only \"gelu\" (erf form, every published BERT) is supported");
    if (std::string pos = hf.string_or("position_embedding_type", "absolute"); pos != "absolute")
        throw ConfigError("model/bert: " + hf.file().string() + ": key 'position_embedding_type' = \"" + pos +
                          "\"; only \"absolute\" (learned positions) is supported");
    require_agreement(opts, "layers", double(c.layers), hf, "num_hidden_layers");
    require_agreement(opts, "hidden", double(c.hidden), hf, "hidden_size");
    require_agreement(opts, "heads", double(c.heads), hf, "num_attention_heads");
    require_agreement(opts, "intermediate", double(c.intermediate), hf, "intermediate_size");
    require_agreement(opts, "max_position", double(c.max_position), hf, "max_position_embeddings");
    require_agreement(opts, "type_vocab", double(c.type_vocab), hf, "type_vocab_size");
    // Dropout is a training choice, not architecture: an explicit value replaces config.json's.
    if (opts.is_set("dropout")) c.dropout = opts.get_float("dropout");
    if (opts.is_set("attention_dropout")) c.attention_dropout = opts.get_float("attention_dropout");
    require_agreement(opts, "ln_eps", c.ln_eps, hf, "layer_norm_eps");
    c.vocab = vocab;
    if (tokenizer_vocab > 0 && vocab != tokenizer_vocab)  // 0: planning, before the tokenizer is built
        throw ConfigError("model/bert: " + hf.file().string() + " has vocab_size = " + std::to_string(vocab) +
                          " but the [tokenizer] vocabulary has " + std::to_string(tokenizer_vocab) +
                          " entries; set [tokenizer] vocab = " + (dir / "vocab.txt").string() +
                          ", the vocabulary the weights were trained with");
    return c;
}

class BertLayer : public Module {
public:
    BertLayer(BuildContext& ctx, const AttentionShape& shape, int64_t intermediate, float dropout, float eps)
        : dropout_(dropout), rng_(&ctx.dropout_rng) {
        Backend& be = *ctx.backend;
        // The plugin applies AttentionShape::dropout to its own output: BERT's attention.output dropout.
        attention_ = add_module("attention", ctx.make_attention(shape));
        attention_norm_ =
            add_module("attention.output.LayerNorm", std::make_shared<LayerNorm>(be, shape.hidden, true, eps));
        intermediate_ = add_module("intermediate.dense", std::make_shared<Linear>(ctx, shape.hidden, intermediate));
        output_ = add_module("output.dense", std::make_shared<Linear>(ctx, intermediate, shape.hidden));
        output_norm_ = add_module("output.LayerNorm", std::make_shared<LayerNorm>(be, shape.hidden, true, eps));
    }
    // x [B, T, C] -> [B, T, C]
    Tensor forward(const Tensor& x, const AttentionContext& actx) {
        Tensor h = attention_norm_->forward(ops::add(x, attention_->forward(x, actx)));
        Tensor f = output_->forward(ops::gelu_matmul_input(intermediate_->forward(h)));  // [B, T, C]
        return output_norm_->forward(ops::add(h, ops::dropout(f, dropout_, training(), *rng_)));
    }
    const Attention& attention() const { return *attention_; }

private:
    float dropout_;
    Generator* rng_;
    std::shared_ptr<Attention> attention_;
    std::shared_ptr<LayerNorm> attention_norm_, output_norm_;
    std::shared_ptr<Linear> intermediate_, output_;
};

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The architecture (from the options, or a pretrained folder's config.json) with the rules between
// it and the run checked: what the validate and estimate hooks and the constructor share.
// `tokenizer_vocab` 0: not known yet (planning), so config.json's vocab_size is not compared.
BertConfig bert_config(const Options& opts, const TrainSettings& train, int64_t tokenizer_vocab) {
    const fs::path pretrained = opts.get_string("pretrained");
    BertConfig c =
        pretrained.empty() ? config_from_options(opts) : config_from_pretrained(opts, pretrained, tokenizer_vocab);
    if (c.hidden % c.heads != 0)
        throw ConfigError("model/bert: hidden = " + std::to_string(c.hidden) +
                          " is not divisible by heads = " + std::to_string(c.heads) + " (" +
                          (pretrained.empty() ? opts.origin("heads") : (pretrained / "config.json").string()) +
                          "); choose heads that divides hidden");
    if (train.seq_len > c.max_position)
        throw ConfigError("[train] seq_len = " + std::to_string(train.seq_len) + " exceeds model/bert's " +
                          std::to_string(c.max_position) + " positions (" +
                          (pretrained.empty() ? "[model] max_position" : (pretrained / "config.json").string()) +
                          "); shorten seq_len or raise max_position");
    return c;
}

// Parameters (exact, without the blocks' attention) and activations per token.
PluginEstimate bert_estimate(const PlanContext& plan) {
    const BertConfig c = bert_config(*plan.options, plan.train, plan.vocab_size);
    const double C = static_cast<double>(c.hidden), I = static_cast<double>(c.intermediate);
    const double V = static_cast<double>(plan.vocab_size > 0 ? plan.vocab_size : c.vocab);
    PluginEstimate e;
    e.parameters = (V + static_cast<double>(c.max_position + c.type_vocab)) * C + 2 * C +
                   static_cast<double>(c.layers) * (2 * I * C + I + C + 4 * C) + C * C + C;
    // Per block: the residual sums and LayerNorm outputs, the feed-forward's [T, I] before and
    // after GELU, its output and dropout mask; then the three embeddings' sum and its LayerNorm.
    e.activation_floats_per_token = static_cast<double>(c.layers) * (7 * C + 2 * I + 4) + 4 * C;
    e.attention_shape = AttentionShape{c.hidden, c.heads, static_cast<float>(c.attention_dropout), true};
    e.attention_layers = c.layers;
    e.hidden = c.hidden;
    e.max_seq_len = c.max_position;
    e.causal = false;
    e.vocab_size = c.vocab;
    return e;
}

class Bert : public Model {
public:
    Bert(const Options& opts, BuildContext& ctx) : backend_(*ctx.backend), rng_(&ctx.dropout_rng) {
        if (!ctx.tokenizer || !ctx.tokenizer->ready())
            throw ConfigError(
                "model/bert needs a tokenizer with a vocabulary to size its embeddings; set [tokenizer] vocab");
        const int64_t V = ctx.tokenizer->vocab_size();
        const fs::path pretrained = opts.get_string("pretrained");
        BertConfig c = bert_config(opts, ctx.train, V);
        C_ = c.hidden;
        max_T_ = c.max_position;
        dropout_ = static_cast<float>(c.dropout);
        const float eps = static_cast<float>(c.ln_eps);
        AttentionShape shape{C_, c.heads, static_cast<float>(c.attention_dropout), true};

        word_ = add_parameter("embeddings.word_embeddings.weight", Tensor::empty(backend_, {V, C_}));
        position_ = add_parameter("embeddings.position_embeddings.weight", Tensor::empty(backend_, {max_T_, C_}));
        segment_ =
            add_parameter("embeddings.token_type_embeddings.weight", Tensor::empty(backend_, {c.type_vocab, C_}));
        for (const Tensor& table : {word_, position_, segment_})
            ops::fill_normal(table, 0.0f, 0.02f, ctx.init_rng.next(static_cast<uint64_t>(table.numel())));
        embedding_norm_ = add_module("embeddings.LayerNorm", std::make_shared<LayerNorm>(backend_, C_, true, eps));
        for (int64_t l = 0; l < c.layers; ++l) {
            shape.layer = l;
            auto layer = add_module("encoder.layer." + std::to_string(l),
                                    std::make_shared<BertLayer>(ctx, shape, c.intermediate, dropout_, eps));
            for (const auto& [name, t] : layer->attention().state_dict())
                attention_params_.emplace(attention_prefix(l) + name, std::make_pair(l, name));
            layers_.push_back(layer);
        }
        pooler_ = add_module("pooler.dense", std::make_shared<Linear>(ctx, C_, C_));

        if (!pretrained.empty()) {
            ctx.log("model/bert: " + pretrained.string() + ": " + std::to_string(c.layers) + " layers, hidden " +
                    std::to_string(C_) + ", " + std::to_string(c.heads) + " heads, intermediate " +
                    std::to_string(c.intermediate) + ", vocabulary " + std::to_string(V));
            load_pretrained(pretrained, ctx);
        }
    }

    // ids [B, T] i32, segments [B, T] (optional, 0 when absent), padding_mask [B, T] u8 -> [B, T, C]
    Tensor forward(const ModelInputs& in) override {
        const Tensor& ids = in.ids;
        if (ids.dim() != 2) throw ShapeError("model/bert: expected ids [B, T], got " + shape_str(ids.shape()));
        const int64_t T = ids.size(1);
        if (T > max_T_)
            throw ShapeError("model/bert: sequence length " + std::to_string(T) + " exceeds max_position = " +
                             std::to_string(max_T_) + "; shorten [train] seq_len or raise max_position");
        Tensor x = ops::add(ops::embedding(ids, word_), ops::embedding(positions(T), position_));  // [B, T, C]
        if (in.segments.defined()) {
            if (in.segments.shape() != ids.shape())
                throw ShapeError("model/bert: segments " + shape_str(in.segments.shape()) + " do not match ids " +
                                 shape_str(ids.shape()));
            x = ops::add(x, ops::embedding(in.segments, segment_));
        } else {
            x = ops::add(x, ops::select(segment_, 0, 0));  // every token in segment 0: row 0, broadcast
        }
        x = ops::dropout(embedding_norm_->forward(x), dropout_, training(), *rng_);
        AttentionContext actx{false, in.padding_mask};
        for (auto& layer : layers_) x = layer->forward(x, actx);
        return x;
    }

    // hidden [B, T, C] -> tanh(dense(hidden[:, 0])) [B, C]
    Tensor pool(const Tensor& hidden) override { return ops::tanh(pooler_->forward(ops::select(hidden, 1, 0))); }

    Tensor embedding_weight() const override { return word_; }
    int64_t hidden_size() const override { return C_; }
    int64_t max_seq_len() const override { return max_T_; }
    bool causal() const override { return false; }

    // Attention parameters -> Hugging Face names: c_attn's rows [q; k; v] -> attention.self.{query,
    // key,value}, c_proj -> attention.output.dense, anything else a variant adds -> attention.self.<name>.
    TensorMap export_state() const override {
        NoGradGuard no_grad;
        TensorMap out;
        for (const auto& [name, t] : state_dict()) {
            auto it = attention_params_.find(name);
            if (it == attention_params_.end()) {
                out[name] = t;
                continue;
            }
            const std::string prefix = attention_prefix(it->second.first), &local = it->second.second;
            const std::string suffix = ends_with(local, ".weight") ? "weight" : "bias";
            const bool packed = (local == "c_attn.weight" || local == "c_attn.bias") && t.dim() >= 1;
            const int64_t rows = packed ? t.size(0) : 0, kv_rows = (rows - C_) / 2;  // (H + 2 Hkv) D = C + 2 Hkv D
            if (packed && kv_rows > 0 && C_ + 2 * kv_rows == rows) {
                out[prefix + "self.query." + suffix] = ops::slice(t, 0, 0, C_);
                out[prefix + "self.key." + suffix] = ops::slice(t, 0, C_, C_ + kv_rows);
                out[prefix + "self.value." + suffix] = ops::slice(t, 0, C_ + kv_rows, rows);
            } else if (local == "c_proj.weight" || local == "c_proj.bias") {
                out[prefix + "output.dense." + suffix] = t;
            } else {
                out[prefix + "self." + local] = t;
            }
        }
        return out;
    }

    // The inverse of export_state, also reading the files of BertForPreTraining and friends
    // ("bert." prefix), TF-era LayerNorm names (gamma, beta) and dropping the position_ids buffer.
    TensorMap import_state(const TensorMap& published) const override {
        NoGradGuard no_grad;
        TensorMap in;
        for (const auto& [original, t] : published) {
            std::string name = original.rfind("bert.", 0) == 0 ? original.substr(5) : original;
            if (name == "embeddings.position_ids") continue;  // a constant buffer, rebuilt from T
            if (ends_with(name, "LayerNorm.gamma")) name.replace(name.size() - 5, 5, "weight");
            if (ends_with(name, "LayerNorm.beta")) name.replace(name.size() - 4, 4, "bias");
            in[name] = t;
        }
        TensorMap out;
        auto take = [&](const std::string& from, const std::string& to) {
            auto it = in.find(from);
            if (it == in.end()) return;
            out[to] = it->second;
            in.erase(it);
        };
        for (size_t l = 0; l < layers_.size(); ++l) {
            const std::string prefix = attention_prefix(static_cast<int64_t>(l));
            for (const std::string suffix : {"weight", "bias"}) {
                const std::string q = prefix + "self.query." + suffix, k = prefix + "self.key." + suffix,
                                  v = prefix + "self.value." + suffix;
                if (attention_params_.count(prefix + "c_attn." + suffix) && in.count(q) && in.count(k) && in.count(v)) {
                    out[prefix + "c_attn." + suffix] = packed_qkv(in.at(q), in.at(k), in.at(v), q);
                    for (const std::string& name : {q, k, v}) in.erase(name);
                }
                if (attention_params_.count(prefix + "c_proj." + suffix))
                    take(prefix + "output.dense." + suffix, prefix + "c_proj." + suffix);
            }
            for (const auto& [name, where] : attention_params_)
                if (where.first == static_cast<int64_t>(l)) take(prefix + "self." + where.second, name);
        }
        for (auto& [name, t] : in) out.emplace(name, t);
        return out;
    }

private:
    static std::string attention_prefix(int64_t layer) {
        return "encoder.layer." + std::to_string(layer) + ".attention.";
    }

    // query [H D, ...], key and value [Hkv D, ...] -> [(H + 2 Hkv) D, ...]
    static Tensor packed_qkv(const Tensor& q, const Tensor& k, const Tensor& v, const std::string& q_name) {
        Shape q_rest(q.shape().begin() + 1, q.shape().end()), k_rest(k.shape().begin() + 1, k.shape().end()),
            v_rest(v.shape().begin() + 1, v.shape().end());
        if (q.dim() == 0 || q_rest != k_rest || k_rest != v_rest || k.shape() != v.shape() || q.dtype() != k.dtype() ||
            k.dtype() != v.dtype())
            throw DataError("model/bert: " + q_name + " " + shape_str(q.shape()) + " and its key " +
                            shape_str(k.shape()) + " and value " + shape_str(v.shape()) +
                            " cannot be packed into c_attn; the weights are not a consistent BERT attention");
        return ops::concat({q, k, v}, 0);
    }

    void load_pretrained(const fs::path& dir, BuildContext& ctx) {
        const fs::path weights = dir / "model.safetensors";
        if (!fs::exists(weights)) {
            if (fs::exists(dir / "pytorch_model.bin"))
                throw ConfigError("model/bert: " + dir.string() +
                                  " has pytorch_model.bin but no model.safetensors; "
                                  "convert it once with `python3 tools/hf_to_safetensors.py " +
                                  dir.string() + "`");
            throw ConfigError("model/bert: " + weights.string() +
                              " does not exist; a pretrained folder needs "
                              "config.json and model.safetensors (tools/get_pretrained.sh fetches MiniLM)");
        }
        TensorMap published = load_safetensors(weights, backend_);
        for (auto& [name, t] : published)  // half-precision files: the model keeps f32 weights
            if (t.dtype() == DType::f16 || t.dtype() == DType::bf16) t = t.to(DType::f32);
        LoadReport report = load_matching(import_state(published), weights.string());
        if (report.loaded.empty())
            throw DataError("model/bert: " + weights.string() + " has no tensor of this model (" + report.summary() +
                            "); it is not a Hugging Face BERT checkpoint");
        ctx.log("model/bert: " + weights.string() + ": " + report.summary());
    }

    const Tensor& positions(int64_t T) { return position_ids_.get(backend_, T); }

    Backend& backend_;
    Generator* rng_;
    int64_t C_ = 0, max_T_ = 0;
    float dropout_ = 0.0f;
    Tensor word_, position_, segment_;
    std::shared_ptr<LayerNorm> embedding_norm_;
    std::vector<std::shared_ptr<BertLayer>> layers_;
    std::shared_ptr<Linear> pooler_;
    // state_dict name of each attention parameter -> (layer, name inside the attention module)
    std::map<std::string, std::pair<int64_t, std::string>> attention_params_;
    PositionIds position_ids_;
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::OptionSchema schema;
    schema.integer("layers", 4, "number of encoder blocks (L)").at_least(1);
    schema.integer("hidden", 256, "model width (C)").at_least(1);
    schema.integer("heads", 4, "attention heads per block (H); hidden must be divisible by it").at_least(1);
    schema.integer("intermediate", 0, "feed-forward width (0: 4 * hidden)").at_least(0);
    schema.integer("max_position", 512, "number of learned positions (the longest sequence)").at_least(1);
    schema.integer("type_vocab", 2, "number of segment (token type) embeddings").at_least(1);
    schema.real("dropout", 0.1, "dropout on the embeddings and the feed-forward output (hidden_dropout_prob)")
        .range(0, 0.99);
    schema
        .real("attention_dropout", 0.1,
              "dropout on attention probabilities and the attention output (attention_probs_dropout_prob)")
        .range(0, 0.99);
    schema.real("ln_eps", 1e-12, "LayerNorm epsilon").range(1e-30, 1e-1);
    schema.path("pretrained", std::string(),
                "Hugging Face BERT folder (config.json + model.safetensors): the architecture comes from "
                "config.json and the weights are loaded; architecture options given here must agree with it, "
                "dropout options given here replace its dropout rates");
    lab::PluginDecl decl{"bert", "1.0",
                         "BERT encoder: post-LayerNorm bidirectional blocks, pooler, Hugging Face weights", schema};
    decl.needs_attention.padding_mask = true;  // batches of sentences of different lengths
    decl.validate = [](const lab::PlanContext& plan) { bert_config(*plan.options, plan.train, plan.vocab_size); };
    decl.estimate = bert_estimate;
    registry.add_model(std::move(decl), [](const lab::Options& opts, lab::BuildContext& ctx) {
        return std::make_shared<Bert>(opts, ctx);
    });
}
