// The normalisation kernel (CUDA twin of io::normalize_cpu), the pinned host allocator and the
// loader's asynchronous batch upload. See kernels/cuda/normalize_cuda.h.
#include <cmath>
#include <string>

#include "engine/error.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/normalize_cuda.h"

namespace cxr::cuda {

namespace {

constexpr int kNormThreads = 512;  // one block per image: the statistics are a block reduction

// Block b handles images b, b + gridDim.x, ...: in sample mode it first sums the image's pixels and
// their squares exactly (integers), then thread 0 derives the coefficients in double exactly as
// io::norm_coefficients does; every thread then writes its pixels to the 3 channel planes.
// fixed_a/fixed_b: the coefficients of the dataset and imagenet modes (unused in sample mode).
__global__ void normalize_kernel(float* __restrict__ out, const uint8_t* __restrict__ in, int64_t n, int64_t hw,
                                 bool sample, float3 fixed_a, float3 fixed_b) {
  __shared__ float coef[6];  // a[3], b[3]
  for (int64_t img = blockIdx.x; img < n; img += gridDim.x) {
    const uint8_t* x = in + img * hw;
    float* y = out + img * 3 * hw;
    if (sample) {
      unsigned long long s = 0, s2 = 0;
      for (int64_t j = threadIdx.x; j < hw; j += blockDim.x) {
        const unsigned long long v = x[j];
        s += v, s2 += v * v;
      }
      s = block_sum(s);
      s2 = block_sum(s2);
      if (threadIdx.x == 0) {
        // io::pixel_mean_std, then io::norm_coefficients (1e-7 = io::kNormEps).
        const double total = double(hw);
        const double mean = double(s) / total;
        const double var = double(s2) / total - mean * mean;
        const double sd = sqrt(var > 0.0 ? var : 0.0);
        const double inv = 1.0 / (sd + double(1e-7f));
        const float a = float(inv), b = float(-mean * inv);
        coef[0] = coef[1] = coef[2] = a;
        coef[3] = coef[4] = coef[5] = b;
      }
    } else if (threadIdx.x == 0) {
      coef[0] = fixed_a.x, coef[1] = fixed_a.y, coef[2] = fixed_a.z;
      coef[3] = fixed_b.x, coef[4] = fixed_b.y, coef[5] = fixed_b.z;
    }
    __syncthreads();
    const float a0 = coef[0], a1 = coef[1], a2 = coef[2], b0 = coef[3], b1 = coef[4], b2 = coef[5];
    for (int64_t j = threadIdx.x; j < hw; j += blockDim.x) {
      const float v = float(x[j]);
      // A rounded product and a rounded sum, as the CPU's x * a + b (no FMA contraction).
      y[j] = __fadd_rn(__fmul_rn(v, a0), b0);
      y[hw + j] = __fadd_rn(__fmul_rn(v, a1), b1);
      y[2 * hw + j] = __fadd_rn(__fmul_rn(v, a2), b2);
    }
    __syncthreads();  // coef is rewritten for the block's next image
  }
}

}  // namespace

void normalize_gpu(float* out, const uint8_t* in, int64_t n, int64_t hw, const io::NormParams& p,
                   cudaStream_t stream) {
  CXR_CHECK(n >= 0 && hw > 0, "normalize_gpu: n ", n, " hw ", hw);
  if (n == 0) return;
  float a[3] = {0, 0, 0}, b[3] = {0, 0, 0};
  const bool sample = p.mode == io::NormMode::Sample;
  if (!sample) io::norm_fixed_coefficients(p, a, b);
  const unsigned blocks = unsigned(std::min<int64_t>(n, kMaxBlocks));
  normalize_kernel<<<blocks, kNormThreads, 0, stream>>>(out, in, n, hw, sample, make_float3(a[0], a[1], a[2]),
                                                        make_float3(b[0], b[1], b[2]));
  CXR_CUDA_CHECK_LAUNCH();
}

io::HostAllocator pinned_host_allocator() {
  return {[](size_t bytes) -> void* {
            void* p = nullptr;
            CXR_CUDA_CHECK(cudaHostAlloc(&p, bytes, cudaHostAllocPortable));
            return p;
          },
          [](void* p) { CXR_CUDA_LOG(cudaFreeHost(p)); }};
}

BatchUploader::BatchUploader(int64_t batch, int image_size, const io::NormParams& p, cudaStream_t compute)
    : batch_(batch), hw_(int64_t(image_size) * image_size), norm_(p), compute_(compute) {
  CXR_CHECK(batch > 0 && image_size > 0, "BatchUploader: batch ", batch, " image size ", image_size);
  try {
    CXR_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_, cudaStreamNonBlocking));
    for (int s = 0; s < 2; ++s) {
      CXR_CUDA_CHECK(cudaMalloc(&pixels_[s], size_t(batch_ * hw_)));
      CXR_CUDA_CHECK(cudaMalloc(&input_[s], size_t(batch_ * 3 * hw_) * sizeof(float)));
      CXR_CUDA_CHECK(cudaMalloc(&labels_[s], size_t(batch_ * io::kNumClasses) * sizeof(float)));
      CXR_CUDA_CHECK(cudaEventCreateWithFlags(&copied_[s], cudaEventDisableTiming));
      CXR_CUDA_CHECK(cudaEventCreateWithFlags(&mark_[s], cudaEventDisableTiming));
    }
  } catch (...) {
    release();
    throw;
  }
}

