// Every CUDA runtime, cuBLASLt and cuDNN call goes through LAB_CUDA_CHECK, and every kernel launch
// is followed by LAB_CUDA_LAUNCHED: a failure throws lab::BackendError naming the call as written
// in the source, the library's own error name and text, and the source line, e.g.
//   backend cuda: cudaMalloc(&ptr, bytes) failed: out of memory (cudaErrorMemoryAllocation) at
//   cuda_backend.cpp:120
#pragma once
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <string>

namespace lab::cuda {

[[noreturn]] void throw_call_failed(const char* call, const std::string& what, const char* file, int line);

inline void check(cudaError_t status, const char* call, const char* file, int line) {
    if (status != cudaSuccess) {
        throw_call_failed(call, std::string(cudaGetErrorString(status)) + " (" + cudaGetErrorName(status) + ")",
                          file, line);
    }
}

inline void check(cublasStatus_t status, const char* call, const char* file, int line) {
    if (status != CUBLAS_STATUS_SUCCESS) {
        throw_call_failed(call, std::string("cuBLAS status ") + std::to_string(static_cast<int>(status)) + " (" +
                                    cublasLtGetStatusName(status) + ": " + cublasLtGetStatusString(status) + ")",
                          file, line);
    }
}

inline void check(cudnnStatus_t status, const char* call, const char* file, int line) {
    if (status != CUDNN_STATUS_SUCCESS) throw_call_failed(call, cudnnGetErrorString(status), file, line);
}

}  // namespace lab::cuda

#define LAB_CUDA_CHECK(call) ::lab::cuda::check((call), #call, __FILE__, __LINE__)
// After a <<<...>>> launch: a bad configuration (too many threads, too much shared memory) shows
// up here, naming the kernel.
#define LAB_CUDA_LAUNCHED(kernel) \
    ::lab::cuda::check(cudaGetLastError(), "the launch of kernel " kernel, __FILE__, __LINE__)
