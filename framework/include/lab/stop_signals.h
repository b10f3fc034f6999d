// SIGINT and SIGTERM as requests to stop: while a run trains, the first one makes it finish its
// step, checkpoint and end `interrupted`; a second one, or one at any other time, ends the process
// as the signal would.
//
// Why a thread of its own: a signal handler that interrupts a thread inside an AMX kernel can
// leave memory corrupted on some machines (seen on a Xeon with AMX in a Firecracker VM, Linux
// 6.18: 3 of 12 SIGTERMs during oneDNN's AMX matmuls ended in "corrupted size vs. prev_size";
// none of 12 with AMX disabled). With handle_stop_signals_on_own_thread() no handler ever runs on
// a computing thread: every thread blocks the two signals and one thread that computes nothing
// takes them with sigwait.
#pragma once

namespace lab {

// Blocks SIGINT and SIGTERM in the calling thread and every thread it starts later, and starts the
// thread that takes them. Call first thing in main, before any other thread exists (labrun does);
// later calls do nothing. Without it, StopRequests installs a plain signal handler.
void handle_stop_signals_on_own_thread();

// A scope in which SIGINT/SIGTERM are stop requests (one at a time per process).
class StopRequests {
public:
    StopRequests();
    ~StopRequests();
    StopRequests(const StopRequests&) = delete;
    StopRequests& operator=(const StopRequests&) = delete;
    // The signal that asked to stop, or 0.
    int pending() const;

private:
    void (*old_int_)(int) = nullptr;
    void (*old_term_)(int) = nullptr;
};

}  // namespace lab
