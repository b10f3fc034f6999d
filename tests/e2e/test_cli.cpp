// The labrun command line, run as a user runs it: the built binary in a child process, with its
// exit code, stdout and stderr checked. Exit codes (tools/labrun/main.cpp): 0 ok, 2 usage,
// 3 configuration, 4 plugin, 5 data.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include "lab/registry.h"
#include "lab/version.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace lab_test;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

const fs::path plugin_dir = LAB_PLUGIN_DIR;
const fs::path test_plugin_dir = LAB_TEST_PLUGIN_DIR;

constexpr int kExitOk = 0, kExitUsage = 2, kExitConfig = 3, kExitPlugin = 4, kExitData = 5;

Outcome run_labrun(const std::vector<std::string>& args, const std::string& stdin_text = "",
                   const std::map<std::string, std::string>& env_changes = {}) {
    return run_program(kLabrunBinary, args, stdin_text, env_changes);
}

std::vector<std::string> words_of(const std::string& line) {
    std::vector<std::string> words;
    std::istringstream in(line);
    for (std::string word; in >> word;) words.push_back(word);
    return words;
}

// A small valid experiment, as lines, so tests can edit one line and know its number.
std::vector<std::string> valid_experiment_lines(const fs::path& db) {
    return {
        "; a tiny valid experiment for the CLI tests",
        "[experiment]",
        "name = cli_test",
        "db = " + db.string(),
        "",
        "[backend]",
        "type = reference",
        "",
        "[tokenizer]",
        "type = char",
        "",
        "[task]",
        "type = causal_lm",
        "train = ${data}/tiny.txt",
        "",
        "[model]",
        "type = gpt",
        "layers = 2",
        "heads = 2",
        "hidden = 32",
        "",
        "[optimizer]",
        "type = adamw",
        "lr = 0.01",
        "",
        "[train]",
        "steps = 3",
        "batch = 2",
        "seq_len = 8",
    };
}

std::string join_lines(const std::vector<std::string>& lines) {
    std::string text;
    for (const std::string& line : lines) text += line + "\n";
    return text;
}

// 1-based number of the line that is exactly `line`.
int line_number(const std::vector<std::string>& lines, const std::string& line) {
    for (size_t i = 0; i < lines.size(); ++i)
        if (lines[i] == line) return static_cast<int>(i) + 1;
    FAIL("line '" << line << "' is not in the experiment");
    return 0;
}

// An experiment directory with a data directory holding a small text file.
struct ExperimentDir {
    TempDir dir;
    fs::path data = dir.path / "data";
    fs::path db = dir.path / "results" / "lab.db";
    ExperimentDir() { dir.write("data/tiny.txt", "to be or not to be, that is the question\n"); }

    // Writes `lines` (a valid experiment with edits) and returns the file.
    fs::path write(const std::vector<std::string>& lines, const std::string& name = "exp.ini") const {
        return dir.write(name, join_lines(lines));
    }
    std::vector<std::string> lines() const { return valid_experiment_lines(db); }
    Outcome dry_run(const fs::path& file, std::vector<std::string> overrides = {}) const {
        std::vector<std::string> args = {file.string(), "--dry-run", "--data-dir", data.string()};
        args.insert(args.end(), overrides.begin(), overrides.end());
        return run_labrun(args);
    }
};

std::vector<std::string> replace_line(std::vector<std::string> lines, const std::string& from, const std::string& to) {
    for (std::string& line : lines)
        if (line == from) line = to;
    return lines;
}

std::vector<std::string> insert_after(std::vector<std::string> lines, const std::string& after, const std::string& line) {
    for (size_t i = 0; i < lines.size(); ++i)
        if (lines[i] == after) {
            lines.insert(lines.begin() + static_cast<std::ptrdiff_t>(i) + 1, line);
            break;
        }
    return lines;
}

}  // namespace

TEST_CASE("labrun --help names the commands and exits 0", "[cli]") {
    Outcome help = run_labrun({"--help"});
    INFO(help);
    CHECK(help.exit_code == kExitOk);
    for (const char* word : {"--list", "--describe", "--dry-run", "tokenize", "--data-dir", "section.key=value"})
        CHECK_THAT(help.out, Contains(word));
    // What a rerun skips, and when it refuses instead.
    CHECK_THAT(help.out, Contains("A finished run is skipped only while the plugin files it ran with are unchanged"));
    CHECK_THAT(help.out, Contains("those whose plugins were rebuilt since"));  // --force (wrapped before it)
    CHECK(help.err.empty());
}

