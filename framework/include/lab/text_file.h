// Reading a whole data file (a corpus, a vocabulary) for plugins, with the error message every
// plugin gives: who could not read which file, and what to do about it.
#pragma once
#include <filesystem>
#include <string>

namespace lab {

// The file's bytes. Throws DataError "<who>: cannot read <what> '<path>'; <hint>" when it cannot
// be opened (missing, a folder, no permission) or a read fails.
std::string read_text_file(const std::filesystem::path& path, const std::string& who, const std::string& what,
                           const std::string& hint);

}  // namespace lab
