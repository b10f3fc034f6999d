#include "lab/autograd.h"

#include <unordered_map>
#include <unordered_set>

#include "lab/backend.h"
#include "lab/error.h"

namespace lab {

namespace {
thread_local bool g_grad_enabled = true;

// dst += src (same shape); dst is contiguous and owned by the accumulation.
void accumulate_into(Tensor& dst, const Tensor& src) {
    dst.backend().binary(BinaryOp::add, dst, dst, src);
}
}  // namespace

bool grad_enabled() { return g_grad_enabled; }

NoGradGuard::NoGradGuard() : previous_(g_grad_enabled) { g_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { g_grad_enabled = previous_; }

bool any_requires_grad(std::initializer_list<const Tensor*> inputs) {
    if (!g_grad_enabled) return false;
    for (const Tensor* t : inputs)
        if (t && t->defined() && t->requires_grad()) return true;
    return false;
}

void record(const Tensor& out, const char* op, std::vector<Tensor> inputs, BackwardFn fn, uint32_t accumulate_into) {
    auto node = std::make_shared<Node>();
    node->op = op;
    node->accumulate_into = accumulate_into;
    for (Tensor& t : inputs)
        if (t.defined() && !t.requires_grad()) t = Tensor();
    node->inputs = std::move(inputs);
    node->backward = std::move(fn);
    Tensor o = out;
    o.set_requires_grad(true);
    o.set_grad_fn(std::move(node));
}

void backward(const Tensor& root, const Tensor& droot) {
    if (!root.requires_grad())
        throw Error("backward(): the tensor does not require grad (no parameter contributed to it, or it was "
                    "computed under NoGradGuard)");
    Tensor seed = droot;
    if (!seed.defined()) {
        if (root.numel() != 1)
            throw ShapeError("backward(): root of shape " + shape_str(root.shape()) +
                             " is not a scalar; pass its gradient explicitly");
        seed = Tensor::full(root.backend(), root.shape(), 1.0);
    }

    // Reverse topological order of the tensors that have a grad_fn (iterative DFS: graphs of deep
    // models would overflow the stack with recursion).
    std::vector<Tensor> order;
    std::unordered_set<TensorImpl*> visited;
    std::vector<std::pair<Tensor, size_t>> stack;
    if (root.grad_fn()) stack.emplace_back(root, 0);
    visited.insert(root.id());
    while (!stack.empty()) {
        auto& [t, next] = stack.back();
        const auto& inputs = t.grad_fn()->inputs;
        if (next < inputs.size()) {
            const Tensor& in = inputs[next++];
            if (in.defined() && in.grad_fn() && visited.insert(in.id()).second) stack.emplace_back(in, 0);
        } else {
            order.push_back(t);
            stack.pop_back();
        }
    }

    std::unordered_map<TensorImpl*, Tensor> grads;
    auto add_grad = [&](const Tensor& target, const Tensor& g) {
        if (!target.grad_fn()) {  // a leaf: accumulate into .grad
            Tensor existing = target.grad();
            if (!existing.defined()) {
                Tensor copy = Tensor::empty(g.backend(), target.shape(), DType::f32);
                copy.copy_(g);
                const_cast<Tensor&>(target).set_grad(copy);
            } else {
                accumulate_into(existing, g);
            }
            return;
        }
        auto it = grads.find(target.id());
        if (it == grads.end()) {
            grads.emplace(target.id(), g);
        } else {
            // The first gradient may alias a saved tensor; accumulate into a fresh buffer.
            Tensor sum = Tensor::empty(g.backend(), target.shape(), DType::f32);
            sum.backend().binary(BinaryOp::add, sum, it->second, g);
            it->second = sum;
        }
    };

    if (!root.grad_fn()) {
        add_grad(root, seed);
        return;
    }
    grads.emplace(root.id(), seed);
    NoGradGuard no_grad;
    for (size_t i = order.size(); i-- > 0;) {
        Tensor t = order[i];
        auto it = grads.find(t.id());
        if (it == grads.end()) continue;  // contributed nothing to the root
        Tensor dout = it->second;
        grads.erase(it);
        std::shared_ptr<Node> node = t.grad_fn();
        std::vector<Tensor> dinputs(node->inputs.size());
        std::vector<TensorImpl*> handed(node->inputs.size(), nullptr);
        for (size_t k = 0; k < node->inputs.size() && k < 32; ++k) {
            const Tensor& in = node->inputs[k];
            if (!(node->accumulate_into >> k & 1u) || !in.defined() || !in.grad_fn()) continue;
            auto held = grads.find(in.id());
            if (held == grads.end()) continue;
            bool repeated = false;  // an input given twice gets two separate gradients
            for (size_t j = 0; j < node->inputs.size(); ++j)
                repeated |= j != k && node->inputs[j].defined() && node->inputs[j].id() == in.id();
            Tensor& g = held->second;
            if (repeated || g.dtype() != DType::f32 || !g.is_contiguous() || g.shape() != in.shape() ||
                !g.is_sole_reference())
                continue;
            dinputs[k] = std::move(g);  // the backward adds into it; it returns below
            grads.erase(held);
            handed[k] = dinputs[k].id();
        }
        node->backward(dout, dinputs);
        for (size_t k = 0; k < node->inputs.size(); ++k) {
            const Tensor& in = node->inputs[k];
            if (handed[k]) {
                if (dinputs[k].id() != handed[k])
                    throw Error(std::string("backward of ") + node->op +
                                ": an accumulated gradient was replaced instead of added into");
                grads.emplace(in.id(), std::move(dinputs[k]));
                continue;
            }
            if (!in.defined() || !dinputs[k].defined()) continue;
            if (dinputs[k].shape() != in.shape())
                throw ShapeError(std::string("backward of ") + node->op + ": gradient shape " +
                                 shape_str(dinputs[k].shape()) + " differs from input shape " +
                                 shape_str(in.shape()));
            add_grad(in, dinputs[k]);
        }
        // Free the graph as it is consumed.
        node->inputs.clear();
        node->backward = nullptr;
        t.set_grad_fn(nullptr);
    }
}

}  // namespace lab
