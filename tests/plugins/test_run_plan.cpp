// Planning a run before building it (lab/run_plan.h): what --dry-run checks.
//  - Every shipped experiment, alone and with hostile overrides: when resolving it (what --dry-run
//    does) and its memory check accept it, building the run and taking one step refuses nothing
//    for a configuration reason (ConfigError). The two cases of issue 20 (heads = 3 with hidden =
//    128, layers = 100000000) are refused by resolution, naming the keys.
//  - Every model plugin's parameter estimate, with its attention's and its task's, equals the
//    parameters the built run holds, over several option sets and attention variants.
//  - The activation estimate against the reference backend's measured peak of one step.
#include <catch2/catch.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <vector>

#include "lab/config.h"
#include "lab/error.h"
#include "lab/run_plan.h"
#include "lab/trainer.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;
using Catch::Matchers::Contains;

const lab::Registry& registry() {
    static lab::Registry r = [] {
        lab::Registry loaded;
        loaded.load_directory(LAB_PLUGIN_DIR);
        return loaded;
    }();
    return r;
}

lab::ConfigEnv env() {
    lab::ConfigEnv e;
    e.data_dir = lab_test::kDataDir;
    return e;
}

// The first run of `file` with `overrides`, resolved and memory-checked as `labrun --dry-run`
// checks it (against the host: these runs use host backends).
lab::RunSpec dry_run(const fs::path& file, const std::vector<std::string>& overrides) {
    lab::RawConfig raw = lab::load_config(file, overrides, env());
    std::vector<lab::RunSpec> runs = lab::resolve_runs(raw, registry());
    lab::check_memory(lab::estimate_memory(runs.front(), registry()), lab::host_available_memory(), "host memory");
    return runs.front();
}

std::string config_error_of(const fs::path& file, const std::vector<std::string>& overrides) {
    try {
        dry_run(file, overrides);
    } catch (const lab::ConfigError& e) {
        return e.what();
    }
    return "<accepted>";
}

// The experiment files a new user runs (not the fragments under bert/ and ablation/ they include).
std::vector<fs::path> experiment_files() {
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(fs::path(LAB_SOURCE_DIR) / "experiments"))
        if (entry.path().extension() == ".ini") files.push_back(entry.path());
    std::sort(files.begin(), files.end());
    return files;
}

// Settings that keep a built run small (a step in seconds) without touching any rule checked here.
const std::vector<std::string> kSmall = {"train.batch=2", "train.micro_batch=0", "train.steps=1",
                                         "backend.type=reference"};

// Each a hostile setting a new user might try, applied on top of an experiment (a key the
// experiment's plugin does not have is refused as unknown, which is fine too).
const std::vector<std::vector<std::string>> kHostile = {
    {},
    {"model.heads=3"},
    {"model.layers=100000000"},
    {"model.hidden=30"},
    {"model.hidden=36", "model.heads=4", "model.position=rope"},
    {"model.max_seq_len=8"},
    {"model.max_position=8"},
    {"train.seq_len=2"},
    {"train.seq_len=2000"},
    {"train.ckpt_every=7"},
    {"attention.type=gqa", "attention.kv_heads=3"},
    {"attention.type=differential", "model.hidden=96", "model.heads=32"},
    {"attention.type=local", "attention.window=1"},
    {"optimizer.type=sgd", "optimizer.momentum=0", "optimizer.nesterov=true"},
    {"task.eval_stride=100000"},
    {"task.length=1000"},
    {"task.pairs=1000"},
    {"task.queries=100"},
    {"task.mask_token_prob=0.9", "task.random_token_prob=0.5"},
    {"task.nsp=true", "train.seq_len=4"},
    {"tokenizer.type=bpe"},
    {"tokenizer.corpus=${data}/tinyshakespeare/input.txt"},
    {"model.type=bert"},
    {"model.type=gpt"},
    {"model.type=transformer"},
};

std::string joined(const std::vector<std::string>& parts) {
    std::string text;
    for (const std::string& part : parts) text += (text.empty() ? "" : " ") + part;
    return text.empty() ? "(no override)" : text;
}

// What the built run holds: every trainable element of the model and the task.
int64_t built_parameters(const lab::TrainingStack& stack) {
    int64_t count = 0;
    for (const auto& [name, p] : stack.params) count += p.numel();
    return count;
}

