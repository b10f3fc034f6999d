// labdb serve: the command line of the results dashboard (serve/server.cpp). Builds without
// cpp-httplib or Chart.js keep the command, which then says how to get it.
#include <iostream>

#include "cli.h"
#ifdef LABDB_WITH_SERVE
#include "serve/api.h"
#include "serve/server.h"
#endif

namespace labdb {
namespace {

const char* kUsage =
    "usage: labdb serve [--db FILE ...] [--port P] [--host ADDRESS]\n"
    "\n"
    "Serves a live dashboard of the results databases at http://ADDRESS:P/ (default 127.0.0.1:8600;\n"
    "--port 0 picks a free port): the runs table (sortable, filtered by status, experiment, sweep and\n"
    "parameter values), learning curves of the selected runs (log scale, smoothing), a page per run\n"
    "(config, provenance, plugins, metrics, text samples, the error), the ablation and compare views.\n"
    "The page polls every 2 s, so runs that labrun is writing update live.\n"
    "Several --db files may be given; a run is then named by (database index, run id).\n"
    "The first line on stdout is `labdb serve: http://ADDRESS:P/ (databases: ...)`. The databases are\n"
    "opened read-only; only the page, its embedded files and the JSON API below are served (a path\n"
    "with '..' is refused). Binding another address than a loopback one prints a WARNING: anyone who\n"
    "reaches it can read the results. Ctrl-C or SIGTERM stops it (exit code 0).";

}  // namespace

int command_serve(const std::vector<std::string>& args, const GlobalOptions& global) {
    po::options_description options("serve options");
    options.add_options()
        ("db", po::value<std::vector<std::string>>()->composing(),
         "results database file (repeatable; default the global --db, results/lab.db)")
        ("port", po::value<int>()->default_value(8600), "TCP port, 1-65535, or 0 for any free port")
        ("host", po::value<std::string>()->default_value("127.0.0.1"),
         "address to listen on (a non-loopback address is reachable by others)");
    std::string usage = kUsage;
#ifdef LABDB_WITH_SERVE
    usage += "\n\nJSON API (GET; DB is the index of a --db file, from 0):\n" + serve::Api::routes_help();
#endif
    const CommandLine command_line = parse_command_line(usage, options, {}, {}, args, global, false);
    if (command_line.help) return kExitOk;
    const po::variables_map& values = command_line.values;
    const int port = values["port"].as<int>();
    if (port < 0 || port > 65535) {
        throw UsageError("--port " + std::to_string(port) + " is not a TCP port; hint: give 1-65535, or 0 for any " +
                         "free port");
    }
    const std::string host = values["host"].as<std::string>();
    if (host.empty()) throw UsageError("--host is empty; hint: --host 127.0.0.1 (the default)");
    std::vector<std::filesystem::path> databases;
    if (values.count("db")) {
        for (const std::string& file : values["db"].as<std::vector<std::string>>()) databases.emplace_back(file);
    } else {
        databases.push_back(global.db);
    }
    for (const std::filesystem::path& file : databases) {
        std::error_code error;
        if (!std::filesystem::exists(file, error)) {
            throw NotFoundError("--db '" + file.string() + "': no such file; hint: give a results database that " +
                                "labrun wrote, e.g. --db results/lab.db");
        }
    }
#ifdef LABDB_WITH_SERVE
    return serve::serve({databases, host, port});
#else
    std::cerr << "labdb: serve was not built: " << LABDB_SERVE_MISSING
              << "; hint: apt-get install libcpp-httplib-dev libjs-chart.js, then configure and build again\n";
    return kExitUsage;
#endif
}

}  // namespace labdb
