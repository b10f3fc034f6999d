// SHA-256 (FIPS 180-4), for run identities (hash of the resolved configuration) and plugin
// provenance (hash of the .so). Hand-written because none of the chosen libraries offers it.
#pragma once
#include <filesystem>
#include <string>
#include <string_view>

namespace lab {

std::string sha256_hex(std::string_view data);
// Throws DataError naming the file when it cannot be read.
std::string sha256_file(const std::filesystem::path& file);

}  // namespace lab
