// Typed errors. Library code throws these; the host (tools/labrun) maps them to exit codes and
// records the run as failed. Every message names what was wrong (file:line, key, plugin) and
// ends with a hint of what to do.
#pragma once
#include <stdexcept>
#include <string>

namespace lab {

struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};
struct ConfigError : Error { using Error::Error; };      // experiment files, overrides, options
struct PluginError : Error { using Error::Error; };      // loading, ABI tags, registry look-ups
struct DataError : Error { using Error::Error; };        // datasets, vocabularies, checkpoints
struct ShapeError : Error { using Error::Error; };       // tensor shapes/dtypes given to an op
struct BackendError : Error { using Error::Error; };     // a backend library call failed
// The device a backend computes on is not there (no GPU, no driver, a device index out of range).
struct DeviceUnavailableError : BackendError { using BackendError::BackendError; };
struct TrainingError : Error { using Error::Error; };    // NaN loss and similar run failures

}  // namespace lab
