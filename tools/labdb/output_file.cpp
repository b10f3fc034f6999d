#include "output_file.h"

#include <unistd.h>

#include <fstream>

#include "lab/error.h"

namespace labdb {

void write_file_atomically(const std::filesystem::path& file, const std::function<void(std::ostream&)>& write) {
    const std::filesystem::path temporary = file.string() + ".tmp-" + std::to_string(::getpid());
    auto remove_temporary = [&] {
        std::error_code ignored;
        std::filesystem::remove(temporary, ignored);
    };
    {
        std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
        if (!out) {
            throw lab::Error("cannot create '" + temporary.string() + "' to write '" + file.string() +
                             "'; hint: check that the directory exists and is writable");
        }
        try {
            write(out);
        } catch (...) {
            out.close();
            remove_temporary();
            throw;
        }
        out.flush();
        if (!out) {
            out.close();
            remove_temporary();
            throw lab::Error("writing '" + file.string() + "' failed; hint: check the free disk space");
        }
    }
    std::error_code ec;
    std::filesystem::rename(temporary, file, ec);
    if (ec) {
        remove_temporary();
        throw lab::Error("cannot rename '" + temporary.string() + "' to '" + file.string() + "': " + ec.message() +
                         "; hint: check that the target is not a directory and the folder is writable");
    }
}

}  // namespace labdb
