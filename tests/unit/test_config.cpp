// Experiment files and option validation: every error names file:line (or the override), the key,
// what was expected and the closest known name.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <set>
#include <sstream>

#include "lab/config.h"
#include "lab/evaluation.h"
#include "lab/error.h"
#include "lab/hash.h"
#include "lab/options.h"
#include "lab/plugin_kinds.h"
#include "lab/registry.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace lab_test;
using Catch::Matchers::Contains;

namespace {

lab::Registry make_registry() {
    lab::Registry registry;
    lab::OptionSchema gpt;
    gpt.integer("layers", 2, "transformer blocks").at_least(1);
    gpt.integer("hidden", 64, "model width").at_least(1);
    gpt.integer("heads", std::nullopt, "number of attention heads").at_least(1);
    gpt.real("dropout", 0.1, "dropout probability").range(0, 1);
    registry.add_model({"gpt", "1.0", "test gpt", gpt}, unused_factory<lab::Model>());
    lab::OptionSchema bert;
    bert.integer("layers", 2, "transformer blocks").at_least(1);
    registry.add_model({"bert", "1.0", "test bert", bert}, unused_factory<lab::Model>());

    lab::OptionSchema char_tokenizer;
    char_tokenizer.boolean("lowercase", false, "fold case before encoding");
    registry.add_tokenizer({"char", "1.0", "test char", char_tokenizer}, unused_factory<lab::Tokenizer>());

    registry.add_attention({"softmax", "1.0", "test softmax", {}}, unused_factory<lab::Attention>());
    lab::OptionSchema linear;
    linear.integer("feature_dim", 16, "feature map size").at_least(1);
    registry.add_attention({"linear", "1.0", "test linear", linear}, unused_factory<lab::Attention>());

    lab::OptionSchema causal_lm;
    causal_lm.path("train", std::nullopt, "training text");
    causal_lm.path("valid", std::string(""), "validation text");
    registry.add_task({"causal_lm", "1.0", "test lm", causal_lm}, unused_factory<lab::Task>());

    lab::OptionSchema adamw;
    adamw.real("lr", 1e-3, "learning rate").at_least(0);
    registry.add_optimizer({"adamw", "1.0", "test adamw", adamw}, unused_factory<lab::Optimizer>());
    registry.add_optimizer({"sgd", "1.0", "test sgd", adamw}, unused_factory<lab::Optimizer>());

    registry.add_schedule({"constant", "1.0", "test constant", {}}, unused_factory<lab::Schedule>());
    lab::OptionSchema cosine;
    cosine.integer("warmup", 0, "warm-up steps").at_least(0);
    registry.add_schedule({"cosine", "1.0", "test cosine", cosine}, unused_factory<lab::Schedule>());

    lab::OptionSchema onednn;
    onednn.boolean("verbose", false, "print primitive creation");
    onednn.integer("threads", 0, "OpenMP threads; 0 = all cores").at_least(0);
    registry.add_backend({"onednn", "1.0", "test onednn", onednn}, unused_factory<lab::Backend>());
    registry.add_backend({"cuda", "1.0", "test cuda", {}}, unused_factory<lab::Backend>());
    return registry;
}

// A complete experiment; line numbers are referred to by the tests below.
const std::string valid_ini =
    "[experiment]\n"        // 1
    "seed = 3\n"            // 2
    "\n"                    // 3
    "[tokenizer]\n"         // 4
    "type = char\n"         // 5
    "[model]\n"             // 6
    "type = gpt\n"          // 7
    "heads = 4\n"           // 8
    "layers = 3\n"          // 9
    "[task]\n"              // 10
    "type = causal_lm\n"    // 11
    "train = corpus.txt\n"  // 12
    "[optimizer]\n"         // 13
    "type = adamw\n"        // 14
    "lr = 5e-4\n"           // 15
    "[train]\n"             // 16
    "steps = 100\n";        // 17

// valid_ini with line `number` (1-based) replaced by `text` ("" deletes nothing, it blanks it).
std::string with_line(int number, const std::string& text) {
    std::string result, line;
    std::istringstream in(valid_ini);
    for (int i = 1; std::getline(in, line); ++i) result += (i == number ? text : line) + "\n";
    return result;
}

lab::RunSpec resolve_text(const TempDir& dir, const std::string& text, const std::vector<std::string>& overrides = {}) {
    fs::path file = dir.write("x.ini", text);
    lab::RawConfig raw = lab::load_config(file, overrides, {dir.path / "data"});
    return lab::resolve_run(raw, make_registry());
}

std::string error_of(const TempDir& dir, const std::string& text, const std::vector<std::string>& overrides = {}) {
    try {
        resolve_text(dir, text, overrides);
    } catch (const lab::ConfigError& e) {
        return e.what();
    }
    return "<no error>";
}

std::string at(const TempDir& dir, int line) { return (dir.path / "x.ini").string() + ":" + std::to_string(line); }

}  // namespace

TEST_CASE("option text parsing", "[config]") {
    int64_t i = 0;
    CHECK((lab::Options::parse_int("12", &i) && i == 12));
    CHECK((lab::Options::parse_int("-3", &i) && i == -3));
    CHECK((lab::Options::parse_int("1e3", &i) && i == 1000));
    CHECK_FALSE(lab::Options::parse_int("1.5", &i));
    CHECK_FALSE(lab::Options::parse_int("1e-3", &i));
    CHECK_FALSE(lab::Options::parse_int("abc", &i));
    CHECK_FALSE(lab::Options::parse_int("", &i));
    CHECK_FALSE(lab::Options::parse_int("1e30", &i));
    double r = 0;
    CHECK((lab::Options::parse_real("1e-3", &r) && r == 0.001));
    CHECK((lab::Options::parse_real("0.99", &r) && r == 0.99));
    CHECK_FALSE(lab::Options::parse_real("0.9x", &r));
    CHECK_FALSE(lab::Options::parse_real("nan", &r));
    bool b = false;
    for (const char* yes : {"true", "1", "yes", "on", "TRUE"}) CHECK((lab::Options::parse_bool(yes, &b) && b));
    for (const char* no : {"false", "0", "no", "off"}) CHECK((lab::Options::parse_bool(no, &b) && !b));
    CHECK_FALSE(lab::Options::parse_bool("maybe", &b));
}

TEST_CASE("closest_match, join and expectations", "[config]") {
    CHECK(lab::closest_match("layrs", {"dropout", "heads", "hidden", "layers"}) == "layers");
    CHECK(lab::closest_match("zzzzzz", {"dropout", "heads", "hidden", "layers"}).empty());
    CHECK(lab::closest_match("x", {"lr"}).empty());
    CHECK(lab::join({"a", "b", "c"}, ", ") == "a, b, c");

    lab::OptionSchema schema;
    CHECK(schema.integer("steps", std::nullopt, "h").at_least(1).expectation() == "integer >= 1");
    CHECK(schema.real("p", 0.5, "h").range(0, 1).expectation() == "real number in [0, 1]");
    CHECK(schema.choice("c", "a", {"a", "b"}, "h").expectation() == "one of: a, b");
    CHECK(std::string(lab::option_type_name(lab::OptionType::path)) == "path");
    CHECK_THROWS_AS(schema.integer("steps", 1, "again"), lab::Error);
    CHECK_THROWS_AS(schema.choice("d", "z", {"a", "b"}, "default not a choice"), lab::Error);
}

