// Model (plugin kind "model"): a backbone, ids -> hidden states. Tasks own the heads.
#pragma once
#include <cstdint>
#include <vector>

#include "lab/attention.h"
#include "lab/module.h"
#include "lab/tensor.h"

namespace lab {

struct ModelInputs {
    Tensor ids;           // [B, T] i32
    Tensor segments;      // optional [B, T] i32
    Tensor padding_mask;  // optional [B, T] u8, nonzero = padding
};

// Incremental decoding state of a model: the KV cache of each attention layer and the number of
// positions they hold.
struct DecodeState {
    std::vector<KvCache> layers;
    int64_t length = 0;
};

class Model : public Module {
public:
    virtual Tensor forward(const ModelInputs& in) = 0;  // -> [B, T, C]
    virtual Tensor embedding_weight() const = 0;        // [V, C], for tied output layers
    virtual int64_t hidden_size() const = 0;
    virtual int64_t max_seq_len() const = 0;
    virtual bool causal() const = 0;
    // hidden [B, T, C] -> [B, C]: the summary of each sequence that classification heads read.
    // Default: the first position (BERT's [CLS]); BERT applies its pooler (dense + tanh) to it.
    virtual Tensor pool(const Tensor& hidden);
    // Incremental decoding: in.ids [B, Tnew] are the positions after the state.length already in
    // `state`; their keys and values are appended to it. Returns hidden states [B, Tnew, C] equal
    // to the last Tnew positions of forward() over the whole sequence. Default: throws ConfigError
    // (models without a KV cache; generation then recomputes the whole context each token).
    // A model that implements forward_cached answers supports_kv_cache() from its attention blocks'
    // Attention::capabilities() (the attention plugin's declaration), never with a constant.
    virtual bool supports_kv_cache() const { return false; }
    virtual Tensor forward_cached(const ModelInputs& in, DecodeState& state);
};

}  // namespace lab
