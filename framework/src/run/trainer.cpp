#include "lab/trainer.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>

#include <sqlite3.h>

#include <boost/version.hpp>
#include <nlohmann/json.hpp>

#include "lab/autograd.h"
#include "lab/causality_probe.h"
#include "lab/ops.h"
#include "lab/version.h"
#include "lab/checkpoint.h"
#include "lab/error.h"
#include "lab/results.h"
#include "lab/run_plan.h"
#include "lab/safetensors.h"
#include "lab/stop_signals.h"
#include "lab/threads.h"

namespace lab {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string fixed(double v, int digits) {
    std::ostringstream os;
    os << std::fixed << std::setprecision(digits) << v;
    return os.str();
}

class Reporter {
public:
    explicit Reporter(const RunEnvironment& env) : env_(env), out_(env.out ? *env.out : std::cerr) {}
    void line(const std::string& text) {
        if (env_.quiet) return;
        clear_progress();
        out_ << text << "\n" << std::flush;
    }
    void progress(const std::string& text) {
        if (env_.quiet || !env_.progress) return;
        out_ << "\r\033[K" << text << std::flush;
        progress_shown_ = true;
    }
    void clear_progress() {
        if (progress_shown_) out_ << "\r\033[K" << std::flush;
        progress_shown_ = false;
    }

private:
    const RunEnvironment& env_;
    std::ostream& out_;
    bool progress_shown_ = false;
};

}  // namespace

// Global L2 norm of all gradients; scales them to max_norm when above it (as
// torch.nn.utils.clip_grad_norm_, with its 1e-6 guard). Returns the norm before clipping.
double clip_gradients(const NamedTensors& params, double max_norm, Backend& backend) {
    Tensor total = Tensor::zeros(backend, {1});
    for (const auto& [name, p] : params) {
        Tensor g = p.grad();
        if (g.defined()) backend.sum_squares(total, g, true);
    }
    double norm = std::sqrt(static_cast<double>(total.item()));
    if (max_norm > 0 && norm > max_norm) {
        float factor = static_cast<float>(max_norm / (norm + 1e-6));
        for (const auto& [name, p] : params) {
            Tensor g = p.grad();
            if (g.defined()) backend.unary(UnaryOp::scale, g, g, factor);
        }
    }
    return norm;
}

std::string progress_bar(int64_t done, int64_t total, int width) {
    int64_t filled = total > 0 ? std::clamp<int64_t>(done * width / total, 0, width) : 0;
    std::string bar(1, '[');
    bar.append(static_cast<size_t>(filled), '#');
    bar.append(static_cast<size_t>(width - filled), '.');
    bar += "] ";
    bar += std::to_string(total > 0 ? done * 100 / total : 0);
    bar += '%';
    return bar;
}

std::string format_duration(double seconds) {
    auto s = static_cast<int64_t>(std::llround(std::max(0.0, seconds)));
    std::ostringstream os;
    if (s >= 3600) os << s / 3600 << "h" << std::setw(2) << std::setfill('0') << (s % 3600) / 60 << "m";
    else if (s >= 60) os << s / 60 << "m" << std::setw(2) << std::setfill('0') << s % 60 << "s";
    else os << s << "s";
    return os.str();
}

