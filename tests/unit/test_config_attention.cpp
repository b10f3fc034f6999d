// Experiment-file features for attention studies: options scoped to one plugin
// (`local.window = 16` in [attention]), sweeps over whole files (`include` in [sweep]), and the
// capability check that refuses an attention lacking what the model or task needs.
#include <catch2/catch.hpp>

#include <filesystem>

#include "lab/config.h"
#include "lab/error.h"
#include "lab/registry.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace lab_test;
using Catch::Matchers::Contains;

namespace {

// A registry of declarations only: gpt needs causal attention; "bidirectional" lacks it.
lab::Registry make_registry() {
    lab::Registry registry;
    lab::OptionSchema gpt;
    gpt.integer("layers", 2, "transformer blocks").at_least(1);
    lab::PluginDecl gpt_decl{"gpt", "1.0", "test gpt", gpt};
    gpt_decl.needs_attention.causal = true;
    registry.add_model(gpt_decl, unused_factory<lab::Model>());
    registry.add_tokenizer({"char", "1.0", "test char", {}}, unused_factory<lab::Tokenizer>());

    lab::PluginDecl softmax{"softmax", "1.0", "test softmax", {}};
    softmax.attention.supports = {.causal = true, .padding_mask = true};
    registry.add_attention(softmax, unused_factory<lab::Attention>());
    lab::PluginDecl local{"local", "1.0", "test local", {}};
    local.schema.integer("window", 64, "window").at_least(1);
    local.schema.boolean("fused", true, "fused kernel");
    local.attention.supports = {.causal = true, .padding_mask = true};
    registry.add_attention(local, unused_factory<lab::Attention>());
    lab::PluginDecl gqa{"gqa", "1.0", "test gqa", {}};
    gqa.schema.integer("kv_heads", 0, "kv heads").at_least(0);
    gqa.attention.supports = {.causal = true, .padding_mask = true};
    registry.add_attention(gqa, unused_factory<lab::Attention>());
    lab::PluginDecl bidirectional{"bidirectional", "1.0", "test encoder-only attention", {}};
    bidirectional.attention.supports = {.padding_mask = true};
    registry.add_attention(bidirectional, unused_factory<lab::Attention>());

    lab::OptionSchema lm;
    lm.path("train", std::string(""), "text");
    registry.add_task({"causal_lm", "1.0", "test lm", lm}, unused_factory<lab::Task>());
    lab::OptionSchema recall;
    recall.integer("pairs", 4, "pairs").at_least(1);
    lab::PluginDecl recall_decl{"recall", "1.0", "test recall", recall};
    recall_decl.needs_attention.padding_mask = true;
    registry.add_task(recall_decl, unused_factory<lab::Task>());
    registry.add_optimizer({"adamw", "1.0", "test adamw", {}}, unused_factory<lab::Optimizer>());
    registry.add_schedule({"constant", "1.0", "test constant", {}}, unused_factory<lab::Schedule>());
    registry.add_backend({"onednn", "1.0", "test onednn", {}}, unused_factory<lab::Backend>());
    return registry;
}

const std::string base =
    "[experiment]\n"      // 1
    "name = study\n"      // 2
    "[tokenizer]\n"       // 3
    "type = char\n"       // 4
    "[model]\n"           // 5
    "type = gpt\n"        // 6
    "[task]\n"            // 7
    "type = causal_lm\n"  // 8
    "[optimizer]\n"       // 9
    "type = adamw\n"      // 10
    "[train]\n"           // 11
    "steps = 10\n";       // 12

std::vector<lab::RunSpec> resolve_all(const TempDir& dir, const std::string& text,
                                      const std::vector<std::string>& overrides = {}) {
    fs::path file = dir.write("x.ini", text);
    return lab::resolve_runs(lab::load_config(file, overrides, {dir.path / "data"}), make_registry());
}

std::string error_of(const TempDir& dir, const std::string& text, const std::vector<std::string>& overrides = {}) {
    try {
        resolve_all(dir, text, overrides);
    } catch (const lab::ConfigError& e) {
        return e.what();
    }
    return "<no error>";
}

std::string at(const TempDir& dir, const std::string& file, int line) {
    return (dir.path / file).string() + ":" + std::to_string(line);
}

}  // namespace

TEST_CASE("options scoped to a plugin apply only when that plugin is chosen", "[config][attention]") {
    TempDir dir;
    const std::string scoped = base + "[attention]\ntype = softmax\nlocal.window = 16\ngqa.kv_heads = 1\n";
    std::vector<lab::RunSpec> runs = resolve_all(dir, scoped);
    REQUIRE(runs.size() == 1);
    CHECK(runs[0].plugins.at("attention").plugin == "softmax");
    CHECK(runs[0].plugins.at("attention").options.values().empty());
    // The softmax run is the same run as one written without the scoped keys.
    CHECK(runs[0].hash() == resolve_all(dir, base + "[attention]\ntype = softmax\n")[0].hash());

    runs = resolve_all(dir, scoped, {"attention.type=local"});
    CHECK(runs[0].plugins.at("attention").options.get_int("window") == 16);
    runs = resolve_all(dir, scoped, {"attention.type=gqa"});
    CHECK(runs[0].plugins.at("attention").options.get_int("kv_heads") == 1);

    // A scoped key wins over the unscoped one for its plugin.
    runs = resolve_all(dir, base + "[attention]\ntype = local\nwindow = 8\nlocal.window = 32\n");
    CHECK(runs[0].plugins.at("attention").options.get_int("window") == 32);

    // Swept over types: each run gets its own plugin's options.
    runs = resolve_all(dir, scoped + "[sweep]\nattention.type = softmax, local, gqa\n");
    REQUIRE(runs.size() == 3);
    CHECK(runs[1].plugins.at("attention").options.get_int("window") == 16);
    CHECK(runs[2].plugins.at("attention").options.get_int("kv_heads") == 1);

    // The scope must be a plugin of the section's kind; a bad option of the chosen plugin is still
    // an error naming its line.
    CHECK_THAT(error_of(dir, base + "[attention]\ntype = softmax\nlocl.window = 16\n"),
               Contains(at(dir, "x.ini", 15) + ": [attention] locl.window: 'locl' is not a known attention plugin; did you "
                                               "mean 'local.window'?"));
    CHECK_THAT(error_of(dir, base + "[attention]\ntype = local\nlocal.windw = 16\n"),
               Contains(at(dir, "x.ini", 15)));
    CHECK_THAT(error_of(dir, base + "[attention]\ntype = local\nlocal.windw = 16\n"), Contains("windw"));
}

