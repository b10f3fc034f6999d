// Test-only library (build/test_plugins/test_not_plugin.so): a valid shared library that exports
// a symbol, but neither lab_plugin_abi nor lab_plugin_register. The registry must say it is not
// a labrun plugin.
#include <boost/config.hpp>

extern "C" BOOST_SYMBOL_EXPORT int test_not_plugin_answer() { return 42; }
