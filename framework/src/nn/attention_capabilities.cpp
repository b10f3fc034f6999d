// AttentionCapabilities on its own: experiment-file resolution (run/config_resolve.cpp) checks capabilities
// without the tensor code of attention.cpp, so the config fuzz target links this file alone.
#include "lab/attention.h"

namespace lab {

std::vector<std::string> AttentionCapabilities::missing(const AttentionCapabilities& needed) const {
    std::vector<std::string> out;
    if (needed.causal && !causal) out.push_back("causal masking");
    if (needed.padding_mask && !padding_mask) out.push_back("padding masks");
    if (needed.kv_cache && !kv_cache) out.push_back("a KV cache");
    if (needed.cross_attention && !cross_attention) out.push_back("cross-attention");
    return out;
}

std::string AttentionCapabilities::str() const {
    std::string out;
    auto add = [&](bool on, const char* name) {
        if (on) out += (out.empty() ? "" : ", ") + std::string(name);
    };
    add(causal, "causal");
    add(padding_mask, "padding mask");
    add(kv_cache, "kv cache");
    add(cross_attention, "cross-attention");
    return out.empty() ? "none" : out;
}

}  // namespace lab
