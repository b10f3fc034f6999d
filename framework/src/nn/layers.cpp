#include "lab/layers.h"

#include "lab/error.h"
#include "lab/ops.h"
#include "lab/build_context.h"

namespace lab {

LayerNorm::LayerNorm(Backend& backend, int64_t C, bool bias, float eps) : eps_(eps) {
    weight_ = add_parameter("weight", Tensor::full(backend, {C}, 1.0));
    if (bias) bias_ = add_parameter("bias", Tensor::zeros(backend, {C}));
}

Tensor LayerNorm::forward(const Tensor& x) const { return ops::layer_norm(x, weight_, bias_, eps_); }

Tensor LayerNorm::forward_matmul_input(const Tensor& x) const {
    return ops::layer_norm_matmul_input(x, weight_, bias_, eps_);
}

Linear::Linear(BuildContext& ctx, int64_t in, int64_t out, bool bias, float init_std) {
    weight_ = add_parameter("weight", Tensor::empty(*ctx.backend, {out, in}));
    ops::fill_normal(weight_, 0.0f, init_std, ctx.init_rng.next(static_cast<uint64_t>(out * in)));
    if (bias) bias_ = add_parameter("bias", Tensor::zeros(*ctx.backend, {out}));
}

Tensor Linear::forward(const Tensor& x) const { return ops::linear(x, weight_, bias_); }

Activation activation_from_name(const std::string& name, const std::string& where) {
    if (name == "relu") return Activation::relu;
    if (name == "gelu") return Activation::gelu;
    if (name == "gelu_tanh") return Activation::gelu_tanh;
    throw ConfigError(where + ": unknown activation '" + name + "'; use relu, gelu (erf form) or gelu_tanh");
}

Tensor activate(const Tensor& x, Activation activation) {
    switch (activation) {
        case Activation::relu:
            return ops::relu(x);
        case Activation::gelu:
            return ops::gelu(x, false);
        case Activation::gelu_tanh:
            return ops::gelu(x, true);
    }
    throw ConfigError("activate: unknown activation value; use Activation::relu, gelu or gelu_tanh");
}

const Tensor& PositionIds::get(Backend& backend, int64_t T) {
    auto it = by_length_.find(T);
    if (it != by_length_.end()) return it->second;
    std::vector<int64_t> ids(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) ids[static_cast<size_t>(t)] = t;
    return by_length_.emplace(T, Tensor::from_ints(backend, {T}, ids, DType::i32)).first->second;
}

}  // namespace lab
