// `labrun EXPERIMENT.ini [section.key=value ...] [--sweep KEY=V1,V2 ...] --slurm [--partition P]
// [--time T] [--cpus-per-task C] [--gpus-per-task G] [--dry-run]`: the runs of an experiment
// submitted to Slurm as ONE job array, one array task per run not finished yet, and a merge job
// that starts when the array has ended (sbatch --dependency=afterany).
//
// Array task I runs `labrun <experiment> <overrides> <--sweep flags> --sweep-index I --results-db
// <task database> --no-progress` (the same runs, so the same config hashes, as the submitting
// command) with OMP_NUM_THREADS = SLURM_CPUS_PER_TASK, in the submitting folder (#SBATCH --chdir).
//
// One database per task: SQLite's locking is unsafe on network file systems, so tasks on several
// hosts must not write one file. Files beside the experiment's database D ([experiment] db):
//
//   D                                   e.g. results/lab.db; the merge job joins the tasks' runs into it
//   <D folder>/<D stem>.slurm-<tag>-<I+1>.db   the database of the task of run I+1 (0-based index I);
//                                       <tag> is the sweep id, or 12 hex digits of the run's config
//                                       hash for an experiment without [sweep]. Stable per run, so a
//                                       resubmitted task finds and resumes its interrupted run.
//   <D folder>/runs/<name>-<uid>/       run folders: the task databases lie beside D, so a run's
//                                       folder is where a local run would put it, and `labrun eval`,
//                                       `generate` and --resume find it through D after the merge
//   <D folder>/logs/<D stem>.slurm-<tag>.sh, ...-merge.sh   the two scripts as submitted
//   <D folder>/logs/slurm-<array job>_<I>.out, slurm-<merge job>-merge.out   their output
//
// The merge job runs `labdb merge <task databases> D -o <D>.merging --force` (task databases
// first: a uid found in several inputs is copied from the first, and a task's copy of a resumed
// run is newer than the one an earlier merge put in D), renames the result over D only when the
// merge succeeded, then deletes the task databases whose latest run finished and keeps the others
// (interrupted, failed) for a resubmission to resume or rerun.
//
// A run counts as done when its latest run in its task database, or else in D, finished; done
// runs are not submitted (unless --force), and when none is left nothing is submitted.
#pragma once
#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <string>
#include <vector>

#include "lab/config.h"
#include "lab/registry.h"

struct SlurmOptions {
    std::string partition;      // --partition; empty: the cluster's default partition
    std::string time;           // --time, a Slurm time limit; empty: the partition's default
    int64_t cpus_per_task = 1;  // --cpus-per-task; also each run's OpenMP threads
    int64_t gpus_per_task = 0;  // --gpus-per-task; 0: none requested
    bool dry_run = false;       // print the scripts and sbatch commands; write and submit nothing
};

// What each array task repeats of the submitting command line, so that it resolves the same runs.
struct SlurmCommand {
    std::filesystem::path experiment_file;            // made absolute by submit_to_slurm
    std::vector<std::string> overrides;               // section.key=value, as given
    std::vector<std::string> sweeps;                  // --sweep values, as given
    // As the submitting labrun resolved it (--data-dir, $LAB_DATA or "data") and NOT made absolute:
    // ${data} expands into the resolved configuration, so into each run's hash; the task runs in
    // the submitting folder, where a relative one names the same folder.
    std::string data_dir;
    std::vector<std::filesystem::path> plugin_paths;  // --plugin-path; made absolute
    bool force = false;                               // --force: submit finished runs too
};

// Throws ConfigError naming the option when a value is not one Slurm accepts: --time in a Slurm
// time format (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S or UNLIMITED), --cpus-per-task >= 1,
// --gpus-per-task >= 0, --partition a name (or comma-separated names) of letters, digits, '_',
// '-' and '.'.
void check_slurm_options(const SlurmOptions& options);

// The database the array task of `spec` writes (see the layout above).
std::filesystem::path slurm_task_db(const lab::RunSpec& spec);

// Decides which runs of `specs` to submit, writes the two scripts and submits them with
// `sbatch --parsable` (with options.dry_run: prints them and the sbatch commands instead), and
// prints the job ids and where the results go to `out`. Returns 0, also when every run is done
// and nothing was submitted. Throws ConfigError when the runs do not share one [experiment] db,
// PluginError for finished runs whose plugins were rebuilt since (as a rerun does, unless --force),
// lab::Error when sbatch is missing or fails (with its stderr) or labdb is not beside labrun.
int submit_to_slurm(const std::vector<lab::RunSpec>& specs, const lab::Registry& registry, SlurmCommand command,
                    const SlurmOptions& options, std::ostream& out);