TEST_CASE("Options::validate normalises values and fills defaults", "[config]") {
    lab::OptionSchema schema;
    schema.integer("steps", std::nullopt, "steps").at_least(1);
    schema.real("lr", 1e-3, "learning rate");
    schema.boolean("flag", false, "a flag");
    std::map<std::string, lab::OptionValue> raw = {{"steps", {"1e3", "f.ini:2"}}, {"flag", {"yes", "f.ini:3"}}};
    lab::Options options = lab::Options::validate("train", "train", schema, raw);
    CHECK(options.get_int("steps") == 1000);
    CHECK(options.values().at("steps").text == "1000");
    CHECK(options.get_bool("flag"));
    CHECK(options.get_float("lr") == Approx(1e-3));
    CHECK(options.is_set("steps"));
    CHECK_FALSE(options.is_set("lr"));
    CHECK(options.origin("lr") == "default");
    CHECK(options.origin("steps") == "f.ini:2");
    CHECK_THROWS_WITH(options.get_int("stepz"), Contains("'stepz'") && Contains("did you mean 'steps'?"));
}

TEST_CASE("a valid experiment resolves with origins and defaults", "[config]") {
    TempDir dir;
    lab::RunSpec run = resolve_text(dir, valid_ini);
    CHECK(run.name == "x");
    CHECK(run.experiment.get_int("seed") == 3);
    CHECK(run.experiment.origin("seed") == at(dir, 2));
    CHECK(run.plugins.at("backend").plugin == "onednn");  // [backend] type's default
    CHECK(run.experiment.get_string("precision") == "fp32");
    CHECK(run.train.get_int("steps") == 100);
    CHECK(run.train.get_int("batch") == 12);
    CHECK(run.train.origin("batch") == "default");
    CHECK(run.train.get_float("grad_clip") == 1.0);
    CHECK(run.train.get_bool("eval_at_end"));
    REQUIRE(run.plugins.size() == 7);
    CHECK(run.plugins.at("model").plugin == "gpt");
    CHECK(run.plugins.at("model").plugin_origin == at(dir, 7));
    CHECK(run.plugins.at("model").options.get_int("layers") == 3);
    CHECK(run.plugins.at("model").options.get_int("hidden") == 64);
    CHECK(run.plugins.at("model").options.get_float("dropout") == Approx(0.1));
    CHECK(run.plugins.at("attention").plugin == "softmax");
    CHECK(run.plugins.at("attention").plugin_origin == "default");
    CHECK(run.plugins.at("schedule").plugin == "constant");
    CHECK(run.plugins.at("backend").plugin == "onednn");
    CHECK_FALSE(run.plugins.at("backend").options.get_bool("verbose"));
    CHECK(run.plugins.at("optimizer").options.get_float("lr") == Approx(5e-4));
    CHECK(run.plugins.at("task").options.get_string("train") == "corpus.txt");
}

TEST_CASE("unknown key names file:line, key and the closest option", "[config]") {
    TempDir dir;
    CHECK_THAT(error_of(dir, with_line(9, "layrs = 3")),
               Contains(at(dir, 9) + ": [model] key 'layrs' is not an option of model/gpt; did you mean 'layers'? "
                                     "(known: dropout, heads, hidden, layers)"));
    CHECK_THAT(error_of(dir, with_line(17, "steps = 100\nbatchsize = 4")),
               Contains(at(dir, 18) + ": [train] key 'batchsize' is not an option of train"));
}

TEST_CASE("wrong type, out of range and bad choice", "[config]") {
    TempDir dir;
    CHECK_THAT(error_of(dir, with_line(17, "steps = abc")),
               Contains(at(dir, 17) + ": [train] steps = 'abc': expected an integer >= 1"));
    CHECK_THAT(error_of(dir, with_line(17, "steps = 2.5")), Contains("steps = '2.5': expected an integer >= 1"));
    CHECK_THAT(error_of(dir, with_line(17, "steps = 0")),
               Contains(at(dir, 17) + ": [train] steps = 0: expected an integer >= 1"));
    CHECK_THAT(error_of(dir, with_line(9, "dropout = 1.5")),
               Contains(at(dir, 9) + ": [model] dropout = 1.5: expected a real number in [0, 1]"));
    CHECK_THAT(error_of(dir, with_line(17, "steps = 10\neval_at_end = maybe")),
               Contains("[train] eval_at_end = 'maybe': expected a boolean"));
    CHECK_THAT(error_of(dir, with_line(2, "precision = fp23")),
               Contains(at(dir, 2) + ": [experiment] precision = 'fp23': expected one of: fp32, bf16; "
                                     "did you mean 'fp32'?"));
}

TEST_CASE("missing required key names the file and what is expected", "[config]") {
    TempDir dir;
    CHECK_THAT(error_of(dir, with_line(8, "")),
               Contains((dir.path / "x.ini").string() +
                        ": [model] missing required key 'heads' (integer >= 1: number of attention heads)"));
    // No [train] section at all: the top file is where steps must be added.
    std::string no_train = valid_ini.substr(0, valid_ini.find("[train]"));
    CHECK_THAT(error_of(dir, no_train),
               Contains((dir.path / "x.ini").string() + ": [train] missing required key 'steps' (integer >= 1"));
}

TEST_CASE("includes: relative paths, override order, read order", "[config]") {
    TempDir dir;
    dir.write("base/common.ini", "[model]\ntype = gpt\nlayers = 1\nhidden = 32\nheads = 2\n");
    dir.write("base/small.ini", "include = common.ini\n[model]\nlayers = 2\ndropout = 0.2\n");
    dir.write("base/data.ini", "[task]\ntype = causal_lm\ntrain = a.txt\n[model]\nlayers = 5\n");
    // The includes provide [model] and [task]; the top file sets only hidden.
    std::string text = "include = base/small.ini, base/data.ini ; the later include wins\n"
           "[tokenizer]\ntype = char\n[model]\nhidden = 48\n[optimizer]\ntype = sgd\n[train]\nsteps = 5\n";
    fs::path file = dir.write("x.ini", text);
    lab::RawConfig raw = lab::load_config(file, {}, {dir.path});
    REQUIRE(raw.files.size() == 4);
    CHECK(raw.files[0] == file);
    CHECK(raw.files[1] == dir.path / "base/small.ini");
    CHECK(raw.files[2] == dir.path / "base/common.ini");
    CHECK(raw.files[3] == dir.path / "base/data.ini");
    const auto& model = raw.sections.at("model");
    CHECK(model.at("layers").text == "5");  // data.ini comes after small.ini
    CHECK(model.at("layers").origin == (dir.path / "base/data.ini").string() + ":5");
    CHECK(model.at("hidden").text == "48");  // the including file wins over its includes
    CHECK(model.at("hidden").origin == file.string() + ":5");
    CHECK(model.at("dropout").text == "0.2");
    CHECK(model.at("heads").text == "2");
    lab::RunSpec run = lab::resolve_run(raw, make_registry());
    CHECK(run.name == "x");
    CHECK(run.plugins.at("model").options.get_int("layers") == 5);
    CHECK(run.plugins.at("model").plugin_origin == (dir.path / "base/common.ini").string() + ":2");
}

