// Training checkpoints: everything a run needs to continue exactly where it stopped.
//
//   <run_dir>/checkpoint-<step>/model.safetensors    the model's export_state() (Hugging Face names
//                                                    and layout, loadable by transformers)
//   <run_dir>/checkpoint-<step>/trainer.safetensors  task heads ("task.*"), optimizer state
//                                                    ("optimizer.*") and, as metadata, TrainerState
//   <run_dir>/latest                                 the name of the newest complete checkpoint
//
// A checkpoint is written into a temporary folder, every file fsynced, the folder renamed, and only
// then `latest` replaced (itself atomically), so a process killed at any moment leaves the previous
// checkpoint intact. Older checkpoints are removed after the switch.
#pragma once
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "lab/module.h"
#include "lab/optimizer.h"

namespace lab {

struct TrainerState {
    int64_t step = 0;               // steps completed
    uint64_t data_position = 0;     // Task::data_position()
    uint64_t dropout_offset = 0;    // the dropout generator's offset
    std::string config_hash;        // refuses a checkpoint of another configuration
    // The partial log interval, so that train/loss after a resume averages the same steps.
    double loss_sum = 0;
    int64_t loss_count = 0;
};

std::filesystem::path save_checkpoint(const std::filesystem::path& run_dir, const Module& model, const Module& task,
                                      const Optimizer& optimizer, const TrainerState& state);

// The newest complete checkpoint folder of a run, if any.
std::optional<std::filesystem::path> latest_checkpoint(const std::filesystem::path& run_dir);

// Loads a checkpoint into already-built components. Throws DataError naming the file for a missing
// or mismatched tensor, and when the checkpoint belongs to another configuration.
TrainerState load_checkpoint(const std::filesystem::path& dir, Module& model, Module& task, Optimizer& optimizer,
                             const std::string& expected_config_hash);

// Model weights for [train] init_from, in the published layout (pass them through the model's
// import_state()). `path` is a .safetensors file, a checkpoint folder, a run folder (its latest
// checkpoint) or a Hugging Face model folder (model.safetensors). Sets `resolved` to the file
// read. Throws DataError naming the path and what was expected; a folder with only
// pytorch_model.bin is told how to convert it.
TensorMap load_model_weights(const std::filesystem::path& path, Backend& backend,
                             std::filesystem::path* resolved = nullptr);

}  // namespace lab
