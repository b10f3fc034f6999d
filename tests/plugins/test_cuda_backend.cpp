// Parity of the CUDA backend plugin (build/plugins/backend_cuda.so) with lab::HostBackend: every
// kernel of lab/backend.h except attention (test_cuda_attention.cpp) runs on both with the same
// random inputs, at several shapes and layouts, and must agree within max |got - want| / max |want|
// <= 1e-4 in f32 and 1e-2 where bf16 is involved (cuda_test_support.h says why). Conversions,
// fills and dropout masks must agree bit for bit: they compute nothing that could round
// differently. Each line printed is one comparison and its measured difference.
//
// Without a GPU (or without the plugin) every case that needs a device passes with a
// "skipped: <reason>" warning; the plugin's registration and its no-device error are checked
// wherever the plugin was built.
#include <catch2/catch.hpp>

#include <cstring>
#include <optional>

#include "cuda_test_support.h"
#include "lab/backend.h"
#include "lab/kernels.h"
#include "optimizers/adamw/adamw_kernels.h"
#include "optimizers/sgd/sgd_kernels.h"

using lab::Backend;
using lab::DType;
using lab::Shape;
using lab::Tensor;
using lab_test::MatmulCase;
using lab_test::MatmulValues;
using namespace lab_test::cuda;

namespace {

// The raw bytes of a contiguous tensor, read through its backend.
std::vector<uint8_t> bytes_of(const Tensor& t) {
    std::vector<uint8_t> out(static_cast<size_t>(t.numel()) * lab::dtype_size(t.dtype()));
    t.backend().copy_to_host(out.data(), t);
    return out;
}

// Elements whose bytes differ (each element is dtype_size bytes).
size_t differing_elements(const std::vector<uint8_t>& got, const std::vector<uint8_t>& want, DType dtype) {
    if (got.size() != want.size()) return std::max(got.size(), want.size());
    const size_t width = lab::dtype_size(dtype);
    size_t count = 0;
    for (size_t i = 0; i < got.size(); i += width) count += std::memcmp(&got[i], &want[i], width) != 0;
    return count;
}

void expect_identical(const std::string& what, const Tensor& got, const Tensor& want) {
    const size_t differing = differing_elements(bytes_of(got), bytes_of(want), want.dtype());
    std::printf("[cuda] %-74s %zu of %lld elements differ\n", what.c_str(), differing,
                static_cast<long long>(want.numel()));
    INFO(what << ": " << differing << " elements differ bitwise");
    CHECK(differing == 0);
}

const std::vector<DType> kAllDtypes = {DType::f32, DType::bf16, DType::f16, DType::i32, DType::i64, DType::u8};

}  // namespace

TEST_CASE("cuda plugin registers backend 'cuda' with validated options", "[cuda]") {
    if (!std::filesystem::is_regular_file(cuda_plugin_file())) {
        WARN("skipped: " << cuda_plugin_file().string() << " was not built (no CUDA toolkit, or LAB_WITH_CUDA=OFF)");
        return;
    }
    // The plugin alone in a registry of its own: it loads (ABI tag, entry point) without a GPU.
    lab::Registry registry;
    registry.load_library(cuda_plugin_file());
    const lab::PluginInfo& info = registry.find("backend", "cuda");
    CHECK(info.kind == "backend");
    CHECK(info.name == "cuda");
    CHECK_FALSE(info.version.empty());
    CHECK_FALSE(info.description.empty());
    CHECK(std::filesystem::path(info.file).filename() == "backend_cuda.so");

    struct Expected {
        const char* name;
        lab::OptionType type;
        const char* default_value;
    };
    for (const Expected& e : {Expected{"device", lab::OptionType::integer, "0"},
                              Expected{"tf32", lab::OptionType::boolean, "false"},
                              Expected{"cudnn_attention", lab::OptionType::boolean, "true"}}) {
        INFO("option " << e.name);
        const lab::OptionSpec* spec = info.schema.find(e.name);
        REQUIRE(spec != nullptr);
        CHECK(spec->type == e.type);
        CHECK(spec->default_value == std::optional<std::string>(e.default_value));
        CHECK_FALSE(spec->help.empty());
    }
    // Options are validated before the factory runs, so these need no device either.
    auto options = [&](const std::map<std::string, std::string>& values) {
        return lab::plugin_options(registry, "backend", "cuda", values, "test");
    };
    CHECK(options({}).get_int("device") == 0);
    CHECK(options({{"device", "1"}, {"tf32", "true"}, {"cudnn_attention", "false"}}).get_bool("tf32"));
    CHECK_THROWS_AS(options({{"device", "-1"}}), lab::ConfigError);
    CHECK_THROWS_AS(options({{"tf32", "maybe"}}), lab::ConfigError);
    CHECK_THROWS_AS(options({{"devices", "0"}}), lab::ConfigError);
}

