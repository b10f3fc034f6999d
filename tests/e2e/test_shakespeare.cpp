// End to end: the real labrun binary trains shakespeare_char for 300 steps on the oneDNN backend
// and the results database holds the run, its metrics and its plugins.
#include <sqlite3.h>
#include <sys/wait.h>

#include <array>
#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <string>

namespace fs = std::filesystem;

namespace {

struct Completed {
    int exit_code;
    std::string output;
};

Completed run_labrun(const std::string& args) {
    std::string cmd = std::string(LAB_BINARY_DIR) + "/bin/labrun " + args + " 2>&1";
    FILE* pipe = popen(cmd.c_str(), "r");
    REQUIRE(pipe != nullptr);
    std::string out;
    std::array<char, 4096> buf{};
    size_t n;
    while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
    int status = pclose(pipe);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

struct Db {
    sqlite3* db = nullptr;
    explicit Db(const fs::path& file) { REQUIRE(sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK); }
    ~Db() { sqlite3_close(db); }
    // First column of the first row of a query with one optional text parameter.
    std::string text(const std::string& sql, const std::string& param = "") {
        sqlite3_stmt* st = nullptr;
        REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
        if (!param.empty()) sqlite3_bind_text(st, 1, param.c_str(), -1, SQLITE_TRANSIENT);
        std::string out;
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
            out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        return out;
    }
    double number(const std::string& sql, const std::string& param = "") { return std::stod(text(sql, param)); }
};

fs::path data_dir() {
    fs::path dir = fs::path(LAB_SOURCE_DIR) / "data";
    if (!fs::exists(dir / "tinyshakespeare" / "input.txt"))
        FAIL("tinyshakespeare is missing from " << dir << "; run tools/get_data.sh --from ../shared/data");
    return dir;
}

fs::path fresh_dir(const std::string& name) {
    fs::path dir = fs::temp_directory_path() / ("lab_e2e_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    return dir;
}

}  // namespace

TEST_CASE("shakespeare_char learns in 300 steps and is recorded as finished", "[e2e][slow]") {
    fs::path dir = fresh_dir("learn");
    fs::path db_file = dir / "lab.db";
    std::string experiment = std::string(LAB_SOURCE_DIR) + "/experiments/shakespeare_char.ini";
    // The first 300 steps of the 2000-step schedule, as the PyTorch reference (2.44 after 250 steps).
    Completed r = run_labrun(experiment + " --no-progress --data-dir " + data_dir().string() +
                             " train.steps=300 train.eval_every=150 schedule.decay_steps=2000 task.sample_tokens=100"
                             " experiment.db=" + db_file.string());
    INFO(r.output);
    REQUIRE(r.exit_code == 0);

    Db db(db_file);
    CHECK(db.text("SELECT status FROM runs") == "finished");
    CHECK(db.text("SELECT count(*) FROM runs") == "1");
    CHECK(db.text("SELECT name FROM runs") == "shakespeare_char");
    CHECK(db.text("SELECT backend FROM runs") == "onednn");
    CHECK_FALSE(db.text("SELECT started_at FROM runs").empty());
    CHECK_FALSE(db.text("SELECT ended_at FROM runs").empty());
    CHECK(db.text("SELECT config FROM runs").find("model.layers = 4") != std::string::npos);

    double val_loss = db.number("SELECT value FROM metrics WHERE name = 'val/loss' AND step = 300");
    double first_val = db.number("SELECT value FROM metrics WHERE name = 'val/loss' AND step = 150");
    INFO("val/loss at 150: " << first_val << ", at 300: " << val_loss);
    CHECK(val_loss < 2.5);
    CHECK(val_loss < first_val);
    CHECK(db.number("SELECT value FROM metrics WHERE name = 'val/ppl' AND step = 300") ==
          Approx(std::exp(val_loss)).epsilon(1e-6));
    CHECK(db.number("SELECT value FROM metrics WHERE name = 'val/tokens' AND step = 300") >= 100000);
    CHECK(db.text("SELECT count(*) FROM metrics WHERE name = 'train/loss'") == "30");
    CHECK(db.number("SELECT min(value) FROM metrics WHERE name = 'perf/tokens_per_s'") > 0);
    // The first logged training loss is near ln(65) = 4.17: the model starts from chance.
    CHECK(db.number("SELECT value FROM metrics WHERE name = 'train/loss' AND step = 10") > 3.0);

    CHECK(db.text("SELECT value FROM params WHERE key = 'model.layers'") == "4");
    CHECK(db.text("SELECT value FROM params WHERE key = 'optimizer.beta2'") == "0.99");
    for (const char* kind : {"backend", "tokenizer", "attention", "model", "optimizer", "schedule", "task"}) {
        INFO("plugin kind " << kind);
        std::string file = db.text("SELECT file FROM plugins WHERE kind = ?", kind);
        CHECK(file.size() > 3);
        CHECK(file.substr(file.size() - 3) == ".so");
    }
    CHECK(db.text("SELECT name FROM plugins WHERE kind = 'model'") == "gpt");
    CHECK(db.text("SELECT version FROM plugins WHERE kind = 'task'") == "1.0");
    CHECK(db.text("SELECT count(*) FROM texts WHERE name = 'sample'") == "2");
    CHECK(db.text("SELECT length(text) FROM texts WHERE step = 300") == "101");  // prompt + 100 characters
    fs::remove_all(dir);
}

TEST_CASE("a run whose data file is missing is recorded as failed with the error", "[e2e]") {
    fs::path dir = fresh_dir("fail");
    fs::path db_file = dir / "lab.db";
    std::string experiment = std::string(LAB_SOURCE_DIR) + "/experiments/shakespeare_char.ini";
    Completed r = run_labrun(experiment + " --no-progress --data-dir " + (dir / "nowhere").string() +
                             " train.steps=5 experiment.db=" + db_file.string());
    INFO(r.output);
    CHECK(r.exit_code == 5);
    CHECK(r.output.find("nowhere/tinyshakespeare/input.txt") != std::string::npos);
    Db db(db_file);
    CHECK(db.text("SELECT status FROM runs") == "failed");
    CHECK(db.text("SELECT error FROM runs").find("cannot read train file") != std::string::npos);
    CHECK(db.text("SELECT count(*) FROM metrics") == "0");
    fs::remove_all(dir);
}
