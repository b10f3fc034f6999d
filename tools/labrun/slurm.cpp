#include "slurm.h"

#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>

#include "lab/error.h"
#include "lab/results.h"
#include "rerun.h"

extern char** environ;

namespace fs = std::filesystem;

namespace {

// A word for bash: as it is when it holds only characters the shell leaves alone (paths and
// section.key=value overrides stay readable in the script), else in single quotes.
std::string shell_word(const std::string& word) {
    static const std::regex plain("[A-Za-z0-9_./:=,+@%^-]+");
    if (std::regex_match(word, plain)) return word;
    std::string quoted = "'";
    for (char c : word) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return quoted + "'";
}

// #SBATCH lines are read by sbatch, not by a shell, and '%' starts a file-name pattern in --output
// (%A, %a, %j): a path that needs quoting or has a '%' cannot be carried safely, so it is refused.
fs::path sbatch_path(const fs::path& path, const std::string& what) {
    static const std::regex safe("[A-Za-z0-9_./:=,+@^-]+");
    if (!std::regex_match(path.string(), safe))
        throw lab::ConfigError("--slurm: " + what + " '" + path.string() +
                               "' has characters an #SBATCH line cannot carry (whitespace, quotes, '%', ...); hint: "
                               "run from, and give [experiment] db, a path of letters, digits and _ . / - only");
    return path;
}

std::string job_name(const std::string& name) {
    std::string out = "labrun-";
    for (char c : name)
        out += std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ? c : '_';
    return out;
}

// The sweep id, or for a run without [sweep] 12 hex digits of its config hash: what names the
// task databases and scripts of one experiment's submissions.
std::string submission_tag(const lab::RunSpec& spec) {
    return spec.sweep_id.empty() ? spec.hash().substr(0, 12) : spec.sweep_id;
}

// Whether the latest run of `hash` recorded in `db` finished (false when `db` does not exist:
// nothing is created to find that out).
bool finished_in(const fs::path& db, const std::string& hash) {
    std::error_code ec;
    if (!fs::exists(db, ec)) return false;
    lab::ResultStore store(db);
    auto latest = store.latest_run(hash);
    return latest && latest->status == "finished";
}

// "0-3" for consecutive indices, else "1,3,4".
std::string array_spec(const std::vector<size_t>& todo) {
    bool consecutive = true;
    for (size_t i = 1; i < todo.size(); ++i) consecutive = consecutive && todo[i] == todo[i - 1] + 1;
    std::ostringstream text;  // (not string concatenation: g++ 12 warns falsely on it, -Wrestrict)
    if (consecutive && todo.size() > 1) {
        text << todo.front() << "-" << todo.back();
    } else {
        for (size_t i = 0; i < todo.size(); ++i) text << (i ? "," : "") << todo[i];
    }
    return text.str();
}

struct Scripts {
    std::string array_script, merge_script;
    fs::path array_file, merge_file;
};

// The #SBATCH lines both jobs share: where they run, where their output goes, what they may use.
std::string common_directives(const SlurmOptions& options, const fs::path& working_dir) {
    std::string text = "#SBATCH --chdir=" + working_dir.string() + "\n";
    if (!options.partition.empty()) text += "#SBATCH --partition=" + options.partition + "\n";
    if (!options.time.empty()) text += "#SBATCH --time=" + options.time + "\n";
    return text;
}

std::string task_db_array(const std::vector<lab::RunSpec>& specs) {
    std::string text = "task_dbs=(\n";
    for (const lab::RunSpec& spec : specs) text += "  " + shell_word(slurm_task_db(spec).string()) + "\n";
    return text + ")\n";
}

Scripts write_scripts(const std::vector<lab::RunSpec>& specs, const std::vector<size_t>& todo,
                      const SlurmCommand& command, const SlurmOptions& options, const fs::path& labrun,
                      const fs::path& labdb, const fs::path& working_dir, const fs::path& db,
                      const fs::path& log_dir) {
    const lab::RunSpec& first = specs.front();
    const std::string tag = submission_tag(first);
    const std::string what = first.sweep_id.empty() ? "run of experiment '" + first.name + "' (config " + tag + ")"
                                                    : "sweep " + tag + " of experiment '" + first.name + "'";
    Scripts s;
    s.array_file = log_dir / (db.stem().string() + ".slurm-" + tag + ".sh");
    s.merge_file = log_dir / (db.stem().string() + ".slurm-" + tag + "-merge.sh");

    std::string task = "#!/bin/bash\n# labrun --slurm: " + what + " from " + command.experiment_file.string() + ", " +
                       std::to_string(todo.size()) + " of its " + std::to_string(specs.size()) +
                       (specs.size() == 1 ? " run" : " runs") +
                       ".\n# Array task I runs the run of sweep index I and records it in its own results database\n"
                       "# (SQLite must not be shared between hosts); the merge job joins them into\n# " +
                       db.string() + " when the array has ended.\n";
    task += "#SBATCH --job-name=" + job_name(first.name) + "\n#SBATCH --array=" + array_spec(todo) + "\n";
    task += common_directives(options, working_dir);
    task += "#SBATCH --output=" + (log_dir / "slurm-%A_%a.out").string() + "\n";
    task += "#SBATCH --cpus-per-task=" + std::to_string(options.cpus_per_task) + "\n";
    if (options.gpus_per_task > 0) task += "#SBATCH --gpus-per-task=" + std::to_string(options.gpus_per_task) + "\n";
    task += "set -eu\nexport OMP_NUM_THREADS=\"${SLURM_CPUS_PER_TASK:-1}\"\n";
    if (const char* env = std::getenv("LAB_PLUGIN_PATH")) {
        std::string absolute;
        std::stringstream entries(env);
        std::string entry;
        while (std::getline(entries, entry, ':'))
            if (!entry.empty())
                absolute += (absolute.empty() ? "" : ":") + fs::absolute(entry).lexically_normal().string();
        task += "export LAB_PLUGIN_PATH=" + shell_word(absolute) + "\n";
    }
    task += "# The results database of each run, by sweep index.\n" + task_db_array(specs);
    std::string call = "exec " + shell_word(labrun.string()) + " " + shell_word(command.experiment_file.string());
    for (const std::string& o : command.overrides) call += " " + shell_word(o);
    for (const std::string& sweep : command.sweeps) call += " --sweep " + shell_word(sweep);
    call += " --data-dir " + shell_word(command.data_dir);
    for (const fs::path& p : command.plugin_paths) call += " --plugin-path " + shell_word(p.string());
    if (command.force) call += " --force";
    call += " \\\n  --sweep-index \"$SLURM_ARRAY_TASK_ID\" --results-db \"${task_dbs[$SLURM_ARRAY_TASK_ID]}\""
            " --no-progress\n";
    s.array_script = task + call;

    std::string merge = "#!/bin/bash\n# labrun --slurm: joins the results databases of the array tasks of " + what +
                        "\n# into " + db.string() + " once the array has ended.\n";
    merge += "#SBATCH --job-name=" + job_name(first.name) + "-merge\n";
    merge += common_directives(options, working_dir);
    merge += "#SBATCH --output=" + (log_dir / "slurm-%j-merge.out").string() + "\n#SBATCH --cpus-per-task=1\n";
    merge += "set -u\nlabdb=" + shell_word(labdb.string()) + "\ndb=" + shell_word(db.string()) + "\n";
    merge += "# Every run's task database, not only this submission's: one an earlier merge missed is joined too.\n" +
             task_db_array(specs);
    merge += R"SH(tasks=()
for task_db in "${task_dbs[@]}"; do [[ -f $task_db ]] && tasks+=("$task_db"); done
if [[ ${#tasks[@]} -eq 0 ]]; then
  echo "no task database to merge into $db"
  exit 0
fi
inputs=("${tasks[@]}")
[[ -f $db ]] && inputs+=("$db")
# Task databases first: a uid found in several inputs is copied from the first that has it, and a
# task's copy of a resumed run is newer than the one an earlier merge left in $db. Written beside
# $db and renamed over it only when the merge succeeded.
if ! "$labdb" merge "${inputs[@]}" -o "$db.merging" --force; then
  echo "labrun --slurm: the merge failed; $db and the task databases are unchanged" >&2
  exit 1
fi
# The replaced file's WAL and shared memory must not be paired with the new one.
rm -f "$db-wal" "$db-shm"
mv -f "$db.merging" "$db"
echo "merged into $db"
# A task database whose latest run finished is done with; the others stay for a resubmission
# (labrun --slurm again) to resume or rerun their run.
for task_db in "${tasks[@]}"; do
  if "$labdb" --db "$task_db" runs --limit 1 --json | grep -Eq '"status": *"finished"'; then
    rm -f "$task_db" "$task_db-wal" "$task_db-shm"
  else
    echo "kept $task_db: its latest run did not finish (labrun --slurm again resumes or reruns it)"
  fi
done
)SH";
    s.merge_script = merge;
    return s;
}

struct CommandResult {
    int exit_code = 0;
    std::string out, err;
};

const char* kNoSbatchHint =
    "run labrun --slurm on a login node of the cluster (or install Slurm's client commands, e.g. apt-get install "
    "slurm-wlm), or print the scripts without submitting them with --dry-run";

// Throws lab::Error when no folder of PATH has an executable `program` (what posix_spawnp would
// run): checked before anything is written.
void require_on_path(const std::string& program, const std::string& hint) {
    const char* path = std::getenv("PATH");
    std::stringstream folders(path ? path : "");
    std::string folder;
    while (std::getline(folders, folder, ':'))
        if (!folder.empty() && access((fs::path(folder) / program).c_str(), X_OK) == 0) return;
    throw lab::Error("--slurm: " + program + " is not on PATH (" + (path ? path : "unset") + "); hint: " + hint);
}

// Runs `args` (args[0] looked up on PATH) to its end and captures its stdout and stderr (two pipes
// read with poll, so that neither can fill up and stall the child). Throws lab::Error when it
// cannot be started.
CommandResult run_command(const std::vector<std::string>& args) {
    int out_pipe[2], err_pipe[2];
    if (pipe(out_pipe) != 0) throw lab::Error("--slurm: cannot create a pipe: " + std::string(std::strerror(errno)));
    if (pipe(err_pipe) != 0) {
        close(out_pipe[0]);
        close(out_pipe[1]);
        throw lab::Error("--slurm: cannot create a pipe: " + std::string(std::strerror(errno)));
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out_pipe[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, err_pipe[1], STDERR_FILENO);
    for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]}) posix_spawn_file_actions_addclose(&actions, fd);
    std::vector<std::string> copy = args;
    std::vector<char*> argv;
    for (std::string& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    const int spawn_error = posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(out_pipe[1]);
    close(err_pipe[1]);
    if (spawn_error != 0) {
        close(out_pipe[0]);
        close(err_pipe[0]);
        throw lab::Error("--slurm: cannot start " + args[0] + ": " + std::strerror(spawn_error));
    }
    CommandResult result;
    pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
    std::string* sinks[2] = {&result.out, &result.err};
    int open_fds = 2;
    while (open_fds > 0) {
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd < 0 || fds[i].revents == 0) continue;
            char buffer[4096];
            ssize_t n = read(fds[i].fd, buffer, sizeof buffer);
            if (n > 0) {
                sinks[i]->append(buffer, static_cast<size_t>(n));
            } else if (n == 0 || errno != EINTR) {
                close(fds[i].fd);
                fds[i].fd = -1;
                --open_fds;
            }
        }
    }
    for (pollfd& p : fds)
        if (p.fd >= 0) close(p.fd);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return result;
}

