// `labrun generate`: a trained character GPT continues a prompt, named by run uid or run folder;
// the KV cache and full recomputation print the same text at temperature 0, with learned, rotary
// and no position embeddings; a prompt longer than the context is refused.
#include <catch2/catch.hpp>

#include <filesystem>

#include "test_support.h"

namespace fs = std::filesystem;
using namespace lab_test;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

TEST_CASE("labrun generate continues a prompt, the KV cache prints what recomputation prints", "[e2e][generate]") {
    TempDir dir;
    const fs::path data = shakespeare_data_dir();
    fs::path db = dir.path / "gen.db";
    Outcome train = run_program(
        kLabrunBinary, {(fs::path(LAB_SOURCE_DIR) / "experiments" / "shakespeare_char.ini").string(), "--no-progress",
                        "--data-dir", data.string(), "experiment.db=" + db.string(), "backend.threads=2",
                        "model.layers=2", "model.hidden=32", "model.heads=2", "train.steps=60", "train.seq_len=32",
                        "train.eval_every=0", "task.val_tokens=1000", "task.sample_tokens=0"});
    INFO(train);
    REQUIRE(train.exit_code == 0);

    auto generate = [&](std::vector<std::string> extra, const std::string& prompt = "ROMEO:") {
        std::vector<std::string> args = {"generate", "1", "--db", db.string(), "--data-dir", data.string(),
                                         "--prompt", prompt, "--max-tokens", "20", "--temperature", "0"};
        args.insert(args.end(), extra.begin(), extra.end());
        return run_program(kLabrunBinary, args);
    };
    Outcome cached = generate({});
    INFO(cached);
    REQUIRE(cached.exit_code == 0);
    CHECK_THAT(cached.out, StartsWith("ROMEO:"));
    CHECK(cached.out.size() == 6 + 20 + 1);  // the prompt, 20 characters, a newline
    CHECK_THAT(cached.err, Contains("20 tokens in"));
    CHECK_THAT(cached.err, Contains("tokens/s (KV cache"));
    Outcome recomputed = generate({"--no-cache"});
    CHECK(recomputed.exit_code == 0);
    CHECK_THAT(recomputed.err, Contains("full recomputation"));
    CHECK(recomputed.out == cached.out);

    // The run folder names the same run and checkpoint.
    fs::path run_dir;
    for (const auto& entry : fs::directory_iterator(dir.path / "runs")) run_dir = entry.path();
    Outcome by_folder = run_program(kLabrunBinary, {"generate", run_dir.string(), "--data-dir", data.string(),
                                                    "--prompt", "ROMEO:", "--max-tokens", "20", "--temperature", "0"});
    INFO(by_folder);
    CHECK(by_folder.exit_code == 0);
    CHECK(by_folder.out == cached.out);

    Outcome too_long = generate({}, std::string(40, 'a'));
    CHECK(too_long.exit_code == 3);
    CHECK_THAT(too_long.err, Contains("the prompt has 40 tokens, more than the model's context of 32"));
}

TEST_CASE("labrun generate with model.position = rope and none: the KV cache prints what recomputation prints",
          "[e2e][generate]") {
    const fs::path data = shakespeare_data_dir();
    for (const char* position : {"rope", "none"}) {
        INFO("model.position = " << position);
        TempDir dir;
        fs::path db = dir.path / "gen.db";
        Outcome train = run_program(
            kLabrunBinary,
            {(fs::path(LAB_SOURCE_DIR) / "experiments" / "shakespeare_char.ini").string(), "--no-progress",
             "--data-dir", data.string(), "experiment.db=" + db.string(), "backend.threads=2",
             std::string("model.position=") + position, "model.layers=2", "model.hidden=32", "model.heads=2",
             "train.steps=60", "train.seq_len=32", "train.eval_every=0", "task.val_tokens=1000",
             "task.sample_tokens=0"});
        INFO(train);
        REQUIRE(train.exit_code == 0);
        auto generate = [&](std::vector<std::string> extra) {
            std::vector<std::string> args = {"generate", "1", "--db", db.string(), "--data-dir", data.string(),
                                             "--prompt", "ROMEO:", "--max-tokens", "20", "--temperature", "0"};
            args.insert(args.end(), extra.begin(), extra.end());
            return run_program(kLabrunBinary, args);
        };
        // The checkpoint rebuilds the model with its position choice (no wpe tensor to load).
        Outcome cached = generate({});
        INFO(cached);
        REQUIRE(cached.exit_code == 0);
        CHECK(cached.out.size() == 6 + 20 + 1);
        CHECK_THAT(cached.err, Contains("tokens/s (KV cache"));
        Outcome recomputed = generate({"--no-cache"});
        CHECK(recomputed.exit_code == 0);
        CHECK(recomputed.out == cached.out);
    }
}
