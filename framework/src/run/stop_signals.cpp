#include "lab/stop_signals.h"

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <thread>

namespace lab {

namespace {

std::atomic<int> g_stop_signal{0};
std::atomic<bool> g_stopping_allowed{false};  // a StopRequests scope is alive
std::atomic<bool> g_signal_thread{false};     // handle_stop_signals_on_own_thread ran

sigset_t stop_signal_set() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    return set;
}

// The signal's default action, taken on this thread (the only one that does not block it).
[[noreturn]] void end_as_signal(int sig) {
    ::signal(sig, SIG_DFL);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
    raise(sig);
    std::_Exit(128 + sig);  // not reached: the default action of SIGINT/SIGTERM ends the process
}

void take_signals() {
    const sigset_t set = stop_signal_set();
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0) continue;
        int none = 0;
        if (g_stopping_allowed.load() && g_stop_signal.compare_exchange_strong(none, sig)) continue;
        end_as_signal(sig);  // a second signal, or one outside training
    }
}

// Without the signal thread (a program that did not call handle_stop_signals_on_own_thread): a
// handler, reset by the first signal so that a second one gets the default action.
extern "C" void request_stop(int sig) {
    g_stop_signal.store(sig);
    ::signal(sig, SIG_DFL);
}

}  // namespace

void handle_stop_signals_on_own_thread() {
    bool expected = false;
    if (!g_signal_thread.compare_exchange_strong(expected, true)) return;
    const sigset_t set = stop_signal_set();
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    std::thread(take_signals).detach();
}

StopRequests::StopRequests() {
    g_stop_signal.store(0);
    if (g_signal_thread.load()) {
        g_stopping_allowed.store(true);
        return;
    }
    old_int_ = ::signal(SIGINT, request_stop);
    old_term_ = ::signal(SIGTERM, request_stop);
}

StopRequests::~StopRequests() {
    if (g_signal_thread.load()) {
        g_stopping_allowed.store(false);
        return;
    }
    ::signal(SIGINT, old_int_);
    ::signal(SIGTERM, old_term_);
}

int StopRequests::pending() const { return g_stop_signal.load(); }

}  // namespace lab
