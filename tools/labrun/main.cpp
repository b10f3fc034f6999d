// labrun: runs experiments declared in INI files, and inspects the plugins that make them up.
//
//   labrun EXPERIMENT.ini [section.key=value ...]   train (results go to [experiment] db)
//   labrun EXPERIMENT.ini --dry-run                 check and print the resolved run, do nothing
//   labrun EXPERIMENT.ini --sweep KEY=V1,V2         a sweep from the command line
//   labrun EXPERIMENT.ini --slurm [--partition P]   the runs as a Slurm job array (slurm.h)
//   labrun eval RUN [section.key=value ...]         evaluate a trained run's checkpoint again
//   labrun --list                                   every loaded plugin
//   labrun --describe KIND/NAME                     a plugin's options
//   labrun --check attention/NAME [key=value ...]   the attention conformance check and cost profile
//   labrun tokenize NAME [key=value ...] [--decode] a tokenizer on stdin lines
//
// This file is the one place that maps errors to exit codes.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include "lab/checkpoint.h"
#include "lab/config.h"
#include "lab/error.h"
#include "lab/evaluation.h"
#include "lab/plugin_kinds.h"
#include "lab/registry.h"
#include "lab/results.h"
#include "lab/run_plan.h"
#include "lab/stop_signals.h"
#include "lab/threads.h"
#include "lab/generate.h"
#include "lab/trainer.h"
#include "lab/version.h"
#include "check.h"
#include "mpi_communicator.h"
#include "rerun.h"
#include "slurm.h"

extern char** environ;

namespace fs = std::filesystem;
namespace po = boost::program_options;

