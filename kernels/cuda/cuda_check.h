// Error checks for the CUDA backend: one [[noreturn]] reporter that throws cxr::Error with the
// failing statement's text, file, line and the library's error string, and one family of macros on
// it (CUDA runtime, cuDNN, cuBLAS, kernel launches). Destructors use the _LOG variants, which print
// to stderr and never throw.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#ifdef CXR_CUDNN_HEADER_VERSION  // set by CMake from CUDNN_INCLUDE_DIR/cudnn_version.h
static_assert(CUDNN_VERSION == CXR_CUDNN_HEADER_VERSION,
              "cudnn.h is not the one CMake found (CUDNN_INCLUDE_DIR): another cuDNN's headers come first");
#endif

namespace cxr::cuda {

// Throws cxr::Error "file:line: <library> call `stmt` failed: <code> (<message>)".
[[noreturn]] void report_failure(const char* library, const char* stmt, const char* file, int line, int code,
                                 const char* message);
// The same text on stderr, for destructors and other places that must not throw.
void log_failure(const char* library, const char* stmt, const char* file, int line, int code,
                 const char* message);

inline bool failed(cudaError_t e) { return e != cudaSuccess; }
inline bool failed(cudnnStatus_t s) { return s != CUDNN_STATUS_SUCCESS; }
inline bool failed(cublasStatus_t s) { return s != CUBLAS_STATUS_SUCCESS; }
inline const char* message(cudaError_t e) { return cudaGetErrorString(e); }
inline const char* message(cudnnStatus_t s) { return cudnnGetErrorString(s); }
inline const char* message(cublasStatus_t s) { return cublasGetStatusString(s); }

}  // namespace cxr::cuda

// The one generic check every named check below expands to.
#define CXR_GPU_CHECK_IMPL_(library, stmt)                                                           \
  do {                                                                                               \
    const auto cxr_status_ = (stmt);                                                                 \
    if (::cxr::cuda::failed(cxr_status_))                                                            \
      ::cxr::cuda::report_failure(library, #stmt, __FILE__, __LINE__, static_cast<int>(cxr_status_), \
                                  ::cxr::cuda::message(cxr_status_));                                \
  } while (0)

#define CXR_GPU_LOG_IMPL_(library, stmt)                                                          \
  do {                                                                                            \
    const auto cxr_status_ = (stmt);                                                              \
    if (::cxr::cuda::failed(cxr_status_))                                                         \
      ::cxr::cuda::log_failure(library, #stmt, __FILE__, __LINE__, static_cast<int>(cxr_status_), \
                               ::cxr::cuda::message(cxr_status_));                                \
  } while (0)

#define CXR_CUDA_CHECK(stmt) CXR_GPU_CHECK_IMPL_("CUDA", stmt)
#define CXR_CUDNN_CHECK(stmt) CXR_GPU_CHECK_IMPL_("cuDNN", stmt)
#define CXR_CUBLAS_CHECK(stmt) CXR_GPU_CHECK_IMPL_("cuBLAS", stmt)
// After every kernel launch: a bad configuration or a sticky error from earlier work shows up here.
#define CXR_CUDA_CHECK_LAUNCH() CXR_GPU_CHECK_IMPL_("CUDA kernel launch", cudaGetLastError())

// Destructor variants: report on stderr, never throw.
#define CXR_CUDA_LOG(stmt) CXR_GPU_LOG_IMPL_("CUDA", stmt)
#define CXR_CUDNN_LOG(stmt) CXR_GPU_LOG_IMPL_("cuDNN", stmt)
#define CXR_CUBLAS_LOG(stmt) CXR_GPU_LOG_IMPL_("cuBLAS", stmt)
