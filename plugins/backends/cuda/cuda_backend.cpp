// CudaBackend: device selection, memory, copies, statistics and the plugin's registration. The
// kernels are in cuda_elementwise.cu, cuda_rows.cu and cuda_attention.cu, matmul in
// cuda_matmul.cpp, cuDNN attention in cuda_sdpa.cpp.
#include "cuda_backend.h"

#include <cublasLt.h>
#include <cudnn.h>

#include <cctype>
#include <cstdio>
#include <string>

#include "cuda_check.h"
#include "lab/error.h"
#include "lab/kernel_checks.h"
#include "lab/plugin.h"

namespace lab::cuda {

[[noreturn]] void throw_call_failed(const char* call, const std::string& what, const char* file, int line) {
    std::string where = file;
    const auto slash = where.find_last_of('/');
    if (slash != std::string::npos) where = where.substr(slash + 1);
    throw BackendError(std::string("backend cuda: ") + call + " failed: " + what + " at " + where + ":" +
                       std::to_string(line));
}

namespace {

// "13.0" from 13000 (CUDA's encoding: 1000 * major + 10 * minor).
std::string cuda_version_text(int version) {
    return std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10);
}

// "9.19.0" from cuDNN 9's encoding 10000 * major + 100 * minor + patch.
std::string cudnn_version_text(size_t version) {
    return std::to_string(version / 10000) + "." + std::to_string(version % 10000 / 100) + "." +
           std::to_string(version % 100);
}

// cuBLASLt's encoding: 10000 * major + 100 * minor + patch (130001 -> "13.0.1").
std::string cublaslt_version_text(size_t version) {
    return cudnn_version_text(version);
}

// The compute capabilities this build has device code for (CMAKE_CUDA_ARCHITECTURES, e.g. "90").
constexpr const char* kBuiltArchitectures = LAB_CUDA_ARCHITECTURES;

// True when a device of compute capability major.minor can run this build's kernels: exact
// machine code for sm_XY, or PTX of an architecture at or below it that the driver compiles.
bool runs_on(int major, int minor) {
    const int device = major * 10 + minor;
    std::string list = kBuiltArchitectures;
    for (size_t start = 0; start <= list.size();) {
        size_t end = list.find_first_of(";, ", start);
        if (end == std::string::npos) end = list.size();
        const std::string item = list.substr(start, end - start);
        if (!item.empty() && std::isdigit(static_cast<unsigned char>(item[0])) && std::stoi(item) <= device)
            return true;
        start = end + 1;
    }
    return false;
}

}  // namespace

std::string probe_device(int index, int* count) {
    *count = 0;
    const cudaError_t status = cudaGetDeviceCount(count);
    if (status != cudaSuccess) {
        (void)cudaGetLastError();  // the runtime keeps the error sticky otherwise
        *count = 0;
        return std::string(cudaGetErrorString(status)) + " (" + cudaGetErrorName(status) + ", from cudaGetDeviceCount)";
    }
    if (*count == 0) return "the CUDA runtime sees no GPU (cudaGetDeviceCount found 0 devices)";
    if (index < 0 || index >= *count)
        return "device " + std::to_string(index) + " was asked for, but there " +
               (*count == 1 ? std::string("is 1 device (index 0)")
                            : "are " + std::to_string(*count) + " devices (0 to " + std::to_string(*count - 1) + ")");
    return "";
}

CudaBackend::CudaBackend(const Settings& settings) : settings_(settings) {
    int count = 0;
    const std::string why = probe_device(settings.device, &count);
    if (!why.empty()) {
        int runtime = 0;
        (void)cudaRuntimeGetVersion(&runtime);
        throw DeviceUnavailableError("backend cuda: no CUDA device: " + why +
                                     ". The cuda backend needs an NVIDIA GPU whose driver supports "
                                     "CUDA " +
                                     cuda_version_text(runtime) +
                                     ". Hint: run this experiment with backend = onednn (CPU), or on a "
                                     "machine with a GPU (nvidia-smi lists them)" +
                                     (count > 0 ? ", or set backend.device" : std::string()) + ".");
    }
    LAB_CUDA_CHECK(cudaGetDeviceProperties(&properties_, settings.device));
    if (!runs_on(properties_.major, properties_.minor)) {
        throw DeviceUnavailableError("backend cuda: no usable CUDA device: device " + std::to_string(settings.device) +
                                     " (" + properties_.name + ") is sm_" +
                                     std::to_string(properties_.major * 10 + properties_.minor) +
                                     " but this build has kernels for sm_" + kBuiltArchitectures +
                                     " only. Hint: reconfigure with -DCMAKE_CUDA_ARCHITECTURES=" +
                                     std::to_string(properties_.major * 10 + properties_.minor) + " and rebuild.");
    }
    LAB_CUDA_CHECK(cudaSetDevice(settings.device));
    LAB_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    allocator_ = std::make_unique<CachingAllocator>(
        [](size_t bytes) -> void* {
            void* ptr = nullptr;
            const cudaError_t status = cudaMalloc(&ptr, bytes);
            if (status == cudaErrorMemoryAllocation) {
                (void)cudaGetLastError();
                return nullptr;  // the allocator frees its cached blocks and tries once more
            }
            LAB_CUDA_CHECK(status);
            return ptr;
        },
        [](void* ptr) { LAB_CUDA_CHECK(cudaFree(ptr)); });
}