namespace {

enum ExitCode { kOk = 0, kRunFailed = 1, kUsage = 2, kConfig = 3, kPlugin = 4, kData = 5, kNoDevice = 6, kInternal = 70 };

const char* kUsageText =
    "usage: labrun [options] EXPERIMENT.ini [section.key=value ...] [--sweep KEY=V1,V2,... ...]\n"
    "       labrun [options] EXPERIMENT.ini [section.key=value ...] [--sweep ...] --slurm [--partition P]\n"
    "                     [--time T] [--cpus-per-task C] [--gpus-per-task G] [--dry-run]\n"
    "       labrun --resume RUN [--db FILE]\n"
    "       labrun --list | --describe KIND/NAME\n"
    "       labrun --check attention/NAME [key=value ...] [--backend NAME] [--no-profile] [--rope]\n"
    "                     [--db FILE]\n"
    "       labrun tokenize NAME [key=value ...] [--decode]\n"
    "       labrun eval RUN [section.key=value ...] [--db FILE]\n"
    "       labrun generate (RUN | RUN_FOLDER | CHECKPOINT) --prompt TEXT [--max-tokens N] [--temperature T]\n"
    "                       [--top-k K] [--top-p P] [--seed S] [--no-cache] [--db FILE]\n"
    "\n"
    "Runs the experiment declared in EXPERIMENT.ini and records it in the results database named by\n"
    "[experiment] db (default results/lab.db). Arguments of the form section.key=value override the\n"
    "file, e.g. `labrun experiments/shakespeare_char.ini train.steps=300 experiment.seed=2`.\n"
    "A file with [sweep] runs every combination; rerunning it skips finished runs and resumes\n"
    "interrupted ones; --jobs N runs N of them at once (each with cores / N threads, its output in\n"
    "<db folder>/logs/). SIGINT/SIGTERM checkpoint a run and mark it interrupted; --resume continues it.\n"
    "--sweep section.key=V1,V2,... adds that line to [sweep] (repeatable): the same runs, sweep id and\n"
    "records as the file with the line. Values are split at every comma (a value cannot contain one).\n"
    "A key the file's [sweep] lists is replaced by the flag's values; a key of [sweep.zip], a key given\n"
    "twice, or given both to --sweep and as an override, is an error.\n"
    "A finished run is skipped only while the plugin files it ran with are unchanged (their sha256);\n"
    "when one was rebuilt since, the rerun is refused before anything runs, naming the run and the\n"
    "plugin: --force runs it again (a new run; the old one stays), or restore the old plugin build.\n"
    "\n"
    "Data parallel: `mpirun -np N labrun EXPERIMENT.ini` (or `srun --mpi=pmix -n N`) trains one run on N\n"
    "ranks: each takes its slice of every [train] batch (the global batch) and the gradients are averaged\n"
    "(MPI; NCCL for [backend] type = cuda); rank 0 alone writes the database and checkpoints; [train] micro_batch\n"
    "splits each slice further (gradient accumulation). See docs/distributed.md.\n"
    "\n"
    "--slurm: submits the runs not finished yet as ONE Slurm job array (task I runs run I of the sweep with\n"
    "--cpus-per-task OpenMP threads) and a job that starts when the array has ended and merges the tasks'\n"
    "results into [experiment] db with labdb merge. Each task writes its own database beside it,\n"
    "<db stem>.slurm-<sweep id>-<run>.db (SQLite must not be shared between hosts); the merge deletes the\n"
    "ones whose run finished. Submitting again skips finished runs and resumes interrupted ones; when none\n"
    "is left nothing is submitted. Scripts and logs go to <db folder>/logs/; --dry-run prints the scripts\n"
    "and sbatch commands instead. See docs/distributed.md.\n"
    "\n"
    "eval: evaluates a finished or interrupted run (id or uid of --db, default results/lab.db) on its\n"
    "validation data from its latest checkpoint, with section.key=value overrides of its recorded\n"
    "configuration (e.g. train.seq_len=256, task.val_tokens=0); overrides may not change the shapes of\n"
    "trained parameters, and seq_len may not exceed the trained model's context (model.max_seq_len).\n"
    "Prints the metrics and records each as a metric of the run at the checkpoint's step, named\n"
    "GROUP@TAG/NAME (val/loss -> val@256/loss): TAG is the evaluated seq_len followed by each other\n"
    "changed key as ,section.key=value (sorted; '%', '/', ',', '=' and '@' in a value are written %25,\n"
    "%2F, %2C, %3D, %40). Evaluating the same again replaces those values.\n"
    "\n"
    "--check: builds the attention plugin with the options given as key=value and checks output shapes,\n"
    "gradients (finite differences), causality, batch independence, padding, KV cache decoding, dropout\n"
    "(lengths 1 ... 257 across kernel tiles, train and eval mode), agreement with attention/softmax where\n"
    "the plugin declares it exact, and determinism; then times it at sequence lengths 128 ... 4096. Exit\n"
    "code 0 when every check passed, 1 otherwise; --db FILE records the report and the profile as a run;\n"
    "--rope builds the blocks with rotary position embeddings (as model/gpt position = rope).\n"
    "\n"
    "tokenize: reads UTF-8 lines from stdin and prints one line of space-separated ids per line\n"
    "(with --decode: reads lines of ids and prints the text). key=value pairs are the tokenizer's\n"
    "options, e.g. `labrun tokenize char corpus=data/tinyshakespeare/input.txt`.\n"
    "\n"
    "generate: continues the prompt with a trained causal language model: RUN is a run id or uid of --db\n"
    "(default results/lab.db), RUN_FOLDER a run's folder (its latest checkpoint), CHECKPOINT a\n"
    "checkpoint folder. Temperature 0 is greedy; top-k 0 and top-p 1 keep every token. The model's\n"
    "KV cache is used where its attention has one (--no-cache recomputes the context for every token:\n"
    "the same tokens, slower). A prompt longer than the model's context is refused; generation stops\n"
    "at the context. Prints the text on stdout and tokens/s on stderr.\n"
    "\n"
    "Plugins are loaded from the build's plugins/ folder (next to bin/), LAB_PLUGIN_PATH (colon-separated\n"
    "folders or .so files), --plugin-path, and [experiment] plugins.\n";

// kUsageText and the plugin kinds, listed from the framework's table (lab/plugin_kinds.h).
std::string usage_text() {
    std::string text = kUsageText;
    text += "\nPlugin kinds (`type = NAME` in the section picks the plugin; --list shows the loaded ones):\n";
    for (const lab::PluginKind& kind : lab::plugin_kinds()) {
        std::string head = "  [" + kind.section + "]";
        head += std::string(head.size() < 14 ? 14 - head.size() : 1, ' ');
        text += head + kind.description +
                (kind.default_type.empty() ? " (required)" : " (default " + kind.default_type + ")") + "\n";
    }
    return text;
}

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
// them in <prefix>/<LAB_INSTALL_PLUGINDIR> (lib/lab/plugins on most systems).
void load_default_plugins(lab::Registry& registry, const std::vector<std::string>& extra) {
    fs::path exe_dir = executable_dir();
    const fs::path install_dir = fs::path(LAB_INSTALL_PLUGINDIR).is_absolute() ? fs::path(LAB_INSTALL_PLUGINDIR)
                                                                                : exe_dir / ".." / LAB_INSTALL_PLUGINDIR;
    for (const fs::path& dir : {exe_dir / ".." / "plugins", install_dir}) {
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
    if (info.kind == "attention") {
        std::cout << "\n  supports: " << info.attention.supports.str() << "\n";
        std::string exact;
        for (const auto& [key, value] : info.attention.equals_softmax_with)
            exact += (exact.empty() ? "" : ", ") + key + " = " + value;
        std::cout << "  equals attention/softmax: " << (exact.empty() ? "never (not an exact variant)" : "with " + exact)
                  << "\n  (labrun --check attention/" << info.name << " tests both)\n";
    } else if (info.kind == "model" || info.kind == "task") {
        std::cout << "\n  needs of the attention: " << info.needs_attention.str() << "\n";
    }
    if (const lab::PluginKind* kind = lab::find_plugin_kind(info.kind))
        std::cout << "\n  (and `type = " << info.name << "` selects it in [" << kind->section << "])\n";
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

// `labrun generate TARGET --prompt TEXT ...`: the run's model and tokenizer rebuilt from its
// recorded configuration, the weights of a checkpoint, then lab::generate.
int generate_text(const lab::Registry& registry, const std::vector<std::string>& args, const po::variables_map& vm,
                  const lab::RunEnvironment& env) {
    if (args.size() != 2)
        throw lab::ConfigError("generate: name one run (id, uid, run folder or checkpoint folder), e.g. "
                               "`labrun generate 3 --prompt \"ROMEO:\"`");
    if (!vm.count("prompt")) throw lab::ConfigError("generate: --prompt TEXT is required");
    const std::string& target = args[1];
    fs::path checkpoint, db = vm.count("db") ? fs::path(vm["db"].as<std::string>()) : fs::path("results/lab.db");
    std::string run_key = target;
    std::error_code ec;
    if (fs::is_directory(target, ec)) {
        fs::path dir = fs::absolute(target).lexically_normal();
        if (dir.filename().empty()) dir = dir.parent_path();
        fs::path run_dir = fs::exists(dir / "latest") ? dir : dir.parent_path();
        if (auto latest = lab::latest_checkpoint(dir)) checkpoint = *latest;
        else checkpoint = dir;
        std::string folder = run_dir.filename().string();
        run_key = folder.substr(folder.rfind('-') + 1);  // lab::run_folder: runs/<name>-<uid>
        if (!vm.count("db")) {  // the database next to runs/ that knows the uid
            auto records_run = [&](const fs::path& file) {
                try {
                    lab::ResultStore(file).find_run(run_key);
                    return true;
                } catch (const lab::Error&) {
                    return false;
                }
            };
            db.clear();
            for (const auto& entry : fs::directory_iterator(run_dir.parent_path().parent_path(), ec))
                if (entry.path().extension() == ".db" && records_run(entry.path())) db = entry.path();
            if (db.empty())
                throw lab::DataError("generate: no results database beside '" + run_dir.parent_path().string() +
                                     "' records run " + run_key + "; name it with --db");
        }
    }
    if (!fs::exists(db)) throw lab::ConfigError("generate: results database '" + db.string() + "' does not exist");
    lab::ResultStore store(db);
    int64_t run = store.find_run(run_key);
    lab::RunSpec spec = lab::resolve_run(
        lab::parse_canonical_text(store.config_text(run), "run " + std::to_string(run) + " of " + db.string()), registry);
    if (checkpoint.empty()) {
        fs::path run_dir = lab::run_folder(db, spec.name, store.uid(run));
        auto latest = lab::latest_checkpoint(run_dir);
        if (!latest) throw lab::DataError("generate: run " + std::to_string(run) + " has no checkpoint in " + run_dir.string());
        checkpoint = *latest;
    }
    lab::TrainedRun trained = lab::load_trained_run(spec, registry, env, checkpoint);
    lab::SamplingOptions options;
    options.max_tokens = vm["max-tokens"].as<int64_t>();
    options.temperature = vm["temperature"].as<double>();
    options.top_k = vm["top-k"].as<int64_t>();
    options.top_p = vm["top-p"].as<double>();
    options.seed = vm["seed"].as<uint64_t>();
    options.kv_cache = !vm.count("no-cache");
    if (options.kv_cache && !trained.model->supports_kv_cache()) {
        std::cerr << "note: model/" << spec.plugins.at("model").plugin << " with attention/"
                  << spec.plugins.at("attention").plugin << " has no KV cache; recomputing the context for every token\n";
        options.kv_cache = false;
    }
    if (!trained.model->causal())
        throw lab::ConfigError("generate: model/" + spec.plugins.at("model").plugin +
                               " is bidirectional; generation needs a causal language model");
    lab::Generation g = lab::generate(*trained.model, trained.tokenizer->encode(vm["prompt"].as<std::string>()), options);
    std::cout << trained.tokenizer->decode(g.ids) << "\n";
    std::cerr << g.new_tokens << " tokens in " << std::fixed << std::setprecision(2) << g.seconds << " s: "
              << std::setprecision(1) << static_cast<double>(g.new_tokens) / std::max(g.seconds, 1e-9)
              << " tokens/s (" << (g.used_kv_cache ? "KV cache" : "full recomputation") << ", checkpoint "
              << checkpoint.string() << (g.stop_reason == "context" ? "; stopped at the model's context" : "")
              << ")\n";
    return kOk;
}

// `labrun eval RUN [section.key=value ...]`: the run's latest checkpoint evaluated with its
// recorded configuration plus the overrides (lab/evaluation.h); the metrics are printed and
// recorded as tagged metrics of the run.
int evaluate_run(lab::Registry& registry, const std::vector<std::string>& args, const po::variables_map& vm,
                 const lab::ConfigEnv& config_env, const lab::RunEnvironment& env) {
    if (args.size() < 2)
        throw lab::ConfigError("eval: name one run (id or uid), e.g. "
                               "`labrun eval 3 train.seq_len=256 --db results/lab.db`");
    const fs::path db = vm.count("db") ? fs::path(vm["db"].as<std::string>()) : fs::path("results/lab.db");
    if (!fs::exists(db))
        throw lab::ConfigError("eval: results database '" + db.string() + "' does not exist; name it with --db FILE");
    lab::ResultStore store(db);
    store.mark_interrupted_runs();
    int64_t run = 0;
    try {
        run = store.find_run(args[1]);
    } catch (const lab::Error& e) {
        throw lab::ConfigError(std::string("eval: ") + e.what());
    }
    const std::string which = "run " + std::to_string(run) + " of " + db.string();
    const std::string status = store.status(run);
    if (status == "running")
        throw lab::ConfigError("eval: " + which + " is still running in a live process; evaluate it when it has "
                               "finished, or stop it (SIGINT checkpoints it and marks it interrupted)");
    if (status != "finished" && status != "interrupted")
        throw lab::ConfigError("eval: " + which + " " + status + "; only finished or interrupted runs, which have a "
                               "checkpoint, can be evaluated (rerun the experiment to train it)");
    const lab::RawConfig recorded = lab::parse_canonical_text(store.config_text(run), which);
    for (const auto& p : lab::experiment_plugin_paths(recorded)) load_path(registry, p);
    const lab::EvaluationPlan plan =
        lab::plan_evaluation(recorded, {args.begin() + 2, args.end()}, config_env, registry);
    const fs::path run_dir = lab::run_folder(db, plan.trained.name, store.uid(run));
    auto checkpoint = lab::latest_checkpoint(run_dir);
    if (!checkpoint)
        throw lab::DataError("eval: " + which + " has no checkpoint in " + run_dir.string() +
                             "; there are no weights to evaluate (a run writes one at each evaluation and at the end; "
                             "was the folder moved or deleted?)");
    const lab::CheckpointEvaluation evaluation = lab::evaluate_checkpoint(plan, registry, env, *checkpoint);
    std::map<std::string, double> metrics;
    std::map<std::string, lab::MetricGoal> goals;
    for (const auto& [name, value] : evaluation.result.metrics)
        metrics[lab::tagged_metric_name(name, plan.tag)] = value;
    for (const auto& [name, goal] : evaluation.result.goals) goals[lab::tagged_metric_name(name, plan.tag)] = goal;
    store.replace_metrics(run, evaluation.step, metrics, goals);
    std::cout << "run " << run << " (" << store.uid(run) << ") step " << evaluation.step;
    for (const auto& [name, value] : metrics) std::cout << "  " << name << " " << value;
    std::cout << "\n";
    if (!env.quiet)
        std::cerr << "evaluated " << checkpoint->string() << " in " << std::fixed << std::setprecision(1)
                  << evaluation.seconds << " s; recorded as metrics of " << which << "\n";
    return kOk;
}

// The ranks of this run when an MPI launcher started it (made in run_main, ended in main: an error
// that not every rank shares must end them all, or the others would wait forever).
std::unique_ptr<lab::Communicator> g_comm;
// Set when the error being thrown is one every rank throws (decided_by_rank0).
bool g_error_shared = false;

bool is_lead() { return !g_comm || g_comm->rank() == 0; }

int report_outcome(const lab::RunOutcome& outcome) {
    if (outcome.interrupted) return 128 + outcome.stop_signal;  // as a shell reports a signal
    if (!is_lead()) return kOk;                                 // rank 0 reports a data-parallel run
    std::cout << "run " << outcome.run_id << " (" << outcome.uid << ") finished";
    for (const auto& [name, value] : outcome.final_metrics) std::cout << "  " << name << " " << value;
    std::cout << "  wall " << lab::format_duration(outcome.wall_s) << "\n";
    return kOk;
}

// The most recent run with `spec`'s configuration in its results database (`results_db` when
// given: --results-db, else [experiment] db), after runs of dead processes are marked interrupted.
// It decides what happens to the run: finished -> skipped (unless --force), interrupted -> resumed
// from its checkpoint, failed or none -> run.
std::optional<lab::ResultStore::RunRef> previous_run(const lab::RunSpec& spec, const fs::path& results_db) {
    lab::ResultStore store(results_db.empty() ? fs::path(spec.experiment.get_string("db")) : results_db);
    store.mark_interrupted_runs();
    if (!spec.sweep_id.empty()) store.add_sweep(spec.sweep_id, spec.name, spec.sweep_size);
    return store.latest_run(spec.hash());
}

// ---- parallel sweeps (--jobs) ----


std::string last_lines(const fs::path& file, size_t n) {
    std::ifstream in(file);
    std::vector<std::string> lines;
    std::string line;
    while (std::getline(in, line)) {
        // Progress redraws end in '\r'; keep what the line finally showed.
        if (auto cr = line.find_last_of('\r'); cr != std::string::npos) line = line.substr(cr + 1);
        if (!line.empty()) lines.push_back(line);
    }
    std::string out;
    for (size_t i = lines.size() > n ? lines.size() - n : 0; i < lines.size(); ++i) out += "    " + lines[i] + "\n";
    return out;
}

// Runs the sweep runs `todo` (indices into specs) as child processes of this labrun, `jobs` at a
// time: each child is this program with the same arguments plus --sweep-index I, with
// OMP_NUM_THREADS = cores / jobs, its output in <db folder>/logs/sweep-<id>-<I+1>.log. SIGINT and
// SIGTERM reach the children (same process group), which checkpoint; no new run starts after one.
int run_sweep_in_parallel(const std::vector<lab::RunSpec>& specs, const std::vector<size_t>& todo, int jobs,
                          int argc, char** argv, bool quiet) {
    const int threads = std::max(1, lab::available_cores() / jobs);
    fs::path log_dir = fs::path(specs.front().experiment.get_string("db")).parent_path() / "logs";
    fs::create_directories(log_dir);
    if (!quiet)
        std::cerr << "sweep " << specs.front().sweep_id << ": " << todo.size() << " of " << specs.size()
                  << " runs to do, " << jobs << " at a time with " << threads << " thread" << (threads > 1 ? "s" : "")
                  << " each; logs in " << log_dir.string() << "/\n";

    std::vector<std::string> env_strings;
    for (char** e = environ; *e; ++e)
        if (std::string(*e).rfind("OMP_NUM_THREADS=", 0) != 0) env_strings.emplace_back(*e);
    env_strings.push_back("OMP_NUM_THREADS=" + std::to_string(threads));
    std::vector<char*> envp;
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);

    const lab::StopRequests stop;  // SIGINT/SIGTERM: start no new run (the children get them too)

    std::map<pid_t, size_t> running;  // pid -> index
    std::map<size_t, fs::path> logs;
    size_t next = 0, failed = 0, interrupted = 0;
    auto label = [&](size_t i) {
        std::ostringstream text;  // (not string concatenation: g++ 12 warns falsely on it, -Wrestrict)
        text << "[" << i + 1 << "/" << specs.size() << "] ";
        return text.str();
    };
    while (next < todo.size() || !running.empty()) {
        while (!stop.pending() && next < todo.size() && static_cast<int>(running.size()) < jobs) {
            size_t index = todo[next++];
            fs::path log = log_dir / ("sweep-" + specs[index].sweep_id + "-" + std::to_string(index + 1) + ".log");
            std::vector<std::string> args(argv, argv + argc);
            args.insert(args.end(), {"--sweep-index", std::to_string(index)});
            // A child writes to its log file: plain lines (once: Program_options refuses a repeat).
            if (std::find(args.begin(), args.end(), "--no-progress") == args.end()) args.emplace_back("--no-progress");
            std::vector<char*> child_argv;
            for (auto& a : args) child_argv.push_back(a.data());
            child_argv.push_back(nullptr);
            posix_spawn_file_actions_t actions;
            posix_spawn_file_actions_init(&actions);
            posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
            pid_t pid = 0;
            std::string self = fs::read_symlink("/proc/self/exe").string();
            int err = posix_spawn(&pid, self.c_str(), &actions, nullptr, child_argv.data(), envp.data());
            posix_spawn_file_actions_destroy(&actions);
            if (err != 0) throw lab::Error("--jobs: cannot start " + self + ": " + std::strerror(err));
            running[pid] = index;
            logs[index] = log;
            if (!quiet) std::cerr << label(index) << "started: " << specs[index].sweep_values_text() << "\n";
        }
        int status = 0;
        pid_t pid = waitpid(-1, &status, 0);
        if (pid < 0) {
            if (errno == EINTR) continue;
            break;
        }
        auto it = running.find(pid);
        if (it == running.end()) continue;
        size_t index = it->second;
        running.erase(it);
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (code == kOk) {
            if (!quiet) std::cerr << label(index) << "done\n" << last_lines(logs[index], 1);
        } else if (code == 128 + SIGINT || code == 128 + SIGTERM) {
            ++interrupted;
            if (!quiet) std::cerr << label(index) << "interrupted (checkpointed; rerun the sweep to resume)\n";
        } else {
            ++failed;
            std::cerr << label(index) << "failed with exit code " << code << "; the end of " << logs[index].string()
                      << ":\n" << last_lines(logs[index], 5);
        }
    }
    if (stop.pending()) return 128 + stop.pending();
    if (!quiet)
        std::cerr << "sweep " << specs.front().sweep_id << ": " << (todo.size() - failed - interrupted) << " finished, "
                  << failed << " failed, " << interrupted << " interrupted\n";
    return failed ? kRunFailed : interrupted ? 128 + SIGINT : kOk;
}

// ---- data parallelism (labrun under mpirun or srun) ----

// Runs `decide` on rank 0 alone (it reads or writes the database) and gives its result to every
// rank; an error there is thrown on every rank (as ConfigError with the same text elsewhere).
std::string decided_by_rank0(const std::function<std::string()>& decide) {
    if (!g_comm) return decide();
    std::string message;
    if (is_lead()) {
        try {
            message = "ok " + decide();
        } catch (const std::exception& e) {
            message = "error " + std::string(e.what());
            g_comm->broadcast(message, 0);
            g_error_shared = true;
            throw;
        }
    }
    g_comm->broadcast(message, 0);
    if (message.rfind("ok ", 0) != 0) {
        g_error_shared = true;
        throw lab::ConfigError(message.substr(6));
    }
    return message.substr(3);
}

// Under a launcher: MPI, the run's environment of this rank (rank 0 alone logs; each rank sees
// one GPU, the one of its place on the node), and the commands that cannot run on several ranks
// refused.
void start_ranks(lab::RunEnvironment& env, const std::vector<std::string>& args, const po::variables_map& vm) {
    if (!started_by_mpi_launcher()) return;
    const bool training = !args.empty() && args[0] != "eval" && args[0] != "generate" && args[0] != "tokenize";
    if (!(training || vm.count("resume")) || vm.count("list") || vm.count("describe") || vm.count("check") ||
        vm.count("dry-run") || vm.count("slurm"))
        throw lab::ConfigError("only training (labrun EXPERIMENT.ini, labrun --resume RUN) runs on several ranks; "
                               "start this command as one process, without mpirun or srun");
    if (vm["jobs"].as<int>() != 1)
        throw lab::ConfigError("--jobs runs several runs as child processes of one labrun; under mpirun every rank "
                               "shares one run: leave out --jobs (or mpirun)");
    g_comm = make_mpi_communicator();
    if (g_comm->local_size() > 1) {
        // One GPU per rank of a node: CUDA_VISIBLE_DEVICES narrowed to this rank's device, so the
        // cuda backend's device 0 is it (set before any CUDA call; CPU backends ignore it).
        std::vector<std::string> devices;
        if (const char* visible = std::getenv("CUDA_VISIBLE_DEVICES")) devices = split_list(visible, ',');
        const int local = g_comm->local_rank();
        const std::string mine = devices.empty() ? std::to_string(local) : devices[static_cast<size_t>(local) % devices.size()];
        setenv("CUDA_VISIBLE_DEVICES", mine.c_str(), 1);
    }
    env.comm = g_comm.get();
    env.stop_grace_s = stop_grace_seconds();
    env.progress = false;
    if (!is_lead()) env.quiet = true;
}

// --slurm submits the runs of an experiment file; the modes that do something else, and the
// options that choose how runs run here, do not go with it. Its own options need it.
void check_slurm_combination(const po::variables_map& vm, const std::vector<std::string>& args) {
    if (!vm.count("slurm")) {
        for (const std::string option : {"partition", "time", "cpus-per-task", "gpus-per-task"})
            if (vm.count(option) && !vm[option].defaulted())
                throw lab::ConfigError("--" + option + " is an option of --slurm, which is not given; hint: add --slurm "
                                       "to submit the runs to Slurm, or drop --" + option);
        return;
    }
    std::string other;
    for (const std::string option : {"list", "describe", "check", "resume", "sweep-index", "results-db"})
        if (vm.count(option)) other = "--" + option;
    if (!vm["jobs"].defaulted()) other = "--jobs";
    if (!args.empty() && (args[0] == "eval" || args[0] == "generate" || args[0] == "tokenize")) other = args[0];
    if (!other.empty())
        throw lab::ConfigError("--slurm does not go with " + other + ": --slurm submits the runs of an experiment file "
                               "as a Slurm job array, one task per run with --cpus-per-task threads; hint: drop " +
                               other + " (e.g. `labrun experiments/copy.ini --sweep experiment.seed=1,2 --slurm`)");
    if (args.empty())
        throw lab::ConfigError("--slurm: no experiment file given; hint: `labrun EXPERIMENT.ini --slurm`, e.g. "
                               "`labrun experiments/copy.ini --sweep experiment.seed=1,2 --slurm --dry-run`");
}

// --dry-run's memory check: the run's estimate (lab/run_plan.h) against the memory of its backend,
// refused as the run would refuse it. A device backend that cannot start here (a login node
// without the GPU) leaves the memory unknown: the run checks it again when it starts.
void check_memory_dry(const lab::RunSpec& spec, const lab::Registry& registry, std::ostream& out) {
    const lab::MemoryEstimate estimate = lab::estimate_memory(spec, registry);
    out << "# memory estimate: " << estimate.str() << "\n";
    const lab::SectionChoice& backend = spec.plugins.at("backend");
    std::shared_ptr<lab::Backend> device;
    try {
        device = registry.factory<lab::BackendFactory>("backend", backend.plugin)(backend.options);
    } catch (const lab::DeviceUnavailableError& e) {
        out << "# memory available: unknown (" << e.what() << "); the run checks it when it starts\n";
        return;
    }
    const size_t available = device->available_memory();
    const std::string where = lab::memory_name(*device);
    out << "# memory available: "
        << (available > 0 ? lab::format_bytes(static_cast<double>(available)) + " of " + where : "unknown (" + where +
                                                                                                   " not readable)")
        << "\n";
    lab::check_memory(estimate, available, where);
}

int run_main(int argc, char** argv) {
    po::options_description visible("options");
    visible.add_options()
        ("help,h", "show this help")
        ("version", "print the version and ABI tag")
        ("list", "list every loaded plugin (kind, name, version, file)")
        ("describe", po::value<std::string>()->value_name("KIND/NAME"), "print a plugin's options")
        ("dry-run", "check and print the resolved runs with their memory estimates, and stop (refuses what the "
                    "run would refuse before its first step; with --slurm: the scripts and sbatch commands)")
        ("resume", po::value<std::string>()->value_name("RUN"),
         "continue an interrupted run (id, uid prefix or name) from its latest checkpoint")
        ("check", po::value<std::string>()->value_name("attention/NAME"),
         "run the conformance check of an attention plugin (options follow as key=value)")
        ("backend", po::value<std::string>()->value_name("NAME"), "--check: backend (default onednn, else reference)")
        ("profile-lengths", po::value<std::string>()->value_name("N,N,..."),
         "--check: sequence lengths of the cost profile (default 128,256,512,1024,2048,4096)")
        ("no-profile", "--check: skip the cost profile")
        ("rope", "--check: build the blocks with rotary position embeddings (as model/gpt position = rope)")
        ("db", po::value<std::string>()->value_name("FILE"),
         "results database of --resume, eval and generate (default results/lab.db), or where --check records "
         "its report")
        ("force", "rerun runs of a sweep that already finished (also those whose plugins were rebuilt since)")
        ("jobs,j", po::value<int>()->default_value(1)->value_name("N"),
         "run N runs of a sweep at once, each with cores / N OpenMP threads")
        ("data-dir", po::value<std::string>()->value_name("DIR"), "where ${data} points (default: $LAB_DATA, else data/)")
        ("plugin-path", po::value<std::vector<std::string>>()->value_name("PATH")->composing(),
         "extra plugin folder or .so file (repeatable)")
        ("decode", "tokenize: turn lines of ids back into text")
        ("prompt", po::value<std::string>()->value_name("TEXT"), "generate: the text to continue")
        ("max-tokens", po::value<int64_t>()->default_value(100)->value_name("N"), "generate: new tokens at most")
        ("temperature", po::value<double>()->default_value(1.0)->value_name("T"), "generate: 0 = greedy")
        ("top-k", po::value<int64_t>()->default_value(0)->value_name("K"), "generate: keep the K likeliest (0: all)")
        ("top-p", po::value<double>()->default_value(1.0)->value_name("P"), "generate: nucleus probability")
        ("seed", po::value<uint64_t>()->default_value(1)->value_name("S"), "generate: sampling seed")
        ("no-cache", "generate: recompute the whole context for every token")
        ("sweep", po::value<std::vector<std::string>>()->value_name("KEY=V1,V2")->composing(),
         "sweep section.key over the comma-separated values, as a line of [sweep] (repeatable)")
        ("slurm", "submit the runs to Slurm as one job array and a merge job (see above)")
        ("partition", po::value<std::string>()->value_name("P"), "--slurm: the partition (default: the cluster's)")
        ("time", po::value<std::string>()->value_name("T"),
         "--slurm: time limit per run, e.g. 90, 1:30:00, 2-00:00:00 (default: the partition's)")
        ("cpus-per-task", po::value<int64_t>()->default_value(1)->value_name("C"),
         "--slurm: CPUs per run, also its OpenMP threads")
        ("gpus-per-task", po::value<int64_t>()->default_value(0)->value_name("G"), "--slurm: GPUs per run")
        ("quiet,q", "no log output")
        ("no-progress", "plain log lines even on a terminal");
    po::options_description hidden;
    hidden.add_options()("args", po::value<std::vector<std::string>>(), "")(
        "sweep-index", po::value<int64_t>(), "run only this run of the sweep (0-based; --jobs uses it)")(
        "results-db", po::value<std::string>(),
        "record runs in FILE instead of [experiment] db, and skip or resume the runs FILE records (a --slurm task)");
    po::options_description all;
    all.add(visible).add(hidden);
    po::positional_options_description positional;
    positional.add("args", -1);
    po::variables_map vm;
    try {
        po::store(po::command_line_parser(argc, argv).options(all).positional(positional).run(), vm);
        po::notify(vm);
    } catch (const po::error& e) {
        std::cerr << "labrun: " << e.what() << "\n\n" << usage_text() << "\n" << visible;
        return kUsage;
    }
    if (vm.count("help")) {
        std::cout << usage_text() << "\n" << visible;
        return kOk;
    }
    if (vm.count("version")) {
        const std::string mpi = mpi_library_version();
        std::cout << "labrun " << LAB_VERSION << " (SDK ABI " << LAB_SDK_ABI << ", tag " << lab::Registry::abi_tag()
                  << ")\n"
                  << "data-parallel training: " << (mpi.empty() ? "not built (no MPI at configure time)" : mpi) << "\n";
        return kOk;
    }
    std::vector<std::string> args = vm.count("args") ? vm["args"].as<std::vector<std::string>>()
                                                     : std::vector<std::string>{};
    check_slurm_combination(vm, args);
    if (vm.count("results-db") && (vm.count("resume") || vm.count("check") || args.empty() || args[0] == "eval" ||
                                   args[0] == "generate" || args[0] == "tokenize"))
        throw lab::ConfigError("--results-db records the runs of an experiment file (a --slurm task's); it does not "
                               "go with --resume, --check, eval, generate or tokenize, which take a database with --db");
    std::vector<std::string> plugin_paths =
        vm.count("plugin-path") ? vm["plugin-path"].as<std::vector<std::string>>() : std::vector<std::string>{};

    lab::Registry registry;
    load_default_plugins(registry, plugin_paths);
    if (vm.count("list")) return list_plugins(registry);
    if (vm.count("describe")) return describe(registry, vm["describe"].as<std::string>());
    if (vm.count("check")) {
        CheckCliOptions check;
        if (vm.count("backend")) check.backend = vm["backend"].as<std::string>();
        if (vm.count("profile-lengths")) check.profile_lengths = vm["profile-lengths"].as<std::string>();
        check.no_profile = vm.count("no-profile") > 0;
        check.rope = vm.count("rope") > 0;
        if (vm.count("db")) check.db = vm["db"].as<std::string>();
        std::vector<std::string> check_args{vm["check"].as<std::string>()};
        check_args.insert(check_args.end(), args.begin(), args.end());
        return run_attention_check(registry, check_args, check);
    }
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
    if (vm.count("results-db")) run_env.results_db = vm["results-db"].as<std::string>();

    start_ranks(run_env, args, vm);

    const std::vector<std::string> sweeps =
        vm.count("sweep") ? vm["sweep"].as<std::vector<std::string>>() : std::vector<std::string>{};
    if (!sweeps.empty() && (args.empty() || args[0] == "generate" || args[0] == "eval" || vm.count("resume")))
        throw lab::ConfigError("--sweep '" + sweeps.front() + "': --sweep sweeps an experiment file; give one, e.g. "
                               "`labrun experiments/copy.ini --sweep experiment.seed=1,2`");
    if (!args.empty() && args[0] == "generate") return generate_text(registry, args, vm, run_env);
    if (!args.empty() && args[0] == "eval") return evaluate_run(registry, args, vm, env, run_env);

    if (vm.count("resume")) {
        if (!args.empty())
            throw lab::ConfigError("--resume takes its configuration from the database; give no experiment file or "
                                   "overrides (got '" + args[0] + "')");
        fs::path db = vm.count("db") ? vm["db"].as<std::string>() : "results/lab.db";
        // "<run id> <recorded configuration>", looked up by rank 0.
        const std::string found = decided_by_rank0([&] {
            if (!fs::exists(db)) throw lab::ConfigError("--resume: results database '" + db.string() + "' does not exist");
            lab::ResultStore store(db);
            store.mark_interrupted_runs();
            const int64_t id = store.find_run(vm["resume"].as<std::string>());
            std::string status = store.status(id);
            if (status == "finished")
                throw lab::ConfigError("--resume: run " + std::to_string(id) + " already finished; nothing to resume");
            if (status == "running")
                throw lab::ConfigError("--resume: run " + std::to_string(id) +
                                       " is still running in a live process; stop it first (SIGINT checkpoints it)");
            return std::to_string(id) + " " + store.config_text(id);
        });
        const int64_t run = std::stoll(found.substr(0, found.find(' ')));
        lab::RawConfig raw =
            lab::parse_canonical_text(found.substr(found.find(' ') + 1), "run " + std::to_string(run) + " of " + db.string());
        for (const auto& p : lab::experiment_plugin_paths(raw)) load_path(registry, p);
        lab::RunSpec spec = lab::resolve_run(raw, registry);
        run_env.resume_run = run;
        return report_outcome(lab::run_experiment(spec, registry, run_env));
    }

    if (args.empty()) {
        std::cerr << "labrun: no experiment file given\n\n" << usage_text() << "\n" << visible;
        return kUsage;
    }
    std::vector<std::string> overrides(args.begin() + 1, args.end());
    lab::RawConfig raw = lab::load_config(args[0], overrides, env, sweeps);
    for (const auto& p : lab::experiment_plugin_paths(raw)) load_path(registry, p);
    std::vector<lab::RunSpec> specs = lab::resolve_runs(raw, registry);
    if (vm.count("slurm")) {
        SlurmOptions slurm;
        if (vm.count("partition")) slurm.partition = vm["partition"].as<std::string>();
        if (vm.count("time")) slurm.time = vm["time"].as<std::string>();
        slurm.cpus_per_task = vm["cpus-per-task"].as<int64_t>();
        slurm.gpus_per_task = vm["gpus-per-task"].as<int64_t>();
        slurm.dry_run = vm.count("dry-run") > 0;
        SlurmCommand command{args[0], overrides, sweeps, env.data_dir.string(),
                             {plugin_paths.begin(), plugin_paths.end()}, vm.count("force") > 0};
        return submit_to_slurm(specs, registry, command, slurm, std::cout);
    }
    if (vm.count("dry-run")) {
        std::cout << "# " << specs.size() << (specs.size() == 1 ? " run" : " runs");
        if (!specs.front().sweep_id.empty()) std::cout << " of sweep " << specs.front().sweep_id;
        std::cout << "\n";
        for (const auto& spec : specs) {
            std::cout << lab::format_run(spec);
            check_memory_dry(spec, registry, std::cout);
            std::cout << "\n";
        }
        return kOk;
    }
    // A sweep (or a single run) continues where it stopped: finished runs are skipped (unless
    // --force), interrupted ones resume from their checkpoint, failed ones run again. A finished
    // run whose plugin files were rebuilt since is no longer the same run: refused (rerun.h).
    const int jobs = vm["jobs"].as<int>();
    if (jobs < 1) throw lab::ConfigError("--jobs " + std::to_string(jobs) + ": expected a number of runs >= 1");
    size_t first = 0, last = specs.size();
    if (vm.count("sweep-index")) {
        int64_t index = vm["sweep-index"].as<int64_t>();
        if (index < 0 || index >= static_cast<int64_t>(specs.size()))
            throw lab::ConfigError("--sweep-index " + std::to_string(index) + ": the experiment has " +
                                   std::to_string(specs.size()) + " runs (0 .. " + std::to_string(specs.size() - 1) + ")");
        first = static_cast<size_t>(index);
        last = first + 1;
    }
    if (!vm.count("force"))
        decided_by_rank0([&] {
            RunDatabases databases;  // --results-db: that file records the earlier runs
            if (!run_env.results_db.empty())
                databases = [&](size_t) { return std::vector<fs::path>{run_env.results_db}; };
            refuse_finished_runs_with_rebuilt_plugins(specs, first, last, registry, databases);
            return std::string();
        });
    if (jobs > 1 && specs.size() > 1 && !vm.count("sweep-index")) {
        std::vector<size_t> todo;
        for (size_t i = 0; i < specs.size(); ++i) {
            auto previous = previous_run(specs[i], run_env.results_db);
            if (previous && previous->status == "finished" && !vm.count("force")) continue;
            todo.push_back(i);
        }
        if (!run_env.quiet && todo.size() < specs.size())
            std::cerr << (specs.size() - todo.size()) << " runs already finished; skipped (--force runs them again)\n";
        return run_sweep_in_parallel(specs, todo, jobs, argc, argv, run_env.quiet);
    }
    int code = kOk;
    for (size_t i = first; i < last; ++i) {
        const lab::RunSpec& spec = specs[i];
        std::string label = specs.size() > 1 ? "[" + std::to_string(i + 1) + "/" + std::to_string(specs.size()) + "] " : "";
        lab::RunEnvironment this_run = run_env;
        // "<id> <status>" of the latest run with this configuration, or "" (rank 0 looks).
        const std::string previous = decided_by_rank0([&] {
            auto found = previous_run(spec, run_env.results_db);
            return found ? std::to_string(found->id) + " " + found->status : std::string();
        });
        if (!previous.empty()) {
            const int64_t id = std::stoll(previous.substr(0, previous.find(' ')));
            const std::string status = previous.substr(previous.find(' ') + 1);
            if (status == "finished" && !vm.count("force")) {
                if (!run_env.quiet)
                    std::cerr << label << "run " << id << " with this configuration already finished; skipped "
                              << "(--force runs it again)\n";
                continue;
            }
            if (status == "interrupted") this_run.resume_run = id;
        }
        if (!label.empty() && !run_env.quiet) std::cerr << label << "sweep " << spec.sweep_id << "\n";
        try {
            lab::RunOutcome outcome = lab::run_experiment(spec, registry, this_run);
            code = report_outcome(outcome);
            if (outcome.interrupted) return code;
        } catch (const lab::TrainingError& e) {
            // A lost rank ends a data-parallel sweep: the ranks left cannot train the next run.
            if (specs.size() == 1 || dynamic_cast<const lab::RanksLostError*>(&e)) throw;
            std::cerr << label << "run failed: " << e.what() << "\n";  // the sweep goes on
            code = kRunFailed;
        }
    }
    return code;
}

// An error on one rank of a data-parallel run that the others do not share (they would wait for
// it in their next collective) ends every rank at once (MPI_Abort); one that every rank learned
// together (RankFailedError, an error of rank 0's decisions) ends each rank normally, and rank 0
// alone prints it.
int report_error(const std::string& kind, const std::exception& e, int code, bool shared_by_all_ranks) {
    if (!g_comm || g_comm->size() == 1) {
        std::cerr << "labrun: " << kind << e.what() << "\n";
        return code;
    }
    if (is_lead() || !shared_by_all_ranks)
        std::cerr << "labrun: [rank " << g_comm->rank() << "] " << kind << e.what() << "\n" << std::flush;
    if (!shared_by_all_ranks) g_comm->abort(code);
    return code;
}

}  // namespace

int main(int argc, char** argv) {
    lab::handle_stop_signals_on_own_thread();  // before any other thread starts (lab/stop_signals.h)
    int code = kOk;
    try {
        code = run_main(argc, argv);
    } catch (const lab::ConfigError& e) {
        code = report_error("configuration error: ", e, kConfig, g_error_shared);
    } catch (const lab::PluginError& e) {
        code = report_error("plugin error: ", e, kPlugin, g_error_shared);
    } catch (const lab::DataError& e) {
        code = report_error("data error: ", e, kData, g_error_shared);
    } catch (const lab::RankFailedError& e) {
        code = report_error("run failed: ", e, kRunFailed, true);
    } catch (const lab::TrainingError& e) {
        code = report_error("run failed: ", e, kRunFailed, g_error_shared);
    } catch (const lab::DeviceUnavailableError& e) {
        code = report_error("no device: ", e, kNoDevice, g_error_shared);
    } catch (const lab::Error& e) {
        code = report_error("error: ", e, kRunFailed, g_error_shared);
    } catch (const std::exception& e) {
        code = report_error("internal error: ", e, kInternal, g_error_shared);
    }
    g_comm.reset();  // MPI_Finalize, when every rank got here
    return code;
}
