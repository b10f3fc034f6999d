// End to end on the CUDA backend: the real labrun binary trains shakespeare_char with
// [backend] type = cuda and with onednn from the same seed, and the two train/loss curves must
// agree; and, on any machine where the plugin was built, a run asked of a device that is not
// there fails cleanly: a non-zero exit with the backend's reason, no crash, nothing recorded.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <map>
#include <string>

#include "lab/error.h"
#include "lab/registry.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace lab_test;

namespace {

const fs::path kCudaPlugin = fs::path(LAB_PLUGIN_DIR) / "backend_cuda.so";
const fs::path kOnednnPlugin = fs::path(LAB_PLUGIN_DIR) / "backend_onednn.so";
const std::string kExperiment = std::string(LAB_SOURCE_DIR) + "/experiments/shakespeare_char.ini";

// Why the cuda backend cannot train here ("" when it can), found in-process as labrun would:
// the plugin is loaded and the backend made (its factory throws DeviceUnavailableError saying why).
std::string cuda_unavailable_reason() {
    if (!fs::is_regular_file(kCudaPlugin)) return kCudaPlugin.string() + " was not built (no CUDA toolkit, or LAB_WITH_CUDA=OFF)";
    lab::Registry registry;
    registry.load_library(kCudaPlugin);
    try {
        registry.factory<lab::BackendFactory>("backend", "cuda")(lab::plugin_options(registry, "backend", "cuda", {}));
    } catch (const lab::DeviceUnavailableError& e) {
        return e.what();
    }
    return "";
}

// train/loss by step.
std::map<int64_t, double> train_loss_curve(const fs::path& db_file) {
    const PlainSqlite db(db_file, PlainSqlite::Access::read_only);
    std::map<int64_t, double> curve;
    for (const Row& row : db.rows("SELECT step, value FROM metrics WHERE name = 'train/loss' ORDER BY step"))
        curve[row[0].integer] = row[1].real;
    return curve;
}

}  // namespace

TEST_CASE("cuda shakespeare_char: 200 steps on cuda follow the onednn loss curve", "[e2e][cuda][slow]") {
    const std::string reason = cuda_unavailable_reason();
    if (!reason.empty()) {
        WARN("skipped: " << reason);
        return;
    }
    if (!fs::is_regular_file(kOnednnPlugin)) {
        WARN("skipped: " << kOnednnPlugin.string() << " was not built (the onednn run is the reference)");
        return;
    }
    TempDir dir;
    auto train = [&](const std::string& backend) {
        const fs::path db_file = dir.path / (backend + ".db");
        Outcome r = run_program(kLabrunBinary,
                                {kExperiment, "--no-progress", "--data-dir", shakespeare_data_dir().string(),
                                 "backend.type=" + backend, "train.steps=200", "train.log_every=20",
                                 "train.eval_every=200", "schedule.decay_steps=2000", "task.val_tokens=16384",
                                 "task.sample_tokens=50", "experiment.db=" + db_file.string()});
        INFO(r);
        REQUIRE(r.exit_code == 0);
        const PlainSqlite db(db_file, PlainSqlite::Access::read_only);
        CHECK(db.one("SELECT status FROM runs").text == "finished");
        CHECK(db.one("SELECT backend FROM runs").text == backend);
        return db_file;
    };
    const fs::path cuda_db = train("cuda"), onednn_db = train("onednn");
    {
        const PlainSqlite db(cuda_db, PlainSqlite::Access::read_only);
        const std::string device = db.one("SELECT device FROM runs").text;
        std::printf("[cuda] shakespeare_char device: %s\n", device.c_str());
        CHECK(device.find("sm_") != std::string::npos);
    }
    const std::map<int64_t, double> cuda = train_loss_curve(cuda_db), onednn = train_loss_curve(onednn_db);
    REQUIRE(cuda.size() == 10);
    REQUIRE(onednn.size() == 10);
    // Both runs compute the same function from the same seed, batches and initial weights (dropout
    // 0); they differ only in the order of f32 sums (cuBLASLt's tiles and the GPU's tree reductions
    // against oneDNN's blocking), about 1e-7 relative per operation. This model does not amplify
    // such differences over 200 steps: the same run on onednn and on the reference backend (two
    // CPU backends that also sum in different orders) differs by at most 2.4e-8 per logged point.
    // The GPU reorders more sums than that pair does, so the tolerance leaves five orders of
    // magnitude: 2e-3 nats per logged point (0.1% of a loss near 2), still far below what a wrong
    // kernel gives (a mask or a gradient that is off moves the curve by 1e-1 within tens of steps)
    // and below the loss's own step-to-step noise (~3e-2). The printed differences say how much
    // room is left.
    constexpr double kTolerance = 2e-3;
    double largest = 0;
    for (const auto& [step, loss] : onednn) {
        INFO("train/loss at step " << step << ": onednn " << loss);
        REQUIRE(cuda.count(step) == 1);
        const double difference = std::abs(cuda.at(step) - loss);
        std::printf("[cuda] shakespeare_char step %3lld train/loss onednn %.5f cuda %.5f difference %.2e\n",
                    static_cast<long long>(step), loss, cuda.at(step), difference);
        largest = std::max(largest, difference);
        CHECK(difference <= kTolerance);
    }
    std::printf("[cuda] shakespeare_char: largest train/loss difference over 10 logged points %.2e (tolerance %.0e)\n",
                largest, kTolerance);
    CHECK(cuda.at(200) < cuda.at(20) - 0.5);  // and it learned something
}

