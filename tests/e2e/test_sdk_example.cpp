// The out-of-tree plugin guide, docs/writing-a-plugin.md, followed as a reader follows it: its
// files are written into a scratch folder and its shell commands run there (install the SDK from
// this build, configure and build the plugin with find_package(Lab), list, describe and check it,
// train and ablate it), with only the three folders the guide asks the reader to set replaced.
// The guide's files must also equal examples/attention_talking_heads/ byte for byte, so the two
// never drift apart.
//
// The guide marks its blocks with an HTML comment on the line before the opening fence:
//   <!-- file: NAME -->   the block is the file NAME (every line ends with a newline)
//   <!-- commands -->     the block is the shell commands, run by bash in order
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "lab/version.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace lab_test;
using Catch::Matchers::Contains;

namespace {

const fs::path source_dir = LAB_SOURCE_DIR;
const fs::path binary_dir = LAB_BINARY_DIR;
const fs::path guide_file = source_dir / "docs" / "writing-a-plugin.md";
const fs::path example_dir = source_dir / "examples" / "attention_talking_heads";

struct Guide {
    std::map<std::string, std::string> files;  // name -> content
    std::vector<std::string> command_blocks;
};

bool starts_with(const std::string& text, const std::string& prefix) { return text.rfind(prefix, 0) == 0; }

bool ends_with(const std::string& text, const std::string& suffix) {
    return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

Guide read_guide(const fs::path& file) {
    const std::vector<std::string> lines = lines_of(read_text(file));
    INFO(file.string());
    REQUIRE(!lines.empty());
    const std::string file_marker = "<!-- file: ", commands_marker = "<!-- commands -->", marker_end = " -->";
    Guide guide;
    for (size_t i = 0; i < lines.size(); ++i) {
        const std::string& line = lines[i];
        const bool is_file = starts_with(line, file_marker) && ends_with(line, marker_end);
        if (!is_file && line != commands_marker) continue;
        INFO(file.string() << ":" << i + 1 << ": " << line);
        // The fence opens on the next line and closes on a line of its own.
        REQUIRE(i + 1 < lines.size());
        REQUIRE(starts_with(lines[i + 1], "```"));
        std::string body;
        size_t close = i + 2;
        for (; close < lines.size() && lines[close] != "```"; ++close) body += lines[close] + "\n";
        REQUIRE(close < lines.size());
        if (is_file) {
            std::string name = line.substr(file_marker.size(), line.size() - file_marker.size() - marker_end.size());
            REQUIRE(!name.empty());
            REQUIRE(guide.files.count(name) == 0);
            guide.files[name] = body;
        } else {
            guide.command_blocks.push_back(body);
        }
        i = close;
    }
    return guide;
}

// `text` in single quotes for bash.
std::string shell_quoted(const std::string& text) {
    std::string out = "'";
    for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
}

// The script with the one line that assigns NAME (at the start of a line) replaced by NAME=value.
std::string with_assignment(const std::string& script, const std::string& name, const fs::path& value) {
    std::string out;
    int assignments = 0;
    for (const std::string& line : lines_of(script)) {
        if (starts_with(line, name + "=")) {
            out += name + "=" + shell_quoted(value.string()) + "\n";
            ++assignments;
        } else {
            out += line + "\n";
        }
    }
    INFO("the guide's commands must set " << name << "= exactly once, at the start of a line:\n" << script);
    REQUIRE(assignments == 1);
    return out;
}

// A value of this build's CMakeCache.txt ("CMAKE_CXX_COMPILER" -> "/usr/bin/c++").
std::string build_cache_value(const std::string& key) {
    const fs::path cache = binary_dir / "CMakeCache.txt";
    for (const std::string& line : lines_of(read_text(cache))) {
        if (!starts_with(line, key + ":")) continue;
        auto eq = line.find('=');
        if (eq != std::string::npos) return line.substr(eq + 1);
    }
    FAIL("no " << key << " in " << cache);
    return "";
}

std::vector<std::string> words_of(const std::string& line) {
    std::vector<std::string> words;
    std::istringstream in(line);
    for (std::string word; in >> word;) words.push_back(word);
    return words;
}

// The `labrun --list` line of kind/name: KIND NAME VERSION FILE.
std::vector<std::string> listed(const std::string& output, const std::string& kind, const std::string& name) {
    for (const std::string& line : lines_of(output)) {
        std::vector<std::string> words = words_of(line);
        if (words.size() == 4 && words[0] == kind && words[1] == name) return words;
    }
    return {};
}

}  // namespace

TEST_CASE("the plugin guide shows the example folder's files byte for byte", "[sdk]") {
    Guide guide = read_guide(guide_file);
    std::set<std::string> example_files;
    for (const auto& entry : fs::directory_iterator(example_dir))
        if (entry.is_regular_file()) example_files.insert(entry.path().filename().string());
    std::set<std::string> guide_files;
    for (const auto& [name, text] : guide.files) guide_files.insert(name);
    CHECK(guide_files == example_files);
    CHECK(guide_files == std::set<std::string>{"CMakeLists.txt", "talking_heads.cpp", "talking_heads.ini"});
    for (const auto& [name, text] : guide.files) {
        INFO(guide_file.string() << " shows " << name << "; it must equal " << (example_dir / name).string()
                                 << " (edit both)");
        CHECK(text == read_text(example_dir / name));
    }
    CHECK(guide.command_blocks.size() == 1);
}

TEST_CASE("the plugin guide's example builds against the installed SDK, passes its check, trains and ablates",
          "[sdk]") {
    Guide guide = read_guide(guide_file);
    REQUIRE(guide.command_blocks.size() == 1);
    TempDir scratch;
    const fs::path sdk = scratch.path / "sdk", plugin_dir = scratch.path / "talking_heads";
    for (const auto& [name, text] : guide.files) scratch.write("talking_heads/" + name, text);

    std::string script = guide.command_blocks.front();
    script = with_assignment(script, "LABRUN_BUILD", binary_dir);
    script = with_assignment(script, "LAB_SDK", sdk);
    script = with_assignment(script, "PLUGIN_DIR", plugin_dir);
    // -e: stop at the first failing command, as a reader would; -x: each command on stderr, so a
    // failure report shows which one failed. The environment, not the commands, makes the guide's
    // `cmake` the one that configured this build and its compiler the one that built liblab
    // (find_package(Lab) refuses another), and uses one OpenMP thread: the results do not depend
    // on it, and spinning OpenMP workers slow down badly on a machine busy with other tests.
    const char* path = std::getenv("PATH");
    std::string cmake_dir = fs::path(build_cache_value("CMAKE_COMMAND")).parent_path().string();
    Outcome outcome = run_program("/bin/bash", {"-c", "set -e -x -o pipefail\n" + script}, "",
                                  {{"OMP_NUM_THREADS", "1"},
                                   {"CXX", build_cache_value("CMAKE_CXX_COMPILER")},
                                   {"PATH", cmake_dir + (path ? ":" + std::string(path) : "")}});
    INFO(outcome);
    REQUIRE(outcome.exit_code == 0);

    // The SDK: liblab with its soname links, headers with the generated version.h, the CMake
    // package, the standard plugins where an installed labrun looks.
    for (const char* file : {"lib/liblab.so", "include/lab/plugin.h", "include/lab/attention.h",
                             "include/lab/version.h", "lib/cmake/Lab/LabConfig.cmake",
                             "lib/cmake/Lab/LabConfigVersion.cmake", "lib/cmake/Lab/LabTargets.cmake",
                             "lib/cmake/Lab/LabPlugin.cmake", "lib/lab/plugins/attention_softmax.so"}) {
        INFO(file);
        CHECK(fs::exists(sdk / file));
    }
    CHECK(fs::is_symlink(sdk / "lib" / "liblab.so"));
    // liblab links SQLite, nlohmann_json and Boost.ProgramOptions privately: the package's CMake
    // code (comments aside) must not ask a plugin project for them.
    for (const char* file : {"LabConfig.cmake", "LabTargets.cmake"}) {
        std::string text;
        for (const std::string& line : lines_of(read_text(sdk / "lib" / "cmake" / "Lab" / file)))
            if (!starts_with(line.substr(std::min(line.find_first_not_of(' '), line.size())), "#")) text += line + "\n";
        INFO(file << " without comments:\n" << text);
        CHECK_THAT(text, !Contains("SQLite", Catch::CaseSensitive::No));
        CHECK_THAT(text, !Contains("nlohmann"));
        CHECK_THAT(text, !Contains("program_options"));
    }

    // The plugin, built where the guide says; the installed labrun lists it next to the installed
    // standard plugins (so their ABI tags agree: labrun refuses a plugin whose tag differs).
    const fs::path plugin = plugin_dir / "build" / "plugins" / "attention_talking_heads.so";
    REQUIRE(fs::exists(plugin));
    std::vector<std::string> talking_heads = listed(outcome.out, "attention", "talking_heads");
    REQUIRE(talking_heads.size() == 4);
    CHECK(talking_heads[2] == "1.0");
    CHECK(fs::equivalent(talking_heads[3], plugin));
    std::vector<std::string> softmax = listed(outcome.out, "attention", "softmax");
    REQUIRE(softmax.size() == 4);
    CHECK(fs::equivalent(softmax[3], sdk / "lib" / "lab" / "plugins" / "attention_softmax.so"));

    // --describe prints the plugin's option with its choices and default.
    Outcome described = run_program(sdk / "bin" / "labrun",
                                    {"--plugin-path", plugin.string(), "--describe", "attention/talking_heads"});
    INFO(described);
    REQUIRE(described.exit_code == 0);
    CHECK_THAT(described.out, Contains("attention/talking_heads 1.0"));
    CHECK_THAT(described.out, Contains("mix = both"));
    CHECK_THAT(described.out, Contains("one of: both, logits, weights, none"));

    // The conformance check ran every check its declarations call for (bash -e already stopped on
    // a failing one): causality and padding because it declares them, exact because of mix=none,
    // dropout because its weights take it; no KV cache declared.
    for (const char* check : {"PASS shapes", "PASS gradients", "PASS causality", "PASS batch_independence",
                              "PASS padding", "SKIP kv_cache", "PASS dropout", "PASS exact", "PASS determinism"})
        CHECK_THAT(outcome.out, Contains(check));

    // The sweep: four finished runs, one per attention.mix, each of which learned to copy (chance
    // is 1/16), recorded with the plugin file that made them.
    PlainSqlite db(plugin_dir / "results" / "talking_heads.db", PlainSqlite::Access::read_only);
    std::vector<std::string> runs = db.text_rows(
        "SELECT p.value, r.status, (SELECT m.value >= 0.9 FROM metrics m WHERE m.run_id = r.id AND "
        "m.name = 'val/accuracy' ORDER BY m.step DESC LIMIT 1) FROM runs r JOIN params p ON p.run_id = r.id AND "
        "p.key = 'attention.mix' ORDER BY p.value");
    CHECK(runs == std::vector<std::string>{"both|finished|1", "logits|finished|1", "none|finished|1",
                                           "weights|finished|1"});
    CHECK(db.one("SELECT COUNT(DISTINCT run_id) FROM plugins WHERE kind = 'attention' AND name = 'talking_heads'")
              .integer == 4);
    std::vector<std::string> plugin_files =
        db.text_rows("SELECT DISTINCT file FROM plugins WHERE kind = 'attention' AND name = 'talking_heads'");
    REQUIRE(plugin_files.size() == 1);
    CHECK(fs::equivalent(plugin_files.front(), plugin));
    // Built against the installed SDK, the plugin carries this tree's SDK ABI tag.
    CHECK(db.text_rows("SELECT DISTINCT abi FROM plugins WHERE name = 'talking_heads'") ==
          std::vector<std::string>{LAB_ABI_TAG});

    // labdb ablate: one row per mix value, none the baseline.
    std::vector<std::string> ablation_rows;
    for (const std::string& line : lines_of(outcome.out)) {
        std::vector<std::string> words = words_of(line);
        if (!words.empty() && (words[0] == "none" || words[0] == "logits" || words[0] == "weights" ||
                               words[0] == "both"))
            ablation_rows.push_back(line);
    }
    REQUIRE(ablation_rows.size() == 4);
    int baselines = 0;
    for (const std::string& row : ablation_rows)
        if (row.find("(baseline)") != std::string::npos) {
            ++baselines;
            CHECK(words_of(row)[0] == "none");
        }
    CHECK(baselines == 1);
}