std::string trimmed(std::string text) {
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
    return text;
}

// `sbatch --parsable [extra...] SCRIPT` -> the job id (sbatch prints "ID" or "ID;CLUSTER").
std::string sbatch(const std::vector<std::string>& extra, const fs::path& script, const std::string& if_failed) {
    std::vector<std::string> args = {"sbatch", "--parsable"};
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(script.string());
    CommandResult result = run_command(args);
    std::string command;
    for (const std::string& a : args) command += (command.empty() ? "" : " ") + a;
    const std::string id = trimmed(result.out.substr(0, result.out.find(';')));
    if (result.exit_code != 0 || id.empty() || id.find_first_not_of("0123456789") != std::string::npos)
        throw lab::Error("--slurm: `" + command + "` failed (exit code " + std::to_string(result.exit_code) +
                         "): " + (trimmed(result.err).empty() ? "it printed '" + trimmed(result.out) + "'"
                                                              : trimmed(result.err)) +
                         "\nhint: " + if_failed);
    return id;
}

void write_file(const fs::path& file, const std::string& text) {
    std::ofstream out(file);
    out << text;
    out.close();
    if (!out) throw lab::Error("--slurm: cannot write " + file.string() + "; hint: check that its folder is writable");
}

}  // namespace

void check_slurm_options(const SlurmOptions& options) {
    // Slurm's time formats (sbatch(1) --time); sbatch itself would accept more (it rounds seconds
    // up to minutes) but refuse only when the job is submitted, after the scripts were written.
    static const std::regex time_format(
        "[0-9]+|[0-9]+:[0-9]{1,2}|[0-9]+:[0-9]{1,2}:[0-9]{1,2}|[0-9]+-[0-9]{1,2}|[0-9]+-[0-9]{1,2}:[0-9]{1,2}|"
        "[0-9]+-[0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}|UNLIMITED|unlimited|INFINITE|infinite");
    if (!options.time.empty() && !std::regex_match(options.time, time_format))
        throw lab::ConfigError("--time '" + options.time +
                               "' is not a Slurm time limit; hint: write minutes (90), M:S, H:M:S (1:30:00), "
                               "D-H, D-H:M or D-H:M:S (2-12:00:00), or UNLIMITED");
    if (options.cpus_per_task < 1)
        throw lab::ConfigError("--cpus-per-task " + std::to_string(options.cpus_per_task) +
                               ": expected a number of CPUs >= 1 (each run's OpenMP threads)");
    if (options.gpus_per_task < 0)
        throw lab::ConfigError("--gpus-per-task " + std::to_string(options.gpus_per_task) +
                               ": expected a number of GPUs >= 0");
    static const std::regex partition_name("[A-Za-z0-9_.-]+(,[A-Za-z0-9_.-]+)*");
    if (!options.partition.empty() && !std::regex_match(options.partition, partition_name))
        throw lab::ConfigError("--partition '" + options.partition +
                               "' is not a partition name; hint: name one of those `sinfo -s` lists (letters, "
                               "digits, '_', '-', '.'; several separated by commas)");
}

