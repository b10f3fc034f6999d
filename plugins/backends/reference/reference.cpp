// Backend `reference`: lab::HostBackend (plain C++ loops on host memory, OpenMP across rows) as a
// plugin, so that experiments can select it like any other backend.
#include <memory>
#include <string>

#include "lab/host_backend.h"
#include "lab/plugin.h"
#include "lab/threads.h"

LAB_PLUGIN(registry) {
    lab::OptionSchema schema;
    schema.integer("threads", 0, "OpenMP threads for the host kernels; 0 = all cores ([experiment] threads is its old spelling)")
        .at_least(0);
    registry.add_backend(
        {"reference", LAB_VERSION,
         "CPU backend in plain C++ (the framework's HostBackend): the reference other backends are "
         "checked against",
         schema},
        [](const lab::Options& options) -> std::shared_ptr<lab::Backend> {
            lab::set_threads(options.get_int("threads"));
            return std::make_shared<lab::HostBackend>();
        });
}