TEST_CASE("labrun usage errors exit 2 with the usage text", "[cli]") {
    Outcome nothing = run_labrun({});
    INFO(nothing);
    CHECK(nothing.exit_code == kExitUsage);
    CHECK_THAT(nothing.err, Contains("no experiment file given"));
    CHECK_THAT(nothing.err, Contains("usage: labrun"));

    Outcome bogus = run_labrun({"--bogus-flag"});
    INFO(bogus);
    CHECK(bogus.exit_code == kExitUsage);
    CHECK_THAT(bogus.err, Contains("bogus-flag"));
    CHECK_THAT(bogus.err, Contains("usage: labrun"));
}

TEST_CASE("labrun --version prints the SDK ABI number and the ABI tag", "[cli]") {
    Outcome version = run_labrun({"--version"});
    INFO(version);
    CHECK(version.exit_code == kExitOk);
    CHECK_THAT(version.out, StartsWith("labrun "));
    CHECK_THAT(version.out, Contains("(SDK ABI " + std::to_string(LAB_SDK_ABI) + ", tag " + lab::Registry::abi_tag() +
                                     ")"));
}

TEST_CASE("labrun --list prints every plugin of the build with its file", "[cli]") {
    Outcome list = run_labrun({"--list"});
    INFO(list);
    REQUIRE(list.exit_code == kExitOk);
    std::vector<std::string> lines = lines_of(list.out);
    REQUIRE_FALSE(lines.empty());
    CHECK(words_of(lines[0]) == std::vector<std::string>{"KIND", "NAME", "VERSION", "FILE"});

    // (kind, name) -> file, from the table.
    std::map<std::pair<std::string, std::string>, std::string> listed;
    for (size_t i = 1; i < lines.size(); ++i) {
        std::vector<std::string> words = words_of(lines[i]);
        INFO("line " << i << ": " << lines[i]);
        REQUIRE(words.size() == 4);
        listed[{words[0], words[1]}] = words[3];
    }
    std::vector<std::pair<std::string, std::string>> expected = {
        {"backend", "reference"}, {"tokenizer", "char"},     {"attention", "softmax"}, {"model", "gpt"},
        {"optimizer", "adamw"},   {"optimizer", "sgd"},      {"schedule", "constant"}, {"schedule", "linear"},
        {"schedule", "cosine"},   {"task", "causal_lm"},
    };
    if (fs::is_regular_file(plugin_dir / "backend_onednn.so")) expected.emplace_back("backend", "onednn");
    for (const auto& [kind, name] : expected) {
        INFO(kind << "/" << name);
        auto it = listed.find({kind, name});
        REQUIRE(it != listed.end());
        CHECK(it->second == fs::canonical(plugin_dir / (kind + "_" + name + ".so")).string());
    }
    // Every library in the build's plugin folder shows up; the test-only plugins do not.
    std::set<std::string> files;
    for (const auto& [key, file] : listed) files.insert(file);
    for (const auto& entry : fs::directory_iterator(plugin_dir))
        if (entry.path().extension() == ".so") CHECK(files.count(fs::canonical(entry.path()).string()) == 1);
    CHECK(listed.count({"tokenizer", "test_upper"}) == 0);
}

TEST_CASE("labrun loads extra plugins from --plugin-path and LAB_PLUGIN_PATH", "[cli]") {
    const fs::path good = test_plugin_dir / "test_good.so";
    REQUIRE(fs::is_regular_file(good));
    Outcome list = run_labrun({"--plugin-path", good.string(), "--list"});
    INFO(list);
    CHECK(list.exit_code == kExitOk);
    bool found = false;
    for (const std::string& line : lines_of(list.out))
        if (words_of(line) == std::vector<std::string>{"tokenizer", "test_upper", "0.1", fs::canonical(good).string()})
            found = true;
    CHECK(found);

    Outcome from_env = run_labrun({"--describe", "schedule/test_const"}, "", {{"LAB_PLUGIN_PATH", good.string()}});
    INFO(from_env);
    CHECK(from_env.exit_code == kExitOk);
    CHECK_THAT(from_env.out, Contains("factor = 1"));
}