TEST_CASE("cuda backend without a device throws DeviceUnavailableError saying why", "[cuda]") {
    if (!std::filesystem::is_regular_file(cuda_plugin_file())) {
        WARN("skipped: " << cuda_plugin_file().string() << " was not built (no CUDA toolkit, or LAB_WITH_CUDA=OFF)");
        return;
    }
    std::shared_ptr<Backend> cuda;
    std::string message;
    try {
        cuda = make_backend("cuda");
    } catch (const lab::DeviceUnavailableError& e) {
        message = e.what();
    }
    if (!cuda) {
        // No usable device here: the message names the backend, says so, and gives the runtime's
        // own reason with its error name (e.g. "CUDA driver version is insufficient for CUDA
        // runtime version (cudaErrorInsufficientDriver, from cudaGetDeviceCount)").
        std::printf("[cuda] no device: %s\n", message.c_str());
        CHECK(message.find("backend cuda") != std::string::npos);
        CHECK(message.find("no CUDA device") != std::string::npos);
        CHECK(message.find("cudaError") != std::string::npos);
        // It is a BackendError too (what labrun reports as a failed run), and a device index
        // cannot make a missing device appear.
        CHECK_THROWS_AS(make_backend("cuda"), lab::BackendError);
        CHECK_THROWS_AS(make_backend("cuda", {{"device", "7"}}), lab::DeviceUnavailableError);
        return;
    }
    // A device is there: the backend says which, and an index past the last device is refused.
    const std::string info = cuda->device_info();
    std::printf("[cuda] device_info: %s\n", info.c_str());
    CHECK(cuda->name() == "cuda");
    CHECK(cuda->device_kind() == lab::DeviceKind::cuda);
    CHECK(info.find("sm_") != std::string::npos);
    CHECK(info.find("NVIDIA") != std::string::npos);  // the device name, as cudaDeviceProp::name gives it
    for (const auto& [library, version] : cuda->library_versions())
        std::printf("[cuda] library %s %s\n", library.c_str(), version.c_str());
    CHECK_FALSE(cuda->library_versions().empty());
    try {
        make_backend("cuda", {{"device", "4096"}});
        FAIL("device = 4096 was accepted");
    } catch (const lab::DeviceUnavailableError& e) {
        CHECK(std::string(e.what()).find("4096") != std::string::npos);
    }
}

TEST_CASE("cuda copy converts every dtype pair bit for bit, from transposed and broadcast sources", "[cuda]") {
    CUDA_BACKEND_OR_SKIP(cuda);
    lab::HostBackend host;
    const Shape shape = {6, 7};
    struct Layout {
        const char* name;
        Shape storage, strides;  // strides empty: contiguous
    };
    const std::vector<Layout> layouts = {{"contiguous", shape, {}},
                                         {"transposed", {7, 6}, {1, 6}},
                                         {"broadcast rows", {1, 7}, {0, 1}},
                                         {"column broadcast", {6, 1}, {1, 0}}};
    for (DType from : kAllDtypes) {
        for (DType to : kAllDtypes) {
            for (const Layout& layout : layouts) {
                // Integers 0..100 where an integer type is involved (every type holds them
                // exactly); fractions of either sign between floating types.
                const bool integral = lab::is_integer(from) || lab::is_integer(to);
                std::vector<float> values = random_values(lab::shape_numel(layout.storage), 201, integral ? 0.0f : -3.0f,
                                                          integral ? 100.0f : 3.0f);
                if (integral)
                    for (float& v : values) v = std::floor(v);
                // The source's bytes made by the host, handed to the GPU as they are.
                Tensor host_storage = Tensor::from_floats(host, layout.storage, values).to(from);
                Tensor cuda_storage = Tensor::from_host(*cuda, layout.storage, from, host_storage.raw());
                auto view = [&](const Tensor& storage) {
                    return layout.strides.empty() ? storage : storage.view(shape, layout.strides, 0);
                };
                Twin out = twin_zeros(*cuda, host, shape, to);
                host.copy(out.host, view(host_storage));
                cuda->copy(out.cuda, view(cuda_storage));
                expect_identical(std::string("copy ") + lab::dtype_name(from) + " -> " + lab::dtype_name(to) + " " +
                                     layout.name,
                                 out.cuda, out.host);
            }
        }
    }
    // A transposed destination, and a view with an offset into a larger storage.
    for (DType to : {DType::f32, DType::bf16, DType::i64}) {
        const auto values = random_values(42, 202, 0.0f, 50.0f);
        Twin src = twin(*cuda, host, shape, values);
        Twin storage = twin_zeros(*cuda, host, {7, 6}, to);
        host.copy(storage.host.view(shape, {1, 6}, 0), src.host);
        cuda->copy(storage.cuda.view(shape, {1, 6}, 0), src.cuda);
        expect_identical(std::string("copy f32 -> ") + lab::dtype_name(to) + " into a transposed destination",
                         storage.cuda, storage.host);
    }
    {
        const auto values = random_values(4 * 5 * 6, 203);
        Twin big = twin(*cuda, host, {4, 5, 6}, values);
        Twin out = twin_zeros(*cuda, host, {3, 2, 5});
        // big[1:4, :, 2:4] permuted to [3, 2, 5]: strides (30, 1, 6), offset 32.
        host.copy(out.host, big.host.view({3, 2, 5}, {30, 1, 6}, 32));
        cuda->copy(out.cuda, big.cuda.view({3, 2, 5}, {30, 1, 6}, 32));
        expect_identical("copy f32 permuted view with offset", out.cuda, out.host);
    }
}

TEST_CASE("cuda fill writes every dtype bit for bit", "[cuda]") {
    CUDA_BACKEND_OR_SKIP(cuda);
    lab::HostBackend host;
    for (DType dtype : kAllDtypes) {
        for (double value : {0.0, 7.0, -1.5, 1e-3}) {
            if (lab::is_integer(dtype) && value != std::floor(value)) continue;
            if (dtype == DType::u8 && value < 0) continue;
            Twin t = twin_zeros(*cuda, host, {5, 33}, dtype);
            host.fill(t.host, value);
            cuda->fill(t.cuda, value);
            expect_identical(std::string("fill ") + lab::dtype_name(dtype) + " " + std::to_string(value), t.cuda,
                             t.host);
        }
    }
    Twin large = twin_zeros(*cuda, host, {1 << 20});
    host.fill(large.host, 0.25);
    cuda->fill(large.cuda, 0.25);
    expect_identical("fill f32 [1048576] 0.25", large.cuda, large.host);
}

