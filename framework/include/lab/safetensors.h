// safetensors files (the format of Hugging Face and PyTorch checkpoints): an 8-byte little-endian
// header length, a JSON header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__":
// {string: string}}, then the raw little-endian tensor bytes. Hand-written because no chosen
// library reads or writes it; the JSON is nlohmann/json.
#pragma once
#include <filesystem>
#include <map>
#include <string>

#include "lab/module.h"

namespace lab {

using Metadata = std::map<std::string, std::string>;

// Writes atomically: a temporary file in the same folder, fsync, rename, fsync of the folder.
// Tensors may live on any backend and have any layout; they are written contiguous.
void save_safetensors(const std::filesystem::path& file, const TensorMap& tensors, const Metadata& metadata = {});

// Reads every tensor into `backend`. Throws DataError naming the file and what is wrong (truncated
// file, header too large, bad JSON, unknown dtype, offsets outside the data or overlapping, a
// shape that does not match its byte count).
TensorMap load_safetensors(const std::filesystem::path& file, Backend& backend, Metadata* metadata = nullptr);

// fsync a file or folder (used by every atomic write). Throws DataError on failure.
void fsync_path(const std::filesystem::path& path);

}  // namespace lab