TEST_CASE("labrun refuses a bad plugin with exit code 4", "[cli]") {
    const fs::path duplicate = test_plugin_dir / "test_duplicate.so";
    Outcome twice = run_labrun({"--plugin-path", duplicate.string(), "--list"});
    INFO(twice);
    CHECK(twice.exit_code == kExitPlugin);
    CHECK_THAT(twice.err, Contains("tokenizer 'char' is registered twice"));
    CHECK_THAT(twice.err, Contains(fs::canonical(plugin_dir / "tokenizer_char.so").string()));
    CHECK_THAT(twice.err, Contains(fs::canonical(duplicate).string()));

    const fs::path bad_abi = test_plugin_dir / "test_bad_abi.so";
    Outcome abi = run_labrun({"--list"}, "", {{"LAB_PLUGIN_PATH", bad_abi.string()}});
    INFO(abi);
    CHECK(abi.exit_code == kExitPlugin);
    CHECK_THAT(abi.err, Contains("lab-0.0.0/gcc-1/cxx11abi-0"));
    CHECK_THAT(abi.err, Contains(lab::Registry::abi_tag()));
    CHECK_THAT(abi.err, Contains("rebuild"));

    Outcome missing = run_labrun({"--plugin-path", "/nonexistent/plugin.so", "--list"});
    INFO(missing);
    CHECK(missing.exit_code == kExitPlugin);
    CHECK_THAT(missing.err, Contains("/nonexistent/plugin.so"));
}

TEST_CASE("labrun --describe prints a plugin's options with their defaults", "[cli]") {
    Outcome gpt = run_labrun({"--describe", "model/gpt"});
    INFO(gpt);
    REQUIRE(gpt.exit_code == kExitOk);
    CHECK_THAT(gpt.out, StartsWith("model/gpt "));
    CHECK_THAT(gpt.out, Contains(fs::canonical(plugin_dir / "model_gpt.so").string()));
    for (const char* line : {"  layers = 4", "  heads = 4", "  hidden = 128", "  dropout = 0"})
        CHECK_THAT(gpt.out, Contains(std::string(line) + "\n"));
    CHECK_THAT(gpt.out, Contains("integer >= 1"));
    CHECK_THAT(gpt.out, Contains("real number in [0, 0.99]"));
    CHECK_THAT(gpt.out, Contains("`type = gpt` selects it in [model]"));
    CHECK_THAT(gpt.out, Contains("needs of the attention: causal\n"));

    // An attention plugin shows what it supports and where it equals softmax.
    Outcome gqa = run_labrun({"--describe", "attention/gqa"});
    INFO(gqa);
    REQUIRE(gqa.exit_code == kExitOk);
    CHECK_THAT(gqa.out, Contains("supports: causal, padding mask, kv cache\n"));
    CHECK_THAT(gqa.out, Contains("equals attention/softmax: with kv_heads = 0\n"));
    Outcome linear = run_labrun({"--describe", "attention/linear"});
    CHECK_THAT(linear.out, Contains("equals attention/softmax: never (not an exact variant)"));

    Outcome train = run_labrun({"--describe", "train"});
    INFO(train);
    CHECK(train.exit_code == kExitOk);
    CHECK_THAT(train.out, Contains("steps = (required)"));
}

TEST_CASE("labrun --describe of an unknown plugin exits 4 and suggests the closest", "[cli]") {
    Outcome gtp = run_labrun({"--describe", "model/gtp"});
    INFO(gtp);
    CHECK(gtp.exit_code == kExitPlugin);
    CHECK_THAT(gtp.err, Contains("unknown model 'gtp'"));
    CHECK_THAT(gtp.err, Contains("did you mean 'gpt'?"));
    // The three ways to load more plugins, and the build's plugin folder labrun looked in.
    CHECK_THAT(gtp.err, Contains("--plugin-path DIR"));
    CHECK_THAT(gtp.err, Contains("`plugins = DIR` in [experiment]"));
    CHECK_THAT(gtp.err, Contains("LAB_PLUGIN_PATH=DIR"));
    CHECK_THAT(gtp.err, Contains("looked in: " + fs::canonical(fs::path(LAB_BINARY_DIR) / "plugins").string()));
    CHECK(gtp.out.empty());

    Outcome no_slash = run_labrun({"--describe", "gpt"});
    INFO(no_slash);
    CHECK(no_slash.exit_code == kExitConfig);
    CHECK_THAT(no_slash.err, Contains("KIND/NAME"));
}