TEST_CASE("a sweep over included files gives each run one file's settings", "[config][sweep][attention]") {
    TempDir dir;
    dir.write("tasks/recall.ini", "[task]\ntype = recall\npairs = 8\n[train]\nsteps = 300\n");
    dir.write("tasks/lm.ini", "; language modelling\n[task]\ntype = causal_lm\ntrain = ${data}/text.txt\n");
    const std::string study = base + "[attention]\ntype = softmax\n" +
                              "[sweep]\ninclude = tasks/recall.ini, tasks/lm.ini\nattention.type = softmax, local\n";
    std::vector<lab::RunSpec> runs = resolve_all(dir, study);
    REQUIRE(runs.size() == 4);
    CHECK(runs[0].plugins.at("task").plugin == "recall");
    CHECK(runs[0].plugins.at("task").options.get_int("pairs") == 8);
    CHECK(runs[0].train.get_int("steps") == 300);  // the file's [train] wins over the experiment's
    CHECK(runs[0].plugins.at("attention").plugin == "softmax");
    CHECK(runs[1].plugins.at("attention").plugin == "local");
    CHECK(runs[2].plugins.at("task").plugin == "causal_lm");
    CHECK(runs[2].plugins.at("task").options.get_string("train") == (dir.path / "data" / "text.txt").string());
    CHECK(runs[2].train.get_int("steps") == 10);
    CHECK(runs[0].sweep_values.front() == std::make_pair(std::string("include"), std::string("tasks/recall.ini")));
    // Values keep the swept file's line as their origin.
    CHECK(runs[0].plugins.at("task").options.origin("pairs") == at(dir, "tasks/recall.ini", 3));

    // A command-line override wins over the swept files.
    runs = resolve_all(dir, study, {"train.steps=7"});
    CHECK(runs[0].train.get_int("steps") == 7);
    CHECK(runs[2].train.get_int("steps") == 7);

    // Errors: a missing file names the sweep line; a bad key in a swept file names its own line; a
    // swept file with a sweep of its own is refused.
    CHECK_THAT(error_of(dir, base + "[sweep]\ninclude = tasks/nope.ini\n"),
               Contains(at(dir, "x.ini", 14) + ": included file '" + (dir.path / "tasks/nope.ini").string() +
                        "' does not exist"));
    dir.write("tasks/bad.ini", "[task]\ntype = recall\npears = 8\n");
    CHECK_THAT(error_of(dir, base + "[sweep]\ninclude = tasks/bad.ini\n"),
               Contains(at(dir, "tasks/bad.ini", 3)));
    CHECK_THAT(error_of(dir, base + "[sweep]\ninclude = tasks/bad.ini\n"), Contains("pairs"));
    dir.write("tasks/nested.ini", "[sweep]\nexperiment.seed = 1, 2\n");
    CHECK_THAT(error_of(dir, base + "[sweep]\ninclude = tasks/nested.ini\n"),
               Contains("may not have a [sweep] of its own"));
    dir.write("tasks/typo.ini", "[taks]\ntype = recall\n");
    CHECK_THAT(error_of(dir, base + "[sweep]\ninclude = tasks/typo.ini\n"), Contains("unknown section [taks]"));
}

TEST_CASE("an attention lacking what the model or task needs is refused when resolving", "[config][attention]") {
    TempDir dir;
    // gpt needs causal attention; "bidirectional" lacks it.
    std::string message = error_of(dir, base + "[attention]\ntype = bidirectional\n");
    CHECK_THAT(message, Contains(at(dir, "x.ini", 14) + ": model/gpt needs attention with causal masking, which "
                                                        "attention/bidirectional does not support (it supports: "
                                                        "padding mask)"));
    // Named by an override: the override is the origin.
    CHECK_THAT(error_of(dir, base, {"attention.type=bidirectional"}),
               Contains("override 'attention.type=bidirectional': model/gpt needs attention with causal masking"));
    // Inside a sweep, the run is named too; nothing runs.
    CHECK_THAT(error_of(dir, base + "[sweep]\nattention.type = softmax, bidirectional\n"),
               Contains("(in sweep run 2/2: attention.type=bidirectional)"));
    // Supported needs pass; a task's needs are checked as the model's.
    CHECK(resolve_all(dir, base + "[attention]\ntype = local\n", {"task.type=recall"}).size() == 1);

    lab::AttentionCapabilities none, all{true, true, true, true};
    CHECK(none.missing(all) == std::vector<std::string>{"causal masking", "padding masks", "a KV cache",
                                                        "cross-attention"});
    CHECK(all.missing(all).empty());
    CHECK(none.str() == "none");
    CHECK(all.str() == "causal, padding mask, kv cache, cross-attention");
}
