// The JSON API of `labdb serve`: GET routes that answer with the same JSON as `labdb runs`, `show`,
// `compare` and `ablate --json` (command_json.h), over one or more results databases. A run is
// named by (database index, run id): the index is the position of its file among the --db files.
//
// It knows nothing of HTTP: the server (server.cpp) hands it the decoded path and query and sends
// back the status and body. Every request opens its databases read-only and closes them again, so
// requests run on any thread, and a file that labrun is writing is seen as it is now (SQLite WAL
// readers never block the writer).
#pragma once
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "database.h"

namespace labdb::serve {

// The query parameters of a request; a name may repeat (by=a&by=b).
using Query = std::multimap<std::string, std::string>;

struct ApiReply {
    int status = 200;     // 400 for a bad request, 404 for an unknown run/metric/route, 500 otherwise
    nlohmann::json body;  // {"error": "..."} unless the status is 200
};

class Api {
 public:
    // Opens every file once to check it (NotFoundError for a missing one, lab::Error for a file that
    // is not a results database), so that a typo fails at start and not at the first request.
    explicit Api(std::vector<std::filesystem::path> databases);

    // The reply to GET `path`, or nullopt when `path` is not an API route.
    std::optional<ApiReply> get(const std::string& path, const Query& query) const;

    // One line per route ("GET /api/runs?... - what it returns"), for --help and the docs.
    static std::string routes_help();

    const std::vector<std::filesystem::path>& databases() const { return databases_; }

 private:
    struct Route;
    static const std::vector<Route>& routes();

    std::unique_ptr<Database> open(size_t index) const;
    size_t database_index(const std::string& text) const;

    nlohmann::json list_databases(const std::string& path, const Query& query) const;
    nlohmann::json list_runs(const std::string& path, const Query& query) const;
    nlohmann::json show_run(const std::string& path, const Query& query) const;
    nlohmann::json metric_points(const std::string& path, const Query& query) const;
    nlohmann::json list_metric_names(const std::string& path, const Query& query) const;
    nlohmann::json ablate(const std::string& path, const Query& query) const;
    nlohmann::json compare(const std::string& path, const Query& query) const;
    nlohmann::json curves(const std::string& path, const Query& query) const;

    std::vector<std::filesystem::path> databases_;
};

}  // namespace labdb::serve
