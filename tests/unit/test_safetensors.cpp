// safetensors files: round trips of every dtype with metadata, and clear errors for damaged files.
#include <catch2/catch.hpp>
#include <cstring>
#include <fstream>
#include <unistd.h>

#include "lab/error.h"
#include "lab/host_backend.h"
#include "lab/checkpoint.h"
#include "lab/safetensors.h"
#include "test_support.h"

using namespace lab_test;
using Catch::Matchers::Contains;

namespace {

// A safetensors file with a hand-written header and `data_bytes` zero bytes of data.
std::filesystem::path write_raw(const TempDir& dir, const std::string& header, size_t data_bytes,
                                uint64_t claimed_length = 0) {
    std::string bytes(8, '\0');
    uint64_t n = claimed_length ? claimed_length : header.size();
    for (int i = 0; i < 8; ++i) bytes[static_cast<size_t>(i)] = static_cast<char>(n >> (8 * i));
    bytes += header;
    bytes.append(data_bytes, '\0');
    return dir.write("raw.safetensors", bytes);
}

std::string load_error(const std::filesystem::path& file) {
    lab::HostBackend backend;
    try {
        lab::load_safetensors(file, backend);
    } catch (const lab::DataError& e) {
        return e.what();
    }
    return "(no error)";
}

}  // namespace

TEST_CASE("safetensors: every dtype, views and metadata survive a round trip", "[safetensors]") {
    TempDir dir;
    lab::HostBackend backend;
    lab::Tensor f = lab::Tensor::from_floats(backend, {2, 3}, {1.5f, -2, 3, 4, 5, 6.25f});
    lab::TensorMap tensors = {
        {"f32", f},
        {"f32_transposed", f.view({3, 2}, {1, 3}, 0)},  // written contiguous
        {"bf16", f.to(lab::DType::bf16)},
        {"f16", f.to(lab::DType::f16)},
        {"i32", lab::Tensor::from_ints(backend, {3}, {-1, 0, 7}, lab::DType::i32)},
        {"i64", lab::Tensor::from_ints(backend, {2}, {int64_t{1} << 40, -5}, lab::DType::i64)},
        {"u8", lab::Tensor::from_ints(backend, {4}, {0, 1, 200, 255}, lab::DType::u8)},
        {"empty", lab::Tensor::zeros(backend, {0, 4})},
    };
    std::filesystem::path file = dir.path / "t.safetensors";
    lab::save_safetensors(file, tensors, {{"step", "42"}, {"note", "x"}});
    lab::Metadata meta;
    lab::TensorMap back = lab::load_safetensors(file, backend, &meta);
    CHECK(meta == lab::Metadata{{"step", "42"}, {"note", "x"}});
    REQUIRE(back.size() == tensors.size());
    for (const auto& [name, t] : tensors) {
        INFO(name);
        CHECK(back.at(name).shape() == t.shape());
        CHECK(back.at(name).dtype() == t.dtype());
        CHECK(back.at(name).to_floats() == t.to_floats());
    }
    CHECK(back.at("f32_transposed").to_floats() == std::vector<float>{1.5f, 4, -2, 5, 3, 6.25f});
    CHECK(back.at("i64").to_ints() == std::vector<int64_t>{int64_t{1} << 40, -5});
    // The data starts 8-byte aligned after the header, as the reference writer does.
    std::string bytes = read_text(file);
    uint64_t header = 0;
    for (int i = 7; i >= 0; --i) header = (header << 8) | static_cast<unsigned char>(bytes[static_cast<size_t>(i)]);
    CHECK(header % 8 == 0);
    CHECK_FALSE(std::filesystem::exists(dir.path / ("t.safetensors.tmp-" + std::to_string(::getpid()))));
}

