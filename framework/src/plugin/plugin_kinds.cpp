#include "lab/plugin_kinds.h"

namespace lab {

const std::vector<PluginKind>& plugin_kinds() {
    // Sections with a default may be left out of an experiment file; the others are required.
    static const std::vector<PluginKind> kinds = {
        {"backend", "backend", "onednn", "tensors and kernels on one device (onednn, reference, cuda)"},
        {"tokenizer", "tokenizer", "", "text <-> token ids, trained from a corpus or read from a vocabulary"},
        {"model", "model", "", "the network: embeddings, blocks built around the experiment's attention, heads"},
        {"attention", "attention", "softmax", "one attention block (the variant an ablation swaps)"},
        {"task", "task", "", "data, batches, loss and evaluation metrics"},
        {"optimizer", "optimizer", "", "updates parameters from their gradients"},
        {"schedule", "schedule", "constant", "the learning rate at each step"},
    };
    return kinds;
}

const PluginKind* find_plugin_kind(const std::string& kind) {
    for (const PluginKind& row : plugin_kinds())
        if (row.name == kind) return &row;
    return nullptr;
}

}  // namespace lab