TEST_CASE("cuda unary ops and their backward match the host backend", "[cuda]") {
    CUDA_BACKEND_OR_SKIP(cuda);
    using lab::UnaryOp;
    lab::HostBackend host;
    const std::vector<UnaryOp> ops = {UnaryOp::relu, UnaryOp::gelu, UnaryOp::gelu_tanh, UnaryOp::tanh,
                                      UnaryOp::sigmoid, UnaryOp::exp, UnaryOp::log, UnaryOp::sqrt,
                                      UnaryOp::neg, UnaryOp::square, UnaryOp::scale, UnaryOp::add_scalar};
    for (UnaryOp op : ops) {
        const bool positive_only = op == UnaryOp::log || op == UnaryOp::sqrt;
        for (const Shape& shape : {Shape{7}, Shape{4, 250}, Shape{3, 100003}}) {
            const auto values = random_values(lab::shape_numel(shape), 31 + static_cast<uint32_t>(op),
                                              positive_only ? 0.05f : -3.0f, 3.0f);
            const float alpha = op == UnaryOp::add_scalar ? -1.25f : 0.37f;
            Twin x = twin(*cuda, host, shape, values);
            Twin y = twin_zeros(*cuda, host, shape);
            host.unary(op, y.host, x.host, alpha);
            cuda->unary(op, y.cuda, x.cuda, alpha);
            expect_close(std::string("unary ") + lab::unary_op_name(op) + " " + lab::shape_str(shape), y.cuda, y.host,
                         kF32Tolerance);
        }
        // In place (y and x the same tensor).
        Twin x = twin(*cuda, host, {100}, random_values(100, 41, positive_only ? 0.05f : -2.0f, 2.0f));
        host.unary(op, x.host, x.host, 0.5f);
        cuda->unary(op, x.cuda, x.cuda, 0.5f);
        expect_close(std::string("unary ") + lab::unary_op_name(op) + " in place", x.cuda, x.host, kF32Tolerance);
    }
    // The ops whose derivative the contract defines; y = op(x) from the host on both sides.
    for (UnaryOp op : {UnaryOp::relu, UnaryOp::gelu, UnaryOp::gelu_tanh, UnaryOp::tanh, UnaryOp::sigmoid, UnaryOp::exp,
                       UnaryOp::log, UnaryOp::sqrt, UnaryOp::square}) {
        const Shape shape = {3, 1711};
        const bool positive_only = op == UnaryOp::log || op == UnaryOp::sqrt;
        const auto x_values = random_values(lab::shape_numel(shape), 51 + static_cast<uint32_t>(op),
                                            positive_only ? 0.05f : -3.0f, 3.0f);
        Tensor y_host = Tensor::zeros(host, shape);
        host.unary(op, y_host, Tensor::from_floats(host, shape, x_values), 0.0f);
        Twin x = twin(*cuda, host, shape, x_values);
        Twin y = twin(*cuda, host, shape, y_host.to_floats());
        Twin dy = twin(*cuda, host, shape, random_values(lab::shape_numel(shape), 71 + static_cast<uint32_t>(op)));
        Twin dx = twin_zeros(*cuda, host, shape);
        host.unary_backward(op, dx.host, dy.host, x.host, y.host);
        cuda->unary_backward(op, dx.cuda, dy.cuda, x.cuda, y.cuda);
        expect_close(std::string("unary_backward ") + lab::unary_op_name(op), dx.cuda, dx.host, kF32Tolerance);
    }
}

TEST_CASE("cuda binary ops match the host backend, broadcasting either operand", "[cuda]") {
    CUDA_BACKEND_OR_SKIP(cuda);
    using lab::BinaryOp;
    lab::HostBackend host;
    const Shape shape = {4, 5, 6};
    struct Layout {
        std::string name;
        Shape storage, strides;  // empty strides: contiguous
    };
    const Layout full{"full", shape, {}};
    const Layout row{"row [6]", {6}, {0, 0, 1}};
    const Layout column{"column [4,5,1]", {4, 5, 1}, {5, 1, 0}};
    const Layout scalar{"scalar [1]", {1}, {0, 0, 0}};
    const Layout transposed{"transposed", {6, 5, 4}, {1, 4, 20}};
    const Layout outer{"outer [4,1,1]", {4, 1, 1}, {1, 0, 0}};
    const std::vector<std::pair<Layout, Layout>> cases = {{full, full},         {full, row},   {full, column},
                                                          {transposed, scalar}, {row, full},   {column, transposed},
                                                          {outer, row},         {scalar, full}, {transposed, transposed}};
    for (BinaryOp op : {BinaryOp::add, BinaryOp::sub, BinaryOp::mul, BinaryOp::div}) {
        for (const auto& [a, b] : cases) {
            const auto a_values = random_values(lab::shape_numel(a.storage), 81, -2.0f, 2.0f);
            const auto b_values = random_values(lab::shape_numel(b.storage), 82, 0.5f, 2.0f);  // away from 0 for div
            Tensor a_host = make_view(host, a.storage, a_values, shape, a.strides);
            Tensor b_host = make_view(host, b.storage, b_values, shape, b.strides);
            Tensor a_cuda = make_view(*cuda, a.storage, a_values, shape, a.strides);
            Tensor b_cuda = make_view(*cuda, b.storage, b_values, shape, b.strides);
            Twin out = twin_zeros(*cuda, host, shape);
            host.binary(op, out.host, a_host, b_host);
            cuda->binary(op, out.cuda, a_cuda, b_cuda);
            expect_close(std::string("binary ") + lab::binary_op_name(op) + " " + a.name + ", " + b.name, out.cuda,
                         out.host, kF32Tolerance);
        }
    }
    // A large contiguous case (more blocks than the GPU has multiprocessors).
    Twin a = twin(*cuda, host, {1000, 771}, random_values(771000, 83));
    Twin b = twin(*cuda, host, {1000, 771}, random_values(771000, 84, 0.5f, 2.0f));
    Twin c = twin_zeros(*cuda, host, {1000, 771});
    host.binary(BinaryOp::div, c.host, a.host, b.host);
    cuda->binary(BinaryOp::div, c.cuda, a.cuda, b.cuda);
    expect_close("binary div [1000, 771]", c.cuda, c.host, kF32Tolerance);
}

