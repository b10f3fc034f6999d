// Loading plugin libraries: the real plugins in build/plugins and the test-only libraries in
// build/test_plugins (tests/test_plugins/*.cpp). Every refusal must be a PluginError that names the
// file and says what to do; a plugin that loads must give factories that make working objects.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <unistd.h>

#include "lab/error.h"
#include "lab/registry.h"
#include "lab/version.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

const fs::path plugin_dir = LAB_PLUGIN_DIR;
const fs::path test_plugin_dir = LAB_TEST_PLUGIN_DIR;

// A fresh directory per test, removed afterwards.
struct TempDir {
    fs::path path;
    TempDir() {
        static int counter = 0;
        path = fs::temp_directory_path() /
               ("lab_test_registry_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
        fs::remove_all(path);
        fs::create_directories(path);
    }
    ~TempDir() {
        std::error_code ignored;
        fs::remove_all(path, ignored);
    }
};

fs::path real_plugin(const std::string& kind, const std::string& name) {
    return plugin_dir / (kind + "_" + name + ".so");
}

fs::path test_plugin(const std::string& stem) {
    fs::path file = test_plugin_dir / ("test_" + stem + ".so");
    INFO("test plugin " << file << " is built by the lab_test_plugins target");
    REQUIRE(fs::is_regular_file(file));
    return file;
}

// The PluginError message of `load`, or a failed check when it does not throw one.
template <class Load>
std::string plugin_error_of(Load&& load) {
    try {
        load();
    } catch (const lab::PluginError& e) {
        return e.what();
    }
    FAIL("expected a lab::PluginError");
    return "";
}

std::set<std::pair<std::string, std::string>> kind_name_pairs(const lab::Registry& registry) {
    std::set<std::pair<std::string, std::string>> pairs;
    for (const lab::PluginInfo* info : registry.list()) pairs.emplace(info->kind, info->name);
    return pairs;
}

}  // namespace

TEST_CASE("a missing plugin file is refused with its path", "[registry]") {
    lab::Registry registry;
    const fs::path missing = test_plugin_dir / "no_such_plugin.so";
    std::string message = plugin_error_of([&] { registry.load_library(missing); });
    CHECK_THAT(message, Contains(missing.string()));
    CHECK_THAT(message, Contains("no such file"));
    CHECK(registry.loaded_files().empty());
    CHECK(registry.list().empty());
}

TEST_CASE("a file that is not a shared library is refused naming the file", "[registry]") {
    TempDir dir;
    const fs::path fake = dir.path / "fake.so";
    {
        std::ofstream out(fake, std::ios::binary);
        for (int i = 0; i < 4096; ++i) out.put(static_cast<char>((i * 131 + 7) % 251));
    }
    lab::Registry registry;
    std::string message = plugin_error_of([&] { registry.load_library(fake); });
    CHECK_THAT(message, Contains(fs::canonical(fake).string()));
    CHECK_THAT(message, Contains("could not be loaded"));
    CHECK(registry.loaded_files().empty());

    // The same refusal through load_directory, which must not skip the bad file silently.
    lab::Registry from_directory;
    message = plugin_error_of([&] { from_directory.load_directory(dir.path); });
    CHECK_THAT(message, Contains("fake.so"));
}

TEST_CASE("a shared library without the entry points is not a labrun plugin", "[registry]") {
    lab::Registry registry;
    const fs::path library = test_plugin("not_plugin");
    std::string message = plugin_error_of([&] { registry.load_library(library); });
    CHECK_THAT(message, Contains(fs::canonical(library).string()));
    CHECK_THAT(message, Contains("is not a labrun plugin"));
    CHECK_THAT(message, Contains("LAB_PLUGIN"));
    CHECK(registry.loaded_files().empty());
}

