// The trainer: builds one run's components from the registry and trains them.
//
//   backend -> tokenizer -> task (loads data, may train the tokenizer) -> model (+ attention)
//   -> task.attach(model) -> optimizer, schedule
//   loop: batch = task.next_batch(); loss = task.loss(model, batch); backward; clip; step
//         every log_every: train/loss, train/lr, train/grad_norm, perf/tokens_per_s
//         every eval_every (and at the end): task.evaluate(model) -> val/... and a text sample
//
// Every run is recorded in the results database from the start: status running, then finished,
// or failed with the error text (the error is rethrown to the caller).
#pragma once
#include <filesystem>
#include <iosfwd>
#include <map>
#include <memory>
#include <string>

#include "lab/communicator.h"
#include "lab/config.h"
#include "lab/registry.h"

namespace lab {

struct RunEnvironment {
    std::filesystem::path data_dir = "data";
    std::filesystem::path source_dir;  // for the code revision ("" : unknown)
    bool progress = false;             // a live progress line (on a terminal)
    bool quiet = false;                // no log lines at all
    std::ostream* out = nullptr;       // where log lines go (default std::cerr)
    int64_t resume_run = 0;            // > 0: continue this run of the database from its latest checkpoint
    // The results database to record in, instead of [experiment] db (a Slurm array task writes its
    // own file beside the experiment's, merged afterwards). Run folders stay beside this file.
    std::filesystem::path results_db;
    // The ranks of a data-parallel run (lab/communicator.h); null for a run of one process.
    Communicator* comm = nullptr;
    // How long a collective waits for the other ranks once a stop signal reached this rank
    // (Communicator::set_stop_check); labrun sets it from the launcher's kill timeout.
    double stop_grace_s = 0.6;
};

struct RunOutcome {
    int64_t run_id = 0;
    std::string uid;
    std::filesystem::path db;
    std::map<std::string, double> final_metrics;  // last evaluation's metrics
    double wall_s = 0;
    int64_t steps = 0;
    bool interrupted = false;  // stopped by SIGINT/SIGTERM after a checkpoint
    int stop_signal = 0;       // which one
};

RunOutcome run_experiment(const RunSpec& spec, const Registry& registry, const RunEnvironment& env);

// Where a run keeps its checkpoints and vocabulary: <db folder>/runs/<name>-<uid>.
std::filesystem::path run_folder(const std::filesystem::path& db, const std::string& name, const std::string& uid);

// A run's training components, built as run_experiment builds them but without a results
// database, checkpoints or [train] init_from: what benchmarks and tests use to take training
// steps exactly as an experiment takes them. Members are destroyed in reverse order, the backend
// (whose memory every tensor lives in) last.
struct TrainingStack {
    std::shared_ptr<Backend> backend;
    std::unique_ptr<BuildContext> ctx;  // modules keep pointers to its generators
    std::shared_ptr<Tokenizer> tokenizer;
    std::shared_ptr<Task> task;
    std::shared_ptr<Model> model;
    std::shared_ptr<Optimizer> optimizer;
    std::shared_ptr<Schedule> schedule;
    NamedTensors params;  // "model.*", then "task.*"
    TrainSettings train;
    // Data parallelism: the ranks that share each batch (null: this process alone), and the one
    // flat buffer their gradients are summed in (made at the first step).
    Communicator* comm = nullptr;
    Tensor gradient_buffer;
};
// Model and task in training mode. Throws as run_experiment does for a bad configuration or data.
TrainingStack build_training_stack(const RunSpec& spec, const Registry& registry, const RunEnvironment& env);

struct StepResult {
    float loss = 0;
    double grad_norm = 0;  // before clipping
    double lr = 0;
    int64_t tokens = 0;    // the batch's Batch::tokens (the whole batch: every rank's)
    bool stop = false;     // data parallel: a rank has a stop signal; every rank stops after this step
    double comm_seconds = 0;  // data parallel: time in the ranks' exchange and the gradient all-reduce
};
// One optimisation step, the one run_experiment takes (steps count from 1): the task's next
// batch, its loss, backward, clipping to [train] grad_clip, the optimizer step at the schedule's
// learning rate for this step, zeroed gradients. Throws TrainingError for a non-finite loss.
//
// With stack.comm, every rank draws the same batch and takes its rows (rank r of N: rows
// [B r / N, B (r + 1) / N)); with [train] micro_batch, a rank's rows are split further. Each part's
// loss is its share of the whole batch's (Task::part), times N; the gradients of the parts add
// up, and one all-reduce of a flat buffer averages them over the ranks before clipping. Before
// that, the ranks exchange a few numbers: the loss, whether one failed (then every rank throws
// RankFailedError, naming the failed ranks and their errors on rank 0), and whether one has a stop
// signal (`stop_signal` here; StepResult::stop on every rank).
StepResult train_step(TrainingStack& stack, int64_t step, bool stop_signal = false);

// A recorded run rebuilt for use outside training (generation, evaluation): its backend,
// tokenizer, task and model built as the run built them (the task may read its data, e.g. to
// rebuild a character vocabulary), the model holding the weights of one of its checkpoints, in
// eval mode. Members are destroyed model first, backend last.
struct TrainedRun {
    std::shared_ptr<Backend> backend;
    std::unique_ptr<BuildContext> ctx;
    std::shared_ptr<Tokenizer> tokenizer;
    std::shared_ptr<Task> task;
    std::shared_ptr<Model> model;
    std::filesystem::path checkpoint;  // the checkpoint folder loaded
};
// Throws DataError when checkpoint_dir holds no model.safetensors.
TrainedRun load_trained_run(const RunSpec& spec, const Registry& registry, const RunEnvironment& env,
                            const std::filesystem::path& checkpoint_dir);

// Global L2 norm of all gradients; scales them down to max_norm when above it (max_norm > 0), as
// torch.nn.utils.clip_grad_norm_. Returns the norm before clipping.
double clip_gradients(const NamedTensors& params, double max_norm, Backend& backend);

// "[#####...............] 25%"
std::string progress_bar(int64_t done, int64_t total, int width = 20);

// "1h02m", "3m07s", "12s"
std::string format_duration(double seconds);

}  // namespace lab
