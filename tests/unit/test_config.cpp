// Experiment files and option validation: every error names file:line (or the override), the key,
// what was expected and the closest known name.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include "lab/config.h"
#include "lab/error.h"
#include "lab/hash.h"
#include "lab/options.h"
#include "lab/registry.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

// A fresh directory per test, removed afterwards.
struct TempDir {
    fs::path path;
    TempDir() {
        static int counter = 0;
        path = fs::temp_directory_path() /
               ("lab_test_config_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
        fs::remove_all(path);
        fs::create_directories(path);
    }
    ~TempDir() {
        std::error_code ignored;
        fs::remove_all(path, ignored);
    }
    fs::path write(const std::string& name, const std::string& text) const {
        fs::path file = path / name;
        fs::create_directories(file.parent_path());
        std::ofstream(file) << text;
        return file;
    }
};

// Config code only reads declarations; a factory that is called means a bug in the test.
template <class Product>
auto unused_factory() {
    return [](auto&&...) -> std::shared_ptr<Product> { throw lab::Error("not used in this test"); };
}

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
    CHECK(run.experiment.get_string("backend") == "onednn");
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
               Contains(at(dir, 2) + ": [experiment] precision = 'fp23': expected one of: fp32; "
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

TEST_CASE("${data} and ${env:NAME} expand; anything else is an error", "[config]") {
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
                                     "backend, experiment, model, optimizer, schedule, task, tokenizer, train)"));
    CHECK_THAT(error_of(dir, valid_ini + "[sweep]\nexperiment.seed = 1, 2\n"),
               Contains(at(dir, 18) + ": unknown section [sweep]"));

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
    CHECK_THAT(error_of(dir, valid_ini + "[backend]\ntype = cuda\n"),
               Contains(at(dir, 19) + ": [backend] type is not an option") && Contains("[experiment] backend"));
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
    CHECK_THAT(text, Contains("[backend]  # backend/onednn"));
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
