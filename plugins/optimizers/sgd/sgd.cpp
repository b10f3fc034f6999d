// optimizer/sgd: stochastic gradient descent with momentum (and optional Nesterov), the update
// of torch.optim.SGD: buf = momentum * buf + (g + wd * w); w -= lr * buf.
#include "lab/error.h"
#include "lab/plugin.h"

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
    Sgd(const Options& opts, NamedTensors params, Backend& be)
        : lr_(opts.get_float("lr")),
          momentum_(static_cast<float>(opts.get_float("momentum"))),
          weight_decay_(static_cast<float>(opts.get_float("weight_decay"))),
          nesterov_(opts.get_bool("nesterov")) {
        check_sgd_options(opts);
        params_ = std::move(params);
        for (auto& [name, p] : params_) buffers_.push_back(momentum_ > 0 ? Tensor::zeros(be, p.shape()) : Tensor());
    }

    void step(double lr) override {
        for (size_t i = 0; i < params_.size(); ++i) {
            const Tensor& p = params_[i].second;
            Tensor g = p.grad();
            if (!g.defined()) continue;
            p.backend().sgd_update(p, g, buffers_[i], static_cast<float>(lr), momentum_, weight_decay_, nesterov_);
        }
    }

    double base_lr() const override { return lr_; }

    std::map<std::string, Tensor> state() const override {
        std::map<std::string, Tensor> s;
        for (size_t i = 0; i < params_.size(); ++i)
            if (buffers_[i].defined()) s[params_[i].first + ".momentum_buffer"] = buffers_[i];
        return s;
    }

private:
    double lr_;
    float momentum_, weight_decay_;
    bool nesterov_;
    std::vector<Tensor> buffers_;
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
                               return std::make_shared<Sgd>(opts, std::move(params), *ctx.backend);
                           });
}