BatchUploader::~BatchUploader() { release(); }

void BatchUploader::release() noexcept {
  if (copy_) CXR_CUDA_LOG(cudaStreamSynchronize(copy_));
  for (int s = 0; s < 2; ++s) {
    if (pixels_[s]) CXR_CUDA_LOG(cudaFree(pixels_[s]));
    if (input_[s]) CXR_CUDA_LOG(cudaFree(input_[s]));
    if (labels_[s]) CXR_CUDA_LOG(cudaFree(labels_[s]));
    if (copied_[s]) CXR_CUDA_LOG(cudaEventDestroy(copied_[s]));
    if (mark_[s]) CXR_CUDA_LOG(cudaEventDestroy(mark_[s]));
    pixels_[s] = nullptr, input_[s] = nullptr, labels_[s] = nullptr, copied_[s] = nullptr, mark_[s] = nullptr;
  }
  if (copy_) CXR_CUDA_LOG(cudaStreamDestroy(copy_));
  copy_ = nullptr;
}

void BatchUploader::before_next() {
  CXR_CHECK(calls_ == uploads_, "BatchUploader: before_next() twice without upload()");
  const int64_t j = uploads_;  // the batch about to be fetched
  // Batch j - 1's host buffer is refilled once the loader hands out batch j: its copy must be over.
  if (j >= 1) CXR_CUDA_CHECK(cudaEventSynchronize(copied_[(j - 1) % 2]));
  // E_j: everything the caller has enqueued so far (through batch j - 1). Batch j + 1's copy waits on it.
  CXR_CUDA_CHECK(cudaEventRecord(mark_[j % 2], compute_));
  ++calls_;
}

const DeviceBatch* BatchUploader::upload(const io::Batch& b) {
  CXR_CHECK(calls_ == uploads_ + 1, "BatchUploader: upload() without before_next()");
  CXR_CHECK(b.size > 0 && b.size <= batch_, "BatchUploader: batch of ", b.size, " images, capacity ", batch_);
  CXR_CHECK(b.pixels && b.labels, "BatchUploader: batch without pixels or labels");
  const int64_t j = uploads_;
  const int s = int(j % 2);
  // Slot s was last used by batch j - 2, whose work E_{j-1} covers (Note [batch upload ordering]).
  if (j >= 2) CXR_CUDA_CHECK(cudaStreamWaitEvent(copy_, mark_[(j - 1) % 2], 0));
  CXR_CUDA_CHECK(cudaMemcpyAsync(pixels_[s], b.pixels, size_t(b.size * hw_), cudaMemcpyHostToDevice, copy_));
  CXR_CUDA_CHECK(cudaMemcpyAsync(labels_[s], b.labels, size_t(b.size * io::kNumClasses) * sizeof(float),
                                 cudaMemcpyHostToDevice, copy_));
  CXR_CUDA_CHECK(cudaEventRecord(copied_[s], copy_));
  CXR_CUDA_CHECK(cudaStreamWaitEvent(compute_, copied_[s], 0));
  normalize_gpu(input_[s], pixels_[s], b.size, hw_, norm_, compute_);
  ++uploads_;
  out_[s] = DeviceBatch{b.size, input_[s], labels_[s], &b};
  return &out_[s];
}

void BatchUploader::finish() {
  CXR_CUDA_CHECK(cudaStreamSynchronize(copy_));
  // Later copies into either slot wait for everything enqueued on the compute stream so far.
  CXR_CUDA_CHECK(cudaEventRecord(mark_[0], compute_));
  CXR_CUDA_CHECK(cudaStreamWaitEvent(copy_, mark_[0], 0));
  calls_ = uploads_ = 0;
}

}  // namespace cxr::cuda