TEST_CASE("include errors: missing file, cycle, include after a section", "[config]") {
    TempDir dir;
    CHECK_THAT(error_of(dir, "include = nothere.ini\n" + valid_ini),
               Contains(at(dir, 1) + ": included file '" + (dir.path / "nothere.ini").string() + "' does not exist"));
    dir.write("a.ini", "include = b.ini\n");
    dir.write("b.ini", "\ninclude = a.ini\n");
    CHECK_THAT(error_of(dir, "include = a.ini\n" + valid_ini),
               Contains((dir.path / "b.ini").string() + ":2: include cycle: ") &&
                   Contains((dir.path / "a.ini").string() + " -> " + (dir.path / "b.ini").string() + " -> " +
                            (dir.path / "a.ini").string()));
    CHECK_THAT(error_of(dir, "include = x.ini\n" + valid_ini), Contains("include cycle"));
    CHECK_THAT(error_of(dir, valid_ini + "include = a.ini\n"),
               Contains(at(dir, 18) + ": include inside [train]"));
    CHECK_THROWS_WITH(lab::load_config(dir.path / "absent.ini", {}, {}),
                      Contains("experiment file '" + (dir.path / "absent.ini").string() + "' does not exist"));
}

TEST_CASE("command-line overrides win and are named in errors", "[config]") {
    TempDir dir;
    lab::RunSpec run = resolve_text(dir, valid_ini, {"model.layers=6", "attention.type = linear", "train.batch=4"});
    CHECK(run.plugins.at("model").options.get_int("layers") == 6);
    CHECK(run.plugins.at("model").options.origin("layers") == "override 'model.layers=6'");
    CHECK(run.plugins.at("attention").plugin == "linear");
    CHECK(run.plugins.at("attention").options.get_int("feature_dim") == 16);
    CHECK(run.train.get_int("batch") == 4);

    CHECK_THAT(error_of(dir, valid_ini, {"train.steps=0"}),
               Contains("override 'train.steps=0': [train] steps = 0: expected an integer >= 1"));
    CHECK_THAT(error_of(dir, valid_ini, {"model.layrs=3"}),
               Contains("override 'model.layrs=3': [model] key 'layrs' is not an option of model/gpt; did you mean "
                        "'layers'?"));
    CHECK_THAT(error_of(dir, valid_ini, {"trainsteps=3"}),
               Contains("override 'trainsteps=3' is malformed: expected 'section.key=value'"));
    CHECK_THAT(error_of(dir, valid_ini, {"train.steps"}), Contains("expected 'section.key=value'"));
    CHECK_THAT(error_of(dir, valid_ini, {"modle.layers=3"}),
               Contains("override 'modle.layers=3': unknown section [modle]; did you mean [model]?"));
}

TEST_CASE("the data and env:NAME placeholders expand, anything else is an error", "[config]") {
    TempDir dir;
    ::setenv("LAB_TEST_CONFIG_VALUE", "from-env", 1);
    ::unsetenv("LAB_TEST_CONFIG_UNSET");
    fs::path file = dir.write("x.ini", with_line(12, "train = ${data}/corpus.txt\nvalid = ${env:LAB_TEST_CONFIG_VALUE}.txt"));
    lab::RawConfig raw = lab::load_config(file, {"tokenizer.type=${env:LAB_TEST_CONFIG_VALUE}"}, {"/srv/data/"});
    CHECK(raw.sections.at("task").at("train").text == "/srv/data/corpus.txt");
    CHECK(raw.sections.at("task").at("valid").text == "from-env.txt");
    CHECK(raw.sections.at("tokenizer").at("type").text == "from-env");

    CHECK_THAT(error_of(dir, with_line(12, "train = ${env:LAB_TEST_CONFIG_UNSET}")),
               Contains(at(dir, 12) + ": [task] train uses ${env:LAB_TEST_CONFIG_UNSET}") &&
                   Contains("'LAB_TEST_CONFIG_UNSET' is not set"));
    CHECK_THAT(error_of(dir, with_line(12, "train = ${dataset}/x")),
               Contains(at(dir, 12) + ": [task] train: unknown expansion '${dataset}'; known forms: ${data}") &&
                   Contains("${env:NAME}"));
    CHECK_THAT(error_of(dir, with_line(12, "train = ${data")), Contains("unterminated '${'"));
}

TEST_CASE("comments, malformed lines and duplicate keys", "[config]") {
    TempDir dir;
    std::string text = "; a whole-line comment\n# another\n" +
                       with_line(2, "seed = 5   ; inline\nname = run#2 # the '#' in the value stays") +
                       "  # indented comment\n";
    lab::RunSpec run = resolve_text(dir, text);
    CHECK(run.experiment.get_int("seed") == 5);
    CHECK(run.name == "run#2");
    CHECK(run.experiment.origin("name") == at(dir, 5));

    CHECK_THAT(error_of(dir, with_line(9, "this is not ini")),
               Contains(at(dir, 9) + ": expected 'key = value' or '[section]', got 'this is not ini'"));
    CHECK_THAT(error_of(dir, with_line(9, "[model")), Contains(at(dir, 9) + ": expected 'key = value' or '[section]'"));
    CHECK_THAT(error_of(dir, with_line(9, " = 3")), Contains(at(dir, 9) + ": expected 'key = value'"));
    CHECK_THAT(error_of(dir, with_line(9, "layers = 3\nlayers = 4")),
               Contains(at(dir, 10) + ": [model] layers is already set at " + at(dir, 9)));
    CHECK_THAT(error_of(dir, "seed = 1\n" + valid_ini),
               Contains(at(dir, 1) + ": key 'seed' is outside any section"));
}

TEST_CASE("unknown and missing sections, unknown plugin types", "[config]") {
    TempDir dir;
    CHECK_THAT(error_of(dir, with_line(6, "[modle]")),
               Contains(at(dir, 6) + ": unknown section [modle]; did you mean [model]? (known sections: attention, "
                                     "backend, experiment, model, optimizer, schedule, sweep, sweep.zip, task, "
                                     "tokenizer, train)"));
    CHECK_THAT(error_of(dir, valid_ini + "[sweeps]\nexperiment.seed = 1, 2\n"),
               Contains(at(dir, 18) + ": unknown section [sweeps]; did you mean [sweep]?"));

    std::string no_optimizer = valid_ini;
    no_optimizer.erase(no_optimizer.find("[optimizer]"), std::string("[optimizer]\ntype = adamw\nlr = 5e-4\n").size());
    CHECK_THAT(error_of(dir, no_optimizer),
               Contains((dir.path / "x.ini").string() + ": missing section [optimizer]; add it with 'type = <name>'") &&
                   Contains("known optimizers: adamw, sgd"));
    CHECK_THAT(error_of(dir, with_line(14, "")), Contains(at(dir, 13) + ": [optimizer] has no 'type'"));

    CHECK_THAT(error_of(dir, with_line(7, "type = gtp")),
               Contains(at(dir, 7) + ": [model] type = 'gtp': unknown model 'gtp'; did you mean 'gpt'?"));
    CHECK_THAT(error_of(dir, valid_ini, {"experiment.backend=cdua"}),
               Contains("override 'experiment.backend=cdua': [experiment] backend = 'cdua'") &&
                   Contains("did you mean 'cuda'?"));
    CHECK_THAT(error_of(dir, valid_ini + "[backend]\ntype = cdua\n"),
               Contains(at(dir, 19) + ": [backend] type = 'cdua': unknown backend 'cdua'; did you mean 'cuda'?"));
    CHECK_THAT(error_of(dir, valid_ini + "[backend]\nverbos = 1\n"),
               Contains(at(dir, 19) + ": [backend] key 'verbos' is not an option of backend/onednn; did you mean "
                                      "'verbose'?"));
}

