// labdb: answers questions about labrun results databases (docs/results-schema.md).
//
//   labdb [--db FILE] runs [--experiment NAME] [--status S] [--where key=value ...] [--limit N]
//   labdb [--db FILE] show RUN
//   labdb [--db FILE] compare RUN RUN... [--all]
//   labdb [--db FILE] curves --metric NAME RUN... -o FILE.svg|.png [--log-y] [--x step|time]
//   labdb [--db FILE] export [RUN...] --format csv|json [-o FILE]
//   labdb [--db FILE] report SWEEP_OR_EXPERIMENT -o report.html
//   labdb merge A.db B.db ... -o C.db [--force]
//   labdb [--db FILE] ablate --by KEY... --metric NAME [--baseline VALUE,...] (cmd_ablate.cpp)
//   labdb serve [--db FILE ...] [--port P] [--host ADDRESS]   (cmd_serve.cpp, serve/)
//
// This file is the one place that maps errors to exit codes: 0 ok, 1 other failure (a database of
// a newer schema version included), 2 usage, 3 run/sweep/metric/file not found or a run name that
// matches several runs.
#include <cstring>
#include <exception>
#include <iostream>
#include <map>

#include "cli.h"

namespace {

using labdb::GlobalOptions;
using Command = int (*)(const std::vector<std::string>&, const GlobalOptions&);

struct CommandEntry {
    Command run;
    const char* summary;
};

const std::map<std::string, CommandEntry>& commands() {
    static const std::map<std::string, CommandEntry> table = {
        {"runs", {labdb::command_runs, "list runs (filter by experiment, status, parameter values)"}},
        {"show", {labdb::command_show, "everything about one run"}},
        {"compare", {labdb::command_compare, "runs side by side: parameters that differ, last and best metrics"}},
        {"curves", {labdb::command_curves, "learning curves of runs as an SVG or PNG chart"}},
        {"export", {labdb::command_export, "metrics as CSV or JSON rows (run_id, run_name, step, name, value, time)"}},
        {"report", {labdb::command_report, "one self-contained HTML report of a sweep or an experiment"}},
        {"merge", {labdb::command_merge, "join several result databases into a new one"}},
        {"ablate", {labdb::command_ablate, "group runs by parameters: metric mean, std, deltas with 95% CIs"}},
        {"serve", {labdb::command_serve, "a live dashboard in the browser: runs, curves, run pages, ablations"}},
    };
    return table;
}

void print_usage(std::ostream& out) {
    out << "usage: labdb [--db FILE] COMMAND [options]\n"
           "\n"
           "Queries the results databases that labrun writes (default " << labdb::kDefaultDatabase << ").\n"
           "Runs are named by numeric id, a unique uid prefix (4 or more hex digits) or run name.\n"
           "\n"
           "commands:\n";
    for (const auto& [name, entry] : commands()) {
        out << "  " << name << std::string(10 - name.size(), ' ') << entry.summary << "\n";
    }
    out << "\n"
           "global options:\n"
           "  --db FILE   results database (default " << labdb::kDefaultDatabase << "; also accepted after COMMAND)\n"
           "  -h, --help  print this help; `labdb COMMAND --help` prints a command's options\n"
           "\n"
           "exit codes: 0 ok, 1 failure (also: a database written by a newer labrun), 2 usage error,\n"
           "            3 run/sweep/metric/file not found or ambiguous\n";
}

int run(int argc, char** argv) {
    // Global options come before the command; everything after it belongs to the command, which
    // accepts --db too.
    GlobalOptions global;
    int index = 1;
    for (; index < argc; ++index) {
        const std::string arg = argv[index];
        if (arg == "-h" || arg == "--help") {
            print_usage(std::cout);
            return labdb::kExitOk;
        }
        if (arg == "--db") {
            if (index + 1 >= argc) throw labdb::UsageError("--db needs a file name; hint: --db results/lab.db");
            global.db = argv[++index];
        } else if (arg.rfind("--db=", 0) == 0) {
            global.db = arg.substr(5);
        } else if (!arg.empty() && arg[0] == '-') {
            throw labdb::UsageError("unknown global option '" + arg + "'; hint: options of a command go after it, " +
                                    "see `labdb --help`");
        } else {
            break;
        }
    }
    if (index >= argc) {
        print_usage(std::cerr);
        throw labdb::UsageError("no command given; hint: e.g. `labdb runs`");
    }
    const std::string name = argv[index];
    const auto command = commands().find(name);
    if (command == commands().end()) {
        std::string known;
        for (const auto& [known_name, entry] : commands()) known += (known.empty() ? "" : ", ") + known_name;
        throw labdb::UsageError("unknown command '" + name + "'; hint: the commands are " + known);
    }
    const std::vector<std::string> args(argv + index + 1, argv + argc);
    return command->second.run(args, global);
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const labdb::UsageError& error) {
        std::cerr << "labdb: usage error: " << error.what() << "\n";
        return labdb::kExitUsage;
    } catch (const labdb::NotFoundError& error) {
        std::cerr << "labdb: error: " << error.what() << "\n";
        return labdb::kExitNotFound;
    } catch (const std::exception& error) {
        std::cerr << "labdb: error: " << error.what() << "\n";
        return labdb::kExitFailure;
    }
}
