// The versions of cuDNN and cuBLAS a CUDA build was compiled against and the ones it loaded, and
// whether the loaded ones can serve it. Pure functions, so the rule is tested on machines without a
// GPU; kernels/cuda/cuda_backend.cu reads the numbers (the headers' CUDNN_VERSION / CUBLAS_VER_*,
// cudnnGetVersion(), cublasGetVersion()) and applies it.
//
// Note [cuDNN version policy]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~
// The GPU machines load cuDNN from PyTorch's wheel (nvidia-cudnn-cu13), not from the toolkit we
// compiled with. Another major version has another ABI: refuse. Within 9.x NVIDIA promises no
// backward compatibility, so a loaded minor older than the headers' may lack what the build uses:
// allowed, with a warning naming both (scripts/gpu_check.sh pack builds against the wheel's own
// headers, so the two agree there).
#pragma once
#include <string>

namespace cxr {

struct LibraryVersion {
  int major = 0, minor = 0, patch = 0;
  std::string str() const;  // "9.19.0"
};

// cuDNN 9's and cuBLAS's encoding, MAJOR * 10000 + MINOR * 100 + PATCH (cudnnGetVersion(),
// CUDNN_VERSION, cublasGetVersion(), CUBLAS_VERSION).
LibraryVersion decode_library_version(long encoded);

struct VersionVerdict {
  bool refuse = false;  // the build must not run with the loaded library
  std::string message;  // empty when the loaded library is the compiled one or a newer minor
};

// The verdict for `library` ("cuDNN", "cuBLAS") compiled against `compiled` and running with `loaded`.
VersionVerdict check_library_version(const std::string& library, LibraryVersion compiled,
                                     LibraryVersion loaded);

// "cuDNN 9.19.0 (compiled 9.19.0), cuBLAS 13.1.0 (compiled 13.1.0)" for --version and backend
// names, or why there is none ("no CUDA backend in this build"). No GPU needed.
std::string cuda_library_versions();

}  // namespace cxr