TEST_CASE("canonical text and hash identify the resolved run", "[config]") {
    TempDir dir;
    lab::RunSpec run = resolve_text(dir, valid_ini);
    const std::string text = run.canonical_text();
    CHECK_THAT(text, Contains("experiment.name = x\n"));
    CHECK_THAT(text, Contains("model.type = gpt\n"));
    CHECK_THAT(text, Contains("model.hidden = 64\n"));  // defaults are part of the identity
    CHECK_THAT(text, Contains("attention.type = softmax\n"));
    CHECK_THAT(text, Contains("optimizer.lr = 0.0005\n"));
    CHECK_THAT(text, Contains("train.batch = 12\n"));
    CHECK_THAT(text, Contains("backend.verbose = false\n"));
    CHECK(text.find("attention.type") < text.find("experiment.name"));  // sorted
    CHECK(run.hash() == lab::sha256_hex(text));
    CHECK(run.hash().size() == 64);

    // Same values written differently (and with other origins) are the same run.
    lab::RunSpec same = resolve_text(dir, with_line(17, "steps = 1e2\nbatch = 12"));
    CHECK(same.canonical_text() == text);
    CHECK(same.hash() == run.hash());
    lab::RunSpec other = resolve_text(dir, valid_ini, {"train.steps=101"});
    CHECK(other.hash() != run.hash());
    lab::RunSpec other_attention = resolve_text(dir, valid_ini, {"attention.type=linear"});
    CHECK(other_attention.hash() != run.hash());
}

TEST_CASE("one table of plugin kinds gives the registry's kinds, the sections and their defaults", "[config]") {
    std::vector<std::string> names, sections = {"experiment", "train"};
    for (const lab::PluginKind& kind : lab::plugin_kinds()) {
        names.push_back(kind.name);
        sections.push_back(kind.section);
        CHECK(lab::find_plugin_kind(kind.name) == &kind);
        CHECK_FALSE(kind.description.empty());
    }
    CHECK(names == std::vector<std::string>{"backend", "tokenizer", "model", "attention", "task", "optimizer",
                                            "schedule"});
    CHECK(lab::Registry::kinds() == names);
    CHECK(lab::known_sections() == sections);
    CHECK(lab::find_plugin_kind("modle") == nullptr);
    // valid_ini leaves out exactly the sections whose kind has a default type.
    TempDir dir;
    const lab::RunSpec run = resolve_text(dir, valid_ini);
    for (const lab::PluginKind& kind : lab::plugin_kinds()) {
        if (kind.default_type.empty()) continue;
        INFO(kind.name);
        CHECK(run.plugins.at(kind.section).plugin == kind.default_type);
        CHECK(run.plugins.at(kind.section).plugin_origin == "default");
    }
    CHECK(lab::find_plugin_kind("backend")->default_type == "onednn");
}

TEST_CASE("[backend] type and threads, and their old spellings in [experiment]", "[config]") {
    TempDir dir;
    // [backend] type picks the backend like every kind's `type`; [experiment] backend is its alias.
    const lab::RunSpec by_type = resolve_text(dir, valid_ini + "[backend]\ntype = cuda\n");
    const lab::RunSpec by_alias = resolve_text(dir, with_line(2, "seed = 3\nbackend = cuda"));
    CHECK(by_type.plugins.at("backend").plugin == "cuda");
    CHECK(by_alias.plugins.at("backend").plugin == "cuda");
    CHECK(by_alias.canonical_text() == by_type.canonical_text());
    CHECK(by_type.hash() == by_alias.hash());
    // The canonical text names the backend as runs always recorded it, so identities do not change.
    CHECK_THAT(by_type.canonical_text(), Contains("experiment.backend = cuda\n") && !Contains("backend.type"));
    CHECK(resolve_text(dir, with_line(2, "seed = 3\nbackend = cuda") + "[backend]\ntype = cuda\n").hash() ==
          by_type.hash());
    CHECK(resolve_text(dir, valid_ini, {"experiment.backend=cuda"}).hash() == by_type.hash());
    CHECK_THAT(error_of(dir, with_line(2, "seed = 3\nbackend = onednn") + "[backend]\ntype = cuda\n"),
               Contains(at(dir, 20) + ": [backend] type = 'cuda' and " + at(dir, 3) +
                        ": [experiment] backend = 'onednn' disagree; keep only [backend] type"));
    CHECK_THAT(error_of(dir, valid_ini + "[backend]\ntype = cuda\n", {"experiment.backend=onednn"}),
               Contains("[backend] type = 'cuda'") && Contains("override 'experiment.backend=onednn'"));

    // [backend] threads is the one thread setting; [experiment] threads its alias.
    const lab::RunSpec threads = resolve_text(dir, valid_ini + "[backend]\nthreads = 2\n");
    const lab::RunSpec old_threads = resolve_text(dir, with_line(2, "seed = 3\nthreads = 2"));
    CHECK(threads.plugins.at("backend").options.get_int("threads") == 2);
    CHECK(old_threads.plugins.at("backend").options.get_int("threads") == 2);
    CHECK(old_threads.canonical_text() == threads.canonical_text());
    CHECK_THAT(threads.canonical_text(), Contains("backend.threads = 2\n") && Contains("experiment.threads = 2\n"));
    CHECK_THAT(error_of(dir, with_line(2, "seed = 3\nthreads = 2") + "[backend]\nthreads = 3\n"),
               Contains(at(dir, 20) + ": [backend] threads = '3' and " + at(dir, 3) +
                        ": [experiment] threads = '2' disagree; keep only [backend] threads"));
    CHECK_THAT(error_of(dir, with_line(2, "seed = 3\nthreads = 4\nbackend = cuda")),
               Contains(at(dir, 3) + ": [experiment] threads = '4' is the old spelling of [backend] threads, which "
                                     "backend/cuda does not have"));
    CHECK(resolve_text(dir, with_line(2, "seed = 3\nthreads = 0\nbackend = cuda")).hash() == by_type.hash());
}

TEST_CASE("canonical text is parsed back into the run it records, old keys included", "[config]") {
    TempDir dir;
    const lab::Registry registry = make_registry();
    const lab::RunSpec run = resolve_text(dir, valid_ini + "[backend]\ntype = onednn\nthreads = 3\n");
    const lab::RunSpec again = lab::resolve_run(lab::parse_canonical_text(run.canonical_text(), "run 7"), registry);
    CHECK(again.canonical_text() == run.canonical_text());
    CHECK(again.plugins.at("backend").plugin_origin == "run 7");

    // An override of a recorded run (labrun eval) replaces the recorded backend and threads.
    const lab::RunSpec cuda_run = resolve_text(dir, valid_ini + "[backend]\ntype = cuda\n");
    lab::RawConfig recorded = lab::parse_canonical_text(cuda_run.canonical_text(), "run 8");
    lab::apply_overrides(recorded, {"backend.type=onednn"}, {});
    CHECK(lab::resolve_run(recorded, registry).plugins.at("backend").plugin == "onednn");
    recorded = lab::parse_canonical_text(run.canonical_text(), "run 7");
    lab::apply_overrides(recorded, {"backend.threads=5"}, {});
    CHECK(lab::resolve_run(recorded, registry).plugins.at("backend").options.get_int("threads") == 5);

    // Runs recorded before [backend] threads: [experiment] threads applied unless 0.
    std::string old_text = run.canonical_text();
    old_text.replace(old_text.find("backend.threads = 3"), 19, "backend.threads = 0");
    old_text.replace(old_text.find("experiment.threads = 3"), 22, "experiment.threads = 2");
    const lab::RunSpec old_run = lab::resolve_run(lab::parse_canonical_text(old_text, "run 1 of old.db"), registry);
    CHECK(old_run.plugins.at("backend").options.get_int("threads") == 2);
    CHECK(old_run.plugins.at("backend").plugin == "onednn");

    CHECK_THROWS_AS(lab::parse_canonical_text("experiment.seed = 1\nnot a line\n", "run 2 of x.db"), lab::DataError);
    try {
        lab::parse_canonical_text("experiment.seed = 1\nnot a line\n", "run 2 of x.db");
    } catch (const lab::DataError& e) {
        CHECK_THAT(std::string(e.what()), Contains("run 2 of x.db: recorded configuration line 2 'not a line'"));
    }
    const lab::RawConfig value_with_equals = lab::parse_canonical_text("task.train = a = b.txt\n", "run 3");
    CHECK(value_with_equals.sections.at("task").at("train").text == "a = b.txt");
}

