// The work of each op of the interface (engine/backend.h), from its shapes: the one place FLOPs and
// bytes are counted, used by the profiler's table and trace (engine/profiler.h) and PERFORMANCE.md.
//
// FLOPs: a multiply-add is 2; comparisons, exp and sqrt count 1. Bytes: the minimum traffic of the
// op as implemented: every tensor read or written once per pass the op makes over it (an accumulating
// gradient is read and written; batch-norm backward reads x and dy in each of its two passes). Caches
// and the im2col buffers of a GEMM convolution are not counted, so achieved GB/s is a lower bound of
// the real traffic.
#pragma once
#include <cstdint>

#include "engine/backend.h"

namespace cxr::cost {

struct OpCost {
  double flops = 0, bytes = 0;
};

OpCost conv2d(const Shape& y, const Shape& x, const Shape& w, bool accumulate_out = false);  // any of the 3
OpCost conv2d_backward_filter(const Shape& dy, const Shape& x, const Shape& w, bool accumulate);
OpCost conv2d_backward_data(const Shape& dx, const Shape& dy, const Shape& w, bool accumulate);
OpCost batchnorm_stats(const Shape& x);
OpCost batchnorm_channels(int64_t channels);  // running update, inference statistics
OpCost batchnorm_apply(const Shape& x, bool relu);
OpCost batchnorm_backward(const Shape& x, bool relu, bool accumulate);
// The two halves of the synchronised backward (Backend::batchnorm_backward_reduce / _apply).
OpCost batchnorm_backward_reduce(const Shape& x, bool relu);
OpCost batchnorm_backward_apply(const Shape& x, bool relu, bool accumulate);
OpCost batchnorm_backward_frozen(const Shape& x, bool accumulate);
OpCost relu_forward(const Shape& x);
OpCost relu_backward(const Shape& x);
OpCost pool_forward(const Shape& y, const Shape& x, int64_t kernel);
OpCost maxpool_backward(const Shape& dx, const Shape& dy, int64_t kernel);
OpCost avgpool_backward(const Shape& dx, const Shape& dy);
OpCost global_avgpool(const Shape& x);
OpCost dense_forward(int64_t n, int64_t in, int64_t out);
OpCost dense_backward(int64_t n, int64_t in, int64_t out, bool with_dx);
OpCost elementwise(int64_t count, double flops_each, double floats_moved_each);
OpCost adam(int64_t count);

}  // namespace cxr::cost