TEST_CASE("labrun tokenize encodes and decodes stdin lines", "[cli]") {
    TempDir dir;
    const std::string corpus_text = "hello world\n";
    const fs::path corpus = dir.write("corpus.txt", corpus_text);
    // tokenizer/char's vocabulary is the sorted set of characters of the corpus.
    std::set<char> chars(corpus_text.begin(), corpus_text.end());
    std::vector<char> vocab(chars.begin(), chars.end());
    auto ids_of = [&](const std::string& word) {
        std::string ids;
        for (char c : word) {
            if (!ids.empty()) ids += " ";
            ids += std::to_string(std::find(vocab.begin(), vocab.end(), c) - vocab.begin());
        }
        return ids;
    };
    const std::string expected = ids_of("hello") + "\n" + ids_of("world") + "\n";
    REQUIRE(expected == "4 3 5 5 6\n8 6 7 5 2\n");  // the same, by hand, so the helper cannot hide a slip

    const std::string corpus_arg = "corpus=" + corpus.string();
    Outcome encoded = run_labrun({"tokenize", "char", corpus_arg}, "hello\nworld\n");
    INFO(encoded);
    CHECK(encoded.exit_code == kExitOk);
    CHECK(encoded.out == expected);

    Outcome decoded = run_labrun({"tokenize", "char", corpus_arg, "--decode"}, encoded.out);
    INFO(decoded);
    CHECK(decoded.exit_code == kExitOk);
    CHECK(decoded.out == "hello\nworld\n");
}

TEST_CASE("labrun tokenize reports text and ids it cannot handle", "[cli]") {
    TempDir dir;
    const fs::path corpus = dir.write("corpus.txt", "hello world\n");
    const std::string corpus_arg = "corpus=" + corpus.string();

    Outcome unknown_char = run_labrun({"tokenize", "char", corpus_arg}, "hello\nhex\n");
    INFO(unknown_char);
    CHECK(unknown_char.exit_code == kExitData);
    CHECK_THAT(unknown_char.err, Contains("stdin line 2"));
    CHECK_THAT(unknown_char.err, Contains("character 'x'"));
    CHECK_THAT(unknown_char.err, Contains("not in the vocabulary"));

    Outcome bad_id = run_labrun({"tokenize", "char", corpus_arg, "--decode"}, "4 3\n99\n");
    INFO(bad_id);
    CHECK(bad_id.exit_code == kExitData);
    CHECK_THAT(bad_id.err, Contains("stdin line 2"));
    CHECK_THAT(bad_id.err, Contains("id 99"));

    Outcome not_a_number = run_labrun({"tokenize", "char", corpus_arg, "--decode"}, "4 x3\n");
    INFO(not_a_number);
    CHECK(not_a_number.exit_code == kExitData);
    CHECK_THAT(not_a_number.err, Contains("'x3' is not a token id"));

    Outcome no_vocab = run_labrun({"tokenize", "char"}, "hello\n");
    INFO(no_vocab);
    CHECK(no_vocab.exit_code == kExitConfig);
    CHECK_THAT(no_vocab.err, Contains("has no vocabulary"));

    Outcome typo = run_labrun({"tokenize", "chr", corpus_arg}, "hello\n");
    INFO(typo);
    CHECK(typo.exit_code == kExitPlugin);
    CHECK_THAT(typo.err, Contains("did you mean 'char'?"));

    Outcome bad_option = run_labrun({"tokenize", "char", "corpse=" + corpus.string()}, "hello\n");
    INFO(bad_option);
    CHECK(bad_option.exit_code == kExitConfig);
    CHECK_THAT(bad_option.err, Contains("corpse"));
    CHECK_THAT(bad_option.err, Contains("did you mean 'corpus'?"));
}

