// What the GPU really gave this process, measured outside the backend's own allocator: the device's
// memory in use, sampled, minus what was in use before this process's CUDA context existed.
//
// Note [measured device memory]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// The arena's figure (CudaBackend::peak_allocated_bytes) counts only our cudaMallocs. The device also
// holds the CUDA context, cuBLAS's and cuDNN's own workspaces and kernels, and allocator rounding.
// To count those:
//   - start() reads the device's memory in use through NVML (libnvidia-ml.so.1, opened with dlopen:
//     the driver ships it, and a build machine without a driver must still start) before the context
//     is created;
//   - sample() reads it again (NVML, or cudaMemGetInfo's total - free without NVML) and keeps the
//     maximum; the backend samples after each allocation and each synchronize, so memory a library
//     holds across steps is seen, memory it takes and frees within one launch sequence may not be;
//   - peak_bytes() is the maximum minus the first reading. Without NVML the first reading comes
//     after the context, which is then not counted; how() says which applied, and the context's size
//     when NVML could see it. The figure is the whole device's: it assumes no other process
//     allocates on the GPU meanwhile (true on the GPU check's machines).
#pragma once
#include <cstddef>
#include <string>

namespace cxr::cuda {

class DeviceMemoryMeter {
 public:
  DeviceMemoryMeter() = default;
  ~DeviceMemoryMeter();
  DeviceMemoryMeter(const DeviceMemoryMeter&) = delete;
  DeviceMemoryMeter& operator=(const DeviceMemoryMeter&) = delete;

  // Before the device's context is created (before cudaSetDevice). Never throws.
  void start(int device);
  // After the context exists. Never throws: a failed reading is skipped.
  void sample();
  size_t peak_bytes() const { return peak_used_ > baseline_ ? peak_used_ - baseline_ : 0; }
  std::string how() const;

 private:
  bool read_used(size_t* used) const;  // NVML when open, else cudaMemGetInfo

  void* nvml_library_ = nullptr;  // dlopen handle
  void* nvml_device_ = nullptr;   // nvmlDevice_t
  // nvmlDeviceGetMemoryInfo(device, nvmlMemory_t*), nvmlMemory_t being {total, free, used}.
  int (*nvml_memory_info_)(void*, unsigned long long*) = nullptr;
  bool have_baseline_ = false, startup_seen_ = false;
  size_t baseline_ = 0, peak_used_ = 0, startup_bytes_ = 0;  // startup: the context and the handles
};

}  // namespace cxr::cuda
