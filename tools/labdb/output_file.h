// Writing an output file whole or not at all: the content goes to a temporary file next to the
// target, which is renamed over it only after every byte was written, so an error (a full disk,
// a failed query half-way) never leaves a truncated report or export behind.
#pragma once
#include <filesystem>
#include <functional>
#include <ostream>

namespace labdb {

// Calls write(stream) on a temporary file in the target's directory, then renames it to `file`.
// Throws lab::Error naming the file when it cannot be written; rethrows what write() throws.
void write_file_atomically(const std::filesystem::path& file, const std::function<void(std::ostream&)>& write);

}  // namespace labdb
