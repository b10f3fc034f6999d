// Small modules that models share: LayerNorm, Linear and the feed-forward activations. Each owns
// its parameters under the short names PyTorch gives them ("weight", "bias"); the model that adds
// one chooses the module's name, so the full state_dict names come out in the published layout
// ("encoder.layer.0.output.LayerNorm.weight", "h.0.ln_1.bias", "layers.0.linear1.weight").
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include "lab/module.h"
#include "lab/tensor.h"

namespace lab {

class Backend;
struct BuildContext;

// y = (x - mean) / sqrt(var + eps) * weight + bias over the last dim (Ba et al. 2016).
// weight [C] starts at 1, bias [C] (when `bias`) at 0.
class LayerNorm : public Module {
public:
    LayerNorm(Backend& backend, int64_t C, bool bias = true, float eps = 1e-5f);
    Tensor forward(const Tensor& x) const;  // [..., C] -> [..., C]
    // forward for an output that only matmuls read: bf16 under mixed precision
    // (ops::layer_norm_matmul_input).
    Tensor forward_matmul_input(const Tensor& x) const;
    const Tensor& weight() const { return weight_; }
    const Tensor& bias() const { return bias_; }  // undefined without bias

private:
    float eps_;
    Tensor weight_, bias_;
};

// y = x weight^T + bias, weight [out, in] (PyTorch / Hugging Face layout). weight starts
// N(0, init_std) from ctx.init_rng (the Hugging Face BERT and GPT-2 initialisation), bias at 0.
class Linear : public Module {
public:
    Linear(BuildContext& ctx, int64_t in, int64_t out, bool bias = true, float init_std = 0.02f);
    Tensor forward(const Tensor& x) const;  // [..., in] -> [..., out]
    const Tensor& weight() const { return weight_; }
    const Tensor& bias() const { return bias_; }

private:
    Tensor weight_, bias_;
};

// The nonlinearity between the two linears of a feed-forward block.
enum class Activation { relu, gelu, gelu_tanh };

// "relu", "gelu" (erf form, BERT's), "gelu_tanh" (GPT-2's approximation) -> Activation. Throws
// ConfigError naming `where` (e.g. "[model] activation") and the known names for anything else.
Activation activation_from_name(const std::string& name, const std::string& where);
Tensor activate(const Tensor& x, Activation activation);

// The position ids 0 .. T-1 (i32 [T]) that learned position embeddings look up, made once per
// length and kept.
class PositionIds {
public:
    const Tensor& get(Backend& backend, int64_t T);

private:
    std::map<int64_t, Tensor> by_length_;
};

}  // namespace lab