TEST_CASE("format_run shows resolved values with their origins", "[config]") {
    TempDir dir;
    lab::RunSpec run = resolve_text(dir, valid_ini, {"model.layers=6"});
    const std::string text = lab::format_run(run);
    CHECK_THAT(text, Contains("[model]\n"));
    CHECK_THAT(text, Contains("type = gpt") && Contains("# " + at(dir, 7)));
    CHECK_THAT(text, Contains("layers = 6") && Contains("# override 'model.layers=6'"));
    CHECK_THAT(text, Contains("heads = 4") && Contains("# " + at(dir, 8)));
    CHECK_THAT(text, Contains("batch = 12"));
    CHECK_THAT(text, Contains("# default"));
    CHECK_THAT(text, Contains("[backend]\ntype = onednn") && Contains("type = onednn    # default"));
    CHECK_THAT(text, Contains(run.hash().substr(0, 16)));
    // Every line of a section lines up its origin comment.
    CHECK(text.find("heads = 4   ") != std::string::npos);
}

TEST_CASE("[experiment] plugins are relative to the file that set them", "[config]") {
    TempDir dir;
    dir.write("base/plugins.ini", "[experiment]\nplugins = extra.so, more/, , /abs/x.so\n");
    fs::path file = dir.write("x.ini", "include = base/plugins.ini\n" + valid_ini);
    std::vector<std::string> paths = lab::experiment_plugin_paths(lab::load_config(file, {}, {}));
    REQUIRE(paths.size() == 3);
    CHECK(paths[0] == (dir.path / "base/extra.so").string());
    CHECK(paths[1] == (dir.path / "base/more/").string());
    CHECK(paths[2] == "/abs/x.so");
    std::vector<std::string> from_override =
        lab::experiment_plugin_paths(lab::load_config(file, {"experiment.plugins=mine.so"}, {}));
    CHECK(from_override == std::vector<std::string>{"mine.so"});
    CHECK(lab::experiment_plugin_paths(lab::load_config(dir.write("y.ini", valid_ini), {}, {})).empty());
}

// ---- sweeps ----------------------------------------------------------------------------------

namespace {

// valid_ini with a cosine schedule, so that schedule.warmup is an option: 19 lines, the sweep
// sections of a test start at line 20.
const std::string sweep_base = valid_ini + "[schedule]\ntype = cosine\n";

std::vector<lab::RunSpec> resolve_all(const TempDir& dir, const std::string& text,
                                      const std::vector<std::string>& overrides = {}) {
    fs::path file = dir.write("x.ini", text);
    return lab::resolve_runs(lab::load_config(file, overrides, {dir.path / "data"}), make_registry());
}

std::string sweep_error_of(const TempDir& dir, const std::string& text, const std::vector<std::string>& overrides = {}) {
    try {
        resolve_all(dir, text, overrides);
    } catch (const lab::ConfigError& e) {
        return e.what();
    }
    return "<no error>";
}

using SweepValues = std::vector<std::pair<std::string, std::string>>;

// The brief's example: 2 x 3 grid crossed with a zip group of 2 = 12 runs.
const std::string grid_and_zip = sweep_base +
                                 "[sweep]\n"                              // 20
                                 "attention.type = softmax, linear\n"     // 21
                                 "experiment.seed = 1, 2, 3\n"            // 22
                                 "[sweep.zip]\n"                          // 23
                                 "optimizer.lr = 1e-3, 3e-4\n"            // 24
                                 "schedule.warmup = 100, 200\n";          // 25

}  // namespace

TEST_CASE("a file without [sweep] is one run with an empty sweep_id", "[config][sweep]") {
    TempDir dir;
    std::vector<lab::RunSpec> runs = resolve_all(dir, valid_ini);
    REQUIRE(runs.size() == 1);
    CHECK(runs[0].sweep_id.empty());
    CHECK(runs[0].sweep_index == 0);
    CHECK(runs[0].sweep_size == 1);
    CHECK(runs[0].sweep_values.empty());
    CHECK(runs[0].hash() == resolve_text(dir, valid_ini).hash());
    CHECK(lab::format_run(runs[0]).rfind("# run 'x'", 0) == 0);
}

TEST_CASE("[sweep] is the cross product in file order, last key fastest", "[config][sweep]") {
    TempDir dir;
    std::vector<lab::RunSpec> runs = resolve_all(dir, valid_ini +
                                                          "[sweep]\n"                           // 18
                                                          "attention.type = softmax, linear\n"  // 19
                                                          "experiment.seed = 1, 2, 3\n");       // 20
    REQUIRE(runs.size() == 6);
    const char* attention[] = {"softmax", "softmax", "softmax", "linear", "linear", "linear"};
    const int64_t seed[] = {1, 2, 3, 1, 2, 3};
    for (size_t i = 0; i < runs.size(); ++i) {
        INFO("run " << i);
        CHECK(runs[i].sweep_index == static_cast<int64_t>(i));
        CHECK(runs[i].sweep_size == 6);
        CHECK(runs[i].sweep_id == runs[0].sweep_id);
        CHECK(runs[i].name == "x");  // the experiment's name for every run
        CHECK(runs[i].plugins.at("attention").plugin == attention[i]);
        CHECK(runs[i].plugins.at("attention").plugin_origin == at(dir, 19) + " [sweep]");
        CHECK(runs[i].experiment.get_int("seed") == seed[i]);
        CHECK(runs[i].experiment.origin("seed") == at(dir, 20) + " [sweep]");
        CHECK(runs[i].sweep_values ==
              SweepValues{{"attention.type", attention[i]}, {"experiment.seed", std::to_string(seed[i])}});
    }
    CHECK(runs[0].sweep_id.size() == 12);
    CHECK(runs[0].sweep_id.find_first_not_of("0123456789abcdef") == std::string::npos);
    // The plugin a sweep picks gets its own defaults.
    CHECK(runs[3].plugins.at("attention").options.get_int("feature_dim") == 16);
    CHECK(runs[0].plugins.at("attention").options.values().empty());
    CHECK(lab::format_run(runs[4]).rfind("# sweep " + runs[4].sweep_id +
                                             " run 5/6: attention.type=linear, experiment.seed=2\n# run 'x'",
                                         0) == 0);
}

