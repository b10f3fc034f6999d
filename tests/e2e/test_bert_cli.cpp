// BERT from the command line: MLM pretraining writes a checkpoint in the Hugging Face layout,
// a classification run starts from it through `[train] init_from = DB:NAME` and says what it
// loaded, and init_from refuses weights of another shape or a database that does not exist.
#include <catch2/catch.hpp>

#include <signal.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "lab/host_backend.h"
#include "lab/results.h"
#include "lab/safetensors.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace lab_test;
using Catch::Matchers::Contains;

namespace {


Outcome run_labrun(const std::vector<std::string>& args) { return run_program(kLabrunBinary, args); }

// A 2-layer, 32-wide BERT with the bert-base-uncased vocabulary.
std::string tiny_bert(const fs::path& db, const std::string& name, int hidden = 32) {
    return "[experiment]\nname = " + name + "\ndb = " + db.string() +
           "\n[backend]\ntype = onednn\nthreads = 2\n[tokenizer]\ntype = wordpiece\nvocab = ${data}/bert-base-uncased/vocab.txt\n"
           "[model]\ntype = bert\nlayers = 2\nhidden = " + std::to_string(hidden) +
           "\nheads = 2\nintermediate = 64\nmax_position = 64\n[attention]\ntype = softmax\n"
           "[optimizer]\ntype = adamw\nlr = 1e-3\n";
}

std::string sentiment_tsv() {
    const char* good[] = {"a good film", "good acting and a good plot", "really good", "the story is good",
                          "good fun", "simply good work"};
    const char* bad[] = {"a dull film", "bad acting", "the plot is bad", "boring and bad", "a bad script",
                         "nothing works"};
    std::string text = "sentence\tlabel\n";
    for (int repeat = 0; repeat < 5; ++repeat)
        for (int i = 0; i < 6; ++i) text += std::string(good[i]) + " \t1\n" + bad[i] + " \t0\n";
    return text;
}

// Every metric of a database except timings, as "name step value" with all digits.
std::vector<std::string> learning_metrics(const fs::path& db) {
    lab::ResultStore store(db);
    std::vector<std::string> rows;
    for (const auto& m : store.metrics(1)) {
        if (m.name.rfind("perf/", 0) == 0) continue;
        char value[64];
        std::snprintf(value, sizeof value, "%.17g", m.value);
        rows.push_back(m.name + " " + std::to_string(m.step) + " " + value);
    }
    return rows;
}

}  // namespace

TEST_CASE("bert: a classification run stopped by SIGINT and resumed equals the uninterrupted run", "[e2e][bert]") {
    TempDir dir;
    const fs::path& data = kDataDir;
    fs::path tsv = dir.write("sentiment.tsv", sentiment_tsv());
    // Dropout in the model and the head, and several epochs of reshuffled rows: the resumed run
    // must restore the dropout stream and the data position exactly.
    auto ini = [&](const std::string& name) {
        return dir.write(name + ".ini", tiny_bert(dir.path / (name + ".db"), name) +
                                            "[task]\ntype = classify\ntrain = " + tsv.string() + "\nvalid = " +
                                            tsv.string() +
                                            "\n[train]\nsteps = 200\nbatch = 8\nseq_len = 16\nlog_every = 5\n"
                                            "eval_every = 50\nckpt_every = 5\n");
    };
    Outcome whole = run_labrun({ini("whole").string(), "--no-progress", "--data-dir", data.string()});
    INFO(whole);
    REQUIRE(whole.exit_code == 0);

    fs::path db = dir.path / "parts.db";
    pid_t pid = spawn_program(kLabrunBinary, {ini("parts").string(), "--no-progress", "--data-dir", data.string()},
                              dir.path / "log.txt");
    for (int i = 0; i < 600; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        if (read_text(dir.path / "log.txt").find("step 60/") != std::string::npos) break;
    }
    REQUIRE(::kill(pid, SIGINT) == 0);
    INFO(read_text(dir.path / "log.txt"));
    REQUIRE(wait_exit(pid) == 130);
    REQUIRE(wait_exit(spawn_program(kLabrunBinary,
                                    {"--resume", "1", "--db", db.string(), "--no-progress", "--data-dir", data.string()},
                                    dir.path / "log.txt")) == 0);
    std::vector<std::string> expected = learning_metrics(dir.path / "whole.db"), got = learning_metrics(db);
    CHECK(expected.size() == 136);  // 40 log intervals x 3 train metrics + 4 evaluations x 4 val metrics
    CHECK(got == expected);
}

