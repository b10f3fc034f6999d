#include "lab/module.h"

#include <sstream>

#include "lab/error.h"
#include "lab/model.h"
#include "lab/ops.h"

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

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_modules() const {
    std::vector<std::pair<std::string, std::shared_ptr<Module>>> out;
    for (const auto& [name, child] : children_) {
        out.emplace_back(name, child);
        for (auto& [below, module] : child->named_modules()) out.emplace_back(name + "." + below, module);
    }
    return out;
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

LoadReport Module::load_matching(const TensorMap& state, const std::string& origin) {
    TensorMap own = state_dict();
    LoadReport report;
    for (const auto& [name, t] : own) {
        auto it = state.find(name);
        if (it == state.end()) {
            report.missing.push_back(name);
            continue;
        }
        if (it->second.shape() != t.shape() || it->second.dtype() != t.dtype())
            throw DataError(origin + ": tensor '" + name + "' is " + dtype_name(it->second.dtype()) + " " +
                            shape_str(it->second.shape()) + ", the model expects " + dtype_name(t.dtype()) + " " +
                            shape_str(t.shape()) + "; the weights belong to a model of another size or vocabulary");
        report.loaded.push_back(name);
    }
    for (const auto& [name, t] : state)
        if (!own.count(name)) report.unexpected.push_back(name);
    for (const auto& name : report.loaded) own.at(name).copy_(state.at(name));
    return report;
}

std::string LoadReport::summary(size_t max_names) const {
    std::ostringstream os;
    auto list = [&](const char* what, const std::vector<std::string>& names) {
        os << what << " " << names.size();
        for (size_t i = 0; i < names.size() && i < max_names; ++i) os << (i == 0 ? ": " : ", ") << names[i];
        if (names.size() > max_names) os << ", ... (" << names.size() - max_names << " more)";
    };
    os << "loaded " << loaded.size() << " tensors; ";
    list("missing", missing);
    os << "; ";
    list("unexpected", unexpected);
    return os.str();
}

Tensor Model::pool(const Tensor& hidden) { return ops::select(hidden, 1, 0); }

Tensor Model::forward_cached(const ModelInputs&, DecodeState&) {
    throw ConfigError("this model has no incremental decoding (KV cache); generate recomputes the context instead");
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
