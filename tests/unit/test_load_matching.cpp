// Partial loads for fine-tuning (Module::load_matching) and init_from's weight files
// (lab::load_model_weights): what is loaded, missing and unexpected, and the refusals.
#include <catch2/catch.hpp>

#include "lab/checkpoint.h"
#include "lab/error.h"
#include "lab/host_backend.h"
#include "lab/safetensors.h"
#include "test_support.h"

using namespace lab_test;
using Catch::Matchers::Contains;

namespace {

class TwoLayers : public lab::Module {
public:
    TwoLayers(lab::Backend& be, int64_t width) {
        add_parameter("encoder.weight", lab::Tensor::full(be, {width, 4}, 1.0));
        add_parameter("encoder.bias", lab::Tensor::zeros(be, {width}));
        add_parameter("head.weight", lab::Tensor::full(be, {2, width}, 7.0));
    }
};

}  // namespace

TEST_CASE("load_matching copies what matches and reports missing and unexpected tensors", "[checkpoint]") {
    lab::HostBackend be;
    TwoLayers model(be, 3);
    lab::TensorMap state = {
        {"encoder.weight", lab::Tensor::full(be, {3, 4}, 2.5)},
        {"encoder.bias", lab::Tensor::full(be, {3}, -1.0)},
        {"cls.predictions.bias", lab::Tensor::zeros(be, {10})},
    };
    lab::LoadReport report = model.load_matching(state, "weights.safetensors");
    CHECK(report.loaded == std::vector<std::string>{"encoder.bias", "encoder.weight"});
    CHECK(report.missing == std::vector<std::string>{"head.weight"});
    CHECK(report.unexpected == std::vector<std::string>{"cls.predictions.bias"});
    CHECK(report.summary() ==
          "loaded 2 tensors; missing 1: head.weight; unexpected 1: cls.predictions.bias");
    auto now = model.state_dict();
    CHECK(now.at("encoder.weight").to_floats() == std::vector<float>(12, 2.5f));
    CHECK(now.at("encoder.bias").to_floats() == std::vector<float>(3, -1.0f));
    CHECK(now.at("head.weight").to_floats() == std::vector<float>(6, 7.0f));  // left as it was
}

TEST_CASE("load_matching refuses a tensor of another shape or dtype before copying anything", "[checkpoint]") {
    lab::HostBackend be;
    TwoLayers model(be, 3);
    lab::TensorMap wrong_shape = {
        {"encoder.bias", lab::Tensor::full(be, {3}, -1.0)},
        {"encoder.weight", lab::Tensor::full(be, {5, 4}, 2.5)},
    };
    CHECK_THROWS_WITH(model.load_matching(wrong_shape, "big.safetensors"),
                      Contains("big.safetensors: tensor 'encoder.weight' is f32 [5, 4], the model expects f32 [3, 4]"));
    CHECK(model.state_dict().at("encoder.bias").to_floats() == std::vector<float>(3, 0.0f));  // nothing copied
    lab::TensorMap wrong_dtype = {{"encoder.bias", lab::Tensor::zeros(be, {3}, lab::DType::bf16)}};
    CHECK_THROWS_WITH(model.load_matching(wrong_dtype, "half.safetensors"),
                      Contains("'encoder.bias' is bf16 [3], the model expects f32 [3]"));
}

TEST_CASE("load_model_weights accepts files, checkpoint and model folders, and explains the rest", "[checkpoint]") {
    TempDir dir;
    lab::HostBackend be;
    lab::TensorMap weights = {{"encoder.bias", lab::Tensor::full(be, {3}, 4.0)}};
    for (const char* sub : {"hf", "run/checkpoint-20"}) std::filesystem::create_directories(dir.path / sub);
    lab::save_safetensors(dir.path / "hf" / "model.safetensors", weights);
    std::filesystem::path resolved;
    CHECK(lab::load_model_weights(dir.path / "hf" / "model.safetensors", be, &resolved).at("encoder.bias").to_floats() ==
          std::vector<float>(3, 4.0f));
    CHECK(resolved == dir.path / "hf" / "model.safetensors");
    CHECK(lab::load_model_weights(dir.path / "hf", be, &resolved).size() == 1);
    CHECK(resolved == dir.path / "hf" / "model.safetensors");

    // A run folder: its latest checkpoint.
    lab::save_safetensors(dir.path / "run" / "checkpoint-20" / "model.safetensors", weights);
    lab::save_safetensors(dir.path / "run" / "checkpoint-20" / "trainer.safetensors", {});
    dir.write("run/latest", "checkpoint-20\n");
    lab::load_model_weights(dir.path / "run", be, &resolved);
    CHECK(resolved == dir.path / "run" / "checkpoint-20" / "model.safetensors");

    CHECK_THROWS_WITH(lab::load_model_weights(dir.path / "nothing", be),
                      Contains("'" + (dir.path / "nothing").string() + "' does not exist"));
    dir.write("torch/pytorch_model.bin", "not really");
    CHECK_THROWS_WITH(lab::load_model_weights(dir.path / "torch", be),
                      Contains("python3 tools/hf_to_safetensors.py " + (dir.path / "torch").string()));
    std::filesystem::create_directories(dir.path / "empty");
    CHECK_THROWS_WITH(lab::load_model_weights(dir.path / "empty", be),
                      Contains("holds neither model.safetensors nor a checkpoint"));
}