TEST_CASE("a plugin built for another ABI is refused before it registers anything", "[registry]") {
    lab::Registry registry;
    const fs::path library = test_plugin("bad_abi");
    std::string message = plugin_error_of([&] { registry.load_library(library); });
    CHECK_THAT(message, Contains(fs::canonical(library).string()));
    CHECK_THAT(message, Contains("lab-0.0.0/gcc-1/cxx11abi-0"));
    CHECK_THAT(message, Contains(lab::Registry::abi_tag()));
    CHECK_THAT(message, Contains("before numbered SDK ABIs"));
    CHECK_THAT(message, Contains("this labrun's SDK ABI is " + std::to_string(LAB_SDK_ABI)));
    CHECK_THAT(message, Contains("Fix: rebuild the plugin against this labrun's SDK"));
    CHECK_FALSE(registry.has("schedule", "test_bad_abi"));
    CHECK(registry.list().empty());
    CHECK(registry.loaded_files().empty());
}

TEST_CASE("a plugin built against an older SDK ABI is refused naming both numbers and the fix", "[registry]") {
    lab::Registry registry;
    const fs::path library = test_plugin("older_abi");
    std::string message = plugin_error_of([&] { registry.load_library(library); });
    const std::string older = std::to_string(LAB_SDK_ABI - 1);
    CHECK_THAT(message, Contains("plugin '" + fs::canonical(library).string() + "'"));
    CHECK_THAT(message, Contains("was built against SDK ABI " + older + " ('lab-sdk" + older + "/gcc-"));
    CHECK_THAT(message, Contains("older than this labrun's"));
    CHECK_THAT(message, Contains("this labrun's SDK ABI is " + std::to_string(LAB_SDK_ABI) + " ('" +
                                 lab::Registry::abi_tag() + "')"));
    CHECK_THAT(message, Contains("Fix: rebuild the plugin against this labrun's SDK with GCC " +
                                 std::to_string(__GNUC__)));
    CHECK_THAT(message, Contains("-DCMAKE_PREFIX_PATH="));
    CHECK_FALSE(registry.has("schedule", "test_older_abi"));
    CHECK(registry.list().empty());
    CHECK(registry.loaded_files().empty());

    // The same refusal through a plugin folder: the stale plugin stops the load, it is not skipped.
    TempDir dir;
    fs::copy_file(library, dir.path / "schedule_stale.so");
    lab::Registry from_directory;
    message = plugin_error_of([&] { from_directory.load_directory(dir.path); });
    CHECK_THAT(message, Contains("schedule_stale.so"));
    CHECK_THAT(message, Contains("SDK ABI " + older));
}

TEST_CASE("a plugin of this SDK ABI built by another compiler is refused naming both compiler ABIs",
          "[registry]") {
    lab::Registry registry;
    const fs::path library = test_plugin("other_compiler_abi");
    std::string message = plugin_error_of([&] { registry.load_library(library); });
    const std::string ours = lab::Registry::abi_tag();
    CHECK_THAT(message, Contains(fs::canonical(library).string()));
    CHECK_THAT(message, Contains("was built against SDK ABI " + std::to_string(LAB_SDK_ABI) +
                                 ", as this labrun, but with compiler ABI 'gcc-1/cxx11abi-0'"));
    CHECK_THAT(message, Contains("compiler ABI '" + ours.substr(ours.find('/') + 1) + "'"));
    CHECK_THAT(message, Contains("Fix: rebuild the plugin against this labrun's SDK with GCC " +
                                 std::to_string(__GNUC__)));
    CHECK_FALSE(registry.has("schedule", "test_other_compiler_abi"));
    CHECK(registry.loaded_files().empty());
}

TEST_CASE("a plugin whose ABI tag is not a labrun tag is refused with the fix", "[registry]") {
    lab::Registry registry;
    const fs::path library = test_plugin("foreign_abi");
    std::string message = plugin_error_of([&] { registry.load_library(library); });
    CHECK_THAT(message, Contains(fs::canonical(library).string()));
    CHECK_THAT(message, Contains("exports ABI tag 'other-framework-3.1', which is not a labrun SDK tag"));
    CHECK_THAT(message, Contains("this labrun's SDK ABI is " + std::to_string(LAB_SDK_ABI)));
    CHECK_THAT(message, Contains("Fix: rebuild the plugin"));
    CHECK_FALSE(registry.has("schedule", "test_foreign_abi"));
    CHECK(registry.loaded_files().empty());
}

