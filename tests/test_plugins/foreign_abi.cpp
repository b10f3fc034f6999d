// Test-only plugin (build/test_plugins/test_foreign_abi.so): exports both entry points, but its ABI
// tag is not a labrun tag at all, as a library of another plugin system that happens to use the
// same symbol names would. The registry must refuse it, say that the tag is not a labrun SDK tag
// and still say how to rebuild.
#include <boost/config.hpp>

#include "lab/registry.h"

extern "C" BOOST_SYMBOL_EXPORT const char* lab_plugin_abi() { return "other-framework-3.1"; }

extern "C" BOOST_SYMBOL_EXPORT void lab_plugin_register(lab::Registry& registry) {
    // Registering anything proves the ABI check failed to stop the load.
    registry.add_schedule({"test_foreign_abi", "0.0", "must never be registered", {}},
                          [](const lab::Options&, const lab::ScheduleContext&) -> std::shared_ptr<lab::Schedule> {
                              return nullptr;
                          });
}
