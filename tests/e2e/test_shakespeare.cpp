// End to end: the real labrun binary trains shakespeare_char for 300 steps on the oneDNN backend
// and the results database holds the run, its metrics and its plugins.
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <string>

#include "lab/version.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace lab_test;

namespace {

const std::string experiment = std::string(LAB_SOURCE_DIR) + "/experiments/shakespeare_char.ini";

}  // namespace

TEST_CASE("shakespeare_char learns in 300 steps and is recorded as finished", "[e2e][slow]") {
    TempDir dir;
    fs::path db_file = dir.path / "lab.db";
    // The first 300 steps of the 2000-step schedule, as the PyTorch reference (2.44 after 250 steps).
    Outcome r = run_program(kLabrunBinary, {experiment, "--no-progress", "--data-dir", shakespeare_data_dir().string(),
                                            "train.steps=300", "train.eval_every=150", "schedule.decay_steps=2000",
                                            "task.sample_tokens=100", "experiment.db=" + db_file.string()});
    INFO(r);
    REQUIRE(r.exit_code == 0);
    // The run started with the causality probe of its model, which passed bitwise (the line says
    // what it cost).
    const size_t probe = r.err.find("causality probe: model/gpt sees no later token in training or evaluation mode "
                                    "(2 x 32 random tokens, replaced from t = 1, 16, 31 on: 8 forward passes, ");
    REQUIRE(probe != std::string::npos);
    const std::string probe_line = r.err.substr(probe, r.err.find('\n', probe) - probe);
    CHECK(probe_line.find("outputs before t bitwise equal)") != std::string::npos);
    std::cout << probe_line << "\n";

    const PlainSqlite db(db_file, PlainSqlite::Access::read_only);
    CHECK(db.one("SELECT status FROM runs").text == "finished");
    CHECK(db.one("SELECT count(*) FROM runs").text == "1");
    CHECK(db.one("SELECT name FROM runs").text == "shakespeare_char");
    CHECK(db.one("SELECT backend FROM runs").text == "onednn");
    CHECK_FALSE(db.one("SELECT started_at FROM runs").text.empty());
    CHECK_FALSE(db.one("SELECT ended_at FROM runs").text.empty());
    CHECK(db.one("SELECT config FROM runs").text.find("model.layers = 4") != std::string::npos);

    double val_loss = db.one("SELECT value FROM metrics WHERE name = 'val/loss' AND step = 300").real;
    double first_val = db.one("SELECT value FROM metrics WHERE name = 'val/loss' AND step = 150").real;
    INFO("val/loss at 150: " << first_val << ", at 300: " << val_loss);
    CHECK(val_loss < 2.5);
    CHECK(val_loss < first_val);
    CHECK(db.one("SELECT value FROM metrics WHERE name = 'val/ppl' AND step = 300").real ==
          Approx(std::exp(val_loss)).epsilon(1e-6));
    CHECK(db.one("SELECT value FROM metrics WHERE name = 'val/tokens' AND step = 300").real >= 100000);
    // Each metric's goal, declared by what recorded it: the trainer (train/, perf/) and the task (val/).
    CHECK(db.text_rows("SELECT name || '=' || goal FROM metric_goals ORDER BY name") ==
          std::vector<std::string>{"perf/ms_per_step=none", "perf/peak_mem_mb=none", "perf/tokens_per_s=none",
                                   "train/grad_norm=none", "train/loss=min", "train/lr=none", "val/bpb=min",
                                   "val/bytes=none", "val/loss=min", "val/ppl=min", "val/tokens=none"});
    CHECK(db.one("SELECT count(*) FROM metrics WHERE name = 'train/loss'").text == "30");
    CHECK(db.one("SELECT min(value) FROM metrics WHERE name = 'perf/tokens_per_s'").real > 0);
    // The first logged training loss is near ln(65) = 4.17: the model starts from chance.
    CHECK(db.one("SELECT value FROM metrics WHERE name = 'train/loss' AND step = 10").real > 3.0);

    CHECK(db.one("SELECT value FROM params WHERE key = 'model.layers'").text == "4");
    CHECK(db.one("SELECT value FROM params WHERE key = 'optimizer.beta2'").text == "0.99");
    for (const char* kind : {"backend", "tokenizer", "attention", "model", "optimizer", "schedule", "task"}) {
        INFO("plugin kind " << kind);
        std::string file = db.one("SELECT file FROM plugins WHERE kind = ?", {std::string(kind)}).text;
        CHECK(file.size() > 3);
        CHECK(file.substr(file.size() - 3) == ".so");
        // Every loaded plugin carries labrun's own SDK ABI tag (any other is refused at load).
        CHECK(db.one("SELECT abi FROM plugins WHERE kind = ?", {std::string(kind)}).text == LAB_ABI_TAG);
    }
    CHECK(db.one("SELECT name FROM plugins WHERE kind = 'model'").text == "gpt");
    CHECK(db.one("SELECT version FROM plugins WHERE kind = 'task'").text == "1.0");
    CHECK(db.one("SELECT count(*) FROM texts WHERE name = 'sample'").text == "2");
    CHECK(db.one("SELECT length(text) FROM texts WHERE step = 300").text == "101");  // prompt + 100 characters
}

