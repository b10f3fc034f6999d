// labrun: runs experiments declared in INI files, and inspects the plugins that make them up.
//
//   labrun EXPERIMENT.ini [section.key=value ...]   train (results go to [experiment] db)
//   labrun EXPERIMENT.ini --dry-run                 print the resolved run, do nothing
//   labrun --list                                   every loaded plugin
//   labrun --describe KIND/NAME                     a plugin's options
//   labrun tokenize NAME [key=value ...] [--decode] a tokenizer on stdin lines
//
// This file is the one place that maps errors to exit codes.
#include <unistd.h>

#include <boost/program_options.hpp>
#include <cstdlib>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "lab/config.h"
#include "lab/error.h"
#include "lab/registry.h"
#include "lab/results.h"
#include "lab/trainer.h"
#include "lab/version.h"

namespace fs = std::filesystem;
namespace po = boost::program_options;

namespace {

enum ExitCode { kOk = 0, kRunFailed = 1, kUsage = 2, kConfig = 3, kPlugin = 4, kData = 5, kInternal = 70 };

const char* kUsageText =
    "usage: labrun [options] EXPERIMENT.ini [section.key=value ...]\n"
    "       labrun --resume RUN [--db FILE]\n"
    "       labrun --list | --describe KIND/NAME\n"
    "       labrun tokenize NAME [key=value ...] [--decode]\n"
    "\n"
    "Runs the experiment declared in EXPERIMENT.ini and records it in the results database named by\n"
    "[experiment] db (default results/lab.db). Arguments of the form section.key=value override the\n"
    "file, e.g. `labrun experiments/shakespeare_char.ini train.steps=300 experiment.seed=2`.\n"
    "A file with [sweep] runs every combination; rerunning it skips finished runs and resumes\n"
    "interrupted ones. SIGINT/SIGTERM checkpoint a run and mark it interrupted; --resume continues it.\n"
    "\n"
    "tokenize: reads UTF-8 lines from stdin and prints one line of space-separated ids per line\n"
    "(with --decode: reads lines of ids and prints the text). key=value pairs are the tokenizer's\n"
    "options, e.g. `labrun tokenize char corpus=data/tinyshakespeare/input.txt`.\n"
    "\n"
    "Plugins are loaded from the build's plugins/ folder (next to bin/), LAB_PLUGIN_PATH (colon-separated\n"
    "folders or .so files), --plugin-path, and [experiment] plugins.\n";

fs::path executable_dir() {
    std::error_code ec;
    fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    return ec ? fs::current_path() : exe.parent_path();
}

std::vector<std::string> split_list(const std::string& text, char sep) {
    std::vector<std::string> out;
    std::stringstream ss(text);
    std::string item;
    while (std::getline(ss, item, sep))
        if (!item.empty()) out.push_back(item);
    return out;
}

void load_path(lab::Registry& registry, const fs::path& p) {
    if (fs::is_directory(p)) registry.load_directory(p);
    else registry.load_library(p);
}

// The build tree keeps plugins in <build>/plugins next to <build>/bin; an installed labrun keeps
// them in <prefix>/lib/lab/plugins.
void load_default_plugins(lab::Registry& registry, const std::vector<std::string>& extra) {
    fs::path exe_dir = executable_dir();
    for (const fs::path& dir : {exe_dir / ".." / "plugins", exe_dir / ".." / "lib" / "lab" / "plugins"}) {
        std::error_code ec;
        if (fs::is_directory(dir, ec)) {
            registry.load_directory(fs::canonical(dir));
            break;
        }
    }
    if (const char* env = std::getenv("LAB_PLUGIN_PATH"))
        for (const auto& p : split_list(env, ':')) load_path(registry, p);
    for (const auto& p : extra) load_path(registry, p);
}

int list_plugins(const lab::Registry& registry) {
    std::vector<const lab::PluginInfo*> all = registry.list();
    size_t w_kind = 4, w_name = 4, w_version = 7;
    for (const auto* p : all) {
        w_kind = std::max(w_kind, p->kind.size());
        w_name = std::max(w_name, p->name.size());
        w_version = std::max(w_version, p->version.size());
    }
    std::cout << std::left << std::setw(int(w_kind) + 2) << "KIND" << std::setw(int(w_name) + 2) << "NAME"
              << std::setw(int(w_version) + 2) << "VERSION" << "FILE\n";
    for (const auto* p : all)
        std::cout << std::setw(int(w_kind) + 2) << p->kind << std::setw(int(w_name) + 2) << p->name
                  << std::setw(int(w_version) + 2) << p->version << p->file << "\n";
    if (all.empty()) std::cout << "(no plugins loaded; is the build's plugins/ folder next to bin/?)\n";
    return kOk;
}

void describe_schema(const std::string& title, const std::string& description, const lab::OptionSchema& schema) {
    std::cout << title << "\n";
    if (!description.empty()) std::cout << "  " << description << "\n";
    std::cout << "\n";
    if (schema.specs().empty()) std::cout << "  (no options)\n";
    for (const auto& spec : schema.specs()) {
        std::cout << "  " << spec.name << " = "
                  << (spec.default_value ? (spec.default_value->empty() ? "\"\"" : *spec.default_value)
                                         : "(required)")
                  << "\n      " << spec.expectation() << ": " << spec.help << "\n";
    }
}

int describe(const lab::Registry& registry, const std::string& what) {
    auto slash = what.find('/');
    if (slash == std::string::npos) {
        if (what == "experiment" || what == "train") {
            describe_schema("[" + what + "] (framework section)", "",
                            what == "experiment" ? lab::experiment_schema() : lab::train_schema());
            return kOk;
        }
        throw lab::ConfigError("--describe expects KIND/NAME (e.g. attention/softmax) or 'experiment'/'train', got '" +
                               what + "'");
    }
    const lab::PluginInfo& info = registry.find(what.substr(0, slash), what.substr(slash + 1));
    describe_schema(info.kind + "/" + info.name + " " + info.version + "  (" + info.file + ")", info.description,
                    info.schema);
    if (info.kind != "backend") std::cout << "\n  (and `type = " << info.name << "` selects it in [" << info.kind << "])\n";
    else std::cout << "\n  (selected by [experiment] backend = " << info.name << "; options go in [backend])\n";
    return kOk;
}

int tokenize(const lab::Registry& registry, const std::vector<std::string>& args, bool decode) {
    if (args.empty()) throw lab::ConfigError("tokenize: name a tokenizer, e.g. `labrun tokenize char corpus=FILE`");
    const lab::PluginInfo& info = registry.find("tokenizer", args[0]);
    std::map<std::string, lab::OptionValue> raw;
    for (size_t i = 1; i < args.size(); ++i) {
        auto eq = args[i].find('=');
        if (eq == std::string::npos || eq == 0)
            throw lab::ConfigError("tokenize: argument '" + args[i] + "' should be key=value (options of tokenizer/" +
                                   info.name + ": see labrun --describe tokenizer/" + info.name + ")");
        raw[args[i].substr(0, eq)] = {args[i].substr(eq + 1), "argument '" + args[i] + "'"};
    }
    lab::Options opts = lab::Options::validate("tokenizer", "tokenizer/" + info.name, info.schema, raw);
    lab::BuildContext ctx;
    auto tokenizer = std::any_cast<const lab::TokenizerFactory&>(info.factory)(opts, ctx);
    if (!tokenizer->ready())
        throw lab::ConfigError("tokenize: tokenizer/" + info.name +
                               " has no vocabulary; give it one with its options (labrun --describe tokenizer/" +
                               info.name + ")");
    std::string line;
    int64_t line_no = 0;
    while (std::getline(std::cin, line)) {
        ++line_no;
        try {
            if (decode) {
                std::vector<int32_t> ids;
                std::istringstream in(line);
                std::string tok;
                while (in >> tok) {
                    size_t used = 0;
                    long long v = 0;
                    try {
                        v = std::stoll(tok, &used);
                    } catch (const std::exception&) {
                        used = 0;
                    }
                    if (used != tok.size() || v < INT32_MIN || v > INT32_MAX)
                        throw lab::DataError("'" + tok + "' is not a token id");
                    ids.push_back(static_cast<int32_t>(v));
                }
                std::cout << tokenizer->decode(ids) << "\n";
            } else {
                std::vector<int32_t> ids = tokenizer->encode(line);
                for (size_t i = 0; i < ids.size(); ++i) std::cout << (i ? " " : "") << ids[i];
                std::cout << "\n";
            }
        } catch (const lab::DataError& e) {
            throw lab::DataError("stdin line " + std::to_string(line_no) + ": " + e.what());
        }
    }
    return kOk;
}

// A run's recorded configuration (RunSpec::canonical_text: "section.key = value" lines) as a
// RawConfig, so that --resume rebuilds exactly the run that was recorded.
lab::RawConfig raw_config_from_text(const std::string& text, const std::string& origin) {
    lab::RawConfig raw;
    std::istringstream lines(text);
    std::string line;
    int64_t line_no = 0;
    while (std::getline(lines, line)) {
        ++line_no;
        auto eq = line.find(" = ");
        auto dot = line.find('.');
        if (line.empty()) continue;
        if (eq == std::string::npos || dot == std::string::npos || dot > eq)
            throw lab::DataError(origin + ": recorded configuration line " + std::to_string(line_no) + " '" + line +
                                 "' is not 'section.key = value'; the database may be damaged");
        std::string section = line.substr(0, dot), key = line.substr(dot + 1, eq - dot - 1);
        raw.sections[section][key] = {line.substr(eq + 3), origin};
        raw.section_origins.emplace(section, origin);
        raw.key_order[section].push_back(key);
    }
    return raw;
}

int report_outcome(const lab::RunOutcome& outcome) {
    if (outcome.interrupted) return 128 + outcome.stop_signal;  // as a shell reports a signal
    std::cout << "run " << outcome.run_id << " (" << outcome.uid << ") finished";
    for (const auto& [name, value] : outcome.final_metrics) std::cout << "  " << name << " " << value;
    std::cout << "  wall " << lab::format_duration(outcome.wall_s) << "\n";
    return kOk;
}

int run_main(int argc, char** argv) {
    po::options_description visible("options");
    visible.add_options()
        ("help,h", "show this help")
        ("version", "print the version and ABI tag")
        ("list", "list every loaded plugin (kind, name, version, file)")
        ("describe", po::value<std::string>()->value_name("KIND/NAME"), "print a plugin's options")
        ("dry-run", "print the resolved runs and stop")
        ("resume", po::value<std::string>()->value_name("RUN"),
         "continue an interrupted run (id, uid prefix or name) from its latest checkpoint")
        ("db", po::value<std::string>()->value_name("FILE"), "results database of --resume (default results/lab.db)")
        ("force", "rerun runs of a sweep that already finished")
        ("data-dir", po::value<std::string>()->value_name("DIR"), "where ${data} points (default: $LAB_DATA, else data/)")
        ("plugin-path", po::value<std::vector<std::string>>()->value_name("PATH")->composing(),
         "extra plugin folder or .so file (repeatable)")
        ("decode", "tokenize: turn lines of ids back into text")
        ("quiet,q", "no log output")
        ("no-progress", "plain log lines even on a terminal");
    po::options_description hidden;
    hidden.add_options()("args", po::value<std::vector<std::string>>(), "");
    po::options_description all;
    all.add(visible).add(hidden);
    po::positional_options_description positional;
    positional.add("args", -1);
    po::variables_map vm;
    try {
        po::store(po::command_line_parser(argc, argv).options(all).positional(positional).run(), vm);
        po::notify(vm);
    } catch (const po::error& e) {
        std::cerr << "labrun: " << e.what() << "\n\n" << kUsageText << "\n" << visible;
        return kUsage;
    }
    if (vm.count("help")) {
        std::cout << kUsageText << "\n" << visible;
        return kOk;
    }
    if (vm.count("version")) {
        std::cout << "labrun " << LAB_VERSION << " (ABI " << lab::Registry::abi_tag() << ")\n";
        return kOk;
    }
    std::vector<std::string> args = vm.count("args") ? vm["args"].as<std::vector<std::string>>()
                                                     : std::vector<std::string>{};
    std::vector<std::string> plugin_paths =
        vm.count("plugin-path") ? vm["plugin-path"].as<std::vector<std::string>>() : std::vector<std::string>{};

    lab::Registry registry;
    load_default_plugins(registry, plugin_paths);
    if (vm.count("list")) return list_plugins(registry);
    if (vm.count("describe")) return describe(registry, vm["describe"].as<std::string>());
    if (!args.empty() && args[0] == "tokenize")
        return tokenize(registry, {args.begin() + 1, args.end()}, vm.count("decode") > 0);

    lab::ConfigEnv env;
    if (vm.count("data-dir")) env.data_dir = vm["data-dir"].as<std::string>();
    else if (const char* d = std::getenv("LAB_DATA")) env.data_dir = d;
    else env.data_dir = "data";

    lab::RunEnvironment run_env;
    run_env.data_dir = env.data_dir;
    run_env.source_dir = LAB_SOURCE_DIR;
    run_env.quiet = vm.count("quiet") > 0;
    run_env.progress = !vm.count("no-progress") && isatty(STDERR_FILENO);

    if (vm.count("resume")) {
        if (!args.empty())
            throw lab::ConfigError("--resume takes its configuration from the database; give no experiment file or "
                                   "overrides (got '" + args[0] + "')");
        fs::path db = vm.count("db") ? vm["db"].as<std::string>() : "results/lab.db";
        if (!fs::exists(db)) throw lab::ConfigError("--resume: results database '" + db.string() + "' does not exist");
        int64_t run = 0;
        lab::RawConfig raw;
        {
            lab::ResultStore store(db);
            store.mark_interrupted_runs();
            run = store.find_run(vm["resume"].as<std::string>());
            std::string status = store.status(run);
            if (status == "finished")
                throw lab::ConfigError("--resume: run " + std::to_string(run) + " already finished; nothing to resume");
            if (status == "running")
                throw lab::ConfigError("--resume: run " + std::to_string(run) +
                                       " is still running in a live process; stop it first (SIGINT checkpoints it)");
            raw = raw_config_from_text(store.config_text(run), "run " + std::to_string(run) + " of " + db.string());
        }
        for (const auto& p : lab::experiment_plugin_paths(raw)) load_path(registry, p);
        lab::RunSpec spec = lab::resolve_run(raw, registry);
        run_env.resume_run = run;
        return report_outcome(lab::run_experiment(spec, registry, run_env));
    }

    if (args.empty()) {
        std::cerr << "labrun: no experiment file given\n\n" << kUsageText << "\n" << visible;
        return kUsage;
    }
    std::vector<std::string> overrides(args.begin() + 1, args.end());
    lab::RawConfig raw = lab::load_config(args[0], overrides, env);
    for (const auto& p : lab::experiment_plugin_paths(raw)) load_path(registry, p);
    std::vector<lab::RunSpec> specs = lab::resolve_runs(raw, registry);
    if (vm.count("dry-run")) {
        std::cout << "# " << specs.size() << (specs.size() == 1 ? " run" : " runs");
        if (!specs.front().sweep_id.empty()) std::cout << " of sweep " << specs.front().sweep_id;
        std::cout << "\n";
        for (const auto& spec : specs) std::cout << lab::format_run(spec) << "\n";
        return kOk;
    }
    // A sweep (or a single run) continues where it stopped: finished runs are skipped (unless
    // --force), interrupted ones resume from their checkpoint, failed ones run again.
    int code = kOk;
    for (size_t i = 0; i < specs.size(); ++i) {
        const lab::RunSpec& spec = specs[i];
        std::string label = specs.size() > 1 ? "[" + std::to_string(i + 1) + "/" + std::to_string(specs.size()) + "] " : "";
        lab::RunEnvironment this_run = run_env;
        {
            lab::ResultStore store(spec.experiment.get_string("db"));
            store.mark_interrupted_runs();
            if (!spec.sweep_id.empty()) store.add_sweep(spec.sweep_id, spec.name, spec.sweep_size);
            if (auto previous = store.latest_run(spec.hash())) {
                auto [id, status] = *previous;
                if (status == "finished" && !vm.count("force")) {
                    if (!run_env.quiet)
                        std::cerr << label << "run " << id << " with this configuration already finished; skipped "
                                  << "(--force runs it again)\n";
                    continue;
                }
                if (status == "interrupted") this_run.resume_run = id;
            }
        }
        if (!label.empty() && !run_env.quiet) std::cerr << label << "sweep " << spec.sweep_id << "\n";
        try {
            lab::RunOutcome outcome = lab::run_experiment(spec, registry, this_run);
            code = report_outcome(outcome);
            if (outcome.interrupted) return code;
        } catch (const lab::TrainingError& e) {
            if (specs.size() == 1) throw;
            std::cerr << label << "run failed: " << e.what() << "\n";  // the sweep goes on
            code = kRunFailed;
        }
    }
    return code;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run_main(argc, argv);
    } catch (const lab::ConfigError& e) {
        std::cerr << "labrun: configuration error: " << e.what() << "\n";
        return kConfig;
    } catch (const lab::PluginError& e) {
        std::cerr << "labrun: plugin error: " << e.what() << "\n";
        return kPlugin;
    } catch (const lab::DataError& e) {
        std::cerr << "labrun: data error: " << e.what() << "\n";
        return kData;
    } catch (const lab::TrainingError& e) {
        std::cerr << "labrun: run failed: " << e.what() << "\n";
        return kRunFailed;
    } catch (const lab::Error& e) {
        std::cerr << "labrun: error: " << e.what() << "\n";
        return kRunFailed;
    } catch (const std::exception& e) {
        std::cerr << "labrun: internal error: " << e.what() << "\n";
        return kInternal;
    }
}
