// The communicator of a labrun started by mpirun/mpiexec or srun: MPI_COMM_WORLD, with NCCL for
// the gradients of the cuda backend where this build has NCCL. Built only when CMake found MPI
// (LAB_WITH_MPI); without it, a labrun started by a launcher refuses with the way to build it.
#pragma once
#include <memory>
#include <string>

#include "lab/communicator.h"

// True when an MPI launcher started this process with more than one rank (Open MPI's mpirun sets
// OMPI_COMM_WORLD_SIZE, PMI/PMIx launchers such as srun --mpi=pmix set PMI_SIZE or PMIX_RANK).
// Throws ConfigError for `srun -n N` without an MPI plugin (N processes that would each train alone).
bool started_by_mpi_launcher();

// Initialises MPI (MPI_Init) and returns MPI_COMM_WORLD as a communicator; MPI_Finalize runs when
// it is destroyed. Throws ConfigError when this labrun was built without MPI.
std::unique_ptr<lab::Communicator> make_mpi_communicator();

// How long a collective waits for the other ranks once a stop signal has reached this rank: 60%
// of the time the launcher gives a signalled process before SIGKILL (Open MPI's mpirun:
// odls_base_sigkill_timeout, 1 s unless raised; Slurm: KillWait, 30 s by default), so that rank 0
// records the run before it is killed.
double stop_grace_seconds();

// "Open MPI 4.1.4" and the like, or "" without MPI.
std::string mpi_library_version();
