#include "lab/text_file.h"

#include <fstream>
#include <sstream>

#include "lab/error.h"

namespace lab {

std::string read_text_file(const std::filesystem::path& path, const std::string& who, const std::string& what,
                           const std::string& hint) {
    std::error_code ec;
    std::ifstream in(path, std::ios::binary);
    if (!in || std::filesystem::is_directory(path, ec))
        throw DataError(who + ": cannot read " + what + " '" + path.string() + "'; " + hint);
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) throw DataError(who + ": reading " + what + " '" + path.string() + "' failed; " + hint);
    return text.str();
}

}  // namespace lab