TEST_CASE("[sweep.zip] keys vary together with normalised values", "[config][sweep]") {
    TempDir dir;
    std::vector<lab::RunSpec> runs = resolve_all(dir, sweep_base +
                                                          "[sweep.zip]\n"
                                                          "optimizer.lr = 1e-3, 3e-4, 2.5e-4\n"
                                                          "schedule.warmup = 100, 2e2, 300\n");
    REQUIRE(runs.size() == 3);
    const double lr[] = {1e-3, 3e-4, 2.5e-4};
    const int64_t warmup[] = {100, 200, 300};
    const char* lr_text[] = {"0.001", "0.0003", "0.00025"};
    for (size_t i = 0; i < runs.size(); ++i) {
        INFO("run " << i);
        CHECK(runs[i].plugins.at("optimizer").options.get_float("lr") == Approx(lr[i]));
        CHECK(runs[i].plugins.at("schedule").options.get_int("warmup") == warmup[i]);
        CHECK(runs[i].plugins.at("schedule").options.origin("warmup") == at(dir, 22) + " [sweep.zip]");
        CHECK(runs[i].sweep_values ==
              SweepValues{{"optimizer.lr", lr_text[i]}, {"schedule.warmup", std::to_string(warmup[i])}});
    }
}

TEST_CASE("grid x zip: the zip group is the innermost key", "[config][sweep]") {
    TempDir dir;
    std::vector<lab::RunSpec> runs = resolve_all(dir, grid_and_zip);
    REQUIRE(runs.size() == 12);
    const char* attention[] = {"softmax", "linear"};
    const char* lr[] = {"0.001", "0.0003"};
    const char* warmup[] = {"100", "200"};
    std::set<std::string> hashes;
    for (int64_t i = 0; i < 12; ++i) {
        INFO("run " << i);
        const lab::RunSpec& run = runs[static_cast<size_t>(i)];
        const int64_t a = i / 6, s = (i / 2) % 3, z = i % 2;
        CHECK(run.sweep_index == i);
        CHECK(run.sweep_size == 12);
        CHECK(run.sweep_values == SweepValues{{"attention.type", attention[a]},
                                              {"experiment.seed", std::to_string(s + 1)},
                                              {"optimizer.lr", lr[z]},
                                              {"schedule.warmup", warmup[z]}});
        CHECK(run.plugins.at("attention").plugin == attention[a]);
        CHECK(run.experiment.get_int("seed") == s + 1);
        CHECK(run.plugins.at("optimizer").options.values().at("lr").text == lr[z]);
        CHECK(run.plugins.at("schedule").options.values().at("warmup").text == warmup[z]);
        // Untouched values keep their file origins.
        CHECK(run.plugins.at("model").options.origin("layers") == at(dir, 9));
        hashes.insert(run.hash());
    }
    CHECK(hashes.size() == 12);
}

TEST_CASE("sweep values reach their sections, also ones the file leaves out", "[config][sweep]") {
    TempDir dir;
    std::vector<lab::RunSpec> runs = resolve_all(dir, valid_ini +
                                                          "[sweep]\n"
                                                          "model.layers = 1, 8\n"
                                                          "task.valid = ${data}/v1.txt, ${data}/v2.txt\n"
                                                          "backend.verbose = on\n");
    REQUIRE(runs.size() == 4);
    CHECK(runs[0].plugins.at("model").options.get_int("layers") == 1);
    CHECK(runs[2].plugins.at("model").options.get_int("layers") == 8);
    CHECK(runs[0].plugins.at("model").options.get_int("heads") == 4);  // the rest of [model] stays
    CHECK(runs[0].plugins.at("task").options.get_string("valid") == (dir.path / "data/v1.txt").string());
    CHECK(runs[1].plugins.at("task").options.get_string("valid") == (dir.path / "data/v2.txt").string());
    CHECK(runs[0].plugins.at("task").options.get_string("train") == "corpus.txt");
    CHECK(runs[3].plugins.at("backend").options.get_bool("verbose"));  // [backend] is not in the file
    CHECK(runs[3].sweep_values.back() == std::make_pair(std::string("backend.verbose"), std::string("true")));
    CHECK(runs[0].train.get_int("steps") == 100);
}

TEST_CASE("a sweep run has the hash of the same run given as overrides", "[config][sweep]") {
    TempDir dir;
    std::vector<lab::RunSpec> runs = resolve_all(dir, grid_and_zip);
    REQUIRE(runs.size() == 12);
    for (const lab::RunSpec& run : runs) {
        INFO("run " << run.sweep_index);
        std::vector<std::string> overrides;
        for (const auto& [key, value] : run.sweep_values) overrides.push_back(key + "=" + value);
        lab::RunSpec plain = resolve_text(dir, sweep_base, overrides);
        CHECK(plain.canonical_text() == run.canonical_text());
        CHECK(plain.hash() == run.hash());
        CHECK(run.canonical_text().find("sweep") == std::string::npos);
    }
}

TEST_CASE("command-line overrides beat sweep values and take the key out of the sweep", "[config][sweep]") {
    TempDir dir;
    const std::string text = sweep_base + "[sweep]\nmodel.layers = 1, 2\nexperiment.seed = 1, 2, 3\n";
    std::vector<lab::RunSpec> runs = resolve_all(dir, text, {"model.layers=6"});
    REQUIRE(runs.size() == 3);
    for (const lab::RunSpec& run : runs) {
        CHECK(run.plugins.at("model").options.get_int("layers") == 6);
        CHECK(run.plugins.at("model").options.origin("layers") == "override 'model.layers=6'");
        CHECK(run.sweep_size == 3);
        REQUIRE(run.sweep_values.size() == 1);
        CHECK(run.sweep_values[0].first == "experiment.seed");
    }
    CHECK(runs[2].experiment.get_int("seed") == 3);
    CHECK(runs[0].sweep_id != resolve_all(dir, text).front().sweep_id);  // another base experiment

    // A zipped key fixed by an override: the other zipped keys still vary.
    std::vector<lab::RunSpec> zipped =
        resolve_all(dir, sweep_base + "[sweep.zip]\noptimizer.lr = 1e-3, 3e-4\nschedule.warmup = 100, 200\n",
                    {"optimizer.lr=0.01"});
    REQUIRE(zipped.size() == 2);
    CHECK(zipped[0].plugins.at("optimizer").options.get_float("lr") == Approx(0.01));
    CHECK(zipped[1].plugins.at("optimizer").options.get_float("lr") == Approx(0.01));
    CHECK(zipped[1].plugins.at("schedule").options.get_int("warmup") == 200);
    CHECK(zipped[1].sweep_values == SweepValues{{"schedule.warmup", "200"}});

    // Every key overridden: one run, still marked as the sweep's.
    std::vector<lab::RunSpec> single =
        resolve_all(dir, valid_ini + "[sweep]\nexperiment.seed = 1, 2\n", {"experiment.seed=9"});
    REQUIRE(single.size() == 1);
    CHECK(single[0].experiment.get_int("seed") == 9);
    CHECK(single[0].sweep_size == 1);
    CHECK_FALSE(single[0].sweep_id.empty());
    CHECK(lab::format_run(single[0]).rfind("# sweep " + single[0].sweep_id + " run 1/1\n", 0) == 0);
}

