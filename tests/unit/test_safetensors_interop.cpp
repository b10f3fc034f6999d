// safetensors interop with the Python ecosystem: labrun reads a file PyTorch wrote (committed
// fixture, tools/fixtures/make_safetensors_fixture.py), and the safetensors package (numpy, and
// PyTorch when installed) reads what labrun writes and writes what labrun reads. The Python half
// needs `safetensors` and `numpy` (tools/setup.sh --test installs them); without them it is
// skipped with that message.
#include <catch2/catch.hpp>
#include <cmath>
#include <nlohmann/json.hpp>

#include "lab/host_backend.h"
#include "lab/ops.h"
#include "lab/safetensors.h"
#include "test_support.h"

using namespace lab_test;

namespace {

const std::filesystem::path kSource = LAB_SOURCE_DIR;

// The interpreter tools/setup.sh prepared: the project's .venv when there is one.
std::string python() {
    std::filesystem::path venv = kSource / ".venv" / "bin" / "python3";
    return std::filesystem::exists(venv) ? venv.string() : "python3";
}

Outcome run_python(const std::vector<std::string>& args) {
    std::vector<std::string> all = {python(), (kSource / "tools" / "fixtures" / "safetensors_check.py").string()};
    all.insert(all.end(), args.begin(), args.end());
    return run_program("/usr/bin/env", all);
}

}  // namespace

TEST_CASE("safetensors: a file written by PyTorch loads with every dtype and value", "[safetensors][interop]") {
    lab::HostBackend backend;
    lab::Metadata meta;
    lab::TensorMap t = lab::load_safetensors(kSource / "tests/fixtures/safetensors/torch_written.safetensors", backend, &meta);
    REQUIRE(t.size() == 7);
    CHECK(meta.at("format") == "pt");
    CHECK(meta.at("writer").rfind("torch ", 0) == 0);

    const lab::Tensor& words = t.at("embeddings.word_embeddings.weight");
    CHECK(words.dtype() == lab::DType::f32);
    CHECK(words.shape() == lab::Shape{6, 4});
    std::vector<float> w = words.to_floats();
    for (size_t i = 0; i < w.size(); ++i) CHECK(w[i] == static_cast<float>(i) * 0.5f - 3.0f);
    CHECK(t.at("encoder.layer.0.attention.self.query.bias").to_floats() == std::vector<float>{1.5f, -2.25f, 0.0f, 65504.0f});

    CHECK(t.at("bf16").dtype() == lab::DType::bf16);
    std::vector<float> bf = t.at("bf16").to_floats();
    CHECK(bf[0] == 1.0f);
    CHECK(bf[1] == -2.5f);
    CHECK(bf[2] == 0.15625f);
    CHECK(std::abs(bf[3] - 3.0e38f) / 3.0e38f < 1e-2f);  // bf16 keeps 8 bits of mantissa

    CHECK(t.at("f16").dtype() == lab::DType::f16);
    CHECK(t.at("f16").shape() == lab::Shape{2, 2});
    CHECK(t.at("f16").to_floats() == std::vector<float>{0.5f, -1.0f, 2.0f, 1024.0f});
    CHECK(t.at("i64").dtype() == lab::DType::i64);
    CHECK(t.at("i64").to_ints() == std::vector<int64_t>{-3, -2, -1, 0, 1, 2});
    CHECK(t.at("i32").to_ints() == std::vector<int64_t>{7, -8, 2147483647});
    CHECK(t.at("u8").to_ints() == std::vector<int64_t>{0, 1, 255});
}

TEST_CASE("safetensors: the Python safetensors package reads labrun's files and writes ones labrun reads",
          "[safetensors][interop]") {
    TempDir dir;
    lab::HostBackend backend;
    std::filesystem::path written = dir.path / "labrun.safetensors";
    std::vector<float> values(30);
    for (size_t i = 0; i < values.size(); ++i) values[i] = std::sin(static_cast<float>(i)) * 3.0f;
    lab::Tensor full = lab::Tensor::from_host(backend, {5, 6}, lab::DType::f32, values.data());
    lab::TensorMap tensors = {
        {"encoder.layer.0.attention.self.query.weight", full},
        // A strided view (a transpose) is written contiguous.
        {"encoder.layer.0.attention.self.key.weight", lab::ops::transpose(full, 0, 1)},
        {"ids", lab::Tensor::from_ints(backend, {3}, {5, -6, 1LL << 40}, lab::DType::i64)},
    };
    lab::save_safetensors(written, tensors, {{"format", "pt"}});

    Outcome read = run_python({"read", written.string()});
    if (read.exit_code == 3) {
        WARN("skipped: python has no safetensors/numpy (" << read.err << "); tools/setup.sh --test installs them");
        return;
    }
    INFO(read);
    REQUIRE(read.exit_code == 0);
    nlohmann::json j = nlohmann::json::parse(read.out);
    double sum = 0;
    for (float v : values) sum += static_cast<double>(v);
    for (const char* name : {"encoder.layer.0.attention.self.query.weight", "encoder.layer.0.attention.self.key.weight"}) {
        INFO(name);
        CHECK(j[name][0] == "float32");
        CHECK(std::abs(j[name][2].get<double>() - sum) < 1e-4);
        if (j[name].size() > 4) CHECK(std::abs(j[name][4].get<double>() - sum) < 1e-4);  // PyTorch's reading
    }
    CHECK(j["encoder.layer.0.attention.self.query.weight"][1] == nlohmann::json::array({5, 6}));
    CHECK(j["encoder.layer.0.attention.self.key.weight"][1] == nlohmann::json::array({6, 5}));
    CHECK(j["encoder.layer.0.attention.self.key.weight"][3].get<double>() == static_cast<double>(values[0]));
    CHECK(j["ids"][0] == "int64");
    CHECK(j["ids"][2].get<double>() == static_cast<double>(5 - 6 + (1LL << 40)));

    std::filesystem::path from_python = dir.path / "numpy.safetensors";
    Outcome wrote = run_python({"write", from_python.string()});
    INFO(wrote);
    REQUIRE(wrote.exit_code == 0);
    lab::Metadata meta;
    lab::TensorMap loaded = lab::load_safetensors(from_python, backend, &meta);
    CHECK(meta.at("writer") == "numpy");
    std::vector<float> a = loaded.at("a").to_floats();
    REQUIRE(a.size() == 12);
    for (size_t i = 0; i < a.size(); ++i) CHECK(a[i] == (static_cast<float>(i) - 5.5f) / 4.0f);
    CHECK(loaded.at("b").to_ints() == std::vector<int64_t>{1, -2, 3, 1LL << 40});
}
