// Module: named parameters and submodules, train/eval mode, state_dict. Names are dotted paths
// ("blocks.0.attn.qkv.weight"); models choose names that match the Hugging Face layout where
// one exists, so checkpoints map one to one.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "lab/tensor.h"

namespace lab {

using TensorMap = std::map<std::string, Tensor>;

// What a partial load (Module::load_matching) did, by state_dict name.
struct LoadReport {
    std::vector<std::string> loaded;      // copied in
    std::vector<std::string> missing;     // the module has them, the source does not (left as they were)
    std::vector<std::string> unexpected;  // the source has them, the module does not (ignored)
    // "loaded 98 tensors; missing 2: pooler.dense.weight, pooler.dense.bias; unexpected 0"
    std::string summary(size_t max_names = 8) const;
};

class Module {
public:
    virtual ~Module() = default;

    std::vector<std::pair<std::string, Tensor>> named_parameters() const;
    // Every submodule below this one with its dotted path ("h.3.attn"), each parent before its
    // children, in the order they were added: how a tool finds the modules of one kind in a model
    // (dynamic_cast), e.g. the causality probe naming the first attention block that leaks.
    std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_modules() const;
    std::vector<Tensor> parameters() const;
    std::map<std::string, Tensor> state_dict() const;  // parameters and buffers
    // Copies values in. Throws DataError naming the first mismatched or missing tensor.
    void load_state_dict(const std::map<std::string, Tensor>& state);
    // Copies the tensors whose names match and reports the rest (fine-tuning from a pretrained
    // backbone). A matching name with another shape or dtype throws DataError naming the tensor,
    // `origin` (the file) and both shapes, before anything is copied.
    LoadReport load_matching(const TensorMap& state, const std::string& origin);

    // The state in the architecture's published layout (Hugging Face names and shapes), which is
    // what model.safetensors holds. Default: state_dict(). A module whose parameters are packed
    // differently (BERT's separate query/key/value as one c_attn) converts here.
    virtual TensorMap export_state() const { return state_dict(); }
    // The inverse: published names and shapes -> state_dict names. Tensors it does not recognise
    // keep their names (a load then reports them as unexpected). Default: identity.
    virtual TensorMap import_state(const TensorMap& published) const { return published; }
    int64_t num_parameters() const;

    virtual void train(bool on = true);
    void eval() { train(false); }
    bool training() const { return training_; }

protected:
    Tensor add_parameter(const std::string& name, Tensor t);  // sets requires_grad
    Tensor add_buffer(const std::string& name, Tensor t);
    template <class M>
    std::shared_ptr<M> add_module(const std::string& name, std::shared_ptr<M> m) {
        children_.emplace_back(name, m);
        return m;
    }

private:
    void collect(const std::string& prefix, bool with_buffers,
                 std::vector<std::pair<std::string, Tensor>>& out) const;
    std::vector<std::pair<std::string, Tensor>> params_, buffers_;
    std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
    bool training_ = true;
};

}  // namespace lab
