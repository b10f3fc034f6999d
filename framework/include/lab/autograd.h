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
// A slot that arrives defined (see Node::accumulate_into) holds the gradient gathered so far for
// that input: the backward adds its contribution into that tensor, in place, and leaves it there.
using BackwardFn = std::function<void(const Tensor& dout, std::vector<Tensor>& dinputs)>;

struct Node {
    const char* op = "";
    std::vector<Tensor> inputs;  // undefined where that input needs no gradient
    BackwardFn backward;
    // Bit k set: the backward can add input k's gradient into an existing one. When an earlier
    // backward already gave input k a gradient that nothing else references (f32, contiguous, the
    // input's shape), it is handed over in dinputs[k] and the separate sum of the two is saved
    // (e.g. a linear's input gradient written by a product with accumulate, where q, k and v are
    // three linears of one input).
    uint32_t accumulate_into = 0;
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

// Attach a node to `out`; inputs that do not require grad are stored undefined. accumulate_into:
// Node::accumulate_into.
void record(const Tensor& out, const char* op, std::vector<Tensor> inputs, BackwardFn backward,
            uint32_t accumulate_into = 0);

// Accumulate gradients of `root` (a one-element tensor unless `droot` is given).
void backward(const Tensor& root, const Tensor& droot = Tensor());

}  // namespace lab
