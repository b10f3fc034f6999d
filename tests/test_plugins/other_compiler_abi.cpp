// Test-only plugin (build/test_plugins/test_other_compiler_abi.so): this tree's SDK ABI number but
// another compiler's ABI (GCC 1, the old libstdc++ string ABI), as a plugin compiled against the
// right headers by the wrong compiler would be. The registry must refuse it, naming both compiler
// ABIs. Written by hand instead of with LAB_PLUGIN, which would export this compiler's tag.
#include <boost/config.hpp>

#include "lab/registry.h"
#include "lab/version.h"

extern "C" BOOST_SYMBOL_EXPORT const char* lab_plugin_abi() {
    return "lab-sdk" LAB_STRINGIFY(LAB_SDK_ABI) "/gcc-1/cxx11abi-0";
}

extern "C" BOOST_SYMBOL_EXPORT void lab_plugin_register(lab::Registry& registry) {
    // Registering anything proves the ABI check failed to stop the load.
    registry.add_schedule({"test_other_compiler_abi", "0.0", "must never be registered", {}},
                          [](const lab::Options&, const lab::ScheduleContext&) -> std::shared_ptr<lab::Schedule> {
                              return nullptr;
                          });
}