namespace {

// {"liblab": ..., "oneDNN": ..., "sqlite": ..., "boost": ..., "compiler": ...} as JSON text.
// What a run on `backend` at `precision` should know about bf16: empty, or the note that this CPU
// emulates bf16 (no AVX512-BF16 or AMX), which fp32 outruns. Said when the run starts and kept in
// the run's device column.
std::string bf16_note(const Backend& backend, const std::string& precision) {
    if (precision != "bf16" || backend.device_kind() != DeviceKind::cpu || backend.native_bf16_matmul()) return "";
    return "bf16 emulated: this CPU has no bf16 instructions (AVX512-BF16 or AMX), so precision = fp32 will be "
           "faster";
}

std::string library_versions(const Backend& backend) {
    nlohmann::json j = backend.library_versions();
    j["liblab"] = LAB_VERSION;
    j["sqlite"] = sqlite3_libversion();
    j["boost"] = std::to_string(BOOST_VERSION / 100000) + "." + std::to_string(BOOST_VERSION / 100 % 1000) + "." +
                 std::to_string(BOOST_VERSION % 100);
    j["compiler"] = std::string("gcc ") + __VERSION__;
    return j.dump();
}

// A stack holding the [train] settings, the backend (made first and destroyed last: every tensor
// lives in its memory) and an empty build context; the builders below fill in the rest.
TrainingStack new_stack(const RunSpec& spec, const Registry& registry) {
    TrainingStack c;
    c.train = train_settings(spec.train);
    const SectionChoice& backend = spec.plugins.at("backend");
    c.backend = registry.factory<BackendFactory>("backend", backend.plugin)(backend.options);
    // Refused in milliseconds, before anything is recorded, read or allocated, when even the
    // estimate's lower bound (no vocabulary yet) cannot fit (build_model_stack checks again).
    check_memory(estimate_memory(spec, registry), c.backend->available_memory(), memory_name(*c.backend));
    c.ctx = std::make_unique<BuildContext>();
    return c;
}

// The seeded build context and the tokenizer, task and model of `spec` (ctx.run_dir and ctx.log
// are the caller's), attached: what training and a rebuilt run (load_trained_run) share.
void build_model_stack(const RunSpec& spec, const Registry& registry, const RunEnvironment& env, TrainingStack& c) {
    Backend& backend = *c.backend;
    BuildContext& ctx = *c.ctx;
    auto seed = static_cast<uint64_t>(spec.experiment.get_int("seed"));
    backend.set_matmul_inputs(spec.experiment.get_string("precision") == "bf16" ? DType::bf16 : DType::f32);
    ctx.backend = &backend;
    ctx.registry = &registry;
    ctx.seed = seed;
    ctx.init_rng = Generator(seed, kStreamInit);
    ctx.dropout_rng = Generator(seed, kStreamDropout);
    ctx.data_rng = Generator(seed, kStreamData);
    ctx.train = c.train;
    ctx.data_dir = env.data_dir;
    const SectionChoice& attention = spec.plugins.at("attention");
    const auto& make_attention = registry.factory<AttentionFactory>("attention", attention.plugin);
    ctx.make_attention = [&make_attention, &attention, &ctx](const AttentionShape& shape) {
        return make_attention(attention.options, shape, ctx);
    };
    auto build = [&](const char* section) -> const SectionChoice& { return spec.plugins.at(section); };
    // new_stack refused a run whose lower bound cannot fit; now with the real vocabulary.
    c.tokenizer = registry.factory<TokenizerFactory>("tokenizer", build("tokenizer").plugin)(
        build("tokenizer").options, ctx);
    ctx.tokenizer = c.tokenizer.get();
    c.task = registry.factory<TaskFactory>("task", build("task").plugin)(build("task").options, ctx);
    if (c.tokenizer->ready())
        check_memory(estimate_memory(spec, registry, c.tokenizer->vocab_size()), backend.available_memory(),
                     memory_name(backend));
    c.model = registry.factory<ModelFactory>("model", build("model").plugin)(build("model").options, ctx);
    // The rule the plan checked from the estimates, here for a task whose attach() does not apply it.
    check_model_for_task("task/" + build("task").plugin, c.task->needs_causal_model(), false, c.model->causal(), 0, 0);
    c.task->attach(*c.model, ctx);
}

// [train] init_from: a results database ("x.db" or "x.db:NAME") stands for the checkpoints of its
// latest finished run (named NAME); anything else goes to load_model_weights.
std::filesystem::path init_model(Model& model, const std::string& init_from, Backend& backend, Reporter& report) {
    std::filesystem::path path = init_from;
    std::string run_name;
    if (auto at = init_from.rfind(".db:"); at != std::string::npos) {
        path = init_from.substr(0, at + 3);
        run_name = init_from.substr(at + 4);
    }
    if (path.extension() == ".db") {
        std::error_code ec;
        if (!std::filesystem::exists(path, ec))
            throw DataError("[train] init_from: results database '" + path.string() +
                            "' does not exist; run the experiment that writes it first");
        ResultStore source(path);
        auto dir = source.latest_artifact("checkpoints", run_name);
        if (!dir)
            throw DataError("[train] init_from: results database '" + path.string() + "' has no finished run" +
                            (run_name.empty() ? "" : " named '" + run_name + "'") +
                            " with checkpoints; `labdb --db " + path.string() + " runs` lists its runs");
        path = *dir;
    }
    std::filesystem::path file;
    TensorMap weights = model.import_state(load_model_weights(path, backend, &file));
    LoadReport loaded = model.load_matching(weights, file.string());
    if (loaded.loaded.empty())
        throw DataError("[train] init_from: no tensor of '" + file.string() +
                        "' matches the model's parameters (" + loaded.summary(4) +
                        "); were these weights written by another kind of model?");
    report.line("init_from " + file.string() + ": " + loaded.summary());
    return file;
}

// Before a run whose model or task needs causal attention trains: the assembled model must not see
// later tokens (causality_probe.h), whatever its plugins declare. The probe's few small tensors are
// no cost of the run, so a peak of the allocator they raised is started again.
void probe_causal_model(const RunSpec& spec, const Registry& registry, TrainingStack& c, Reporter& report) {
    bool needs_causal = c.model->causal() || c.task->needs_causal_model();
    for (const char* section : {"model", "task"}) {
        const SectionChoice& choice = spec.plugins.at(section);
        needs_causal = needs_causal || registry.find(choice.kind, choice.plugin).needs_attention.causal;
    }
    if (!needs_causal) return;
    CausalityProbeSettings settings;
    settings.model = "model/" + spec.plugins.at("model").plugin;
    settings.seq_len = std::min<int64_t>(c.train.seq_len, 32);
    const size_t peak_before = c.backend->stats().memory.peak_bytes_in_use;
    CausalityProbeResult probe = probe_causality(*c.model, *c.ctx, settings);
    if (c.backend->stats().memory.peak_bytes_in_use > peak_before) c.backend->reset_peak_memory();
    report.line(probe.summary(settings.model));
}

// The parameters ("model.*", then "task.*"), the optimizer over them and the schedule.
void build_optimizer(const RunSpec& spec, const Registry& registry, TrainingStack& c) {
    for (auto& [name, p] : c.model->named_parameters()) c.params.emplace_back("model." + name, p);
    for (auto& [name, p] : c.task->named_parameters()) c.params.emplace_back("task." + name, p);
    const SectionChoice& optimizer = spec.plugins.at("optimizer");
    const SectionChoice& schedule = spec.plugins.at("schedule");
    c.optimizer = registry.factory<OptimizerFactory>("optimizer", optimizer.plugin)(optimizer.options, c.params, *c.ctx);
    c.schedule = registry.factory<ScheduleFactory>("schedule", schedule.plugin)(
        schedule.options, ScheduleContext{c.optimizer->base_lr(), c.train.steps});
}

}  // namespace

