// Backend selection. The CUDA entry points live in kernels/cuda when CUDA is compiled in.
#include "engine/backend.h"
#include "engine/library_versions.h"

namespace cxr {

#ifndef CXR_HAVE_CUDA
bool cuda_compiled() { return false; }
int cuda_device_count() { return 0; }
std::string cuda_unavailable_reason() { return "this build has no CUDA backend (configured without CUDA)"; }
std::string cuda_device_bus_id(int) { return ""; }
std::string cuda_library_versions() { return "no CUDA backend in this build"; }
std::unique_ptr<Backend> make_cuda_backend(int) {
  CXR_FAIL("the CUDA backend is not compiled into this build; reconfigure with -DCXR_CUDA=ON where "
           "nvcc and cuDNN are installed");
}
#endif

std::unique_ptr<Backend> make_backend(const std::string& which) {
  if (which == "cpu") return make_cpu_backend();
  if (which == "cuda") {
    if (cuda_device_count() == 0) CXR_FAIL("--device cuda: no usable GPU: ", cuda_unavailable_reason());
    return make_cuda_backend(0);
  }
  if (which == "auto") return cuda_device_count() > 0 ? make_cuda_backend(0) : make_cpu_backend();
  CXR_FAIL("unknown device '", which, "': expected cpu, cuda or auto");
}

}  // namespace cxr