TEST_CASE("liblab's ABI tag names the SDK ABI number and the compiler ABI", "[registry]") {
    const std::string tag = lab::Registry::abi_tag();
    CHECK(tag == LAB_ABI_TAG);
    CHECK(tag.rfind("lab-sdk" + std::to_string(LAB_SDK_ABI) + "/gcc-" + std::to_string(__GNUC__) + "/cxx11abi-", 0) ==
          0);
    CHECK(tag.back() == '0' + _GLIBCXX_USE_CXX11_ABI);
    // The macro forms the tag of any number with this compiler; only the number part differs.
    CHECK(std::string(LAB_ABI_TAG_FOR(0)) == "lab-sdk0" + tag.substr(tag.find('/')));
    CHECK(tag != "lab-0.0.0/gcc-1/cxx11abi-0");
}

TEST_CASE("registering a name twice names both files", "[registry]") {
    lab::Registry registry;
    const fs::path real_char = real_plugin("tokenizer", "char");
    REQUIRE(fs::is_regular_file(real_char));
    registry.load_library(real_char);
    REQUIRE(registry.has("tokenizer", "char"));

    const fs::path duplicate = test_plugin("duplicate");
    std::string message = plugin_error_of([&] { registry.load_library(duplicate); });
    CHECK_THAT(message, Contains("tokenizer 'char' is registered twice"));
    CHECK_THAT(message, Contains(fs::canonical(real_char).string()));
    CHECK_THAT(message, Contains(fs::canonical(duplicate).string()));
    // The first registration stays in charge.
    CHECK(registry.find("tokenizer", "char").file == fs::canonical(real_char).string());
}

TEST_CASE("an unknown plugin name lists the known names and the closest one", "[registry]") {
    lab::Registry registry;
    registry.load_directory(plugin_dir);

    std::string message = plugin_error_of([&] { registry.find("model", "gtp"); });
    CHECK_THAT(message, Contains("unknown model 'gtp'"));
    CHECK_THAT(message, Contains("did you mean 'gpt'?"));
    CHECK_THAT(message, Contains("known models: bert, gpt, transformer"));
    // How to load more, and where this registry looked.
    CHECK_THAT(message, Contains("labrun --plugin-path DIR, `plugins = DIR` in [experiment] or the environment "
                                 "variable LAB_PLUGIN_PATH=DIR"));
    CHECK_THAT(message, Contains("looked in: " + plugin_dir.string() + ")"));

    message = plugin_error_of([&] { registry.find("optimizer", "adam"); });
    CHECK_THAT(message, Contains("did you mean 'adamw'?"));
    CHECK_THAT(message, Contains("adamw, sgd"));

    // Nothing close: the known names, but no guess.
    message = plugin_error_of([&] { registry.find("schedule", "polynomial_with_restarts"); });
    CHECK_THAT(message, Contains("constant, cosine, linear"));
    CHECK_THAT(message, !Contains("did you mean"));

    CHECK_FALSE(registry.has("model", "gtp"));
    CHECK(registry.has("model", "gpt"));
}

TEST_CASE("an unknown name of a kind with no plugins says none are loaded", "[registry]") {
    lab::Registry registry;
    std::string message = plugin_error_of([&] { registry.find("attention", "softmax"); });
    CHECK_THAT(message, Contains("unknown attention 'softmax'"));
    CHECK_THAT(message, Contains("none loaded"));
    CHECK_THAT(message, Contains("LAB_PLUGIN_PATH"));
    CHECK_THAT(message, Contains("looked in: nowhere yet (no plugin folder or file was loaded)"));

    // A library loaded on its own is named as the place looked in, not its folder.
    const fs::path gpt = real_plugin("model", "gpt");
    registry.load_library(gpt);
    message = plugin_error_of([&] { registry.find("attention", "softmax"); });
    CHECK_THAT(message, Contains("looked in: " + gpt.string() + ")"));
    CHECK(registry.searched_paths() == std::vector<fs::path>{gpt});
}

