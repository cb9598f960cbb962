// Helpers shared by the custom kernels: launch sizes for grid-stride loops, the strided NCHW view as
// a kernel sees it, and warp/block sums. Included by .cu files only.
#pragma once
#include <algorithm>
#include <cstdint>
#include <initializer_list>

#include "engine/tensor.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/view_index.h"

namespace cxr::cuda {

constexpr int kThreads = 256;          // threads per block of every element-wise kernel
constexpr int64_t kMaxBlocks = 65536;  // grid-stride loops cover the rest

// Blocks for a grid-stride loop over `items` (at least 1; callers skip launches for 0 items).
inline unsigned blocks_for(int64_t items, int threads = kThreads) {
  const int64_t b = (items + threads - 1) / threads;
  return unsigned(std::clamp<int64_t>(b, 1, kMaxBlocks));
}

// A tensor as kernels see it: ViewIndex's arithmetic (kernels/view_index.h) on its data pointer,
// in Index (uint32_t where fits_32bit_index allows, else int64_t: Note [32-bit kernel indices]).
template <typename Index>
struct ViewT : ViewIndex<Index> {
  float* data;
  __device__ float* plane(Index img, Index ch) const { return data + img * this->bstride + ch * this->hw; }
};
using View = ViewT<int64_t>;

template <typename Index = int64_t>
ViewT<Index> view_of(const Tensor& t) {
  return ViewT<Index>{{Index(t.n()), Index(t.c()), Index(t.h() * t.w()), Index(t.batch_stride)}, t.data};
}

inline bool fits_32bit_index(const Tensor& t) {
  return cxr::fits_32bit_index(t.n(), t.c(), t.h() * t.w(), t.batch_stride);
}

// Calls launch(uint32_t{}) when every view fits 32-bit indices, else launch(int64_t{}); `launch`
// instantiates its kernels on the tag's type (a generic lambda).
template <typename Launch>
void with_index_type(std::initializer_list<const Tensor*> views, Launch launch) {
  bool narrow = true;
  for (const Tensor* t : views) narrow = narrow && fits_32bit_index(*t);
  if (narrow)
    launch(uint32_t{});
  else
    launch(int64_t{});
}

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

// Grid-stride loop indices, int64 by default so that N*C*H*W beyond 2^31 is safe; uint32_t for the
// kernels' 32-bit path (Note [32-bit kernel indices]: the grid has at most 2^24 threads).
template <typename Index = int64_t>
__device__ inline Index global_thread() {
  return Index(blockIdx.x) * Index(blockDim.x) + Index(threadIdx.x);
}
template <typename Index = int64_t>
__device__ inline Index grid_threads() {
  return Index(gridDim.x) * Index(blockDim.x);
}

}  // namespace cxr::cuda
