// Normalisation on the GPU (the CUDA twin of io::normalize_cpu, io/normalize.h: uint8 -> float,
// grey -> 3 channels, modes sample / dataset / imagenet, one kernel), pinned host memory for the
// loader's batch buffers, and the loader's device side: each batch's uint8 pixels are copied
// asynchronously on an upload stream and normalised on the compute stream.
//
// Note [batch upload ordering]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Two device slots alternate (batch j uses slot j % 2). The loader refills a pinned host buffer as
// soon as the batch after it is handed out, so before asking the loader for batch j the uploader
// waits (on the host) until batch j - 1's copy has finished. The copy of batch j into slot j % 2
// waits (on the upload stream) for an event recorded on the compute stream at the call for batch
// j - 1, i.e. after all work the caller enqueued for batch j - 2, the slot's previous user. So:
// a DeviceBatch stays valid for work enqueued on the compute stream until the call after next;
// work on another stream must be ordered after the compute stream by the caller.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "io/loader.h"
#include "io/normalize.h"

namespace cxr::cuda {

// out: (n, 3, hw) float on the device, written (=); in: (n, hw) uint8 on the device; enqueued on
// `stream`. The same arithmetic as normalize_cpu: exact integer statistics, coefficients in double
// rounded to float, then y = x * a + b as a rounded product and a rounded sum (no FMA contraction),
// so the CPU and the GPU agree to the last bit on builds without FMA contraction on the CPU.
void normalize_gpu(float* out, const uint8_t* in, int64_t n, int64_t hw, const io::NormParams& p,
                   cudaStream_t stream);

// Page-locked host memory (cudaHostAlloc / cudaFreeHost) for io::LoaderOptions::allocator.
io::HostAllocator pinned_host_allocator();

// Loader options for a GPU consumer: pinned buffers, normalisation left to the GPU.
inline io::LoaderOptions gpu_loader_options(io::LoaderOptions o) {
  o.allocator = pinned_host_allocator();
  o.normalize = false;
  return o;
}

// One batch on the device (see Note [batch upload ordering] for how long it stays valid).
struct DeviceBatch {
  int64_t size = 0;               // images (<= the loader's batch size)
  const float* input = nullptr;   // (size, 3, S, S) normalised, device
  const float* labels = nullptr;  // (size, 14) 0/1, device
  const io::Batch* host = nullptr;  // the loader's batch (indices, flips, host pixels)
};

class BatchUploader {
 public:
  // batch: the loader's batch size; image_size: S; compute: the stream the consumer works on
  // (e.g. CudaBackend::stream()). Allocates two device slots with cudaMalloc.
  BatchUploader(int64_t batch, int image_size, const io::NormParams& p, cudaStream_t compute);
  ~BatchUploader();
  BatchUploader(const BatchUploader&) = delete;
  BatchUploader& operator=(const BatchUploader&) = delete;

  // Use these instead of loader.start_epoch() / loader.next(): they keep the pinned host buffers
  // safe from refills while a copy may still read them.
  void start_epoch(io::Loader& loader, int64_t epoch) {
    finish();
    loader.start_epoch(epoch);
  }
  const DeviceBatch* next(io::Loader& loader) {
    before_next();
    const io::Batch* b = loader.next();
    if (!b) {
      finish();
      return nullptr;
    }
    return upload(*b);
  }

  // The parts of next(), for callers with their own loop: before_next() before loader.next(), then
  // upload() of its batch. finish() waits for every copy (call before restarting the loader).
  void before_next();
  const DeviceBatch* upload(const io::Batch& b);
  void finish();

 private:
  void release() noexcept;  // frees what the constructor made (logs CUDA errors, never throws)

  int64_t batch_, hw_;
  io::NormParams norm_;
  cudaStream_t compute_ = nullptr, copy_ = nullptr;
  uint8_t* pixels_[2] = {nullptr, nullptr};  // (batch, S, S)
  float* input_[2] = {nullptr, nullptr};     // (batch, 3, S, S)
  float* labels_[2] = {nullptr, nullptr};    // (batch, 14)
  cudaEvent_t copied_[2] = {nullptr, nullptr}, mark_[2] = {nullptr, nullptr};
  int64_t calls_ = 0;    // before_next() calls since construction or finish()
  int64_t uploads_ = 0;  // batches uploaded since construction or finish()
  DeviceBatch out_[2];
};

}  // namespace cxr::cuda
