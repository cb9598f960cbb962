// Helpers shared by the custom kernels: launch sizes for grid-stride loops, the strided NCHW view as
// a kernel sees it, and warp/block sums. Included by .cu files only.
#pragma once
#include <algorithm>
#include <cstdint>

#include "engine/tensor.h"
#include "kernels/cuda/cuda_check.h"

namespace cxr::cuda {

constexpr int kThreads = 256;          // threads per block of every element-wise kernel
constexpr int64_t kMaxBlocks = 65536;  // grid-stride loops cover the rest

// Blocks for a grid-stride loop over `items` (at least 1; callers skip launches for 0 items).
inline unsigned blocks_for(int64_t items, int threads = kThreads) {
  const int64_t b = (items + threads - 1) / threads;
  return unsigned(std::clamp<int64_t>(b, 1, kMaxBlocks));
}

// A tensor as kernels see it: N images of C contiguous planes of HW floats, `bstride` floats apart.
// Element i of the view (0 <= i < n*c*hw, row-major NCHW order) lives at data[offset(i)].
struct View {
  float* data;
  int64_t n, c, hw, bstride;

  __host__ __device__ int64_t count() const { return n * c * hw; }
  __device__ int64_t offset(int64_t i) const {
    const int64_t chw = c * hw;
    return (i / chw) * bstride + i % chw;
  }
  __device__ int64_t channel_of(int64_t i) const { return (i / hw) % c; }
  // Element j (0 <= j < n*hw) of channel ch, images in order.
  __device__ int64_t channel_offset(int64_t ch, int64_t j) const {
    return (j / hw) * bstride + ch * hw + j % hw;
  }
  __device__ float* plane(int64_t img, int64_t ch) const { return data + img * bstride + ch * hw; }
};

inline View view_of(const Tensor& t) { return View{t.data, t.n(), t.c(), t.h() * t.w(), t.batch_stride}; }

template <typename T>
__device__ T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  return v;  // complete in lane 0
}

// Sum of v over the block, returned to every thread. Every thread of the block must call it (it
// synchronises); blockDim.x must be a multiple of 32. Safe to call repeatedly in one kernel.
template <typename T>
__device__ T block_sum(T v) {
  __shared__ T partial[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // every thread has read partial[0] of a previous call
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < int(blockDim.x >> 5) ? partial[lane] : T(0);
    v = warp_sum(v);
    if (lane == 0) partial[0] = v;
  }
  __syncthreads();
  return partial[0];
}

// Grid-stride loop index type: int64 so that N*C*H*W beyond 2^31 is safe.
__device__ inline int64_t global_thread() { return int64_t(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ inline int64_t grid_threads() { return int64_t(gridDim.x) * blockDim.x; }

}  // namespace cxr::cuda
