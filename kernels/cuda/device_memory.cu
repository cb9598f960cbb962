// Note [measured device memory] in device_memory.h.
#include <dlfcn.h>

#include <sstream>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_memory.h"

namespace cxr::cuda {

namespace {
// The few NVML declarations we use (nvml.h is not in the toolkit here); NVML's ABI for these
// entry points has been stable since driver 400.
using NvmlInit = int (*)();
using NvmlShutdown = int (*)();
using NvmlHandleByPciBusId = int (*)(const char*, void**);
using NvmlMemoryInfo = int (*)(void*, unsigned long long*);

template <typename Fn>
Fn symbol(void* library, const char* name) {
  return reinterpret_cast<Fn>(dlsym(library, name));
}
}  // namespace

DeviceMemoryMeter::~DeviceMemoryMeter() {
  if (!nvml_library_) return;
  if (auto shutdown = symbol<NvmlShutdown>(nvml_library_, "nvmlShutdown")) shutdown();
  dlclose(nvml_library_);
}

void DeviceMemoryMeter::start(int device) {
  char bus_id[64] = {};
  // A PCI bus query, not a context: the runtime creates the primary context at cudaSetDevice.
  if (cudaDeviceGetPCIBusId(bus_id, int(sizeof bus_id), device) != cudaSuccess) {
    (void)cudaGetLastError();
    return;
  }
  nvml_library_ = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!nvml_library_) return;
  auto init = symbol<NvmlInit>(nvml_library_, "nvmlInit_v2");
  auto by_bus = symbol<NvmlHandleByPciBusId>(nvml_library_, "nvmlDeviceGetHandleByPciBusId_v2");
  nvml_memory_info_ = symbol<NvmlMemoryInfo>(nvml_library_, "nvmlDeviceGetMemoryInfo");
  if (!init || !by_bus || !nvml_memory_info_ || init() != 0 || by_bus(bus_id, &nvml_device_) != 0) {
    nvml_device_ = nullptr;
    return;
  }
  have_baseline_ = read_used(&baseline_);
  peak_used_ = baseline_;
}

bool DeviceMemoryMeter::read_used(size_t* used) const {
  if (nvml_device_) {
    unsigned long long total_free_used[3] = {};
    if (nvml_memory_info_(nvml_device_, total_free_used) != 0) return false;
    *used = size_t(total_free_used[2]);
    return true;
  }
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  *used = total_bytes - free_bytes;
  return true;
}

void DeviceMemoryMeter::sample() {
  size_t used = 0;
  if (!read_used(&used)) return;
  if (!have_baseline_) {  // no NVML: the first reading after the context is the baseline
    have_baseline_ = true;
    baseline_ = peak_used_ = used;
  }
  if (!startup_seen_) {  // the backend's first sample follows the context's and handles' creation
    startup_seen_ = true;
    startup_bytes_ = used > baseline_ ? used - baseline_ : 0;
  }
  if (used > peak_used_) peak_used_ = used;
}

std::string DeviceMemoryMeter::how() const {
  std::ostringstream os;
  if (nvml_device_)
    os << "device memory in use (NVML) since before the CUDA context, the context's and library handles' "
       << (startup_bytes_ >> 20) << " MiB included";
  else
    os << "device memory in use (cudaMemGetInfo) since the CUDA context was created, the context not "
          "included "
          "(NVML unavailable)";
  return os.str();
}

}  // namespace cxr::cuda