TEST_CASE("precision = bf16 on a CPU without bf16 instructions warns once and records it", "[e2e]") {
    // ONEDNN_MAX_CPU_ISA=AVX2 makes any CPU look like one without AVX512-BF16 or AMX to oneDNN.
    const std::string note = "bf16 emulated: this CPU has no bf16 instructions (AVX512-BF16 or AMX), so precision "
                             "= fp32 will be faster";
    for (const std::string precision : {"bf16", "fp32"}) {
        TempDir dir;
        const fs::path db_file = dir.path / "lab.db";
        Outcome r = run_program(kLabrunBinary,
                                {experiment, "--no-progress", "--data-dir", shakespeare_data_dir().string(),
                                 "train.steps=2", "train.eval_every=0", "task.sample_tokens=0",
                                 "experiment.precision=" + precision, "experiment.db=" + db_file.string()},
                                "", {{"ONEDNN_MAX_CPU_ISA", "AVX2"}});
        INFO(precision << ": " << r);
        REQUIRE(r.exit_code == 0);
        const PlainSqlite db(db_file, PlainSqlite::Access::read_only);
        const std::string device = db.one("SELECT device FROM runs").text;
        INFO("device: " << device);
        if (precision == "bf16") {
            const size_t first = r.err.find("warning: " + note);
            CHECK(first != std::string::npos);
            CHECK(r.err.find(note, first + note.size()) == std::string::npos);  // once
            CHECK(device.find(note) != std::string::npos);
        } else {
            CHECK(r.err.find("bf16 emulated") == std::string::npos);
            CHECK(device.find("bf16 emulated") == std::string::npos);
        }
    }
}

TEST_CASE("a run whose data file is missing is recorded as failed with the error", "[e2e]") {
    TempDir dir;
    fs::path db_file = dir.path / "lab.db";
    Outcome r = run_program(kLabrunBinary, {experiment, "--no-progress", "--data-dir", (dir.path / "nowhere").string(),
                                            "train.steps=5", "experiment.db=" + db_file.string()});
    INFO(r);
    CHECK(r.exit_code == 5);
    CHECK((r.out + r.err).find("nowhere/tinyshakespeare/input.txt") != std::string::npos);
    const PlainSqlite db(db_file, PlainSqlite::Access::read_only);
    CHECK(db.one("SELECT status FROM runs").text == "failed");
    CHECK(db.one("SELECT error FROM runs").text.find("cannot read train file") != std::string::npos);
    CHECK(db.one("SELECT count(*) FROM metrics").text == "0");
}
