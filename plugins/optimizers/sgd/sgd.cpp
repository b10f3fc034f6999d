// optimizer/sgd: stochastic gradient descent with momentum (and optional Nesterov), the update
// of torch.optim.SGD: buf = momentum * buf + (g + wd * w); w -= lr * buf. The update is the kernel
// operation sgd.step (sgd_kernels.h), run through the kernel registry.
#include "lab/error.h"
#include "lab/plugin.h"
#include "sgd_kernels.h"

namespace {

using namespace lab;

// Nesterov's look-ahead is a momentum step (the validate hook and the constructor).
void check_sgd_options(const Options& opts) {
    if (opts.get_bool("nesterov") && opts.get_float("momentum") <= 0)
        throw ConfigError("[optimizer] nesterov = true (" + opts.origin("nesterov") + ") needs momentum > 0, but " +
                          "momentum = " + opts.values().at("momentum").text + " (" + opts.origin("momentum") +
                          "); raise momentum or set nesterov = false");
}

class Sgd : public Optimizer {
public:
    Sgd(const Options& opts, NamedTensors params, Backend& be, const KernelRegistry& kernels)
        : kernels_(kernels),
          lr_(opts.get_float("lr")),
          momentum_(static_cast<float>(opts.get_float("momentum"))),
          weight_decay_(static_cast<float>(opts.get_float("weight_decay"))),
          nesterov_(opts.get_bool("nesterov")) {
        check_sgd_options(opts);
        params_ = std::move(params);
        for (auto& [name, p] : params_) buffers_.push_back(momentum_ > 0 ? Tensor::zeros(be, p.shape()) : Tensor());
    }

    void step(double lr) override {
        step_.params.clear();
        for (size_t i = 0; i < params_.size(); ++i) {
            const Tensor& p = params_[i].second;
            Tensor g = p.grad();
            if (!g.defined()) continue;
            step_.params.push_back({p, g, buffers_[i]});
        }
        if (!step_.params.empty()) {
            step_.lr = static_cast<float>(lr);
            step_.momentum = momentum_;
            step_.weight_decay = weight_decay_;
            step_.nesterov = nesterov_;
            kernels_.run(sgd::kSgdStep, step_.params.front().w.backend(), step_);
        }
        step_.params.clear();  // holds no gradient past the step
    }

    double base_lr() const override { return lr_; }

    std::map<std::string, Tensor> state() const override {
        std::map<std::string, Tensor> s;
        for (size_t i = 0; i < params_.size(); ++i)
            if (buffers_[i].defined()) s[params_[i].first + ".momentum_buffer"] = buffers_[i];
        return s;
    }

private:
    const KernelRegistry& kernels_;
    double lr_;
    float momentum_, weight_decay_;
    bool nesterov_;
    std::vector<Tensor> buffers_;
    sgd::SgdStep step_;  // its parameter list is reused each step
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::OptionSchema schema;
    schema.real("lr", 0.1, "learning rate (the schedule scales it)").range(0, 100);
    schema.real("momentum", 0.9, "momentum factor (0: plain SGD)").range(0, 0.999999);
    schema.real("weight_decay", 0.0, "L2 penalty added to the gradient").range(0, 10);
    schema.boolean("nesterov", false, "Nesterov momentum");
    lab::PluginDecl decl{"sgd", "1.0", "SGD with momentum (torch.optim.SGD)", schema};
    decl.validate = [](const lab::PlanContext& plan) { check_sgd_options(*plan.options); };
    // State: one momentum buffer per parameter, none for plain SGD.
    decl.estimate = [](const lab::PlanContext& plan) {
        lab::PluginEstimate e;
        e.state_floats_per_parameter = plan.options->get_float("momentum") > 0 ? 1 : 0;
        return e;
    };
    registry.add_optimizer(std::move(decl),
                           [](const lab::Options& opts, lab::NamedTensors params, lab::BuildContext& ctx) {
                               if (ctx.registry == nullptr)
                                   throw lab::PluginError(
                                       "optimizer/sgd: the build context has no registry to find the kernels of "
                                       "sgd.step in; hint: set BuildContext::registry as the trainer does");
                               return std::make_shared<Sgd>(opts, std::move(params), *ctx.backend,
                                                            ctx.registry->kernels());
                           });
    // The host kernel is sgd.step's reference and the fallback for every backend without its own.
    registry.kernels().add(lab::sgd::kSgdStep, lab::kHostKernel, nullptr, lab::sgd::sgd_step_host);
#ifdef LAB_SGD_CUDA
    registry.kernels().add(lab::sgd::kSgdStep, "cuda", nullptr, lab::sgd::sgd_step_cuda);
#endif
}