TEST_CASE("sweep_id is stable across loads and changes with the sweep or the experiment", "[config][sweep]") {
    TempDir dir;
    const std::string id = resolve_all(dir, grid_and_zip).front().sweep_id;
    CHECK(resolve_all(dir, grid_and_zip).back().sweep_id == id);
    // Comments and spacing are not part of the definition.
    std::string spaced = grid_and_zip;
    spaced.replace(spaced.find("softmax, linear"), 15, "softmax ,linear   ; two variants");
    CHECK(resolve_all(dir, spaced).front().sweep_id == id);

    std::string other_seeds = grid_and_zip;
    other_seeds.replace(other_seeds.find("1, 2, 3"), 7, "1, 2, 4");
    CHECK(resolve_all(dir, other_seeds).front().sweep_id != id);
    std::string crossed = grid_and_zip;  // the same lists, crossed instead of zipped
    crossed.replace(crossed.find("[sweep.zip]\n"), 12, "");
    CHECK(resolve_all(dir, crossed).front().sweep_id != id);
    CHECK(resolve_all(dir, grid_and_zip, {"train.steps=50"}).front().sweep_id != id);
    fs::path renamed = dir.write("y.ini", grid_and_zip);  // another experiment name
    CHECK(lab::resolve_runs(lab::load_config(renamed, {}, {}), make_registry()).front().sweep_id != id);
}

TEST_CASE("sweep keys expand in the order the files set them", "[config][sweep]") {
    TempDir dir;
    dir.write("seeds.ini", "[sweep]\nexperiment.seed = 1, 2\n");
    std::vector<lab::RunSpec> runs =
        resolve_all(dir, "include = seeds.ini\n" + valid_ini + "[sweep]\nmodel.layers = 1, 2, 3\n");
    REQUIRE(runs.size() == 6);
    CHECK(runs[1].sweep_values == SweepValues{{"experiment.seed", "1"}, {"model.layers", "2"}});
    CHECK(runs[3].sweep_values == SweepValues{{"experiment.seed", "2"}, {"model.layers", "1"}});
    CHECK(runs[3].experiment.origin("seed") == (dir.path / "seeds.ini").string() + ":2 [sweep]");
}

TEST_CASE("resolve_run accepts a sweep only when it is one run", "[config][sweep]") {
    TempDir dir;
    CHECK_THAT(error_of(dir, valid_ini + "[sweep]\nexperiment.seed = 1, 2\n"),
               Contains(at(dir, 18) + ": the sweep expands to 2 runs but one run was asked for"));
    lab::RunSpec run = resolve_text(dir, valid_ini + "[sweep]\nexperiment.seed = 7\n");
    CHECK(run.experiment.get_int("seed") == 7);
    CHECK(run.sweep_size == 1);
    CHECK(run.sweep_id.size() == 12);
}

TEST_CASE("sweep errors name file:line", "[config][sweep]") {
    TempDir dir;
    const std::string sweep = valid_ini + "[sweep]\n";  // [sweep] is line 18, its first key line 19
    CHECK_THAT(sweep_error_of(dir, sweep + "modle.layers = 1, 2\n"),
               Contains(at(dir, 19) + ": [sweep] modle.layers: unknown section [modle]; did you mean [model]?"));
    CHECK_THAT(sweep_error_of(dir, sweep + "model.layrs = 1, 2\n"),
               Contains(at(dir, 19) + " [sweep]: [model] key 'layrs' is not an option of model/gpt; did you mean "
                                      "'layers'?") &&
                   Contains("(in sweep run 1/2: model.layrs=1)"));
    CHECK_THAT(sweep_error_of(dir, sweep + "experiment.seed = 1, 2\ntrain.steps = 10, 0\n"),
               Contains(at(dir, 20) + " [sweep]: [train] steps = 0: expected an integer >= 1") &&
                   Contains("(in sweep run 2/4: experiment.seed=1, train.steps=0)"));
    CHECK_THAT(sweep_error_of(dir, sweep + "model.type = gpt, gtp\n"),
               Contains(at(dir, 19) + " [sweep]: [model] type = 'gtp': unknown model 'gtp'; did you mean 'gpt'?"));
    CHECK_THAT(sweep_error_of(dir, sweep + "seed = 1, 2\n"),
               Contains(at(dir, 19) + ": [sweep] seed: a sweep key names 'section.key'"));

    CHECK_THAT(sweep_error_of(dir, sweep + "experiment.seed =\n"),
               Contains(at(dir, 19) + ": [sweep] experiment.seed has an empty list"));
    CHECK_THAT(sweep_error_of(dir, sweep + "experiment.seed = 1, , 2\n"),
               Contains(at(dir, 19) + ": [sweep] experiment.seed = 1, , 2: item 2 is empty"));
    CHECK_THAT(sweep_error_of(dir, sweep + "experiment.seed = 1, 2,\n"), Contains("item 3 is empty"));
    CHECK_THAT(sweep_error_of(dir, sweep), Contains(at(dir, 18) + ": [sweep] has no keys"));

    CHECK_THAT(sweep_error_of(dir, valid_ini + "[sweep.zip]\noptimizer.lr = 1e-3, 3e-4\nexperiment.seed = 1, 2, 3\n"),
               Contains(at(dir, 20) + ": [sweep.zip] experiment.seed has 3 values but optimizer.lr (" + at(dir, 19) +
                        ") has 2"));
    CHECK_THAT(sweep_error_of(dir, sweep + "experiment.seed = 1, 2\n[sweep.zip]\nexperiment.seed = 3, 4\n"
                                           "optimizer.lr = 1e-3, 3e-4\n"),
               Contains(at(dir, 21) + ": [sweep.zip] experiment.seed is also in [sweep] at " + at(dir, 19)));

    std::string seeds, batches;
    for (int i = 1; i <= 101; ++i) seeds += (i > 1 ? ", " : "") + std::to_string(i);
    for (int i = 1; i <= 100; ++i) batches += (i > 1 ? ", " : "") + std::to_string(i);
    CHECK_THAT(sweep_error_of(dir, sweep + "experiment.seed = " + seeds + "\ntrain.batch = " + batches + "\n"),
               Contains(at(dir, 18) + ": the sweep expands to 101 x 100 runs, more than the limit of 10000"));

    CHECK_THAT(sweep_error_of(dir, sweep + "experiment.seed = 1, 2, 1e0\n"),
               Contains(at(dir, 19) + ": [sweep] experiment.seed: items 1 ('1') and 3 ('1e0') are the same value, so "
                                      "sweep runs 1 and 3 would be the same run"));
    CHECK_THAT(sweep_error_of(dir, sweep + "experiment.name = a, b\n"),
               Contains(at(dir, 19) + ": [sweep] experiment.name: every run of a sweep keeps the experiment's name"));
    CHECK_THAT(sweep_error_of(dir, valid_ini, {"sweep.experiment.seed=1,2"}),
               Contains("override 'sweep.experiment.seed=1,2': sweeps are not overrides; sweep from the command "
                        "line with --sweep experiment.seed=1,2"));
    CHECK_THAT(sweep_error_of(dir, valid_ini + "[sweep.grid]\n"),
               Contains(at(dir, 18) + ": '[sweep.grid]' is not a valid section name"));
}

std::vector<lab::RunSpec> resolve_with_flags(const TempDir& dir, const std::string& text,
                                             const std::vector<std::string>& overrides,
                                             const std::vector<std::string>& sweeps) {
    fs::path file = dir.write("x.ini", text);
    return lab::resolve_runs(lab::load_config(file, overrides, {dir.path / "data"}, sweeps), make_registry());
}

