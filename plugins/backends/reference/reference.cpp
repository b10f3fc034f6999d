// Backend `reference`: lab::HostBackend (plain C++ loops on host memory, OpenMP across rows) as a
// plugin, so that experiments can select it like any other backend.
#include <omp.h>

#include <memory>
#include <string>

#include "lab/error.h"
#include "lab/host_backend.h"
#include "lab/plugin.h"

LAB_PLUGIN(registry) {
    lab::OptionSchema schema;
    schema.integer("threads", 0, "OpenMP threads for the host kernels; 0 = all cores").at_least(0);
    registry.add_backend(
        {"reference", LAB_VERSION,
         "CPU backend in plain C++ (the framework's HostBackend): the reference other backends are "
         "checked against",
         schema},
        [](const lab::Options& options) -> std::shared_ptr<lab::Backend> {
            const int64_t threads = options.get_int("threads");
            if (threads < 0)
                throw lab::ConfigError("backend reference: threads = " + std::to_string(threads) +
                                       " is negative. Hint: use 0 for all cores or a positive thread count.");
            if (threads > 0) omp_set_num_threads(static_cast<int>(threads));
            return std::make_shared<lab::HostBackend>();
        });
}