namespace {

// After a collective in which some rank reported a failure: every rank's error text gathered on
// rank 0, and RankFailedError thrown on every rank, rank 0's naming each failed rank and its error.
[[noreturn]] void throw_rank_failure(Communicator& comm, const std::string& error, const std::string& when) {
    std::vector<std::string> errors = comm.gather(error, 0);
    std::string text;
    for (size_t r = 0; r < errors.size(); ++r)
        if (!errors[r].empty()) text += (text.empty() ? "" : "; ") + ("rank " + std::to_string(r) + ": " + errors[r]);
    if (comm.rank() != 0) text = "another rank failed (rank 0 records why)";
    throw RankFailedError(text + " (" + when + ", on " + std::to_string(comm.size()) + " ranks)");
}

// Every rank says whether it failed (`error` non-empty); when one did, every rank throws
// (throw_rank_failure).
void agree_ranks(Communicator& comm, const std::string& error, const std::string& phase) {
    double failed = error.empty() ? 0 : 1;
    comm.allreduce_sum(&failed, 1);
    if (failed > 0) throw_rank_failure(comm, error, phase);
}

}  // namespace

namespace {

// One run, in the phases run_experiment takes them:
//   record   rank 0 records the run (or reopens it to resume) and tells the other ranks its uid
//   build    the plugins recorded; tokenizer, task, model (every rank the same, from the seed),
//            init_from, the causality probe, the optimizer
//   restore  a resumed run's latest checkpoint; each rank's own stretch of the dropout stream
//   train    the steps, with logging, evaluation, checkpoints and stop signals
//   finish   the run marked finished; or fail: failed, or interrupted when ranks were lost
// Every rank takes every phase; rank 0 (`lead`) alone writes the database, checkpoints and samples.
struct ExperimentRun {
    ExperimentRun(const RunSpec& spec_, const Registry& registry_, const RunEnvironment& env_);
    void record();
    void build();
    void restore();
    bool train();  // false: a stop signal ended it early, and the run is marked interrupted
    void finish();
    void fail(const std::exception& e);  // marks the run failed or interrupted; the caller rethrows

    void checkpoint(int64_t step);
    EvalResult evaluate(int64_t step);