fs::path slurm_task_db(const lab::RunSpec& spec) {
    const fs::path db = fs::absolute(spec.experiment.get_string("db")).lexically_normal();
    return db.parent_path() /
           (db.stem().string() + ".slurm-" + submission_tag(spec) + "-" + std::to_string(spec.sweep_index + 1) + ".db");
}

int submit_to_slurm(const std::vector<lab::RunSpec>& specs, const lab::Registry& registry, SlurmCommand command,
                    const SlurmOptions& options, std::ostream& out) {
    check_slurm_options(options);
    const lab::RunSpec& first = specs.front();
    const fs::path db = fs::absolute(first.experiment.get_string("db")).lexically_normal();
    for (const lab::RunSpec& spec : specs)
        if (fs::absolute(spec.experiment.get_string("db")).lexically_normal() != db)
            throw lab::ConfigError("--slurm: run " + std::to_string(spec.sweep_index + 1) +
                                   " of the sweep records in " + spec.experiment.get_string("db") + " (" +
                                   spec.experiment.origin("db") + "), run 1 in " + first.experiment.get_string("db") +
                                   "; the runs of one submission merge into one database: hint: sweep "
                                   "experiment.db in separate submissions");
    const fs::path working_dir = sbatch_path(fs::current_path(), "the current folder");
    const fs::path log_dir = sbatch_path(db.parent_path() / "logs", "the log folder");
    command.experiment_file = fs::absolute(command.experiment_file).lexically_normal();
    for (fs::path& p : command.plugin_paths) p = fs::absolute(p).lexically_normal();
    const fs::path labrun = fs::read_symlink("/proc/self/exe");
    const fs::path labdb = labrun.parent_path() / "labdb";
    if (access(labdb.c_str(), X_OK) != 0)
        throw lab::Error("--slurm: the merge job runs labdb, but there is no executable " + labdb.string() +
                         "; hint: build or install labdb beside labrun (make labdb)");

    // As a rerun: finished runs are skipped (unless --force), and refused when their plugins
    // were rebuilt since. A run's task database is searched first: it is newer than the merge.
    if (!command.force)
        refuse_finished_runs_with_rebuilt_plugins(specs, 0, specs.size(), registry, [&](size_t i) {
            return std::vector<fs::path>{slurm_task_db(specs[i]), db};
        });
    std::vector<size_t> todo;
    for (size_t i = 0; i < specs.size(); ++i) {
        const std::string hash = specs[i].hash();
        if (!command.force && (finished_in(slurm_task_db(specs[i]), hash) || finished_in(db, hash))) continue;
        todo.push_back(i);
    }
    const std::string what = first.sweep_id.empty() ? "experiment '" + first.name + "'"
                                                    : "sweep " + first.sweep_id + " of '" + first.name + "'";
    const size_t done = specs.size() - todo.size();
    if (todo.empty()) {
        out << what << ": " << (specs.size() == 1 ? "its run" : "all " + std::to_string(specs.size()) + " runs")
            << " already finished (in " << db.string() << " or the task databases beside it); nothing submitted "
            << "(--force submits " << (specs.size() == 1 ? "it" : "them") << " again)\n";
        return 0;
    }
    const Scripts scripts = write_scripts(specs, todo, command, options, labrun, labdb, working_dir, db, log_dir);
    const std::string runs_text = std::to_string(specs.size()) + (specs.size() == 1 ? " run" : " runs");
    const std::string skipped_text =
        done == 0 ? "" : ", " + std::to_string(done) + " already finished (skipped; --force submits them again)";
    if (options.dry_run) {
        out << "# " << what << ": " << runs_text << skipped_text << "; " << todo.size()
            << " to submit as one job array (--array=" << array_spec(todo) << ")\n";
        out << "# ---- " << scripts.array_file.string() << "\n" << scripts.array_script;
        out << "# ---- " << scripts.merge_file.string() << "\n" << scripts.merge_script;
        out << "# ---- would run (nothing was written or submitted):\n";
        out << "sbatch --parsable " << scripts.array_file.string() << "\n";
        out << "sbatch --parsable --dependency=afterany:<array job id> " << scripts.merge_file.string() << "\n";
        return 0;
    }

    require_on_path("sbatch", kNoSbatchHint);
    fs::create_directories(log_dir);
    write_file(scripts.array_file, scripts.array_script);
    write_file(scripts.merge_file, scripts.merge_script);
    const std::string array_job = sbatch({}, scripts.array_file, "nothing was submitted; the script is " +
                                                                     scripts.array_file.string());
    const std::string merge_job = sbatch(
        {"--dependency=afterany:" + array_job}, scripts.merge_file,
        "the array job " + array_job + " is submitted and its tasks write their databases; submit the merge by hand "
        "(sbatch --dependency=afterany:" + array_job + " " + scripts.merge_file.string() +
            ") or cancel the array (scancel " + array_job + ")");
    const std::string tag = submission_tag(first);
    out << what << ": " << runs_text << skipped_text << "; " << todo.size() << " submitted\n";
    out << "array job " << array_job << " (--array=" << array_spec(todo) << ", " << options.cpus_per_task << " cpu"
        << (options.cpus_per_task == 1 ? "" : "s") << " per task";
    if (options.gpus_per_task > 0)
        out << ", " << options.gpus_per_task << " gpu" << (options.gpus_per_task == 1 ? "" : "s");
    out << "): logs in " << (log_dir / ("slurm-" + array_job + "_<index>.out")).string() << "\n";
    out << "merge job " << merge_job << " (when job " << array_job << " has ended): joins "
        << (db.parent_path() / (db.stem().string() + ".slurm-" + tag + "-<run>.db")).string() << " into " << db.string()
        << "\n";
    out << "watch with: squeue -j " << array_job << "," << merge_job << "\n";
    return 0;
}