TEST_CASE("labrun --dry-run prints the resolved experiment", "[cli]") {
    ExperimentDir exp;
    std::vector<std::string> lines = exp.lines();
    const fs::path file = exp.write(lines);

    Outcome dry = exp.dry_run(file);
    INFO(dry);
    REQUIRE(dry.exit_code == kExitOk);
    CHECK_THAT(dry.out, StartsWith("# 1 run\n# run 'cli_test' (config hash "));
    CHECK_THAT(dry.out, Contains("layers = 2"));
    CHECK_THAT(dry.out, Contains("hidden = 32"));
    CHECK_THAT(dry.out, Contains("# " + file.string() + ":" + std::to_string(line_number(lines, "layers = 2"))));
    // ${data} expanded to --data-dir.
    CHECK_THAT(dry.out, Contains("train = " + (exp.data / "tiny.txt").string()));
    // Defaults are filled in and marked.
    CHECK_THAT(dry.out, Contains("type = softmax"));
    CHECK_THAT(dry.out, Contains("mlp_ratio = 4"));
    CHECK_THAT(dry.out, Contains("# default"));
    // A dry run does no work.
    CHECK_FALSE(fs::exists(exp.db));

    Outcome overridden = exp.dry_run(file, {"model.layers=3"});
    INFO(overridden);
    CHECK(overridden.exit_code == kExitOk);
    CHECK_THAT(overridden.out, Contains("layers = 3"));
    CHECK_THAT(overridden.out, Contains("# override 'model.layers=3'"));
    CHECK_THAT(overridden.out, !Contains("layers = 2"));
}

TEST_CASE("labrun --dry-run reads included files", "[cli]") {
    ExperimentDir exp;
    std::vector<std::string> lines = exp.lines();
    // Move [train] into base/train.ini and include it.
    auto train = std::find(lines.begin(), lines.end(), "[train]");
    std::vector<std::string> base(train, lines.end());
    lines.erase(train, lines.end());
    lines.insert(lines.begin(), "include = base/train.ini");
    const fs::path base_file = exp.write(base, "base/train.ini");
    const fs::path file = exp.write(lines);

    Outcome dry = exp.dry_run(file);
    INFO(dry);
    CHECK(dry.exit_code == kExitOk);
    CHECK_THAT(dry.out, Contains("steps = 3"));
    CHECK_THAT(dry.out, Contains(base_file.lexically_normal().string() + ":" +
                                 std::to_string(line_number(base, "steps = 3"))));
}

TEST_CASE("labrun reports an unknown key with file:line and the closest key", "[cli]") {
    ExperimentDir exp;
    std::vector<std::string> lines = replace_line(exp.lines(), "layers = 2", "layrs = 2");
    const fs::path file = exp.write(lines);
    Outcome outcome = exp.dry_run(file);
    INFO(outcome);
    CHECK(outcome.exit_code == kExitConfig);
    CHECK_THAT(outcome.err, Contains(file.string() + ":" + std::to_string(line_number(lines, "layrs = 2"))));
    CHECK_THAT(outcome.err, Contains("key 'layrs'"));
    CHECK_THAT(outcome.err, Contains("did you mean 'layers'?"));
    CHECK(outcome.out.empty());
}

TEST_CASE("labrun reports a value of the wrong type", "[cli]") {
    ExperimentDir exp;
    std::vector<std::string> lines = replace_line(exp.lines(), "layers = 2", "layers = two");
    const fs::path file = exp.write(lines);
    Outcome outcome = exp.dry_run(file);
    INFO(outcome);
    CHECK(outcome.exit_code == kExitConfig);
    CHECK_THAT(outcome.err, Contains(file.string() + ":" + std::to_string(line_number(lines, "layers = two"))));
    CHECK_THAT(outcome.err, Contains("layers = 'two'"));
    CHECK_THAT(outcome.err, Contains("expected an integer >= 1"));
}

TEST_CASE("labrun reports a value out of range", "[cli]") {
    ExperimentDir exp;
    std::vector<std::string> lines = insert_after(exp.lines(), "hidden = 32", "dropout = 1.5");
    const fs::path file = exp.write(lines);
    Outcome outcome = exp.dry_run(file);
    INFO(outcome);
    CHECK(outcome.exit_code == kExitConfig);
    CHECK_THAT(outcome.err, Contains(file.string() + ":" + std::to_string(line_number(lines, "dropout = 1.5"))));
    CHECK_THAT(outcome.err, Contains("dropout = 1.5"));
    CHECK_THAT(outcome.err, Contains("[0, 0.99]"));

    std::vector<std::string> zero_steps = replace_line(exp.lines(), "steps = 3", "steps = 0");
    Outcome steps = exp.dry_run(exp.write(zero_steps));
    INFO(steps);
    CHECK(steps.exit_code == kExitConfig);
    CHECK_THAT(steps.err, Contains("steps = 0: expected an integer >= 1"));
}

