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

class Module {
public:
    virtual ~Module() = default;

    std::vector<std::pair<std::string, Tensor>> named_parameters() const;
    std::vector<Tensor> parameters() const;
    std::map<std::string, Tensor> state_dict() const;  // parameters and buffers
    // Copies values in. Throws DataError naming the first mismatched or missing tensor.
    void load_state_dict(const std::map<std::string, Tensor>& state);
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