TEST_CASE("an unknown plugin kind lists the kinds", "[registry]") {
    lab::Registry registry;
    registry.load_library(real_plugin("model", "gpt"));
    std::string message = plugin_error_of([&] { registry.find("modle", "gpt"); });
    CHECK_THAT(message, Contains("unknown plugin kind 'modle'"));
    CHECK_THAT(message, Contains("did you mean 'model'?"));
    for (const std::string& kind : lab::Registry::kinds()) CHECK_THAT(message, Contains(kind));
    CHECK(registry.names("modle").empty());
}

TEST_CASE("a missing plugin folder is refused with its path", "[registry]") {
    lab::Registry registry;
    const fs::path missing = test_plugin_dir / "no_such_folder";
    std::string message = plugin_error_of([&] { registry.load_directory(missing); });
    CHECK_THAT(message, Contains(missing.string()));
}

TEST_CASE("load_directory finds every standard plugin", "[registry]") {
    lab::Registry registry;
    registry.load_directory(plugin_dir);

    std::set<std::pair<std::string, std::string>> expected = {
        {"backend", "reference"}, {"tokenizer", "char"},     {"attention", "softmax"},
        {"model", "gpt"},         {"optimizer", "adamw"},    {"optimizer", "sgd"},
        {"schedule", "constant"}, {"schedule", "linear"},    {"schedule", "cosine"},
        {"task", "causal_lm"},
    };
    // The oneDNN backend exists only when the build found oneDNN (LAB_WITH_ONEDNN).
    if (fs::is_regular_file(real_plugin("backend", "onednn"))) expected.emplace("backend", "onednn");
    std::set<std::pair<std::string, std::string>> found = kind_name_pairs(registry);
    for (const auto& [kind, name] : expected) {
        INFO(kind << "/" << name);
        CHECK(found.count({kind, name}) == 1);
    }

    // Each registration records the library it came from and a version; each library's file
    // name is <kind>_<name>.so for the plugins it registers.
    for (const lab::PluginInfo* info : registry.list()) {
        INFO(info->kind << "/" << info->name << " from " << info->file);
        CHECK_FALSE(info->version.empty());
        CHECK(fs::path(info->file).parent_path() == fs::canonical(plugin_dir));
        if (expected.count({info->kind, info->name}))
            CHECK(fs::path(info->file).filename() == info->kind + "_" + info->name + ".so");
    }
    CHECK(registry.loaded_files().size() >= expected.size());

    // Sorted by kind (in Registry::kinds() order), then by name.
    std::vector<const lab::PluginInfo*> all = registry.list();
    const auto& kinds = lab::Registry::kinds();
    auto kind_rank = [&](const std::string& kind) { return std::find(kinds.begin(), kinds.end(), kind) - kinds.begin(); };
    for (size_t i = 1; i < all.size(); ++i) {
        INFO(all[i - 1]->kind << "/" << all[i - 1]->name << " before " << all[i]->kind << "/" << all[i]->name);
        CHECK(std::make_pair(kind_rank(all[i - 1]->kind), all[i - 1]->name) <
              std::make_pair(kind_rank(all[i]->kind), all[i]->name));
    }
    CHECK(registry.names("schedule") == std::vector<std::string>{"constant", "cosine", "linear"});
}

TEST_CASE("loading the same library twice is a no-op", "[registry]") {
    lab::Registry registry;
    const fs::path gpt = real_plugin("model", "gpt");
    registry.load_library(gpt);
    REQUIRE(registry.loaded_files().size() == 1);
    REQUIRE(registry.list().size() == 1);

    registry.load_library(gpt);
    // Another spelling of the same file is the same library.
    registry.load_library(plugin_dir / "." / gpt.filename());
    CHECK(registry.loaded_files().size() == 1);
    CHECK(registry.list().size() == 1);
    CHECK(registry.loaded_files().front() == fs::canonical(gpt));

    // A whole directory after one of its files: the file is not loaded again (no duplicate error).
    registry.load_directory(plugin_dir);
    registry.load_directory(plugin_dir);
    CHECK(registry.names("model") == std::vector<std::string>{"bert", "gpt", "transformer"});
}

