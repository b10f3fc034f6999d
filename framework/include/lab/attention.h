// Attention (plugin kind "attention"): one attention block, input [B, T, C] -> output [B, T, C].
// The model decides the shape (AttentionShape); the experiment's [attention] section picks the
// variant and its options, so an ablation swaps one line.
#pragma once
#include <cstdint>

#include "lab/module.h"
#include "lab/tensor.h"

namespace lab {

struct AttentionShape {
    int64_t hidden = 0;    // C
    int64_t heads = 0;     // H (D = C / H)
    float dropout = 0.0f;  // on attention probabilities and the output projection
    bool bias = true;      // biases on the projections
};

struct AttentionContext {
    bool causal = false;
    Tensor padding_mask;  // optional [B, T] u8, nonzero = padding (never attended to)
};

class Attention : public Module {
public:
    virtual Tensor forward(const Tensor& x, const AttentionContext& ctx) = 0;
};

}  // namespace lab