TEST_CASE("cuda reduce_sum and sum_squares match the host backend", "[cuda]") {
    CUDA_BACKEND_OR_SKIP(cuda);
    lab::HostBackend host;
    struct Case {
        Shape x, y;
    };
    const std::vector<Case> cases = {{{4, 5, 6}, {1, 5, 6}},   {{4, 5, 6}, {4, 1, 6}},    {{4, 5, 6}, {4, 5, 1}},
                                     {{4, 5, 6}, {1, 1, 1}},   {{4, 5, 6}, {4, 1, 1}},    {{4, 5, 6}, {1, 5, 1}},
                                     {{2, 3, 4, 5}, {2, 1, 4, 1}}, {{512, 768}, {1, 768}}, {{512, 3000}, {512, 1}},
                                     {{8, 64, 2304}, {1, 1, 2304}}, {{100000}, {1}}};
    for (const Case& c : cases) {
        Twin x = twin(*cuda, host, c.x, random_values(lab::shape_numel(c.x), 301));
        Twin y = twin_zeros(*cuda, host, c.y);
        host.reduce_sum(y.host, x.host);
        cuda->reduce_sum(y.cuda, x.cuda);
        expect_close("reduce_sum " + lab::shape_str(c.x) + " -> " + lab::shape_str(c.y), y.cuda, y.host,
                     kF32Tolerance);
    }
    for (int64_t count : {int64_t{1}, int64_t{1000}, int64_t{100003}}) {
        for (bool accumulate : {false, true}) {
            Twin x = twin(*cuda, host, {count}, random_values(count, 302));
            Twin out = twin(*cuda, host, {1}, {2.5f});
            host.sum_squares(out.host, x.host, accumulate);
            cuda->sum_squares(out.cuda, x.cuda, accumulate);
            expect_close("sum_squares [" + std::to_string(count) + "]" + (accumulate ? " += 2.5" : ""), out.cuda,
                         out.host, kF32Tolerance);
        }
    }
}

TEST_CASE("cuda softmax and log-softmax forward and backward match the host backend", "[cuda]") {
    CUDA_BACKEND_OR_SKIP(cuda);
    lab::HostBackend host;
    for (const Shape& shape : {Shape{4, 10}, Shape{3, 5, 33}, Shape{2, 1000}, Shape{6, 50257}}) {
        for (bool log : {false, true}) {
            const std::string name = std::string(log ? "log_softmax " : "softmax ") + lab::shape_str(shape);
            const int64_t count = lab::shape_numel(shape);
            Twin x = twin(*cuda, host, shape, random_values(count, 91, -8.0f, 8.0f));
            Twin y = twin_zeros(*cuda, host, shape);
            host.softmax(y.host, x.host, log);
            cuda->softmax(y.cuda, x.cuda, log);
            expect_close(name, y.cuda, y.host, kF32Tolerance);

            // The backward gets the host's y on both sides, so only the backward kernel differs.
            Twin y_saved = twin(*cuda, host, shape, y.host.to_floats());
            Twin dy = twin(*cuda, host, shape, random_values(count, 92));
            Twin dx = twin_zeros(*cuda, host, shape);
            host.softmax_backward(dx.host, dy.host, y_saved.host, log);
            cuda->softmax_backward(dx.cuda, dy.cuda, y_saved.cuda, log);
            expect_close(name + " backward", dx.cuda, dx.host, kF32Tolerance);
        }
    }
}

