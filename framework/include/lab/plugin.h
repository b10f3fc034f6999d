// What a plugin library includes. A plugin is one .cpp that ends with
//
//   LAB_PLUGIN(registry) {
//       registry.add_attention({"my_attention", "1.0", "what it does", schema}, factory);
//   }
//
// which exports the ABI tag and the registration entry point that the registry looks for.
#pragma once
#include <boost/config.hpp>

#include "lab/registry.h"
#include "lab/version.h"

#define LAB_PLUGIN(registry_param)                                                           \
    static void lab_plugin_register_impl(lab::Registry& registry_param);                      \
    extern "C" BOOST_SYMBOL_EXPORT const char* lab_plugin_abi() { return LAB_ABI_TAG; }      \
    extern "C" BOOST_SYMBOL_EXPORT void lab_plugin_register(lab::Registry& r) {             \
        lab_plugin_register_impl(r);                                                         \
    }                                                                                        \
    static void lab_plugin_register_impl(lab::Registry& registry_param)
