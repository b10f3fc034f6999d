#include "cli.h"

#include <iostream>

namespace labdb {

CommandLine parse_command_line(const std::string& usage, const po::options_description& options,
                               const po::options_description& hidden,
                               const po::positional_options_description& positional,
                               const std::vector<std::string>& args, const GlobalOptions& global,
                               bool reads_db) {
    po::options_description common("common options");
    if (reads_db) {
        common.add_options()("db", po::value<std::string>()->default_value(global.db.string()), "results database file");
    }
    common.add_options()("help,h", "print this help");
    po::options_description visible;
    visible.add(options).add(common);
    po::options_description all;
    all.add(visible).add(hidden);

    CommandLine command_line;
    try {
        po::store(po::command_line_parser(args).options(all).positional(positional).run(), command_line.values);
        po::notify(command_line.values);
    } catch (const po::error& error) {
        const std::string command = usage.substr(0, usage.find('\n'));
        throw UsageError(std::string(error.what()) + "\n" + command +
                         "\nhint: add --help to the command for its options");
    }
    if (command_line.values.count("help")) {
        std::cout << usage << "\n" << visible << "\n";
        command_line.help = true;
    }
    command_line.db = reads_db ? command_line.values["db"].as<std::string>() : global.db.string();
    return command_line;
}

CommandLine parse_runs_command_line(const std::string& usage, const po::options_description& options,
                                    const std::vector<std::string>& args, const GlobalOptions& global) {
    po::options_description hidden;
    hidden.add_options()("run", po::value<std::vector<std::string>>(), "runs");
    po::positional_options_description positional;
    positional.add("run", -1);
    return parse_command_line(usage, options, hidden, positional, args, global);
}

std::string json_text(const nlohmann::json& value, int indent) {
    return value.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace labdb