    const RunSpec& spec;
    const Registry& registry;
    const RunEnvironment& env;
    Reporter report;
    Communicator* comm;
    int rank, world;
    bool lead;  // rank 0
    TrainingStack c;
    RunOutcome outcome;
    std::optional<ResultStore> store;  // rank 0's
    int64_t run = 0;
    Clock::time_point start;
    TrainerState state;
    std::filesystem::path run_dir;
    bool has_checkpoint = false;
    EvalResult last_eval;
};

ExperimentRun::ExperimentRun(const RunSpec& spec_, const Registry& registry_, const RunEnvironment& env_)
    : spec(spec_), registry(registry_), env(env_), report(env_), comm(env_.comm), rank(comm ? comm->rank() : 0),
      world(comm ? comm->size() : 1), lead(rank == 0) {
    set_threads(run_threads(spec), comm ? comm->local_size() : 0);  // before the backend and any OpenMP region start
    c = new_stack(spec, registry);
    c.comm = comm;
    const TrainSettings& train = c.train;
    if (train.batch < world)
        throw ConfigError("[train] batch = " + std::to_string(train.batch) + " (" + spec.train.origin("batch") +
                          ") is smaller than the " + std::to_string(world) +
                          " ranks of this run; each rank takes at least one sequence of every batch: start fewer "
                          "ranks or raise the batch");
    outcome.db = env.results_db.empty() ? std::filesystem::path(spec.experiment.get_string("db")) : env.results_db;
    run = env.resume_run;
}

void ExperimentRun::record() {
    const Options& ex = spec.experiment;
    // Rank 0 records the run (or reopens it to resume) and tells the other ranks its uid.
    std::string record_error;
    try {
        if (lead) {
            store.emplace(outcome.db);
            for (int64_t id : store->mark_interrupted_runs())
                report.line("note: run " + std::to_string(id) + " in " + outcome.db.string() +
                            " was left running by a process that no longer exists; marked interrupted");
            if (env.resume_run > 0) {
                store->reopen_run(run);
            } else {
                RunRecord record;
                record.name = spec.name;
                record.experiment = spec.name;
                record.config_hash = spec.hash();
                record.config_text = spec.canonical_text();
                record.backend = spec.plugins.at("backend").plugin;
                const std::string note = bf16_note(*c.backend, ex.get_string("precision"));
                record.device = c.backend->device_info() + (note.empty() ? "" : "; " + note);
                record.precision = ex.get_string("precision");
                record.host = host_name();
                record.code_revision = env.source_dir.empty() ? "unknown" : code_revision(env.source_dir);
                record.seed = ex.get_int("seed");
                record.sweep = spec.sweep_id;
                record.threads = omp_get_max_threads();
                record.world_size = world;
                record.communicator = comm ? comm->name(c.backend->device_kind()) : "";
                record.libraries = library_versions(*c.backend);
                run = store->begin_run(record, spec.entries());
            }
            outcome.uid = store->uid(run);
        }
    } catch (const std::exception& e) {
        if (!comm) throw;
        record_error = e.what();
    }
    if (comm) {
        // "ok <run id> <uid>", or "error <why>"
        std::string shared = record_error.empty() ? "ok " + std::to_string(run) + " " + outcome.uid : "error " + record_error;
        comm->broadcast(shared, 0);
        if (shared.rfind("ok ", 0) != 0)
            throw RankFailedError(lead ? record_error : "rank 0 could not record the run: " + shared.substr(6));
        std::istringstream(shared.substr(3)) >> run >> outcome.uid;
    }
    outcome.run_id = run;
    start = Clock::now();
    state.config_hash = spec.hash();
    run_dir = run_folder(outcome.db, spec.name, outcome.uid);
}

void ExperimentRun::build() {
    BuildContext& ctx = *c.ctx;
    const TrainSettings& train = c.train;
    if (lead && env.resume_run == 0)
        for (const auto& [section, choice] : spec.plugins) {
            const PluginInfo& info = registry.find(choice.kind, choice.plugin);
            store->add_plugin(run, choice.kind, choice.plugin, info.version, info.file, plugin_sha256(info),
                              Registry::abi_tag());
        }
    if (lead) ctx.run_dir = run_dir;  // the other ranks write nothing
    ctx.log = [this](const std::string& msg) { report.line(msg); };
    report.line(std::string(env.resume_run > 0 ? "resuming" : "run") + " " + std::to_string(run) + " (" +
                outcome.uid + ") of '" + spec.name + "' on " + c.backend->device_info() +
                (comm ? ", " + std::to_string(world) + " ranks (" + comm->name(c.backend->device_kind()) +
                            ") with " + std::to_string(omp_get_max_threads()) + " threads each"
                      : ""));
    if (const std::string note = bf16_note(*c.backend, spec.experiment.get_string("precision")); !note.empty())
        report.line("warning: " + note);
    build_model_stack(spec, registry, env, c);
    if (env.resume_run == 0 && !spec.train.get_string("init_from").empty()) {
        std::filesystem::path file = init_model(*c.model, spec.train.get_string("init_from"), *c.backend, report);
        if (lead) store->add_artifact(run, "init_from", file.string());
    }
    probe_causal_model(spec, registry, c, report);
    build_optimizer(spec, registry, c);
    std::error_code ec;
    if (lead && env.resume_run == 0 && std::filesystem::exists(ctx.run_dir / "vocab.json", ec))
        store->add_artifact(run, "vocabulary", (ctx.run_dir / "vocab.json").string());
    int64_t n_params = 0;
    for (auto& [name, p] : c.params) n_params += p.numel();
    report.line("model: " + std::to_string(n_params) + " parameters; " + std::to_string(train.steps) +
                " steps of batch " + std::to_string(train.batch) + " x " + std::to_string(train.seq_len) +
                " tokens" +
                (comm ? " (" + std::to_string(train.batch / world) + (train.batch % world ? "-" +
                            std::to_string(train.batch / world + 1) : "") + " sequences per rank)"
                      : "") +
                (train.micro_batch > 0 ? ", in micro-batches of " + std::to_string(train.micro_batch) : ""));
}

void ExperimentRun::restore() {
    BuildContext& ctx = *c.ctx;
    // Where training starts: after the latest checkpoint when resuming (step 0 when the
    // run was killed before its first checkpoint: the same seed rebuilds the same start).
    if (env.resume_run > 0) {
        if (auto dir = latest_checkpoint(run_dir)) {
            state = load_checkpoint(*dir, *c.model, *c.task, *c.optimizer, spec.hash());
            c.task->set_data_position(state.data_position);
            ctx.dropout_rng.set_offset(state.dropout_offset);
            report.line("resumed from " + dir->string() + " at step " + std::to_string(state.step));
        } else {
            report.line("no checkpoint in " + run_dir.string() + "; starting the run again from step 0");
        }
        if (lead) store->delete_metrics_after(run, state.step);
    }
    // Each rank draws its dropout masks from its own stretch of the dropout stream (rank 0's
    // is the one-process run's, and the checkpoint keeps its position).
    if (rank > 0) ctx.dropout_rng.set_offset(ctx.dropout_rng.offset() + (static_cast<uint64_t>(rank) << 48));
    has_checkpoint = state.step > 0;
}

void ExperimentRun::checkpoint(int64_t step) {
    BuildContext& ctx = *c.ctx;
    if (!lead) return;
    state.step = step;
    state.data_position = c.task->data_position();
    state.dropout_offset = ctx.dropout_rng.offset();
    save_checkpoint(ctx.run_dir, *c.model, *c.task, *c.optimizer, state);
    if (!has_checkpoint) store->add_artifact(run, "checkpoints", ctx.run_dir.string());
    has_checkpoint = true;
}

// Every rank evaluates (the same weights give the same figures); rank 0 records them.
EvalResult ExperimentRun::evaluate(int64_t step) {
    auto t0 = Clock::now();
    EvalResult r = c.task->evaluate(*c.model);
    std::string text = "step " + std::to_string(step) + ":";
    for (const auto& [name, value] : r.metrics) text += " " + name + " " + fixed(value, 4);
    if (lead) {
        for (const auto& [name, goal] : r.goals) store->declare_metric(run, name, goal);
        for (const auto& [name, value] : r.metrics) store->add_metric(run, step, name, value);
        for (const auto& [name, sample] : r.texts) store->add_text(run, step, name, sample);
        store->flush();
    }
    report.line(text + " (" + fixed(seconds_since(t0), 1) + "s)");
    outcome.final_metrics = r.metrics;
    return r;
}

bool ExperimentRun::train() {
    const TrainSettings& train = c.train;
    const bool eval_at_end = spec.train.get_bool("eval_at_end");
    const int64_t ckpt_every = spec.train.get_int("ckpt_every");  // a multiple of log_every (validate_run)
    StopRequests signals;  // SIGINT/SIGTERM: finish the step, checkpoint, end interrupted
    if (comm) comm->set_stop_check([&signals] { return signals.pending() != 0; }, env.stop_grace_s);
    c.model->train(true);
    c.task->train(true);
    double grad_norm = 0, train_seconds = 0, interval_comm_seconds = 0;
    int64_t interval_tokens = 0, interval_steps = 0, first_step = state.step + 1;
    auto interval_start = Clock::now();
    for (int64_t step = first_step; step <= train.steps; ++step) {
        StepResult result = train_step(c, step, signals.pending() != 0);
        grad_norm = result.grad_norm;
        double lr = result.lr;
        state.loss_sum += result.loss;
        ++state.loss_count;
        interval_tokens += result.tokens;
        interval_comm_seconds += result.comm_seconds;
        ++interval_steps;

        if (step % train.log_every == 0 || step == train.steps) {
            double dt = seconds_since(interval_start);
            train_seconds += dt;
            // Every rank's tokens: each step trains on the whole batch, shared by the ranks.
            double tokens_per_s = static_cast<double>(interval_tokens) / std::max(dt, 1e-9);
            double mean_loss = state.loss_sum / static_cast<double>(state.loss_count);
            // Each metric with the way it improves (stored once per run). The perf/ figures are
            // costs to read at the end (labdb ablate's cost columns), not values to optimise over
            // the steps of a run, so they declare no goal.
            auto record = [&](const char* name, MetricGoal goal, double value) {
                if (!lead) return;
                store->declare_metric(run, name, goal);
                store->add_metric(run, step, name, value);
            };
            record("train/loss", MetricGoal::minimize, mean_loss);
            record("train/lr", MetricGoal::none, lr);
            record("train/grad_norm", MetricGoal::none, grad_norm);
            record("perf/tokens_per_s", MetricGoal::none, tokens_per_s);
            record("perf/ms_per_step", MetricGoal::none, 1000.0 * dt / static_cast<double>(interval_steps));
            // Data parallel: rank 0's time in the ranks' exchange and the gradient all-reduce,
            // waiting for slower ranks included.
            if (comm)
                record("perf/comm_ms_per_step", MetricGoal::none,
                       1000.0 * interval_comm_seconds / static_cast<double>(interval_steps));
            // The backend allocator's high-water mark since the run started (parameters,
            // optimizer state, activations): the memory side of an ablation's cost (rank 0's).
            record("perf/peak_mem_mb", MetricGoal::none,
                static_cast<double>(c.backend->stats().memory.peak_bytes_in_use) / (1024.0 * 1024.0));
            if (lead) store->flush();
            double eta = train_seconds / static_cast<double>(step - first_step + 1) *
                         static_cast<double>(train.steps - step);
            std::string status = "step " + std::to_string(step) + "/" + std::to_string(train.steps) +
                                 " | loss " + fixed(mean_loss, 4) + " | lr " + fixed(lr * 1e3, 3) +
                                 "e-3 | " + std::to_string(static_cast<int64_t>(tokens_per_s)) +
                                 " tok/s | ETA " + format_duration(eta);
            if (env.progress) report.progress(progress_bar(step, train.steps) + " " + status);
            else report.line(status);
            state.loss_sum = 0;
            state.loss_count = 0;
            interval_tokens = 0;
            interval_comm_seconds = 0;
            interval_steps = 0;
            interval_start = Clock::now();
        }
        bool eval_now = (train.eval_every > 0 && step % train.eval_every == 0) ||
                        (step == train.steps && eval_at_end);
        if (eval_now) {
            last_eval = evaluate(step);
            interval_start = Clock::now();  // evaluation time is not training throughput
        }
        bool ckpt_now = step == train.steps || (ckpt_every > 0 ? step % ckpt_every == 0 : eval_now);
        if (ckpt_now) checkpoint(step);
        outcome.steps = step;
        // One process stops at its own signal; the ranks of a data-parallel run stop together,
        // after the step in which one of them reported a signal.
        const bool stop = comm ? result.stop : signals.pending() != 0;
        if (stop && step < train.steps) {
            if (!ckpt_now) checkpoint(step);
            report.clear_progress();
            const int sig = signals.pending() != 0 ? signals.pending() : SIGTERM;
            std::string why = std::string(sig == SIGINT ? "SIGINT" : "SIGTERM") + " at step " +
                              std::to_string(step) + (comm && signals.pending() == 0 ? " (on another rank)" : "") +
                              "; continue with: labrun --resume " + outcome.uid + " --db " + outcome.db.string();
            if (lead) store->finish_run(run, RunStatus::interrupted, why);
            report.line("interrupted: " + why);
            outcome.interrupted = true;
            outcome.stop_signal = sig;
            outcome.wall_s = seconds_since(start);
            return false;
        }
    }
    return true;
}

void ExperimentRun::finish() {
    if (lead) store->flush();
    report.clear_progress();
    for (const auto& [name, sample] : last_eval.texts)
        report.line("--- " + name + " ---\n" + sample + "\n---");
    outcome.wall_s = seconds_since(start);
    if (lead) store->finish_run(run, RunStatus::finished, "");
    report.line("finished run " + std::to_string(run) + " in " + format_duration(outcome.wall_s) + "; results in " +
                outcome.db.string());
}

void ExperimentRun::fail(const std::exception& e) {
    report.clear_progress();
    if (lead) {
        // Ranks lost while waiting (one died, or the launcher is ending the job): the run can
        // go on from its last checkpoint, so it is interrupted rather than failed.
        const bool lost = dynamic_cast<const RanksLostError*>(&e) != nullptr;
        const std::string why = lost ? std::string(e.what()) + "; continue from the last checkpoint with: labrun "
                                                               "--resume " + outcome.uid + " --db " +
                                           outcome.db.string()
                                     : e.what();
        try {
            store->finish_run(run, lost ? RunStatus::interrupted : RunStatus::failed, why);
        } catch (const std::exception& db_error) {
            report.line(std::string("error: could not record the failure in the database: ") + db_error.what());
        }
    }
}

}  // namespace