TEST_CASE("bert: MLM checkpoint in Hugging Face layout, fine-tuned from it with init_from", "[e2e][bert]") {
    TempDir dir;
    const fs::path& data = kDataDir;
    REQUIRE(fs::exists(data / "wikitext-2" / "valid.txt"));
    fs::path mlm_db = dir.path / "mlm.db", cls_db = dir.path / "cls.db";

    fs::path mlm_ini = dir.write(
        "mlm.ini", tiny_bert(mlm_db, "tiny_mlm") +
                       "[task]\ntype = mlm\ntrain = ${data}/wikitext-2/valid.txt\nvalid_fraction = 0.02\n"
                       "val_sequences = 32\n[train]\nsteps = 30\nbatch = 8\nseq_len = 32\neval_every = 15\nlog_every = 5\n");
    Outcome mlm = run_labrun({mlm_ini.string(), "--no-progress", "--data-dir", data.string()});
    INFO(mlm);
    REQUIRE(mlm.exit_code == 0);
    CHECK_THAT(mlm.err + mlm.out, Contains("val/mlm_accuracy"));

    // The checkpoint holds the Hugging Face BertModel names: separate query/key/value, no c_attn.
    fs::path run_dir;
    for (const auto& entry : fs::directory_iterator(dir.path / "runs")) run_dir = entry.path();
    std::string latest = read_text(run_dir / "latest");
    latest = latest.substr(0, latest.find('\n'));
    lab::HostBackend backend;
    lab::TensorMap weights = lab::load_safetensors(run_dir / latest / "model.safetensors", backend);
    CHECK(weights.count("embeddings.word_embeddings.weight") == 1);
    CHECK(weights.at("encoder.layer.1.attention.self.query.weight").shape() == lab::Shape{32, 32});
    CHECK(weights.at("encoder.layer.1.attention.self.value.bias").shape() == lab::Shape{32});
    CHECK(weights.count("encoder.layer.0.attention.output.dense.weight") == 1);
    CHECK(weights.count("pooler.dense.weight") == 1);
    for (const auto& [name, t] : weights) CHECK(name.find("c_attn") == std::string::npos);

    fs::path tsv = dir.write("sentiment.tsv", sentiment_tsv());
    std::string classify = "[task]\ntype = classify\ntrain = " + tsv.string() + "\nvalid = " + tsv.string() +
                           "\n[train]\nsteps = 20\nbatch = 8\nseq_len = 16\nlog_every = 5\n";
    fs::path cls_ini = dir.write("cls.ini", tiny_bert(cls_db, "tiny_cls") + classify +
                                                "init_from = " + mlm_db.string() + ":tiny_mlm\n");
    Outcome cls = run_labrun({cls_ini.string(), "--no-progress", "--data-dir", data.string()});
    INFO(cls);
    REQUIRE(cls.exit_code == 0);
    // Every backbone tensor came from the checkpoint; the classifier belongs to the task.
    CHECK_THAT(cls.err, Contains("init_from " + (run_dir / latest / "model.safetensors").string() +
                                 ": loaded 31 tensors; missing 0; unexpected 0"));
    const PlainSqlite s(cls_db, PlainSqlite::Access::read_only);
    CHECK(s.text_row("SELECT path FROM artifacts WHERE kind = 'init_from'") ==
          (run_dir / latest / "model.safetensors").string());
    CHECK(s.text_rows("SELECT name FROM metrics WHERE name LIKE 'val/%' GROUP BY name") ==
          std::vector<std::string>{"val/accuracy", "val/examples", "val/f1", "val/loss"});

    // A wider model cannot take these weights: refused before training, naming the tensor.
    fs::path wide_ini = dir.write("wide.ini", tiny_bert(cls_db, "tiny_wide", 48) + classify +
                                                  "init_from = " + mlm_db.string() + ":tiny_mlm\n");
    Outcome wide = run_labrun({wide_ini.string(), "--no-progress", "--data-dir", data.string()});
    INFO(wide);
    CHECK(wide.exit_code == 5);
    CHECK_THAT(wide.err, Contains("the model expects f32 [48]"));

    fs::path missing_ini = dir.write("missing.ini", tiny_bert(cls_db, "tiny_missing") + classify +
                                                        "init_from = " + (dir.path / "nope.db").string() + "\n");
    Outcome missing = run_labrun({missing_ini.string(), "--no-progress", "--data-dir", data.string()});
    CHECK(missing.exit_code == 5);
    CHECK_THAT(missing.err, Contains("results database '" + (dir.path / "nope.db").string() + "' does not exist"));
    CHECK_FALSE(fs::exists(dir.path / "nope.db"));
}