lab::TrainingStack build(const lab::RunSpec& spec) {
    lab::RunEnvironment run_env;
    run_env.data_dir = lab_test::kDataDir;
    run_env.quiet = true;
    return lab::build_training_stack(spec, registry(), run_env);
}

}  // namespace

TEST_CASE("a dry run refuses the issue's two cases in milliseconds, naming the keys", "[run_plan]") {
    const fs::path file = fs::path(LAB_SOURCE_DIR) / "experiments" / "shakespeare_char.ini";
    const std::string heads = config_error_of(file, {"model.heads=3"});
    CHECK_THAT(heads, Contains("model.heads=3") && Contains("hidden = 128") && Contains("heads = 3") &&
                          Contains("choose heads that divides hidden"));

    const auto start = std::chrono::steady_clock::now();
    const std::string layers = config_error_of(file, {"model.layers=100000000"});
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    CHECK_THAT(layers, Contains("the run needs about") && Contains("PiB") && Contains("of host memory is available") &&
                           Contains("[model] layers"));
    CHECK(seconds < 1.0);
    // The real run refuses it as fast: new_stack checks the same estimate before reading anything.
    lab::RunSpec small = dry_run(file, kSmall);
    lab::RawConfig raw = lab::load_config(file, {"model.layers=100000000"}, env());
    lab::RunSpec huge = lab::resolve_run(raw, registry());
    CHECK_THROWS_WITH(build(huge), Contains("the run needs about"));
    CHECK(lab::estimate_memory(huge, registry()).parameters > 1000000 * lab::estimate_memory(small, registry()).parameters);
}

namespace {

// Every `shards`-th experiment file from `shard` on, with every hostile override: what --dry-run
// accepts builds and takes a step. Sharded so that each test case stays well within ctest's
// timeout on a busy machine (building reads each experiment's data again).
void check_dry_run_accepts_only_buildable(size_t shard, size_t shards) {
    const std::vector<fs::path> files = experiment_files();
    int accepted = 0, refused = 0, checked_files = 0;
    for (size_t index = shard; index < files.size(); index += shards) {
        const fs::path& file = files[index];
        ++checked_files;
        for (const std::vector<std::string>& hostile : kHostile) {
            std::vector<std::string> overrides = kSmall;
            overrides.insert(overrides.end(), hostile.begin(), hostile.end());
            INFO(file.filename().string() << " " << joined(hostile));
            lab::RunSpec spec;
            try {
                spec = dry_run(file, overrides);
            } catch (const lab::ConfigError& e) {
                // A refusal names the section or plugin it is about.
                CHECK_THAT(std::string(e.what()), Contains("[") || Contains("/"));
                ++refused;
                continue;
            } catch (const lab::PluginError&) {
                ++refused;
                continue;
            }
            ++accepted;
            try {
                lab::TrainingStack stack = build(spec);
                lab::StepResult step = lab::train_step(stack, 1);
                CHECK(std::isfinite(step.loss));
            } catch (const lab::ConfigError& e) {
                FAIL_CHECK("--dry-run accepted it, but building refused: " << e.what());
            } catch (const lab::DataError& e) {
                WARN("data, not configuration: " << e.what());  // e.g. a character the vocabulary lacks
            }
        }
    }
    WARN(accepted << " accepted and built, " << refused << " refused by --dry-run");
    CHECK(accepted >= checked_files);  // at least every experiment as shipped
    CHECK(refused > accepted);
}

}  // namespace

TEST_CASE("whatever --dry-run accepts builds and steps without a configuration error (1/3)", "[run_plan]") {
    check_dry_run_accepts_only_buildable(0, 3);
}

TEST_CASE("whatever --dry-run accepts builds and steps without a configuration error (2/3)", "[run_plan]") {
    check_dry_run_accepts_only_buildable(1, 3);
}

TEST_CASE("whatever --dry-run accepts builds and steps without a configuration error (3/3)", "[run_plan]") {
    check_dry_run_accepts_only_buildable(2, 3);
}