RunOutcome run_experiment(const RunSpec& spec, const Registry& registry, const RunEnvironment& env) {
    ExperimentRun r(spec, registry, env);
    r.record();
    try {
        // Every rank builds and restores; all agree that it worked before the first step.
        std::string setup_error;
        try {
            r.build();
            r.restore();
        } catch (const std::exception& e) {
            if (!r.comm) throw;
            setup_error = e.what();
        }
        if (r.comm) agree_ranks(*r.comm, setup_error, "building the run");
        if (r.train()) r.finish();
    } catch (const std::exception& e) {
        r.fail(e);
        throw;
    }
    return r.outcome;
}

std::filesystem::path run_folder(const std::filesystem::path& db, const std::string& name, const std::string& uid) {
    return db.parent_path() / "runs" / (name + "-" + uid);
}

TrainingStack build_training_stack(const RunSpec& spec, const Registry& registry, const RunEnvironment& env) {
    TrainingStack c = new_stack(spec, registry);
    build_model_stack(spec, registry, env, c);
    build_optimizer(spec, registry, c);
    c.model->train(true);
    c.task->train(true);
    return c;
}

namespace {

// This rank's rows of `batch` ([B r / N, B (r + 1) / N) of B), forward and backward in parts of
// [train] micro_batch rows; the gradients add up in the parameters' .grad. Returns the sum of the
// parts' losses: this rank's share of the whole batch's loss, times N.
double accumulate_gradients(TrainingStack& c, const Batch& batch, int rank, int world) {
    const int64_t rows = c.task->rows(batch);
    const int64_t first = rows * rank / world, last = rows * (rank + 1) / world;
    const int64_t micro = c.train.micro_batch > 0 ? c.train.micro_batch : last - first;
    if (world == 1 && micro >= rows) {  // the whole batch in one pass: no part, no share
        Tensor loss = c.task->loss(*c.model, batch);
        backward(loss);
        return loss.item();
    }
    double total = 0;
    for (int64_t at = first; at < last; at += micro) {
        Tensor loss = c.task->loss(*c.model, c.task->part(batch, at, std::min(micro, last - at)));
        // Scaled by N so that the all-reduce averages (as DDP does); a power of two N is exact.
        if (world > 1) loss = ops::scale(loss, static_cast<float>(world));
        backward(loss);
        total += static_cast<double>(loss.item());
    }
    return total;
}

// Testing aids, from LAB_FAULT (read once), so that the data-parallel tests can show that they
// catch what they guard against:
//   allreduce_sum   the all-reduce leaves out its division by the number of ranks (gradients N
//                   times too large);
//   fail:R:S        rank R throws a TrainingError in its backward pass of step S.
struct Faults {
    bool skip_average = false;
    int fail_rank = -1;
    int64_t fail_step = 0;
};

const Faults& faults() {
    static const Faults parsed = [] {
        Faults f;
        const char* text = std::getenv("LAB_FAULT");
        if (text == nullptr || *text == '\0') return f;
        const std::string fault = text;
        int rank = -1;
        long long step = 0;
        char tail = 0;
        if (fault == "allreduce_sum") f.skip_average = true;
        else if (std::sscanf(fault.c_str(), "fail:%d:%lld%c", &rank, &step, &tail) == 2 && rank >= 0 && step >= 1) {
            f.fail_rank = rank;
            f.fail_step = step;
        } else {
            throw ConfigError("LAB_FAULT='" + fault + "': expected allreduce_sum or fail:RANK:STEP (testing aids)");
        }
        return f;
    }();
    return parsed;
}

// The ranks' exchange after their backward passes: [failed, stop, loss, has_grad per parameter]
// summed over the ranks. Throws RankFailedError on every rank when one failed; returns the whole
// batch's loss and fills has_grad (parameters that have a gradient on some rank).
double exchange_status(TrainingStack& c, const std::string& error, bool stop_signal, double local_loss, int64_t step,
                       std::vector<bool>& has_grad, bool& stop) {
    Communicator& comm = *c.comm;
    std::vector<double> status(3 + c.params.size(), 0.0);
    status[0] = error.empty() ? 0 : 1;
    status[1] = stop_signal ? 1 : 0;
    status[2] = error.empty() ? local_loss : 0;
    for (size_t i = 0; i < c.params.size(); ++i) status[3 + i] = c.params[i].second.grad().defined() ? 1 : 0;
    comm.allreduce_sum(status.data(), status.size());
    if (status[0] > 0) throw_rank_failure(comm, error, "step " + std::to_string(step));
    stop = status[1] > 0;
    for (size_t i = 0; i < c.params.size(); ++i) has_grad[i] = status[3 + i] > 0;
    return status[2] / comm.size();
}

// Averages the parameters' gradients over the ranks: packed into one flat buffer (a parameter
// without a gradient on this rank contributes zeros), one all-reduce (in place on the device
// where the communicator can, else through host memory), divided by N, unpacked.
void average_gradients(TrainingStack& c, const std::vector<bool>& has_grad) {
    Backend& backend = *c.backend;
    Communicator& comm = *c.comm;
    int64_t total = 0;
    for (const auto& [name, p] : c.params) total += p.numel();
    if (!c.gradient_buffer.defined() || c.gradient_buffer.numel() != total)
        c.gradient_buffer = Tensor::empty(backend, {total});
    const Tensor& flat = c.gradient_buffer;
    int64_t offset = 0;
    for (size_t i = 0; i < c.params.size(); ++i) {
        const Tensor& p = c.params[i].second;
        Tensor slot = flat.view({p.numel()}, {1}, offset);
        if (p.grad().defined()) backend.copy(slot, p.grad().view({p.numel()}, {1}, p.grad().offset()));
        else if (has_grad[i]) backend.fill(slot, 0.0);
        offset += p.numel();
    }
    const DeviceKind where = backend.device_kind();
    if (comm.reduces_in(where)) {
        backend.synchronize();
        comm.allreduce_sum(flat.data<float>(), static_cast<size_t>(total), where);
    } else {
        std::vector<float> host = flat.to_floats();
        comm.allreduce_sum(host.data(), host.size(), DeviceKind::cpu);
        backend.copy_from_host(flat, host.data());
    }
    if (!faults().skip_average) backend.unary(UnaryOp::scale, flat, flat, 1.0f / static_cast<float>(comm.size()));
    offset = 0;
    for (size_t i = 0; i < c.params.size(); ++i) {
        Tensor& p = c.params[i].second;
        if (has_grad[i]) {
            if (!p.grad().defined()) p.set_grad(Tensor::empty(backend, p.shape()));
            backend.copy(p.grad().view({p.numel()}, {1}, p.grad().offset()), flat.view({p.numel()}, {1}, offset));
        }
        offset += p.numel();
    }
}

}  // namespace

