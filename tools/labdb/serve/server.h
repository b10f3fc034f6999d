// `labdb serve`: a live results dashboard over HTTP (cpp-httplib), the JSON API of api.h plus the
// web page embedded at build time (tools/labdb/web/ and Chart.js). See docs/labdb-serve.md.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

namespace labdb::serve {

struct ServeOptions {
    std::vector<std::filesystem::path> databases;
    std::string host = "127.0.0.1";
    int port = 8600;  // 0: any free port
};

// Serves until SIGINT or SIGTERM; returns the exit code (0). Throws lab::Error when a database
// cannot be opened or the address cannot be bound.
int serve(const ServeOptions& options);

}  // namespace labdb::serve
