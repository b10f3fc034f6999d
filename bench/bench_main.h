// main() of a bench/ program: runs `run`, and turns an exception into a message on stderr and an
// exit status (2 for a bad command line, 1 for anything else).
#pragma once
#include <boost/program_options.hpp>
#include <exception>
#include <iostream>

namespace lab_bench {

// Parses the command line into the options' variables; false (after printing `options`) when
// --help was given, so that the program returns 0 at once.
inline bool parse_options(int argc, char** argv, const boost::program_options::options_description& options) {
    boost::program_options::variables_map vm;
    boost::program_options::store(boost::program_options::parse_command_line(argc, argv, options), vm);
    boost::program_options::notify(vm);
    if (vm.count("help")) {
        std::cout << options << "\n";
        return false;
    }
    return true;
}

inline int main_with_errors(const char* program, int (*run)(int, char**), int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const boost::program_options::error& error) {
        std::cerr << program << ": error: " << error.what() << "; see --help\n";
        return 2;
    } catch (const std::exception& error) {
        std::cerr << program << ": error: " << error.what() << "\n";
        return 1;
    }
}

}  // namespace lab_bench
