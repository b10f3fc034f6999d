// Memory figures that every layer may need: what the host has left for this process, and bytes
// as text. (Run planning, lab/run_plan.h, compares its estimates with these.)
#pragma once
#include <cstddef>
#include <string>

namespace lab {

// Bytes this process may still allocate on the host: /proc/meminfo's MemAvailable, or the cgroup's
// memory limit minus its usage when that is lower. 0 when neither can be read.
size_t host_available_memory();

// "1.5 GiB", "12.0 MiB", "512 B": for estimates and refusals.
std::string format_bytes(double bytes);

}  // namespace lab
