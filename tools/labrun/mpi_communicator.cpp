#include "mpi_communicator.h"

#include <sched.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <sstream>

#include "lab/error.h"

#ifdef LAB_WITH_MPI
#include <mpi.h>
#endif
#ifdef LAB_WITH_NCCL
#include <cuda_runtime.h>
#include <nccl.h>
#endif

namespace {

int env_int(const char* name, int fallback) {
    const char* text = std::getenv(name);
    if (text == nullptr || *text == '\0') return fallback;
    char* end = nullptr;
    long value = std::strtol(text, &end, 10);
    return end != nullptr && *end == '\0' ? static_cast<int>(value) : fallback;
}

}  // namespace

bool started_by_mpi_launcher() {
    for (const char* size : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"})
        if (env_int(size, 0) > 1) return true;
    if (std::getenv("PMIX_RANK") != nullptr && env_int("SLURM_NTASKS", 1) > 1) return true;
    // srun -n N without --mpi: N copies that would each train the whole run and write the same
    // database. (An sbatch script's own shell, a Slurm array task, has SLURM_NTASKS unset or 1.)
    if (std::getenv("SLURM_STEP_ID") != nullptr && env_int("SLURM_STEP_NUM_TASKS", 1) > 1)
        throw lab::ConfigError("srun started " + std::to_string(env_int("SLURM_STEP_NUM_TASKS", 1)) +
                               " tasks without an MPI plugin, so each would train the whole run alone; start a "
                               "data-parallel run with `srun --mpi=pmix -n N labrun ...` (or mpirun -np N), "
                               "see docs/distributed.md");
    return false;
}

double stop_grace_seconds() {
    if (const int kill_timeout = env_int("OMPI_MCA_odls_base_sigkill_timeout", 0); kill_timeout > 0)
        return 0.6 * kill_timeout;
    if (std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr) return 0.6;  // mpirun's default: SIGKILL 1 s after SIGTERM
    if (std::getenv("SLURM_JOB_ID") != nullptr) return 18.0;         // Slurm's default KillWait: 30 s
    return 0.6;
}

#ifndef LAB_WITH_MPI

std::unique_ptr<lab::Communicator> make_mpi_communicator() {
    throw lab::ConfigError("this labrun was started by an MPI launcher (mpirun or srun --mpi) but was built without "
                           "MPI, so it cannot train data-parallel; install Open MPI (Debian: libopenmpi-dev "
                           "openmpi-bin, which tools/setup.sh installs), reconfigure and rebuild, or start it without "
                           "mpirun for a one-process run");
}

std::string mpi_library_version() { return ""; }

#else

namespace {

std::string mpi_error_text(int code) {
    char text[MPI_MAX_ERROR_STRING];
    int length = 0;
    if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
    return std::string(text, static_cast<size_t>(length));
}

std::string seconds_text(double seconds) {
    std::ostringstream text;
    text << seconds << " s";
    return text.str();
}

void check_mpi(int code, const char* call) {
    if (code != MPI_SUCCESS)
        throw lab::TrainingError(std::string(call) + " failed: " + mpi_error_text(code) +
                                 "; another rank has probably died (its output says why)");
}

#ifdef LAB_WITH_NCCL
void check_cuda(cudaError_t status, const char* call) {
    if (status != cudaSuccess)
        throw lab::BackendError(std::string(call) + " failed: " + cudaGetErrorString(status));
}
void check_nccl(ncclResult_t status, const char* call) {
    if (status != ncclSuccess && status != ncclInProgress)
        throw lab::BackendError(std::string(call) + " failed: " + ncclGetErrorString(status));
}
#endif

class MpiCommunicator final : public lab::Communicator {
public:
    MpiCommunicator() {
        int initialized = 0;
        MPI_Initialized(&initialized);
        if (!initialized) {
            int provided = 0;
            // Only the main thread calls MPI (OpenMP threads compute between the collectives).
            if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
                throw lab::ConfigError("MPI_Init failed; is this labrun started by the MPI it was built with?");
        }
        // Errors come back as codes (and become exceptions that rank 0 records) instead of
        // aborting the process from inside MPI.
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
        MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
        MPI_Comm_size(MPI_COMM_WORLD, &size_);
        MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node_);
        MPI_Comm_rank(node_, &local_rank_);
        MPI_Comm_size(node_, &local_size_);
    }
    ~MpiCommunicator() override {
#ifdef LAB_WITH_NCCL
        if (nccl_ != nullptr) ncclCommDestroy(nccl_);
        if (stream_ != nullptr) cudaStreamDestroy(stream_);
#endif
        MPI_Comm_free(&node_);
        MPI_Finalize();
    }

    std::string name(lab::DeviceKind where) const override { return reduces_in(where) && where != lab::DeviceKind::cpu ? "nccl" : "mpi"; }
    int rank() const override { return rank_; }
    int size() const override { return size_; }
    int local_rank() const override { return local_rank_; }
    int local_size() const override { return local_size_; }

    bool reduces_in(lab::DeviceKind where) const override {
#ifdef LAB_WITH_NCCL
        if (where == lab::DeviceKind::cuda) return true;
#endif
        return where == lab::DeviceKind::cpu;
    }

    void allreduce_sum(float* data, size_t count, lab::DeviceKind where) override {
        if (where == lab::DeviceKind::cuda) {
#ifdef LAB_WITH_NCCL
            allreduce_on_device(data, count);
            return;
#else
            throw lab::Error("this labrun has no NCCL: device memory must be staged through the host");
#endif
        }
        MPI_Request request;
        check_mpi(MPI_Iallreduce(MPI_IN_PLACE, data, static_cast<int>(count), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &request),
                  "MPI_Iallreduce");
        wait(request, "the gradient all-reduce");
    }

    void allreduce_sum(double* data, size_t count) override {
        MPI_Request request;
        check_mpi(MPI_Iallreduce(MPI_IN_PLACE, data, static_cast<int>(count), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD, &request),
                  "MPI_Iallreduce");
        wait(request, "the ranks' status exchange");
    }

    void broadcast(std::string& text, int root) override {
        long long length = static_cast<long long>(text.size());
        MPI_Request request;
        check_mpi(MPI_Ibcast(&length, 1, MPI_LONG_LONG, root, MPI_COMM_WORLD, &request), "MPI_Ibcast");
        wait(request, "a broadcast from rank " + std::to_string(root));
        text.resize(static_cast<size_t>(length));
        if (length == 0) return;
        check_mpi(MPI_Ibcast(text.data(), static_cast<int>(length), MPI_CHAR, root, MPI_COMM_WORLD, &request),
                  "MPI_Ibcast");
        wait(request, "a broadcast from rank " + std::to_string(root));
    }

    std::vector<std::string> gather(const std::string& text, int root) override {
        int length = static_cast<int>(text.size());
        std::vector<int> lengths(rank_ == root ? static_cast<size_t>(size_) : 0);
        MPI_Request request;
        check_mpi(MPI_Igather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, root, MPI_COMM_WORLD, &request),
                  "MPI_Igather");
        wait(request, "a gather to rank " + std::to_string(root));
        std::vector<int> offsets(lengths.size());
        int total = 0;
        for (size_t r = 0; r < lengths.size(); ++r) {
            offsets[r] = total;
            total += lengths[r];
        }
        std::string all(static_cast<size_t>(total), '\0');
        check_mpi(MPI_Igatherv(text.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR, root,
                               MPI_COMM_WORLD, &request),
                  "MPI_Igatherv");
        wait(request, "a gather to rank " + std::to_string(root));
        std::vector<std::string> out;
        for (size_t r = 0; r < lengths.size(); ++r)
            out.push_back(all.substr(static_cast<size_t>(offsets[r]), static_cast<size_t>(lengths[r])));
        return out;
    }

    [[noreturn]] void abort(int code) override {
        MPI_Abort(MPI_COMM_WORLD, code);
        std::_Exit(code);  // MPI_Abort does not return; this keeps the promise if it did
    }

private:
    // Polls `done` until it returns true. Once a stop signal has reached this rank, the other ranks
    // get grace_s_ to arrive: they arrive when they were signalled too (each finishes its step and
    // comes to the next collective); they never do when one of them died. Then `give_up` cancels
    // the collective and RanksLostError names `what`.
    template <class Done, class GiveUp>
    void poll(const std::string& what, Done done, GiveUp give_up) {
        using Clock = std::chrono::steady_clock;
        std::optional<Clock::time_point> stop_seen;
        for (long spins = 0;; ++spins) {
            if (done()) return;
            if (!stop_seen && stop_requested_ && stop_requested_()) stop_seen = Clock::now();
            if (stop_seen && std::chrono::duration<double>(Clock::now() - *stop_seen).count() > grace_s_) {
                give_up();
                throw lab::RanksLostError(
                    "a stop signal reached rank " + std::to_string(rank_) + " while it waited for " + what + ", and the "
                    "other ranks did not arrive within " + seconds_text(grace_s_) +
                    ": a rank died, or the launcher is ending the job");
            }
            // Spin briefly (collectives within a node complete in microseconds), then leave the
            // core to the ranks still computing.
            if (spins < 2000) sched_yield();
            else usleep(200);
        }
    }

    void wait(MPI_Request& request, const std::string& what) {
        poll(
            what,
            [&] {
                int done = 0;
                check_mpi(MPI_Test(&request, &done, MPI_STATUS_IGNORE), "MPI_Test");
                return done != 0;
            },
            [&] { MPI_Cancel(&request); });
    }

#ifdef LAB_WITH_NCCL
    // ncclAllReduce on the device (the backend's current device, which labrun chose for this rank),
    // on a stream of its own after the backend's work; polled like the MPI collectives.
    void allreduce_on_device(float* data, size_t count) {
        if (nccl_ == nullptr) {
            ncclUniqueId id;
            if (rank_ == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
            MPI_Request request;
            check_mpi(MPI_Ibcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD, &request), "MPI_Ibcast");
            wait(request, "NCCL's bootstrap");
            check_nccl(ncclCommInitRank(&nccl_, size_, id, rank_), "ncclCommInitRank");
            check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
        }
        check_cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize");  // the gradients are written
        check_nccl(ncclAllReduce(data, data, count, ncclFloat, ncclSum, nccl_, stream_), "ncclAllReduce");
        poll(
            "the NCCL all-reduce",
            [&] {
                const cudaError_t status = cudaStreamQuery(stream_);
                if (status != cudaErrorNotReady) check_cuda(status, "ncclAllReduce (cudaStreamQuery)");
                return status == cudaSuccess;
            },
            [&] {
                ncclCommAbort(nccl_);
                nccl_ = nullptr;
            });
    }
    ncclComm_t nccl_ = nullptr;
    cudaStream_t stream_ = nullptr;
#endif

    int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
    MPI_Comm node_ = MPI_COMM_NULL;
};

}  // namespace

std::unique_ptr<lab::Communicator> make_mpi_communicator() { return std::make_unique<MpiCommunicator>(); }

std::string mpi_library_version() {
    char text[MPI_MAX_LIBRARY_VERSION_STRING];
    int length = 0;
    MPI_Get_library_version(text, &length);
    std::string version(text, static_cast<size_t>(length));
    if (auto comma = version.find(','); comma != std::string::npos) version.resize(comma);  // "Open MPI v4.1.4, ..."
    while (!version.empty() && (version.back() == '\n' || version.back() == ' ')) version.pop_back();
    return version;
}

#endif