TEST_CASE("factories of a loaded plugin make working objects", "[registry]") {
    lab::Registry registry;
    const fs::path good = test_plugin("good");
    registry.load_library(good);

    const lab::PluginInfo& info = registry.find("tokenizer", "test_upper");
    CHECK(info.file == fs::canonical(good).string());
    CHECK(info.version == "0.1");
    REQUIRE(info.schema.find("uppercase") != nullptr);
    CHECK(info.schema.find("uppercase")->type == lab::OptionType::boolean);
    CHECK(info.schema.find("uppercase")->default_value == std::optional<std::string>("false"));

    const auto& make_tokenizer = registry.factory<lab::TokenizerFactory>("tokenizer", "test_upper");
    lab::BuildContext ctx;
    lab::Options defaults = lab::Options::validate("tokenizer", "tokenizer/test_upper", info.schema, {});
    std::shared_ptr<lab::Tokenizer> tokenizer = make_tokenizer(defaults, ctx);
    REQUIRE(tokenizer);
    CHECK(tokenizer->encode("AB") == std::vector<int32_t>{65, 66});
    CHECK(tokenizer->encode("ab") == std::vector<int32_t>{97, 98});
    CHECK(tokenizer->decode({104, 105}) == "hi");
    CHECK(tokenizer->vocab_size() == 256);
    CHECK_THROWS_AS(tokenizer->decode({256}), lab::DataError);

    TempDir dir;
    fs::path saved = tokenizer->save(dir.path / "vocab");
    CHECK(fs::is_regular_file(saved));
    CHECK(fs::file_size(saved) > 0);

    // The option reaches the object.
    lab::Options upper = lab::Options::validate("tokenizer", "tokenizer/test_upper", info.schema,
                                                {{"uppercase", {"true", "test"}}});
    CHECK(make_tokenizer(upper, ctx)->encode("ab") == std::vector<int32_t>{65, 66});

    const lab::PluginInfo& schedule_info = registry.find("schedule", "test_const");
    const auto& make_schedule = registry.factory<lab::ScheduleFactory>("schedule", "test_const");
    lab::Options half = lab::Options::validate("schedule", "schedule/test_const", schedule_info.schema,
                                               {{"factor", {"0.5", "test"}}});
    std::shared_ptr<lab::Schedule> schedule = make_schedule(half, lab::ScheduleContext{0.25, 100});
    REQUIRE(schedule);
    CHECK(schedule->lr(0) == Approx(0.125));
    CHECK(schedule->lr(99) == Approx(0.125));

    // Asking for the factory under the wrong type is a programming error, caught by std::any.
    CHECK_THROWS_AS(registry.factory<lab::ScheduleFactory>("tokenizer", "test_upper"), std::bad_any_cast);
}

TEST_CASE("a real plugin's factory works through the registry", "[registry]") {
    lab::Registry registry;
    registry.load_library(real_plugin("tokenizer", "char"));
    TempDir dir;
    const fs::path corpus = dir.path / "corpus.txt";
    std::ofstream(corpus) << "abc\n";
    const lab::PluginInfo& info = registry.find("tokenizer", "char");
    lab::Options opts =
        lab::Options::validate("tokenizer", "tokenizer/char", info.schema, {{"corpus", {corpus.string(), "test"}}});
    lab::BuildContext ctx;
    auto tokenizer = registry.factory<lab::TokenizerFactory>("tokenizer", "char")(opts, ctx);
    // Sorted characters: '\n' 0, 'a' 1, 'b' 2, 'c' 3.
    CHECK(tokenizer->vocab_size() == 4);
    CHECK(tokenizer->encode("cab\n") == std::vector<int32_t>{3, 1, 2, 0});
}
