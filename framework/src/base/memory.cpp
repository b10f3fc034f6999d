#include "lab/memory.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <utility>

namespace lab {

namespace {

// `key: value` of /proc/meminfo in kB, or -1.
int64_t meminfo_kb(const std::string& key) {
    std::ifstream in("/proc/meminfo");
    std::string name;
    int64_t value = 0;
    std::string unit;
    while (in >> name >> value) {
        std::getline(in, unit);
        if (name == key + ":") return value;
    }
    return -1;
}

// A cgroup v2 (or v1) number from `file`, or -1 for "max", a missing file or no number.
int64_t cgroup_number(const std::string& file) {
    std::ifstream in(file);
    std::string text;
    if (!(in >> text) || text == "max") return -1;
    try {
        return std::stoll(text);
    } catch (const std::exception&) {
        return -1;
    }
}

}  // namespace

size_t host_available_memory() {
    double available = -1;
    if (int64_t kb = meminfo_kb("MemAvailable"); kb >= 0) available = static_cast<double>(kb) * 1024.0;
    // A container's limit may be far below the machine's free memory: the cgroup kills past it.
    for (const auto& [limit_file, usage_file] :
         {std::pair<const char*, const char*>{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"},
          {"/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"}}) {
        const int64_t limit = cgroup_number(limit_file), usage = cgroup_number(usage_file);
        if (limit <= 0 || usage < 0 || limit > (int64_t{1} << 60)) continue;  // v1 says "no limit" with 2^63
        const double left = static_cast<double>(std::max<int64_t>(0, limit - usage));
        if (available < 0 || left < available) available = left;
        break;
    }
    return available < 0 ? 0 : static_cast<size_t>(available);
}

std::string format_bytes(double bytes) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int unit = 0;
    while (bytes >= 1024.0 && unit < 6) bytes /= 1024.0, ++unit;
    char text[64];
    std::snprintf(text, sizeof text, unit == 0 ? "%.0f %s" : "%.1f %s", bytes, units[unit]);
    return text;
}

}  // namespace lab