TEST_CASE("labrun reports a missing include with file:line", "[cli]") {
    ExperimentDir exp;
    std::vector<std::string> lines = exp.lines();
    lines.insert(lines.begin() + 1, "include = base/missing.ini");
    const fs::path file = exp.write(lines);
    Outcome outcome = exp.dry_run(file);
    INFO(outcome);
    CHECK(outcome.exit_code == kExitConfig);
    CHECK_THAT(outcome.err, Contains(file.string() + ":2"));
    CHECK_THAT(outcome.err, Contains("base/missing.ini"));
    CHECK_THAT(outcome.err, Contains("does not exist"));
}

TEST_CASE("labrun reports a missing experiment file", "[cli]") {
    TempDir dir;
    const fs::path missing = dir.path / "nowhere.ini";
    Outcome outcome = run_labrun({missing.string(), "--dry-run"});
    INFO(outcome);
    CHECK(outcome.exit_code == kExitConfig);
    CHECK_THAT(outcome.err, Contains(missing.string()));
    CHECK_THAT(outcome.err, Contains("does not exist"));
}

TEST_CASE("labrun reports an unknown override key naming the override", "[cli]") {
    ExperimentDir exp;
    const fs::path file = exp.write(exp.lines());
    Outcome outcome = exp.dry_run(file, {"model.layrs=3"});
    INFO(outcome);
    CHECK(outcome.exit_code == kExitConfig);
    CHECK_THAT(outcome.err, Contains("override 'model.layrs=3'"));
    CHECK_THAT(outcome.err, Contains("did you mean 'layers'?"));

    Outcome malformed = exp.dry_run(file, {"layers=3"});
    INFO(malformed);
    CHECK(malformed.exit_code == kExitConfig);
    CHECK_THAT(malformed.err, Contains("override 'layers=3' is malformed"));
}

TEST_CASE("labrun reports unknown sections and plugin names in an experiment", "[cli]") {
    ExperimentDir exp;
    std::vector<std::string> section = replace_line(exp.lines(), "[model]", "[modle]");
    const fs::path section_file = exp.write(section);
    Outcome bad_section = exp.dry_run(section_file);
    INFO(bad_section);
    CHECK(bad_section.exit_code == kExitConfig);
    CHECK_THAT(bad_section.err,
               Contains(section_file.string() + ":" + std::to_string(line_number(section, "[modle]"))));
    CHECK_THAT(bad_section.err, Contains("did you mean [model]?"));

    std::vector<std::string> type = replace_line(exp.lines(), "type = gpt", "type = gtp");
    const fs::path type_file = exp.write(type);
    Outcome bad_type = exp.dry_run(type_file);
    INFO(bad_type);
    CHECK(bad_type.exit_code == kExitConfig);
    CHECK_THAT(bad_type.err, Contains(type_file.string() + ":" + std::to_string(line_number(type, "type = gtp"))));
    CHECK_THAT(bad_type.err, Contains("did you mean 'gpt'?"));
}

TEST_CASE("every experiment file in experiments/ resolves (labrun --dry-run)", "[cli]") {
    int files = 0;
    for (const auto& entry : fs::directory_iterator(fs::path(LAB_SOURCE_DIR) / "experiments")) {
        if (entry.path().extension() != ".ini") continue;
        // --data-dir: a plugin's checks look at the files its options name (model/bert's pretrained
        // folder), so ${data} must point where the data is.
        Outcome dry = run_labrun({entry.path().string(), "--dry-run", "--data-dir", lab_test::kDataDir.string()});
        INFO(entry.path() << "\n" << dry);
        CHECK(dry.exit_code == 0);
        ++files;
    }
    CHECK(files >= 10);
    // experiments/ablation/ holds files that only make sense included by a sweep, and one study of
    // its own: 3 position schemes x 3 seeds.
    Outcome study = run_labrun({(fs::path(LAB_SOURCE_DIR) / "experiments/ablation/length_extrapolation.ini").string(),
                                "--dry-run"});
    INFO(study);
    CHECK(study.exit_code == 0);
    CHECK_THAT(study.out, Catch::Matchers::StartsWith("# 9 runs of sweep"));
}
