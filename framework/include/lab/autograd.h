// Reverse-mode autograd. Ops record a Node on their output when grad mode is on and an input
// requires grad; backward() walks the nodes in reverse topological order and accumulates input
// gradients. Leaves (parameters) accumulate into Tensor::grad(). Each node saves only what its
// backward needs; saved outputs are detached views, so the graph holds no cycles. The graph is
// released as backward() consumes it.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "lab/tensor.h"

namespace lab {

// dinputs has one slot per entry of Node::inputs; a slot left undefined contributes nothing.
using BackwardFn = std::function<void(const Tensor& dout, std::vector<Tensor>& dinputs)>;

struct Node {
    const char* op = "";
    std::vector<Tensor> inputs;  // undefined where that input needs no gradient
    BackwardFn backward;
};

bool grad_enabled();

// Disables recording in a scope (evaluation, optimizer updates, initialisation).
class NoGradGuard {
public:
    NoGradGuard();
    ~NoGradGuard();
    NoGradGuard(const NoGradGuard&) = delete;
    NoGradGuard& operator=(const NoGradGuard&) = delete;

private:
    bool previous_;
};

// True when recording is on and any of the tensors requires grad.
bool any_requires_grad(std::initializer_list<const Tensor*> inputs);

// Attach a node to `out`; inputs that do not require grad are stored undefined.
void record(const Tensor& out, const char* op, std::vector<Tensor> inputs, BackwardFn backward);

// Accumulate gradients of `root` (a one-element tensor unless `droot` is given).
void backward(const Tensor& root, const Tensor& droot = Tensor());

}  // namespace lab