TEST_CASE("safetensors: damaged files are refused with the file and the problem named", "[safetensors]") {
    TempDir dir;
    CHECK_THAT(load_error(dir.path / "missing.safetensors"), Contains("cannot read safetensors file"));
    CHECK_THAT(load_error(dir.write("short.safetensors", "abc")), Contains("shorter than its 8-byte header length"));
    CHECK_THAT(load_error(write_raw(dir, "{}", 0, uint64_t{1} << 40)), Contains("does not fit the file"));
    CHECK_THAT(load_error(write_raw(dir, "{not json", 0)), Contains("header is not valid JSON"));
    CHECK_THAT(load_error(write_raw(dir, "[1, 2]", 0)), Contains("header is not a JSON object"));
    CHECK_THAT(load_error(write_raw(dir, R"({"a": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}})", 8)),
               Contains("entry 'a' has dtype 'F64'"));
    CHECK_THAT(load_error(write_raw(dir, R"({"a": {"dtype": "F32", "shape": [2]}})", 8)),
               Contains("entry 'a' needs dtype, shape and data_offsets"));
    CHECK_THAT(load_error(write_raw(dir, R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 16]}})", 8)),
               Contains("outside the 8 data bytes"));
    CHECK_THAT(load_error(write_raw(dir, R"({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", 8)),
               Contains("has 8 bytes but shape [3] of f32 needs 12"));
    CHECK_THAT(load_error(write_raw(dir,
                                    R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
                                    R"( "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                                    8)),
               Contains("overlapping offsets"));
    std::string named = load_error(write_raw(dir, "{bad", 0));
    CHECK_THAT(named, Contains((dir.path / "raw.safetensors").string()));
}

namespace {

struct TinyModule : lab::Module {
    explicit TinyModule(lab::Backend& be, float value) { add_parameter("w", lab::Tensor::full(be, {2, 2}, value)); }
};

// An optimizer with one state tensor, enough to check that checkpoints carry optimizer state.
struct TinyOptimizer : lab::Optimizer {
    lab::Tensor moment;
    explicit TinyOptimizer(lab::Backend& be, float value) : moment(lab::Tensor::full(be, {3}, value)) {}
    void step(double) override {}
    double base_lr() const override { return 0.1; }
    std::map<std::string, lab::Tensor> state() const override { return {{"moment", moment}}; }
};

}  // namespace

TEST_CASE("checkpoints: save, latest, load, another configuration is refused", "[safetensors][checkpoint]") {
    TempDir dir;
    lab::HostBackend backend;
    TinyModule model(backend, 3.0f), task(backend, 5.0f);
    TinyOptimizer optimizer(backend, 7.0f);
    lab::TrainerState state;
    state.step = 20;
    state.data_position = 1234;
    state.dropout_offset = 88;
    state.config_hash = "abc";
    state.loss_sum = 0.1 + 0.2;  // not exactly representable: must come back bit for bit
    state.loss_count = 3;
    lab::save_checkpoint(dir.path, model, task, optimizer, state);
    state.step = 30;
    std::filesystem::path second = lab::save_checkpoint(dir.path, model, task, optimizer, state);
    REQUIRE(lab::latest_checkpoint(dir.path) == second);
    CHECK_FALSE(std::filesystem::exists(dir.path / "checkpoint-20"));  // older ones are removed

    TinyModule model2(backend, 0.0f), task2(backend, 0.0f);
    TinyOptimizer optimizer2(backend, 0.0f);
    lab::TrainerState loaded = lab::load_checkpoint(second, model2, task2, optimizer2, "abc");
    CHECK(loaded.step == 30);
    CHECK(loaded.data_position == 1234);
    CHECK(loaded.dropout_offset == 88);
    CHECK(loaded.loss_sum == 0.1 + 0.2);
    CHECK(loaded.loss_count == 3);
    CHECK(model2.state_dict().at("w").to_floats() == std::vector<float>(4, 3.0f));
    CHECK(task2.state_dict().at("w").to_floats() == std::vector<float>(4, 5.0f));
    CHECK(optimizer2.moment.to_floats() == std::vector<float>(3, 7.0f));

    try {
        lab::load_checkpoint(second, model2, task2, optimizer2, "other");
        FAIL("a checkpoint of another configuration was accepted");
    } catch (const lab::DataError& e) {
        CHECK_THAT(e.what(), Contains("belongs to configuration abc, not to this run's other"));
    }
    CHECK_FALSE(lab::latest_checkpoint(dir.path / "nowhere").has_value());
}
