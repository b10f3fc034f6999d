// Test helper for tests/e2e/test_concurrent_writers.cpp: one writer process that logs a run to a
// results database through lab::ResultStore exactly as a training loop does (begin_run, buffered
// add_metric with a flush every few rows, finish_run). Several of these run at once against one
// file. It prints {"run": ID, "metrics": N} on success; any error goes to stderr with exit code 1.
//
//   lab_write_metrics --db FILE --name NAME [--metrics 5000] [--flush-every 100] [--pause-ms 0]
//                     [--wait-fd FD]
//
// --pause-ms: sleep this long after each flush, as the training steps between two log intervals
// would take; without it one writer tends to hold the lock for many flushes in a row while the
// others sleep in SQLite's busy handler, and the writers hardly interleave.
//
// --wait-fd: block reading FD until end of file before opening the database, so that a parent
// can release all writers at one moment (it closes the pipe's write end) and they race on
// creating the schema as well as on writing.
#include <unistd.h>

#include <boost/program_options.hpp>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <exception>
#include <iostream>
#include <stdexcept>
#include <string>
#include <thread>

#include "lab/results.h"

namespace po = boost::program_options;

namespace {

void wait_for_end_of_file(int fd) {
    char buffer[64];
    for (;;) {
        const ssize_t got = ::read(fd, buffer, sizeof buffer);
        if (got == 0) break;
        if (got < 0 && errno != EINTR) throw std::runtime_error("reading the --wait-fd pipe failed");
    }
    ::close(fd);
}

}  // namespace

int main(int argc, char** argv) {
    try {
        std::string db, name;
        int64_t metrics = 5000, flush_every = 100;
        int wait_fd = -1;
        double pause_ms = 0;
        po::options_description options("lab_write_metrics options");
        options.add_options()
            ("db", po::value(&db)->required(), "results database file")
            ("name", po::value(&name)->required(), "run name")
            ("metrics", po::value(&metrics)->default_value(metrics), "train/loss rows to log, steps 0..N-1")
            ("flush-every", po::value(&flush_every)->default_value(flush_every), "flush after this many rows")
            ("pause-ms", po::value(&pause_ms)->default_value(pause_ms), "sleep after each flush (a training interval)")
            ("wait-fd", po::value(&wait_fd)->default_value(wait_fd), "read this fd to end of file before starting");
        po::variables_map values;
        po::store(po::parse_command_line(argc, argv, options), values);
        po::notify(values);
        if (metrics < 0 || flush_every < 1 || pause_ms < 0) {
            std::cerr << "lab_write_metrics: error: --metrics must be >= 0, --flush-every >= 1, --pause-ms >= 0\n";
            return 2;
        }
        if (wait_fd >= 0) wait_for_end_of_file(wait_fd);

        lab::ResultStore store(db);
        lab::RunRecord record;
        record.name = name;
        record.experiment = "concurrent_writers";
        record.config_hash = "writer-" + name;
        record.config_text = "experiment.name = " + name + "\n";
        record.backend = "none";
        record.threads = 1;
        const int64_t run = store.begin_run(record, {{"writer.name", name}});
        for (int64_t step = 0; step < metrics; ++step) {
            // A value that encodes (run, step), so that a row landing in the wrong run shows.
            store.add_metric(run, step, "train/loss", double(run) * 1e6 + double(step));
            if ((step + 1) % flush_every == 0) {
                store.flush();
                if (pause_ms > 0) std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(pause_ms));
            }
        }
        store.finish_run(run, lab::RunStatus::finished, "");
        std::cout << "{\"run\": " << run << ", \"metrics\": " << metrics << "}\n";
        return 0;
    } catch (const std::exception& error) {
        std::cerr << "lab_write_metrics: error: " << error.what() << "\n";
        return 1;
    }
}