TEST_CASE("cuda layer norm forward and backward match the host backend", "[cuda]") {
    CUDA_BACKEND_OR_SKIP(cuda);
    lab::HostBackend host;
    struct Case {
        Shape shape;
        bool gamma, beta;
        float offset;  // added to x: a large mean stresses the variance computation
    };
    const std::vector<Case> cases = {{{6, 32}, true, true, 0.0f},    {{2, 3, 100}, true, true, 5.0f},
                                     {{6, 32}, false, false, 0.0f},  {{5, 17}, true, false, -2.0f},
                                     {{5, 17}, false, true, 1.0f},   {{64, 768}, true, true, 0.0f},
                                     {{3, 4097}, true, true, 100.0f}};
    for (const Case& c : cases) {
        const int64_t columns = c.shape.back(), rows = lab::shape_numel(c.shape) / columns;
        auto x_values = random_values(rows * columns, 101, -2.0f, 2.0f);
        for (float& v : x_values) v += c.offset;
        const auto gamma_values = random_values(columns, 102, 0.5f, 1.5f);
        const std::string name = "layer_norm " + lab::shape_str(c.shape) + (c.gamma ? " gamma" : "") +
                                 (c.beta ? " beta" : "") + " offset " + std::to_string(int(c.offset));
        Twin x = twin(*cuda, host, c.shape, x_values);
        Twin gamma = twin(*cuda, host, {columns}, gamma_values);
        Twin beta = twin(*cuda, host, {columns}, random_values(columns, 103));
        Twin y = twin_zeros(*cuda, host, c.shape);
        Twin mean = twin_zeros(*cuda, host, {rows});
        Twin rstd = twin_zeros(*cuda, host, {rows});
        host.layer_norm(y.host, mean.host, rstd.host, x.host, c.gamma ? &gamma.host : nullptr,
                        c.beta ? &beta.host : nullptr, 1e-5f);
        cuda->layer_norm(y.cuda, mean.cuda, rstd.cuda, x.cuda, c.gamma ? &gamma.cuda : nullptr,
                         c.beta ? &beta.cuda : nullptr, 1e-5f);
        expect_close(name + " y", y.cuda, y.host, kF32Tolerance);
        expect_close(name + " mean", mean.cuda, mean.host, kF32Tolerance);
        expect_close(name + " rstd", rstd.cuda, rstd.host, kF32Tolerance);

        // Backward from the host's mean and rstd; dgamma and dbeta accumulate into initial values.
        for (bool grads : {true, false}) {
            const auto dgamma_initial = random_values(columns, 113), dbeta_initial = random_values(columns, 114);
            Twin saved_mean = twin(*cuda, host, {rows}, mean.host.to_floats());
            Twin saved_rstd = twin(*cuda, host, {rows}, rstd.host.to_floats());
            Twin dy = twin(*cuda, host, c.shape, random_values(rows * columns, 115));
            Twin dx = twin_zeros(*cuda, host, c.shape);
            Twin dgamma = twin(*cuda, host, {columns}, dgamma_initial);
            Twin dbeta = twin(*cuda, host, {columns}, dbeta_initial);
            host.layer_norm_backward(dx.host, grads ? &dgamma.host : nullptr, grads && c.beta ? &dbeta.host : nullptr,
                                     dy.host, x.host, saved_mean.host, saved_rstd.host, c.gamma ? &gamma.host : nullptr);
            cuda->layer_norm_backward(dx.cuda, grads ? &dgamma.cuda : nullptr, grads && c.beta ? &dbeta.cuda : nullptr,
                                      dy.cuda, x.cuda, saved_mean.cuda, saved_rstd.cuda,
                                      c.gamma ? &gamma.cuda : nullptr);
            const std::string backward = "layer_norm_backward " + lab::shape_str(c.shape) + (c.gamma ? " gamma" : "") +
                                         (grads ? " dgamma" : "") + (grads && c.beta ? " dbeta" : "");
            expect_close(backward + " dx", dx.cuda, dx.host, kF32Tolerance);
            if (grads) {
                expect_close(backward + " dgamma (+= initial)", dgamma.cuda, dgamma.host, kF32Tolerance);
                CHECK(relative_difference(dgamma.cuda.to_floats(), dgamma_initial) > 1e-3);  // really accumulated
            } else {
                CHECK(dgamma.cuda.to_floats() == dgamma_initial);  // untouched when not asked for
            }
            if (grads && c.beta) expect_close(backward + " dbeta (+= initial)", dbeta.cuda, dbeta.host, kF32Tolerance);
            else CHECK(dbeta.cuda.to_floats() == dbeta_initial);
        }
    }
}

TEST_CASE("cuda embedding forward and backward match the host backend and refuse an id out of range", "[cuda]") {
    CUDA_BACKEND_OR_SKIP(cuda);
    lab::HostBackend host;
    const int64_t V = 50, C = 24, N = 300;  // N > V: ids repeat, so the backward's adds collide
    std::vector<int64_t> ids(static_cast<size_t>(N));
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>((i * 37 + 11) % V);
    const auto table_values = random_values(V * C, 401);
    for (DType id_type : {DType::i32, DType::i64}) {
        const std::string suffix = std::string(" (") + lab::dtype_name(id_type) + " ids)";
        Twin id = twin_ints(*cuda, host, {N}, ids, id_type);
        Twin table = twin(*cuda, host, {V, C}, table_values);
        Twin y = twin_zeros(*cuda, host, {N, C});
        host.embedding(y.host, id.host, table.host);
        cuda->embedding(y.cuda, id.cuda, table.cuda);
        expect_close("embedding [50, 24] x 300" + suffix, y.cuda, y.host, kF32Tolerance);

        const auto dtable_initial = random_values(V * C, 402);
        Twin dy = twin(*cuda, host, {N, C}, random_values(N * C, 403));
        Twin dtable = twin(*cuda, host, {V, C}, dtable_initial);
        host.embedding_backward(dtable.host, dy.host, id.host);
        cuda->embedding_backward(dtable.cuda, dy.cuda, id.cuda);
        expect_close("embedding_backward (+= initial, repeated ids)" + suffix, dtable.cuda, dtable.host,
                     kF32Tolerance);

        for (int64_t bad : {V, int64_t{-1}}) {
            std::vector<int64_t> wrong = ids;
            wrong[123] = bad;
            Tensor wrong_ids = Tensor::from_ints(*cuda, {N}, wrong, id_type);
            INFO("id " << bad << suffix);
            CHECK_THROWS_AS(cuda->embedding(y.cuda, wrong_ids, table.cuda), lab::ShapeError);
        }
        // The error left the backend usable.
        Twin again = twin_zeros(*cuda, host, {N, C});
        cuda->embedding(again.cuda, id.cuda, table.cuda);
        expect_close("embedding after a refused id" + suffix, again.cuda, y.host, kF32Tolerance);
    }
}

