// Communicator: the processes (ranks) of one data-parallel run, and the collectives the trainer
// needs from them. labrun makes one for a run started under mpirun or srun (MPI on the CPU
// backends, NCCL for the gradients of the cuda backend); a run of one process has none
// (RunEnvironment::comm is null) and never needs MPI.
//
// The trainer calls the collectives in the same order on every rank. A collective that waits for
// ranks that never arrive (a rank was killed) gives up when a stop signal reaches this rank while
// it waits (mpirun and srun send SIGTERM to the others when a rank dies): RanksLostError.
#pragma once
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "lab/backend.h"
#include "lab/error.h"

namespace lab {

// The other ranks did not reach a collective (one died, or the job is being stopped).
struct RanksLostError : TrainingError {
    using TrainingError::TrainingError;
};

// A rank failed, and every rank learned it in the same collective: all of them stop with this
// error (rank 0's message names the failed ranks and their errors, and rank 0 records it).
struct RankFailedError : TrainingError {
    using TrainingError::TrainingError;
};

class Communicator {
public:
    virtual ~Communicator() = default;
    // What reduces gradients held by a backend of kind `where`: "mpi", or "nccl" for device memory.
    virtual std::string name(DeviceKind where) const = 0;
    virtual int rank() const = 0;
    virtual int size() const = 0;
    // This rank among the ranks of its node (which GPU it takes), and how many share the node.
    virtual int local_rank() const = 0;
    virtual int local_size() const = 0;

    // Sums `count` floats at `data` over the ranks, in place. `data` is memory of a backend of kind
    // `where` (device memory for a GPU backend: NCCL reduces it there; MPI copies through the host).
    virtual void allreduce_sum(float* data, size_t count, DeviceKind where) = 0;
    // Whether allreduce_sum takes memory of a `where` backend in place (else the caller stages
    // the data through host memory).
    virtual bool reduces_in(DeviceKind where) const = 0;
    // Sums `count` doubles of host memory over the ranks, in place.
    virtual void allreduce_sum(double* data, size_t count) = 0;
    // `text` of rank `root` on every rank.
    virtual void broadcast(std::string& text, int root) = 0;
    // Every rank's `text` on rank `root`, by rank (empty on the other ranks).
    virtual std::vector<std::string> gather(const std::string& text, int root) = 0;
    // Ends every rank of the job with `code`, without waiting for them (after rank 0 has recorded a
    // failure that the other ranks cannot take part in).
    [[noreturn]] virtual void abort(int code) = 0;

    // While a collective waits, `stop_requested` is polled; once it returns true, the collective
    // waits `grace_s` more for the other ranks and then throws RanksLostError.
    void set_stop_check(std::function<bool()> stop_requested, double grace_s) {
        stop_requested_ = std::move(stop_requested);
        grace_s_ = grace_s;
    }

protected:
    std::function<bool()> stop_requested_;
    double grace_s_ = 0.5;
};

}  // namespace lab
