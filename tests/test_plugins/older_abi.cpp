// Test-only plugin (build/test_plugins/test_older_abi.so): a plugin compiled against the SDK ABI
// just before this tree's (LAB_OLDER_SDK_ABI = LAB_SDK_ABI - 1, passed by CMakeLists.txt) with
// this compiler, as a plugin built against last release's installed headers would be. The registry
// must refuse it before calling lab_plugin_register, naming both numbers. Written by hand instead
// of with LAB_PLUGIN, which would export this tree's tag.
#include <boost/config.hpp>

#include "lab/registry.h"
#include "lab/version.h"

extern "C" BOOST_SYMBOL_EXPORT const char* lab_plugin_abi() { return LAB_ABI_TAG_FOR(LAB_OLDER_SDK_ABI); }

extern "C" BOOST_SYMBOL_EXPORT void lab_plugin_register(lab::Registry& registry) {
    // Registering anything proves the ABI check failed to stop the load.
    registry.add_schedule({"test_older_abi", "0.0", "must never be registered", {}},
                          [](const lab::Options&, const lab::ScheduleContext&) -> std::shared_ptr<lab::Schedule> {
                              return nullptr;
                          });
}