TEST_CASE("cuda cross entropy forward and backward match the host backend, with ignored rows", "[cuda]") {
    CUDA_BACKEND_OR_SKIP(cuda);
    lab::HostBackend host;
    for (int64_t V : {int64_t{65}, int64_t{50257}}) {
        const int64_t N = 24;
        std::vector<int64_t> targets(static_cast<size_t>(N));
        for (size_t i = 0; i < targets.size(); ++i) targets[i] = static_cast<int64_t>((i * 7919) % V);
        targets[3] = targets[17] = -100;  // ignore_index
        for (DType target_type : {DType::i32, DType::i64}) {
            const std::string name = "cross_entropy [" + std::to_string(N) + ", " + std::to_string(V) + "] " +
                                     lab::dtype_name(target_type) + " targets";
            Twin logits = twin(*cuda, host, {N, V}, random_values(N * V, 501, -6.0f, 6.0f));
            Twin target = twin_ints(*cuda, host, {N}, targets, target_type);
            Twin loss = twin_zeros(*cuda, host, {N});
            Twin lse = twin_zeros(*cuda, host, {N});
            host.cross_entropy(loss.host, lse.host, logits.host, target.host, -100);
            cuda->cross_entropy(loss.cuda, lse.cuda, logits.cuda, target.cuda, -100);
            expect_close(name + " loss", loss.cuda, loss.host, kF32Tolerance);
            expect_close(name + " lse", lse.cuda, lse.host, kF32Tolerance);
            const std::vector<float> losses = loss.cuda.to_floats();
            CHECK(losses[3] == 0.0f);
            CHECK(losses[17] == 0.0f);

            Twin saved_lse = twin(*cuda, host, {N}, lse.host.to_floats());
            Twin dloss = twin(*cuda, host, {N}, random_values(N, 502, 0.5f, 1.5f));
            Twin dlogits = twin_zeros(*cuda, host, {N, V});
            host.cross_entropy_backward(dlogits.host, dloss.host, logits.host, saved_lse.host, target.host, -100);
            cuda->cross_entropy_backward(dlogits.cuda, dloss.cuda, logits.cuda, saved_lse.cuda, target.cuda, -100);
            expect_close(name + " backward", dlogits.cuda, dlogits.host, kF32Tolerance);
        }
    }
}

TEST_CASE("cuda masked_fill matches the host backend with strided and broadcast masks", "[cuda]") {
    CUDA_BACKEND_OR_SKIP(cuda);
    lab::HostBackend host;
    const Shape shape = {4, 5, 6};
    const auto x_values = random_values(120, 601);
    std::vector<int64_t> flags(120);
    for (size_t i = 0; i < flags.size(); ++i) flags[i] = (i * 2654435761u >> 7) % 3 == 0;
    struct Layout {
        const char* name;
        Shape storage, strides;
    };
    for (const Layout& layout : {Layout{"contiguous", shape, {}}, Layout{"transposed", {6, 5, 4}, {1, 4, 20}},
                                 Layout{"broadcast [1,1,6]", {6}, {0, 0, 1}}, Layout{"broadcast [4,5,1]", {4, 5}, {5, 1, 0}}}) {
        const std::vector<int64_t> mask_values(flags.begin(), flags.begin() + lab::shape_numel(layout.storage));
        auto mask = [&](Backend& be) {
            Tensor storage = Tensor::from_ints(be, layout.storage, mask_values, DType::u8);
            return layout.strides.empty() ? storage : storage.view(shape, layout.strides, 0);
        };
        Twin x = twin(*cuda, host, shape, x_values);
        Twin y = twin_zeros(*cuda, host, shape);
        host.masked_fill(y.host, x.host, mask(host), -3.5f);
        cuda->masked_fill(y.cuda, x.cuda, mask(*cuda), -3.5f);
        expect_close(std::string("masked_fill mask ") + layout.name, y.cuda, y.host, kF32Tolerance);
    }
}

TEST_CASE("cuda dropout draws exactly the host's mask for the same key", "[cuda]") {
    CUDA_BACKEND_OR_SKIP(cuda);
    lab::HostBackend host;
    for (float p : {0.1f, 0.5f}) {
        for (lab::RngKey key : {lab::RngKey{1, 2, 0}, lab::RngKey{1234, 3, 4096}, lab::RngKey{7, 1, 5}}) {
            for (const Shape& shape : {Shape{13}, Shape{1000, 37}}) {
                const std::string name = "dropout p " + std::to_string(p).substr(0, 3) + " " + lab::shape_str(shape) +
                                         " key (" + std::to_string(key.seed) + ", " + std::to_string(key.stream) +
                                         ", " + std::to_string(key.offset) + ")";
                const int64_t count = lab::shape_numel(shape);
                Twin x = twin(*cuda, host, shape, random_values(count, 701));
                Twin y = twin_zeros(*cuda, host, shape);
                Twin keep = twin_zeros(*cuda, host, shape, DType::u8);
                host.dropout(y.host, keep.host, x.host, p, key);
                cuda->dropout(y.cuda, keep.cuda, x.cuda, p, key);
                expect_identical(name + " keep", keep.cuda, keep.host);
                expect_close(name + " y", y.cuda, y.host, kF32Tolerance);

                Twin dy = twin(*cuda, host, shape, random_values(count, 702));
                Twin dx = twin_zeros(*cuda, host, shape);
                Twin same_keep = twin_ints(*cuda, host, shape, keep.host.to_ints(), DType::u8);
                host.dropout_backward(dx.host, dy.host, same_keep.host, p);
                cuda->dropout_backward(dx.cuda, dy.cuda, same_keep.cuda, p);
                expect_close(name + " backward", dx.cuda, dx.host, kF32Tolerance);
            }
        }
    }
}