StepResult train_step(TrainingStack& c, int64_t step, bool stop_signal) {
    StepResult result;
    Batch batch = c.task->next_batch();  // every rank draws the same batch: the seed defines the data, not N
    const int world = c.comm ? c.comm->size() : 1, rank = c.comm ? c.comm->rank() : 0;
    double loss = 0;
    if (!c.comm) {
        loss = accumulate_gradients(c, batch, 0, 1);
    } else {
        std::string error;
        try {
            if (rank == faults().fail_rank && step == faults().fail_step)
                throw TrainingError("LAB_FAULT: rank " + std::to_string(rank) + " fails at step " + std::to_string(step));
            loss = accumulate_gradients(c, batch, rank, world);
        } catch (const std::exception& e) {
            error = e.what();
        }
        std::vector<bool> has_grad(c.params.size());
        const auto t0 = Clock::now();
        loss = exchange_status(c, error, stop_signal, loss, step, has_grad, result.stop);
        average_gradients(c, has_grad);
        result.comm_seconds = seconds_since(t0);
    }
    result.loss = static_cast<float>(loss);
    if (!std::isfinite(result.loss))
        throw TrainingError("step " + std::to_string(step) + ": the training loss is " + std::to_string(result.loss) +
                            "; lower [optimizer] lr, set [train] grad_clip, or check the data");
    result.grad_norm = clip_gradients(c.params, c.train.grad_clip, *c.backend);
    result.lr = c.schedule->lr(step - 1);
    {
        NoGradGuard no_grad;
        c.optimizer->step(result.lr);
        c.optimizer->zero_grad();
    }
    result.tokens = batch.tokens;
    return result;
}

TrainedRun load_trained_run(const RunSpec& spec, const Registry& registry, const RunEnvironment& env,
                            const std::filesystem::path& checkpoint_dir) {
    std::error_code ec;
    if (!std::filesystem::exists(checkpoint_dir / "model.safetensors", ec))
        throw DataError("'" + checkpoint_dir.string() +
                        "' is not a checkpoint (no model.safetensors); a run writes one at each evaluation and at the end");
    TrainingStack c = new_stack(spec, registry);  // no run_dir: nothing is written back into the run
    build_model_stack(spec, registry, env, c);
    TrainedRun out;
    out.backend = c.backend;
    out.ctx = std::move(c.ctx);
    out.tokenizer = c.tokenizer;
    out.task = c.task;
    out.model = c.model;
    out.model->load_state_dict(
        out.model->import_state(load_safetensors(checkpoint_dir / "model.safetensors", *out.backend)));
    out.model->eval();
    out.checkpoint = checkpoint_dir;
    return out;
}

}  // namespace lab
