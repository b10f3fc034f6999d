#include "lab/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "lab/backend.h"
#include "lab/error.h"

namespace lab {

namespace {

const char* safetensors_dtype(DType t) {
    switch (t) {
        case DType::f32: return "F32";
        case DType::bf16: return "BF16";
        case DType::f16: return "F16";
        case DType::i32: return "I32";
        case DType::i64: return "I64";
        case DType::u8: return "U8";
    }
    return "?";
}

bool parse_dtype(const std::string& name, DType* out) {
    static const std::map<std::string, DType> table = {{"F32", DType::f32}, {"BF16", DType::bf16},
                                                       {"F16", DType::f16}, {"I32", DType::i32},
                                                       {"I64", DType::i64}, {"U8", DType::u8}};
    auto it = table.find(name);
    if (it == table.end()) return false;
    *out = it->second;
    return true;
}

// Header sizes above this are refused: a corrupt length must not make us allocate gigabytes.
constexpr uint64_t kMaxHeaderBytes = 100u << 20;

}  // namespace

void fsync_path(const std::filesystem::path& path) {
    int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0) throw DataError("cannot open '" + path.string() + "' to sync it: " + std::strerror(errno));
    int rc = ::fsync(fd);
    int err = errno;
    ::close(fd);
    if (rc != 0) throw DataError("fsync of '" + path.string() + "' failed: " + std::strerror(err));
}

void save_safetensors(const std::filesystem::path& file, const TensorMap& tensors, const Metadata& metadata) {
    nlohmann::json header = nlohmann::json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    std::vector<std::pair<const Tensor*, uint64_t>> order;
    uint64_t offset = 0;
    for (const auto& [name, t] : tensors) {
        if (name == "__metadata__") throw DataError("a tensor may not be named __metadata__");
        uint64_t bytes = static_cast<uint64_t>(t.numel()) * dtype_size(t.dtype());
        header[name] = {{"dtype", safetensors_dtype(t.dtype())},
                        {"shape", t.shape()},
                        {"data_offsets", {offset, offset + bytes}}};
        order.emplace_back(&t, bytes);
        offset += bytes;
    }
    std::string text = header.dump();
    text.append((8 - text.size() % 8) % 8, ' ');  // align the data to 8 bytes, as the reference writer does

    std::filesystem::path tmp = file;
    tmp += ".tmp-" + std::to_string(::getpid());
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        if (!out) throw DataError("cannot write '" + tmp.string() + "': " + std::strerror(errno));
        uint64_t n = text.size();
        unsigned char len[8];
        for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
        out.write(reinterpret_cast<const char*>(len), 8);
        out.write(text.data(), static_cast<std::streamsize>(text.size()));
        std::vector<char> buffer;
        for (const auto& [t, bytes] : order) {
            buffer.resize(bytes);
            if (bytes) t->backend().copy_to_host(buffer.data(), t->contiguous_copy());
            out.write(buffer.data(), static_cast<std::streamsize>(bytes));
        }
        out.flush();
        if (!out) {
            std::filesystem::remove(tmp);
            throw DataError("writing '" + tmp.string() + "' failed (disk full?)");
        }
    }
    fsync_path(tmp);
    std::filesystem::rename(tmp, file);
    fsync_path(file.parent_path().empty() ? std::filesystem::path(".") : file.parent_path());
}

TensorMap load_safetensors(const std::filesystem::path& file, Backend& backend, Metadata* metadata) {
    auto fail = [&](const std::string& what) {
        return DataError("safetensors file '" + file.string() + "': " + what);
    };
    std::ifstream in(file, std::ios::binary);
    if (!in) throw DataError("cannot read safetensors file '" + file.string() + "': " + std::strerror(errno));
    std::error_code ec;
    uint64_t file_size = std::filesystem::file_size(file, ec);
    unsigned char len[8];
    if (!in.read(reinterpret_cast<char*>(len), 8)) throw fail("shorter than its 8-byte header length");
    uint64_t header_size = 0;
    for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | len[i];
    if (header_size > kMaxHeaderBytes || 8 + header_size > file_size)
        throw fail("header length " + std::to_string(header_size) + " does not fit the file of " +
                   std::to_string(file_size) + " bytes (truncated or not a safetensors file)");
    std::string text(header_size, '\0');
    in.read(text.data(), static_cast<std::streamsize>(header_size));
    nlohmann::json header;
    try {
        header = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        throw fail(std::string("header is not valid JSON: ") + e.what());
    }
    if (!header.is_object()) throw fail("header is not a JSON object");
    uint64_t data_size = file_size - 8 - header_size;
    std::vector<char> data(data_size);
    if (data_size && !in.read(data.data(), static_cast<std::streamsize>(data_size))) throw fail("data is truncated");

    TensorMap out;
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    for (const auto& [name, entry] : header.items()) {
        if (name == "__metadata__") {
            if (metadata) {
                if (!entry.is_object()) throw fail("__metadata__ is not an object");
                for (const auto& [k, v] : entry.items()) {
                    if (!v.is_string()) throw fail("__metadata__ value of '" + k + "' is not a string");
                    (*metadata)[k] = v.get<std::string>();
                }
            }
            continue;
        }
        DType dtype;
        if (!entry.is_object() || !entry.contains("dtype") || !entry["dtype"].is_string() || !entry.contains("shape") ||
            !entry["shape"].is_array() || !entry.contains("data_offsets") || !entry["data_offsets"].is_array() ||
            entry["data_offsets"].size() != 2)
            throw fail("entry '" + name + "' needs dtype, shape and data_offsets [begin, end]");
        if (!parse_dtype(entry["dtype"].get<std::string>(), &dtype))
            throw fail("entry '" + name + "' has dtype '" + entry["dtype"].get<std::string>() +
                       "' (supported: F32, BF16, F16, I32, I64, U8)");
        Shape shape;
        for (const auto& d : entry["shape"]) {
            if (!d.is_number_unsigned()) throw fail("entry '" + name + "' has a shape entry that is not a size");
            shape.push_back(d.get<int64_t>());
        }
        uint64_t begin = entry["data_offsets"][0].get<uint64_t>(), end = entry["data_offsets"][1].get<uint64_t>();
        uint64_t expected = static_cast<uint64_t>(shape_numel(shape)) * dtype_size(dtype);
        if (begin > end || end > data_size)
            throw fail("entry '" + name + "' has data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                       "] outside the " + std::to_string(data_size) + " data bytes");
        if (end - begin != expected)
            throw fail("entry '" + name + "' has " + std::to_string(end - begin) + " bytes but shape " +
                       shape_str(shape) + " of " + dtype_name(dtype) + " needs " + std::to_string(expected));
        ranges.emplace_back(begin, end);
        out.emplace(name, Tensor::from_host(backend, shape, dtype, data.data() + begin));
    }
    std::sort(ranges.begin(), ranges.end());
    for (size_t i = 1; i < ranges.size(); ++i)
        if (ranges[i].first < ranges[i - 1].second) throw fail("two tensors share data bytes (overlapping offsets)");
    return out;
}

}  // namespace lab
