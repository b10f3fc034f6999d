// main() of a bench/ program: runs `run`, and turns an exception into a message on stderr and an
// exit status (2 for a bad command line, 1 for anything else).
#pragma once
#include <boost/program_options/errors.hpp>
#include <exception>
#include <iostream>

namespace lab_bench {

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