TEST_CASE("cuda labrun with backend = cuda and no usable device exits non-zero with the reason", "[e2e][cuda]") {
    if (!fs::is_regular_file(kCudaPlugin)) {
        WARN("skipped: " << kCudaPlugin.string() << " was not built (no CUDA toolkit, or LAB_WITH_CUDA=OFF)");
        return;
    }
    TempDir dir;
    const fs::path db_file = dir.path / "results" / "lab.db";
    dir.write("data/tiny.txt", "to be or not to be, that is the question\n");
    const fs::path experiment = dir.write("tiny.ini", "[experiment]\nname = cuda_tiny\ndb = " +
                                                          db_file.string() +
                                                          "\n[backend]\ntype = onednn\n[tokenizer]\ntype = char\n[task]\ntype = causal_lm\n"
                                                          "train = ${data}/tiny.txt\n[model]\ntype = gpt\nlayers = 1\n"
                                                          "heads = 2\nhidden = 16\n[optimizer]\ntype = adamw\n"
                                                          "[train]\nsteps = 2\nbatch = 2\nseq_len = 8\n");
    auto labrun_cuda = [&](const std::vector<std::string>& overrides) {
        std::vector<std::string> args = {experiment.string(), "--no-progress", "--data-dir",
                                         (dir.path / "data").string(), "backend.type=cuda"};
        args.insert(args.end(), overrides.begin(), overrides.end());
        return run_program(kLabrunBinary, args);
    };
    // A run that cannot start leaves nothing behind: no run row, no run folder.
    auto check_nothing_recorded = [&] {
        if (fs::exists(db_file)) {
            const PlainSqlite db(db_file, PlainSqlite::Access::read_only);
            CHECK(db.one("SELECT count(*) FROM runs").text == "0");
            CHECK(db.one("SELECT count(*) FROM metrics").text == "0");
        }
        CHECK_FALSE(fs::exists(db_file.parent_path() / "runs"));
    };

    // A device index that no machine has: refused on every machine, GPU or not.
    {
        Outcome r = labrun_cuda({"backend.device=4096"});
        INFO(r);
        // A typed error's exit code (labrun maps DeviceUnavailableError itself), not a crash
        // (128 + signal) or an internal error (70).
        CHECK(r.exit_code > 0);
        CHECK(r.exit_code < 70);
        CHECK(r.err.find("backend cuda: no CUDA device") != std::string::npos);
        CHECK(r.err.find("internal error") == std::string::npos);
        check_nothing_recorded();
    }
    // The default device, on a machine without one: the runtime's reason reaches the user.
    const std::string reason = cuda_unavailable_reason();
    if (reason.empty()) {
        WARN("a CUDA device is present: the no-device message is checked with device = 4096 only");
        return;
    }
    Outcome r = labrun_cuda({});
    INFO(r);
    std::printf("[cuda] labrun without a device: %s", r.err.c_str());
    CHECK(r.exit_code > 0);
    CHECK(r.exit_code < 70);
    CHECK(r.err.find("no CUDA device") != std::string::npos);
    CHECK(r.err.find(reason) != std::string::npos);  // the same reason the backend gives in-process
    check_nothing_recorded();
}
