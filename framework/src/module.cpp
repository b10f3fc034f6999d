#include "lab/module.h"

#include "lab/error.h"

namespace lab {

Tensor Module::add_parameter(const std::string& name, Tensor t) {
    t.set_requires_grad(true);
    params_.emplace_back(name, t);
    return t;
}

Tensor Module::add_buffer(const std::string& name, Tensor t) {
    buffers_.emplace_back(name, t);
    return t;
}

void Module::collect(const std::string& prefix, bool with_buffers,
                     std::vector<std::pair<std::string, Tensor>>& out) const {
    for (const auto& [name, t] : params_) out.emplace_back(prefix + name, t);
    if (with_buffers)
        for (const auto& [name, t] : buffers_) out.emplace_back(prefix + name, t);
    for (const auto& [name, child] : children_) child->collect(prefix + name + ".", with_buffers, out);
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
    std::vector<std::pair<std::string, Tensor>> out;
    collect("", false, out);
    // A tied parameter (the same tensor under two names) is listed once, under its first name.
    std::vector<std::pair<std::string, Tensor>> unique;
    for (auto& [name, t] : out) {
        bool seen = false;
        for (auto& [n, u] : unique) seen = seen || u.id() == t.id();
        if (!seen) unique.emplace_back(name, t);
    }
    return unique;
}

std::vector<Tensor> Module::parameters() const {
    std::vector<Tensor> out;
    for (auto& [name, t] : named_parameters()) out.push_back(t);
    return out;
}

std::map<std::string, Tensor> Module::state_dict() const {
    std::vector<std::pair<std::string, Tensor>> all;
    collect("", true, all);
    return {all.begin(), all.end()};
}

void Module::load_state_dict(const std::map<std::string, Tensor>& state) {
    for (auto& [name, t] : state_dict()) {
        auto it = state.find(name);
        if (it == state.end()) throw DataError("load_state_dict: tensor '" + name + "' is missing from the state");
        if (it->second.shape() != t.shape())
            throw DataError("load_state_dict: tensor '" + name + "' has shape " + shape_str(it->second.shape()) +
                            ", the module expects " + shape_str(t.shape()));
        t.copy_(it->second);
    }
}

int64_t Module::num_parameters() const {
    int64_t n = 0;
    for (auto& [name, t] : named_parameters()) n += t.numel();
    return n;
}

void Module::train(bool on) {
    training_ = on;
    for (auto& [name, child] : children_) child->train(on);
}

}  // namespace lab
