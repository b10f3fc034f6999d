// Where a run comes from: the code revision, the host and the time (declared in lab/results.h).
// Kept apart from the store because none of it touches the database.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <exception>
#include <filesystem>
#include <optional>
#include <string>

#include "lab/results.h"

namespace lab {
namespace {

// Runs a shell command, returns its stdout, or nullopt when it cannot start or exits non-zero.
std::optional<std::string> command_output(const std::string& command) {
    FILE* pipe = ::popen(command.c_str(), "r");
    if (pipe == nullptr) return std::nullopt;
    std::string output;
    char buffer[4096];
    size_t got = 0;
    while ((got = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, got);
    const int status = ::pclose(pipe);
    if (status != 0) return std::nullopt;
    return output;
}

// Single-quotes a path for /bin/sh: ' becomes '\''.
std::string shell_quote(const std::string& text) {
    std::string quoted = "'";
    for (char c : text) {
        if (c == '\'') {
            quoted += "'\\''";
        } else {
            quoted += c;
        }
    }
    return quoted + "'";
}

}  // namespace

std::string code_revision(const std::filesystem::path& source_dir) {
    try {
        std::error_code ec;
        if (!std::filesystem::exists(source_dir / ".git", ec)) return "unknown";
        const std::string git = "git -C " + shell_quote(source_dir.string());
        const std::optional<std::string> head = command_output(git + " rev-parse HEAD 2>/dev/null");
        if (!head) return "unknown";
        std::string revision = *head;
        while (!revision.empty() && (revision.back() == '\n' || revision.back() == '\r')) revision.pop_back();
        // 40 hex digits (SHA-1 repositories) or 64 (SHA-256 repositories); anything else is not a commit.
        const bool is_hex = revision.find_first_not_of("0123456789abcdef") == std::string::npos;
        if (!is_hex || (revision.size() != 40 && revision.size() != 64)) return "unknown";
        const std::optional<std::string> changes = command_output(git + " status --porcelain 2>/dev/null");
        if (changes && !changes->empty()) revision += "-dirty";
        return revision;
    } catch (const std::exception&) {
        return "unknown";
    }
}

std::string host_name() {
    char name[256] = {};
    if (::gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "unknown";
    return name;
}

std::string utc_now_iso() {
    const auto now = std::chrono::system_clock::now();
    const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
    const auto millis =
        std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
    std::tm utc{};
    ::gmtime_r(&seconds, &utc);
    char text[32];
    const size_t length = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
    std::snprintf(text + length, sizeof text - length, ".%03dZ", static_cast<int>(millis));
    return text;
}

}  // namespace lab