TEST_CASE("the parameter estimate equals the built run's parameters, for every model plugin", "[run_plan]") {
    const fs::path dir = fs::path(LAB_SOURCE_DIR) / "experiments";
    struct Case {
        std::string file;
        std::vector<std::string> overrides;
    };
    const std::vector<std::string> tiny_gpt = {"model.layers=2", "model.hidden=32", "model.heads=4"};
    std::vector<Case> cases;
    for (const char* attention : {"softmax", "gqa", "local", "linear", "alibi", "sigmoid", "differential"})
        for (const char* position : {"learned", "rope", "none"})
            for (const char* bias : {"true", "false"}) {
                std::vector<std::string> o = tiny_gpt;
                o.insert(o.end(), {std::string("attention.type=") + attention, std::string("model.position=") + position,
                                   std::string("model.bias=") + bias});
                if (std::string(attention) == "gqa") o.push_back("attention.kv_heads=2");
                cases.push_back({"copy.ini", o});
            }
    cases.push_back({"shakespeare_char.ini", {"model.mlp_ratio=3", "model.max_seq_len=100"}});
    cases.push_back({"associative_recall.ini", {}});
    cases.push_back({"bert_mlm.ini", {"model.layers=1", "model.hidden=64", "model.heads=2", "train.seq_len=32"}});
    cases.push_back({"bert_mlm.ini", {"model.layers=1", "task.nsp=true", "model.intermediate=100", "train.seq_len=32"}});
    cases.push_back({"bert_sst2.ini", {"model.layers=1", "task.classes=3"}});
    // model/transformer: the bidirectional encoder under task/classify (no shipped experiment uses it).
    lab_test::TempDir scratch;
    const fs::path transformer = scratch.write("transformer.ini", R"(
[tokenizer]
type = wordpiece
vocab = ${data}/bert-base-uncased/vocab.txt
[model]
type = transformer
layers = 2
hidden = 32
heads = 4
[attention]
type = softmax
[task]
type = classify
train = ${data}/sst2/dev.tsv
valid = ${data}/sst2/dev.tsv
classes = 2
[optimizer]
type = sgd
[train]
seq_len = 64
)");
    cases.push_back({transformer.string(), {}});
    cases.push_back({transformer.string(), {"model.ffn=48", "model.hidden=48", "model.heads=3", "task.classes=5"}});
    cases.push_back({"minilm_sst2.ini", {}});
    for (const Case& c : cases) {
        std::vector<std::string> overrides = kSmall;
        overrides.insert(overrides.end(), c.overrides.begin(), c.overrides.end());
        INFO(c.file << " " << joined(c.overrides));
        const lab::RunSpec spec = dry_run(dir / c.file, overrides);
        lab::TrainingStack stack = build(spec);
        const int64_t built = built_parameters(stack);
        CHECK(lab::estimate_memory(spec, registry(), stack.tokenizer->vocab_size()).parameters == built);
    }
}

TEST_CASE("the activation estimate is within a factor of 2 of the measured peak of one step", "[run_plan]") {
    const fs::path dir = fs::path(LAB_SOURCE_DIR) / "experiments";
    for (const char* file : {"shakespeare_char.ini", "copy.ini", "associative_recall.ini", "bert_mlm.ini",
                             "minilm_sst2.ini"}) {
        INFO(file);
        const lab::RunSpec spec = dry_run(dir / file, {"train.steps=1", "backend.type=reference"});
        lab::TrainingStack stack = build(spec);
        const lab::MemoryEstimate estimate = lab::estimate_memory(spec, registry(), stack.tokenizer->vocab_size());
        const double before = static_cast<double>(stack.backend->stats().memory.bytes_in_use);
        stack.backend->reset_peak_memory();
        lab::train_step(stack, 1);
        const double peak = static_cast<double>(stack.backend->stats().memory.peak_bytes_in_use);
        // What the step added on top of what the build held (parameters and AdamW's moments, made
        // with the optimizer): activations, their temporaries and the gradients.
        const double measured = peak - before;
        const double estimated = estimate.activation_bytes + estimate.gradient_bytes;
        WARN(file << ": parameters " << estimate.parameters << " (" << lab::format_bytes(estimate.parameter_bytes)
                  << "), step peak over the build " << lab::format_bytes(measured) << ", estimated "
                  << lab::format_bytes(estimated) << " (activations " << lab::format_bytes(estimate.activation_bytes)
                  << "), ratio " << estimated / measured);
        CHECK(estimated / measured > 0.5);
        CHECK(estimated / measured < 2.0);
    }
}