TEST_CASE("cuda optimizer updates match the host backend over several steps", "[cuda]") {
    CUDA_BACKEND_OR_SKIP(cuda);
    lab::HostBackend host;
    // The optimizer plugins' kernels (lab/kernels.h): on `host` their host kernels, on `cuda` the
    // kernels they register for backend "cuda" (never the copy through host memory, checked below).
    const lab::KernelRegistry& kernels = plugin_registry().kernels();
    // Each side carries its own state from step to step, so differences would compound.
    struct State {
        Twin w, g, m, v;
    };
    auto state = [&](int64_t count, uint32_t seed) {
        return State{twin(*cuda, host, {count}, random_values(count, seed)),
                     twin(*cuda, host, {count}, random_values(count, seed + 1)),
                     twin_zeros(*cuda, host, {count}), twin_zeros(*cuda, host, {count})};
    };
    SECTION("adamw.step, one parameter at a time") {
        const lab::KernelCounts before = kernels.counts("adamw.step");
        for (int64_t count : {int64_t{1}, int64_t{1000}, int64_t{100003}}) {
            State s = state(count, 801);
            for (int64_t t = 1; t <= 4; ++t) {
                const auto step = [&](Tensor Twin::*side) {
                    return lab::adamw::AdamWStep{{{s.w.*side, s.g.*side, s.m.*side, s.v.*side, 0.1f}},
                                                 1e-3f, 0.9f, 0.99f, 1e-8f, t};
                };
                kernels.run(lab::adamw::kAdamWStep, host, step(&Twin::host));
                kernels.run(lab::adamw::kAdamWStep, *cuda, step(&Twin::cuda));
            }
            const std::string name = "adamw.step [" + std::to_string(count) + "] after 4 steps";
            expect_close(name + " w", s.w.cuda, s.w.host, kF32Tolerance);
            expect_close(name + " m", s.m.cuda, s.m.host, kF32Tolerance);
            expect_close(name + " v", s.v.cuda, s.v.host, kF32Tolerance);
        }
        const lab::KernelCounts after = kernels.counts("adamw.step");
        CHECK(after.backend - before.backend == 12);
        CHECK(after.through_host == before.through_host);
    }
    SECTION("adamw.step over many parameters against the host kernel") {
        const std::vector<int64_t> sizes = {1, 7, 768, 65 * 128, 100003, 3 * 1024};
        std::vector<State> states;
        lab::adamw::AdamWStep on_host, on_cuda;
        for (size_t i = 0; i < sizes.size(); ++i) {
            states.push_back(state(sizes[i], 810 + 2 * static_cast<uint32_t>(i)));
            const float decay = i % 2 == 0 ? 0.1f : 0.0f;  // decayed matrices, undecayed biases/norms
            const State& s = states.back();
            on_host.params.push_back({s.w.host, s.g.host, s.m.host, s.v.host, decay});
            on_cuda.params.push_back({s.w.cuda, s.g.cuda, s.m.cuda, s.v.cuda, decay});
        }
        for (int64_t t = 1; t <= 5; ++t) {
            const float lr = 1e-3f * static_cast<float>(t);  // a warm-up: lr changes each step
            for (lab::adamw::AdamWStep* step : {&on_host, &on_cuda}) {
                step->lr = lr;
                step->beta1 = 0.9f;
                step->beta2 = 0.95f;
                step->eps = 1e-8f;
                step->t = t;
            }
            kernels.run(lab::adamw::kAdamWStep, host, on_host);
            kernels.run(lab::adamw::kAdamWStep, *cuda, on_cuda);
        }
        for (size_t i = 0; i < states.size(); ++i) {
            const std::string name = "adamw.step param " + std::to_string(i) + " [" + std::to_string(sizes[i]) +
                                     "] after 5 steps";
            expect_close(name + " w", states[i].w.cuda, states[i].w.host, kF32Tolerance);
            expect_close(name + " m", states[i].m.cuda, states[i].m.host, kF32Tolerance);
            expect_close(name + " v", states[i].v.cuda, states[i].v.host, kF32Tolerance);
        }
    }
    SECTION("sgd.step with and without momentum, nesterov, weight decay") {
        struct Case {
            float momentum, weight_decay;
            bool nesterov;
        };
        const lab::KernelCounts before = kernels.counts("sgd.step");
        for (const Case& c : {Case{0.0f, 0.0f, false}, Case{0.0f, 0.01f, false}, Case{0.9f, 0.0f, false},
                              Case{0.9f, 0.01f, true}}) {
            State s = state(10007, 830);
            const Twin none{Tensor(), Tensor()};
            const Twin& buf = c.momentum > 0 ? s.m : none;
            for (int step = 0; step < 4; ++step) {
                kernels.run(lab::sgd::kSgdStep, host,
                            lab::sgd::SgdStep{{{s.w.host, s.g.host, buf.host}}, 0.05f, c.momentum, c.weight_decay,
                                              c.nesterov});
                kernels.run(lab::sgd::kSgdStep, *cuda,
                            lab::sgd::SgdStep{{{s.w.cuda, s.g.cuda, buf.cuda}}, 0.05f, c.momentum, c.weight_decay,
                                              c.nesterov});
            }
            const std::string name = "sgd.step momentum " + std::to_string(c.momentum).substr(0, 3) + " wd " +
                                     std::to_string(c.weight_decay).substr(0, 4) + (c.nesterov ? " nesterov" : "");
            expect_close(name + " w", s.w.cuda, s.w.host, kF32Tolerance);
            if (c.momentum > 0) expect_close(name + " buf", s.m.cuda, s.m.host, kF32Tolerance);
        }
        const lab::KernelCounts after = kernels.counts("sgd.step");
        CHECK(after.backend - before.backend == 16);
        CHECK(after.through_host == before.through_host);
    }
}

