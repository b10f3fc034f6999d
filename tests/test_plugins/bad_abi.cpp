// Test-only plugin (build/test_plugins/test_bad_abi.so): exports both entry points but claims an
// ABI tag no liblab has, as a plugin built against another version or compiler would. The
// registry must refuse it before calling lab_plugin_register. Written by hand instead of with
// LAB_PLUGIN, which would export the right tag.
#include <boost/config.hpp>

#include "lab/registry.h"

extern "C" BOOST_SYMBOL_EXPORT const char* lab_plugin_abi() { return "lab-0.0.0/gcc-1/cxx11abi-0"; }

extern "C" BOOST_SYMBOL_EXPORT void lab_plugin_register(lab::Registry& registry) {
    // Registering anything proves the ABI check failed to stop the load.
    registry.add_schedule({"test_bad_abi", "0.0", "must never be registered", {}},
                          [](const lab::Options&, const lab::ScheduleContext&) -> std::shared_ptr<lab::Schedule> {
                              return nullptr;
                          });
}
