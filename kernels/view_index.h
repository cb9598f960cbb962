// Index arithmetic of a strided NCHW view (N images of C contiguous planes of HW floats, `bstride`
// floats apart), shared by the CUDA kernels (kernels/cuda/device_util.cuh) and the CPU tests of it:
// the same functions compile for host and device, so their 32-bit form is tested at its boundary on
// a machine without a GPU.
//
// Note [32-bit kernel indices]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// A 64-bit division or remainder is a software routine on the GPU (tens of instructions); a 32-bit
// one is a few. The element-wise and batch-norm kernels turn every flat index into an offset with
// two of them, so where a view allows they run on uint32_t: every flat index (< n*c*hw) and every
// offset (< (n-1)*bstride + c*hw, the span) must be at most INT32_MAX. Then a grid-stride index,
// below the count plus one grid's threads (at most 2^24), stays below 2^32 and cannot wrap.
// Larger views (batch 32 of a 1024-channel 80x80 map is 2^27.6 floats: fits; 2^31 does not) take
// the int64_t instantiation of the same kernels.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define CXR_HOST_DEVICE __host__ __device__
#else
#define CXR_HOST_DEVICE
#endif

namespace cxr {

template <typename Index>
struct ViewIndex {
  Index n, c, hw, bstride;

  CXR_HOST_DEVICE Index count() const { return n * c * hw; }
  // Offset of element i (0 <= i < count(), row-major NCHW order).
  CXR_HOST_DEVICE Index offset(Index i) const {
    const Index chw = c * hw;
    return (i / chw) * bstride + i % chw;
  }
  CXR_HOST_DEVICE Index channel_of(Index i) const { return (i / hw) % c; }
  // Offset of element j (0 <= j < n*hw) of channel ch, images in order.
  CXR_HOST_DEVICE Index channel_offset(Index ch, Index j) const {
    return (j / hw) * bstride + ch * hw + j % hw;
  }
};

// Whether a view's flat indices and offsets all fit the 32-bit path (Note [32-bit kernel indices]).
inline bool fits_32bit_index(int64_t n, int64_t c, int64_t hw, int64_t bstride) {
  const int64_t limit = INT32_MAX;
  if (n <= 0 || c <= 0 || hw <= 0) return true;              // nothing to index
  if (c > limit / hw || n > limit / (c * hw)) return false;  // count would exceed the limit
  return n == 1 || bstride <= (limit - c * hw) / (n - 1);    // span = (n-1)*bstride + c*hw
}

}  // namespace cxr