std::string flag_error_of(const TempDir& dir, const std::string& text, const std::vector<std::string>& sweeps,
                          const std::vector<std::string>& overrides = {}) {
    try {
        resolve_with_flags(dir, text, overrides, sweeps);
    } catch (const lab::ConfigError& e) {
        return e.what();
    }
    return "<no error>";
}

TEST_CASE("command-line sweep flags (--sweep) are lines of [sweep]: the same runs and sweep id as the file",
          "[config][sweep]") {
    TempDir dir;
    const std::string written = sweep_base + "[sweep]\nattention.type = softmax, linear\nexperiment.seed = 1, 2\n";
    const std::vector<lab::RunSpec> from_file = resolve_all(dir, written);
    const std::vector<lab::RunSpec> from_flags =
        resolve_with_flags(dir, sweep_base, {}, {"attention.type=softmax,linear", "experiment.seed= 1,2 "});
    REQUIRE(from_flags.size() == 4);
    REQUIRE(from_file.size() == 4);
    for (size_t i = 0; i < 4; ++i) {
        CHECK(from_flags[i].sweep_id == from_file[i].sweep_id);
        CHECK(from_flags[i].sweep_values == from_file[i].sweep_values);
        CHECK(from_flags[i].hash() == from_file[i].hash());
        CHECK(from_flags[i].sweep_size == 4);
    }
    CHECK(from_flags[1].sweep_values == SweepValues{{"attention.type", "softmax"}, {"experiment.seed", "2"}});
    CHECK(from_flags[1].experiment.origin("seed") == "--sweep 'experiment.seed= 1,2 ' [sweep]");

    // A flag replaces the file's list of its key in place and crosses with the file's other keys.
    std::vector<lab::RunSpec> replaced =
        resolve_with_flags(dir, written, {}, {"attention.type=linear", "train.batch=4,8"});
    REQUIRE(replaced.size() == 4);
    CHECK(replaced[3].sweep_values ==
          SweepValues{{"attention.type", "linear"}, {"experiment.seed", "2"}, {"train.batch", "8"}});
    CHECK(replaced[0].sweep_id != from_file[0].sweep_id);

    CHECK_THAT(flag_error_of(dir, sweep_base, {"experiment.seed"}),
               Contains("--sweep 'experiment.seed' is malformed: expected --sweep section.key=value1,value2"));
    CHECK_THAT(flag_error_of(dir, sweep_base, {"seed=1,2"}),
               Contains("--sweep 'seed=1,2': 'seed' is not a 'section.key'"));
    CHECK_THAT(flag_error_of(dir, sweep_base, {"experiment.seed="}),
               Contains("--sweep 'experiment.seed=': [sweep] experiment.seed has an empty list"));
    CHECK_THAT(flag_error_of(dir, sweep_base, {"model.hiden=1,2"}), Contains("--sweep 'model.hiden=1,2' [sweep]"));
    CHECK_THAT(flag_error_of(dir, sweep_base, {"experiment.seed=1,2", "experiment.seed=3"}),
               Contains("--sweep 'experiment.seed=3': experiment.seed is already swept by another --sweep flag"));
    CHECK_THAT(flag_error_of(dir, sweep_base, {"experiment.seed=1,2"}, {"experiment.seed=5"}),
               Contains("--sweep 'experiment.seed=1,2' and override 'experiment.seed=5' both set experiment.seed"));
    CHECK_THAT(flag_error_of(dir, grid_and_zip, {"optimizer.lr=1,2"}),
               Contains("--sweep 'optimizer.lr=1,2': optimizer.lr is zipped in the file's [sweep.zip] (" +
                        at(dir, 24)));
}

TEST_CASE("plan_evaluation tags what an evaluation changes and keeps the trained context", "[config][eval]") {
    TempDir dir;
    lab::Registry registry = make_registry();
    lab::OptionSchema learned;
    learned.integer("heads", 1, "heads").at_least(1);
    learned.integer("layers", 1, "blocks").at_least(1);
    learned.integer("max_seq_len", 0, "learned positions (0: [train] seq_len)").at_least(0);
    registry.add_model({"learned", "1.0", "test model with learned positions", learned}, unused_factory<lab::Model>());
    auto plan = [&](const std::string& text, const std::vector<std::string>& overrides) {
        return lab::plan_evaluation(lab::load_config(dir.write("x.ini", text), {}, {dir.path / "data"}), overrides,
                                    {dir.path / "data"}, registry);
    };
    auto error_of_plan = [&](const std::string& text, const std::vector<std::string>& overrides) -> std::string {
        try {
            plan(text, overrides);
        } catch (const lab::ConfigError& e) {
            return e.what();
        }
        return "<no error>";
    };

    CHECK(plan(valid_ini, {}).tag == "64");  // [train] seq_len's default
    CHECK(plan(valid_ini, {"train.seq_len=256"}).tag == "256");
    CHECK(plan(valid_ini, {"train.seq_len=256", "optimizer.lr=5e-4"}).tag == "256");  // the recorded value
    lab::EvaluationPlan changed = plan(valid_ini, {"task.valid=data/a,b=c@d%.txt", "train.seq_len=32"});
    CHECK(changed.tag == "32,task.valid=data%2Fa%2Cb%3Dc%40d%25.txt");
    CHECK(changed.changed == std::vector<std::string>{"task.valid=data/a,b=c@d%.txt"});
    CHECK(plan(valid_ini, {"attention.type=linear"}).tag == "64,attention.feature_dim=16,attention.type=linear");
    CHECK(lab::tagged_metric_name("val/loss", "256") == "val@256/loss");
    CHECK(lab::tagged_metric_name("val/a/b", "256,x.y=1") == "val@256,x.y=1/a/b");
    CHECK(lab::tagged_metric_name("perplexity", "256") == "perplexity@256");
    CHECK_THAT(error_of_plan(valid_ini, {"experiment.db=other.db"}),
               Contains("override 'experiment.db=other.db': eval cannot change experiment.db"));
    CHECK_THAT(error_of_plan(valid_ini, {"train.init_from=x.safetensors"}),
               Contains("eval cannot change train.init_from"));

    // max_seq_len = 0 follows [train] seq_len: pinned to the trained 64, so a shorter evaluation
    // keeps the table and a longer one is refused.
    const std::string learned_ini = with_line(7, "type = learned");
    lab::EvaluationPlan shorter = plan(learned_ini, {"train.seq_len=32"});
    CHECK(shorter.tag == "32");
    CHECK(shorter.evaluated.plugins.at("model").options.get_int("max_seq_len") == 64);
    CHECK(shorter.evaluated.train.get_int("seq_len") == 32);
    CHECK_THAT(error_of_plan(learned_ini, {"train.seq_len=65"}),
               Contains("override 'train.seq_len=65': train.seq_len = 65 is longer than the 64 positions of the "
                        "trained model/learned (model.max_seq_len = 0, i.e. the trained train.seq_len)"));
    // Trained with 128 positions: evaluation may use them.
    const std::string wide_ini = learned_ini + "[model]\nmax_seq_len = 128\n";
    CHECK(plan(wide_ini, {"train.seq_len=128"}).tag == "128");
    CHECK_THAT(error_of_plan(wide_ini, {"train.seq_len=129"}), Contains("longer than the 128 positions"));
}