CudaBackend::~CudaBackend() {
    // Work still queued may read blocks the allocator is about to free.
    if (stream_ != nullptr) (void)cudaStreamSynchronize(stream_);
    sdpa_.reset();
    matmul_.reset();
    if (allocator_) allocator_->empty_cache();
    if (stream_ != nullptr) (void)cudaStreamDestroy(stream_);
}

std::string CudaBackend::device_info() const {
    int runtime = 0, driver = 0;
    (void)cudaRuntimeGetVersion(&runtime);
    (void)cudaDriverGetVersion(&driver);
    char memory[32];
    std::snprintf(memory, sizeof memory, "%.1f GiB", static_cast<double>(properties_.totalGlobalMem) / (1 << 30));
    return std::string("cuda: ") + properties_.name + " (sm_" +
           std::to_string(properties_.major * 10 + properties_.minor) + ", " +
           std::to_string(properties_.multiProcessorCount) + " SMs, " + memory + "), device " +
           std::to_string(settings_.device) + ", driver " + cuda_version_text(driver) + ", runtime " +
           cuda_version_text(runtime) + ", cuBLASLt " + cublaslt_version_text(cublasLtGetVersion()) + ", cuDNN " +
           cudnn_version_text(cudnnGetVersion()) + (settings_.tf32 ? ", TF32 matmuls" : "");
}

std::map<std::string, std::string> CudaBackend::library_versions() const {
    int runtime = 0, driver = 0;
    (void)cudaRuntimeGetVersion(&runtime);
    (void)cudaDriverGetVersion(&driver);
    return {{"CUDA runtime", cuda_version_text(runtime)},
            {"CUDA driver", cuda_version_text(driver)},
            {"cuBLASLt", cublaslt_version_text(cublasLtGetVersion())},
            {"cuDNN", cudnn_version_text(cudnnGetVersion())}};
}

void CudaBackend::synchronize() {
    LAB_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

BackendStats CudaBackend::stats() const {
    BackendStats s;
    s.memory = allocator_->stats();
    s.primitives_created = plans_built_;
    s.primitive_cache_hits = plans_reused_;
    return s;
}

void CudaBackend::reset_peak_memory() {
    allocator_->reset_peak();
}

size_t CudaBackend::available_memory() const {
    size_t free_bytes = 0, total_bytes = 0;
    LAB_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    return free_bytes + allocator_->stats().bytes_cached;
}

std::shared_ptr<Storage> CudaBackend::alloc(size_t bytes) {
    size_t block_bytes = 0;
    void* ptr = allocator_->alloc(bytes, &block_bytes);
    CachingAllocator* cache = allocator_.get();
    // Released blocks go back to the cache, not to cudaFree: the next kernel that gets one is
    // queued on the same stream after every kernel that used it, so no synchronisation is needed.
    return std::make_shared<Storage>(ptr, block_bytes, this, [cache](void* p, size_t b) { cache->release(p, b); });
}

void CudaBackend::copy_from_host(const Tensor& dst, const void* src) {
    checks::require_contiguous("copy_from_host", "dst", dst);
    const size_t bytes = static_cast<size_t>(dst.numel()) * dtype_size(dst.dtype());
    if (bytes == 0) return;
    LAB_CUDA_CHECK(cudaMemcpyAsync(dst.raw(), src, bytes, cudaMemcpyHostToDevice, stream_));
    // The caller may free or reuse `src` as soon as this returns.
    LAB_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::copy_to_host(void* dst, const Tensor& src) {
    checks::require_contiguous("copy_to_host", "src", src);
    const size_t bytes = static_cast<size_t>(src.numel()) * dtype_size(src.dtype());
    if (bytes > 0) read_back(dst, src.raw(), bytes);
}

void CudaBackend::read_back(void* host, const void* device, size_t count) {
    LAB_CUDA_CHECK(cudaMemcpyAsync(host, device, count, cudaMemcpyDeviceToHost, stream_));
    LAB_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

}  // namespace lab::cuda

LAB_PLUGIN(registry) {
    lab::OptionSchema schema;
    schema
        .integer("device", 0,
                 "CUDA device index (as nvidia-smi numbers them, unless CUDA_VISIBLE_DEVICES says "
                 "otherwise)")
        .at_least(0);
    schema.boolean("tf32", false,
                   "f32 matmuls on TF32 tensor cores (10-bit mantissa: faster, about 1e-3 relative error); "
                   "precision = bf16 is the faster choice for training");
    schema.boolean("cudnn_attention", true,
                   "cuDNN's fused attention where it applies (precision = bf16, no dropout, window or ALiBi, "
                   "padding only at the end of each row); otherwise, and when false, the backend's own f32 "
                   "attention kernels");
    registry.add_backend(
        {"cuda", LAB_VERSION,
         "NVIDIA GPU backend (CUDA, cuBLASLt matmuls, cuDNN fused attention, own kernels for the rest; built for "
         "sm_" +
             std::string(LAB_CUDA_ARCHITECTURES) + ")",
         schema},
        [](const lab::Options& options) -> std::shared_ptr<lab::Backend> {
            lab::cuda::Settings settings;
            settings.device = static_cast<int>(options.get_int("device"));
            settings.tf32 = options.get_bool("tf32");
            settings.cudnn_attention = options.get_bool("cudnn_attention");
            return std::make_shared<lab::cuda::CudaBackend>(settings);
        });
}
