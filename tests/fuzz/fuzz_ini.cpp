// libFuzzer target for experiment files: the input is written to a temporary .ini and read with
// lab::load_config, then resolved against the framework's [experiment] and [train] schemas
// (lab::Options::validate) and against an empty plugin Registry (lab::resolve_run), so that the
// INI loader, the ${...} expansion, the override parser and the option parsers all see it.
//
// Input layout: the bytes up to the first NUL are the file; the bytes after it, split at '\n',
// are command-line overrides ("section.key=value"). Seeds from experiments/*.ini have no NUL.
//
// Expected outcome for any input: success or a lab::Error (every ConfigError is one). Anything
// else -- another exception type, a crash, a hang, a sanitizer report -- is a finding.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "lab/config.h"
#include "lab/error.h"
#include "lab/options.h"
#include "lab/registry.h"

namespace fs = std::filesystem;

namespace {

// One directory per fuzzing process, made once; every input overwrites the same file in it.
const fs::path& input_file() {
    static const fs::path file = [] {
        std::string pattern = (fs::temp_directory_path() / "lab_fuzz_ini_XXXXXX").string();
        if (::mkdtemp(pattern.data()) == nullptr) {
            std::perror("lab_fuzz_ini: mkdtemp");
            std::abort();
        }
        return fs::path(pattern) / "experiment.ini";
    }();
    return file;
}

// Includes may name any path. Device and process files (/dev/zero, /dev/stdin, /proc/...) never
// end or block; reading them is what the user asked for, not a parser bug, so such inputs are
// skipped rather than reported as hangs or out-of-memory.
bool names_special_files(std::string_view text) {
    for (std::string_view prefix : {"/dev", "/proc", "/sys"})
        if (text.find(prefix) != std::string_view::npos) return true;
    return false;
}

// Reads every validated option back with the getter of its declared type.
void read_every_option(const lab::Options& options, const lab::OptionSchema& schema) {
    for (const lab::OptionSpec& spec : schema.specs()) {
        switch (spec.type) {
            case lab::OptionType::integer: (void)options.get_int(spec.name); break;
            case lab::OptionType::real: (void)options.get_float(spec.name); break;
            case lab::OptionType::boolean: (void)options.get_bool(spec.name); break;
            default: (void)options.get_string(spec.name); break;
        }
        (void)options.is_set(spec.name);
        (void)options.origin(spec.name);
    }
}

void exercise(const std::string& file_text, const std::vector<std::string>& overrides) {
    {
        std::ofstream out(input_file(), std::ios::binary | std::ios::trunc);
        out.write(file_text.data(), static_cast<std::streamsize>(file_text.size()));
        if (!out) {
            std::perror("lab_fuzz_ini: writing the input file");
            std::abort();
        }
    }
    lab::ConfigEnv env;
    env.data_dir = "/fuzz/data";
    const lab::RawConfig raw = lab::load_config(input_file(), overrides, env);
    (void)lab::experiment_plugin_paths(raw);
    auto keys_of = [&raw](const std::string& section) {
        auto found = raw.sections.find(section);
        return found == raw.sections.end() ? std::map<std::string, lab::OptionValue>{} : found->second;
    };
    const lab::Options train = lab::Options::validate("train", "train", lab::train_schema(), keys_of("train"));
    read_every_option(train, lab::train_schema());
    const lab::Options experiment =
        lab::Options::validate("experiment", "experiment", lab::experiment_schema(), keys_of("experiment"));
    read_every_option(experiment, lab::experiment_schema());
    // No plugins are loaded, so this ends in a ConfigError at the latest when it looks up the
    // backend; before that it checks the section names and both framework sections again.
    const lab::Registry no_plugins{};
    (void)lab::resolve_run(raw, no_plugins);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string input(reinterpret_cast<const char*>(data), size);
    if (names_special_files(input)) return 0;
    const size_t nul = input.find('\0');
    const std::string file_text = input.substr(0, nul);
    std::vector<std::string> overrides;
    if (nul != std::string::npos) {
        size_t begin = nul + 1;
        while (begin <= input.size()) {
            size_t end = input.find('\n', begin);
            if (end == std::string::npos) end = input.size();
            overrides.push_back(input.substr(begin, end - begin));
            begin = end + 1;
        }
    }
    try {
        exercise(file_text, overrides);
    } catch (const lab::Error&) {
        // The expected answer to a bad file.
    } catch (const std::exception& error) {
        std::fprintf(stderr, "lab_fuzz_ini: FINDING: an exception that is not a lab::Error escaped: %s\n",
                     error.what());
        std::abort();
    } catch (...) {
        std::fprintf(stderr, "lab_fuzz_ini: FINDING: a non-std exception escaped\n");
        std::abort();
    }
    return 0;
}