namespace {

void check_matmul(Backend& cuda, const MatmulCase& c) {
    lab::HostBackend host;
    const MatmulValues values(c);
    auto multiply = [&](Backend& be) {
        const MatmulValues::Operands ops = values.operands(be);
        values.multiply(be, ops);
        return ops.out.to_floats();
    };
    const std::vector<float> want = multiply(host);
    const lab::BackendStats before = cuda.stats();
    const std::vector<float> got = multiply(cuda);
    const lab::BackendStats first = cuda.stats();
    const std::vector<float> again = multiply(cuda);
    const lab::BackendStats second = cuda.stats();
    const bool bf16 = c.dtype == DType::bf16 || c.inputs == DType::bf16;
    expect_close("matmul " + c.name, got, want, bf16 ? kBf16Tolerance : kF32Tolerance);
    // cuBLASLt plans are cached by shape: the first call built one, the identical second none.
    CHECK(first.primitives_created > before.primitives_created);
    CHECK(second.primitives_created == first.primitives_created);
    CHECK(second.primitive_cache_hits > first.primitive_cache_hits);
    CHECK(again == got);  // the same plan gives the same bits
}

}  // namespace

TEST_CASE("cuda matmul matches the host backend (f32 and bf16, strides, broadcast, epilogues)", "[cuda]") {
    CUDA_BACKEND_OR_SKIP(cuda);
    const DType bf16 = DType::bf16, f32 = DType::f32;
    const std::vector<MatmulCase> cases = {
        {"2d [5,7]@[7,3]", {5, 7}, {7, 3}},
        {"2d a^T", {5, 7}, {7, 3}, true},
        {"2d b^T + bias", {5, 7}, {7, 3}, false, true, false, true},
        {"2d a^T b^T alpha accumulate", {6, 9}, {9, 4}, true, true, false, false, 0.5f, true},
        {"2d M=1 N=1 bias alpha accumulate", {1, 7}, {7, 1}, false, false, false, true, 2.0f, true},
        {"3d batch [3,4,6]@[3,6,5]", {3, 4, 6}, {3, 6, 5}},
        {"3d broadcast b [1,6,5] bias", {3, 4, 6}, {1, 6, 5}, false, false, false, true},
        {"3d broadcast a [1,4,6] alpha", {1, 4, 6}, {3, 6, 5}, false, false, false, true, -1.5f},
        {"3d stride-0 expanded b accumulate", {3, 4, 6}, {3, 6, 5}, false, false, true, false, 1.0f, true},
        {"4d q@k^T alpha", {2, 3, 8, 16}, {2, 3, 16, 8}, false, true, false, false, 0.25f},
        {"4d p@v accumulate", {2, 3, 8, 8}, {2, 3, 8, 16}, false, false, false, false, 1.0f, true},
        {"4d broadcast heads [2,1,5,6] a^T", {2, 3, 4, 5}, {2, 1, 5, 6}, true},
        {"4d stride-0 expanded b^T", {2, 3, 7, 5}, {2, 3, 5, 9}, false, true, true},
        {"linear [512,768]@[768,2304]^T + bias", {512, 768}, {768, 2304}, false, true, false, true},
        {"weight grad [768,512]^T@[512,3072] accumulate", {768, 512}, {512, 3072}, true, false, false, false, 1.0f,
         true},
        {"logits [256,768]@[768,50257]^T", {256, 768}, {768, 50257}, false, true},
        {"odd sizes [33,17]@[17,129] bias alpha", {33, 17}, {17, 129}, false, false, false, true, 0.3f},
        {"bf16 tensors 2d", {5, 7}, {7, 3}, false, false, false, false, 1.0f, false, bf16},
        {"bf16 tensors 3d b^T bias alpha accumulate", {3, 4, 6}, {3, 6, 5}, false, true, false, true, 0.7f, true,
         bf16},
        {"bf16 tensors 4d broadcast a^T", {2, 1, 8, 16}, {2, 3, 16, 8}, true, false, false, true, 1.0f, false, bf16},
        {"precision bf16: linear b^T + bias", {64, 768}, {768, 2304}, false, true, false, true, 1.0f, false, f32,
         bf16},
        {"precision bf16: a^T accumulate", {768, 64}, {64, 768}, true, false, false, false, 1.0f, true, f32, bf16},
        {"precision bf16: 4d q@k^T alpha", {2, 4, 64, 32}, {2, 4, 32, 64}, false, true, false, false, 0.125f, false,
         f32, bf16},
        {"precision bf16: 3d broadcast b", {3, 40, 96}, {1, 96, 80}, false, false, false, true, 1.0f, false, f32,
         bf16},
    };
    for (const MatmulCase& c : cases) {
        SECTION(c.name) { check_matmul(*cuda, c); }
    }
}

TEST_CASE("cuda matmul refuses bad shapes with ShapeError", "[cuda]") {
    CUDA_BACKEND_OR_SKIP(cuda);
    Tensor a = Tensor::from_floats(*cuda, {2, 3}, random_values(6, 21));
    Tensor b = Tensor::from_floats(*cuda, {3, 4}, random_values(12, 22));
    Tensor wrong = Tensor::zeros(*cuda, {2, 5});
    CHECK_THROWS_AS(cuda->matmul(wrong, a, b, nullptr, 1.0f, false), lab::ShapeError);
    Tensor inner = Tensor::from_floats(*cuda, {4, 4}, random_values(16, 23));
    Tensor c = Tensor::zeros(*cuda, {2, 4});
    CHECK_THROWS_AS(cuda->matmul(c, a, inner, nullptr, 1.0f, false), lab::ShapeError);
}
