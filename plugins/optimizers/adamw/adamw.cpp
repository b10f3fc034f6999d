// optimizer/adamw: Adam with decoupled weight decay (Loshchilov & Hutter 2019), the update of
// torch.optim.AdamW. As in GPT-2/nanoGPT, weight decay applies to matrices (dim >= 2: linear
// weights, embeddings) and not to biases or LayerNorm gains, unless decay_1d is set. The update
// is the kernel operation adamw.step (adamw_kernels.h), run through the kernel registry: the host
// kernel on CPU backends, the cuda backend's own on a GPU.
#include "adamw_kernels.h"
#include "lab/error.h"
#include "lab/plugin.h"

namespace {

using namespace lab;

class AdamW : public Optimizer {
public:
    AdamW(const Options& opts, NamedTensors params, Backend& be, const KernelRegistry& kernels)
        : kernels_(kernels),
          lr_(opts.get_float("lr")),
          beta1_(static_cast<float>(opts.get_float("beta1"))),
          beta2_(static_cast<float>(opts.get_float("beta2"))),
          eps_(static_cast<float>(opts.get_float("eps"))),
          weight_decay_(static_cast<float>(opts.get_float("weight_decay"))),
          decay_1d_(opts.get_bool("decay_1d")) {
        params_ = std::move(params);
        for (auto& [name, p] : params_) {
            m_.push_back(Tensor::zeros(be, p.shape()));
            v_.push_back(Tensor::zeros(be, p.shape()));
        }
    }

    void step(double lr) override {
        ++t_;
        step_.params.clear();
        for (size_t i = 0; i < params_.size(); ++i) {
            const Tensor& p = params_[i].second;
            Tensor g = p.grad();
            if (!g.defined()) continue;  // a parameter that did not contribute to the loss
            const float wd = (p.dim() >= 2 || decay_1d_) ? weight_decay_ : 0.0f;
            step_.params.push_back({p, g, m_[i], v_[i], wd});
        }
        if (!step_.params.empty()) {
            step_.lr = static_cast<float>(lr);
            step_.beta1 = beta1_;
            step_.beta2 = beta2_;
            step_.eps = eps_;
            step_.t = t_;
            kernels_.run(adamw::kAdamWStep, step_.params.front().w.backend(), step_);
        }
        step_.params.clear();  // holds no gradient past the step
    }

    double base_lr() const override { return lr_; }

    std::map<std::string, Tensor> state() const override {
        std::map<std::string, Tensor> s;
        for (size_t i = 0; i < params_.size(); ++i) {
            s[params_[i].first + ".exp_avg"] = m_[i];
            s[params_[i].first + ".exp_avg_sq"] = v_[i];
        }
        if (!params_.empty()) s["step"] = Tensor::from_ints(params_[0].second.backend(), {1}, {t_});
        return s;
    }

    void load_state(const std::map<std::string, Tensor>& saved) override {
        Optimizer::load_state(saved);  // moments (and a throwaway copy of the step count)
        auto it = saved.find("step");
        if (it != saved.end()) t_ = it->second.to_ints().at(0);
    }

private:
    const KernelRegistry& kernels_;
    double lr_;
    float beta1_, beta2_, eps_, weight_decay_;
    bool decay_1d_;
    int64_t t_ = 0;
    std::vector<Tensor> m_, v_;
    adamw::AdamWStep step_;  // its parameter list is reused each step
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::OptionSchema schema;
    schema.real("lr", 1e-3, "peak learning rate (the schedule scales it)").range(0, 10);
    schema.real("beta1", 0.9, "decay of the first moment").range(0, 0.999999);
    schema.real("beta2", 0.999, "decay of the second moment").range(0, 0.999999);
    schema.real("eps", 1e-8, "added to the root of the second moment").range(0, 1);
    schema.real("weight_decay", 0.01, "decoupled weight decay").range(0, 10);
    schema.boolean("decay_1d", false, "also decay 1-D parameters (biases, LayerNorm gains)");
    lab::PluginDecl decl{"adamw", "1.0", "Adam with decoupled weight decay (torch.optim.AdamW)", schema};
    // The schema's ranges are all its rules (beta1, beta2 < 1). State: the two moments, m and v.
    decl.estimate = [](const lab::PlanContext&) {
        lab::PluginEstimate e;
        e.state_floats_per_parameter = 2;
        return e;
    };
    registry.add_optimizer(std::move(decl),
                           [](const lab::Options& opts, lab::NamedTensors params, lab::BuildContext& ctx) {
                               if (ctx.registry == nullptr)
                                   throw lab::PluginError(
                                       "optimizer/adamw: the build context has no registry to find the kernels of "
                                       "adamw.step in; hint: set BuildContext::registry as the trainer does");
                               return std::make_shared<AdamW>(opts, std::move(params), *ctx.backend,
                                                              ctx.registry->kernels());
                           });
    // The host kernel is adamw.step's reference and the fallback for every backend without its own.
    registry.kernels().add(lab::adamw::kAdamWStep, lab::kHostKernel, nullptr, lab::adamw::adamw_step_host);
#ifdef LAB_ADAMW_CUDA
    registry.kernels().add(lab::adamw::kAdamWStep, "cuda", nullptr, lab::adamw::adamw_step_cuda);
#endif
}
