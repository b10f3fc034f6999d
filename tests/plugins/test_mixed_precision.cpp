// [experiment] precision = bf16: matmuls round their f32 operands to bf16 and accumulate in f32,
// on the reference and the oneDNN backends alike; everything else stays f32. A GPT trained for
// 300 steps in bf16 ends within 0.03 of the fp32 validation loss.
#include <catch2/catch.hpp>
#include <cmath>

#include "lab/config.h"
#include "lab/error.h"
#include "lab/registry.h"
#include "lab/task.h"
#include "lab/trainer.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;

std::shared_ptr<lab::Backend> make(lab::Registry& registry, const std::string& name) {
    return registry.factory<lab::BackendFactory>("backend", name)(lab::plugin_options(registry, "backend", name, {}));
}

float round_bf16(float x) { return lab::bf16_to_f32(lab::f32_to_bf16(x)); }

}  // namespace

TEST_CASE("precision bf16: matmul multiplies the bf16 roundings of f32 operands, in f32", "[mixed][plugins]") {
    lab::Registry registry;
    registry.load_directory(LAB_PLUGIN_DIR);
    // Values with more mantissa than bf16's 8 bits: 1 + 2^-9 rounds to 1, 3 + 2^-6 to 3, ...
    const int64_t M = 3, K = 300, N = 2;
    std::vector<float> a(static_cast<size_t>(M * K)), b(static_cast<size_t>(K * N));
    for (size_t i = 0; i < a.size(); ++i) a[i] = 1.0f + static_cast<float>(i % 7) * 0.3f + 1.0f / 512.0f;
    for (size_t i = 0; i < b.size(); ++i) b[i] = 0.5f - static_cast<float>(i % 5) * 0.11f + 1.0f / 1024.0f;
    std::vector<double> want(static_cast<size_t>(M * N), 0.0), exact(want.size(), 0.0);
    for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n)
            for (int64_t k = 0; k < K; ++k) {
                const float x = a[static_cast<size_t>(m * K + k)], y = b[static_cast<size_t>(k * N + n)];
                want[static_cast<size_t>(m * N + n)] += static_cast<double>(round_bf16(x)) * round_bf16(y);
                exact[static_cast<size_t>(m * N + n)] += static_cast<double>(x) * y;
            }
    for (const char* name : {"reference", "onednn"}) {
        INFO("backend " << name);
        auto backend = make(registry, name);
        CHECK(backend->matmul_inputs() == lab::DType::f32);
        lab::Tensor ta = lab::Tensor::from_floats(*backend, {M, K}, a);
        // b as a transposed view, the layout a linear layer's weight has.
        lab::Tensor tb_storage = lab::Tensor::empty(*backend, {N, K});
        lab::Tensor tb = tb_storage.view({K, N}, {1, K}, 0);
        tb.copy_(lab::Tensor::from_floats(*backend, {K, N}, b));
        lab::Tensor c = lab::Tensor::zeros(*backend, {M, N});
        backend->set_matmul_inputs(lab::DType::bf16);
        backend->matmul(c, ta, tb, nullptr, 1.0f, false);
        std::vector<float> got = c.to_floats();
        for (size_t i = 0; i < got.size(); ++i) {
            CHECK(std::abs(got[i] - want[i]) < 1e-5 * std::abs(want[i]));
            CHECK(std::abs(got[i] - exact[i]) > 1e-4 * std::abs(exact[i]));  // the rounding happened
        }
        backend->set_matmul_inputs(lab::DType::f32);
        backend->matmul(c, ta, tb, nullptr, 1.0f, false);
        got = c.to_floats();
        for (size_t i = 0; i < got.size(); ++i) CHECK(std::abs(got[i] - exact[i]) < 1e-5 * std::abs(exact[i]));
        CHECK_THROWS_AS(backend->set_matmul_inputs(lab::DType::f16), lab::ConfigError);
    }
}

TEST_CASE("precision bf16: a GPT ends within 0.03 of fp32's validation loss", "[mixed][plugins][serial]") {
    lab::Registry registry;
    registry.load_directory(LAB_PLUGIN_DIR);
    lab::ConfigEnv env;
    env.data_dir = lab_test::shakespeare_data_dir();
    auto val_loss = [&](const std::string& precision) {
        lab::RawConfig raw = lab::load_config(
            fs::path(LAB_SOURCE_DIR) / "experiments" / "shakespeare_char.ini",
            {"experiment.precision=" + precision, "task.val_tokens=16384", "train.steps=300"}, env);
        lab::RunSpec spec = lab::resolve_run(raw, registry);
        lab::RunEnvironment run_env;
        run_env.data_dir = env.data_dir;
        run_env.quiet = true;
        lab::TrainingStack stack = lab::build_training_stack(spec, registry, run_env);
        CHECK(stack.backend->matmul_inputs() == (precision == "bf16" ? lab::DType::bf16 : lab::DType::f32));
        for (int64_t step = 1; step <= 300; ++step) lab::train_step(stack, step);
        return stack.task->evaluate(*stack.model).metrics.at("val/loss");
    };
    const double fp32 = val_loss("fp32"), bf16 = val_loss("bf16");
    std::printf("[mixed] shakespeare_char, 300 steps: val/loss fp32 %.4f, bf16 %.4f (difference %+.4f)\n", fp32, bf16,
                bf16 - fp32);
    CHECK(fp32 < 2.6);  // it learned something (the unigram entropy is about 3.3 nats)
    CHECK(std::abs(bf16 - fp32) < 0.03);
    CHECK(bf16 != fp32);  // the precision took effect
}
