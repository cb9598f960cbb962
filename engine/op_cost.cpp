#include "engine/op_cost.h"

namespace cxr::cost {
namespace {
constexpr double kF = 4.0;  // bytes per float
double n(const Shape& s) { return static_cast<double>(s.numel()); }
}  // namespace

OpCost conv2d(const Shape& y, const Shape& x, const Shape& w, bool accumulate_out) {
  // y (N, K, P, Q) = x (N, C, H, W) * w (K, C, R, R): N K P Q C R R multiply-adds.
  return {2.0 * y.n * y.c * y.h * y.w * w.c * w.h * w.w, kF * (n(x) + n(w) + n(y) * (accumulate_out ? 2 : 1))};
}
OpCost conv2d_backward_filter(const Shape& dy, const Shape& x, const Shape& w, bool accumulate) {
  return {2.0 * dy.n * dy.c * dy.h * dy.w * w.c * w.h * w.w, kF * (n(dy) + n(x) + n(w) * (accumulate ? 2 : 1))};
}
OpCost conv2d_backward_data(const Shape& dx, const Shape& dy, const Shape& w, bool accumulate) {
  return {2.0 * dy.n * dy.c * dy.h * dy.w * w.c * w.h * w.w, kF * (n(dy) + n(w) + n(dx) * (accumulate ? 2 : 1))};
}
OpCost batchnorm_stats(const Shape& x) { return {3 * n(x), kF * n(x)}; }  // sum, sum of squares
OpCost batchnorm_channels(int64_t channels) { return {8.0 * channels, kF * 4 * channels}; }
OpCost batchnorm_apply(const Shape& x, bool relu) { return {(relu ? 3 : 2) * n(x), kF * 2 * n(x)}; }
OpCost batchnorm_backward(const Shape& x, bool relu, bool accumulate) {
  // Pass 1: sums of dy and dy * xhat (xhat: 2, products and sums: 3); pass 2: dx (5); the fused ReLU
  // recomputes the forward output's sign (3). Reads x and dy in both passes.
  return {(relu ? 13 : 10) * n(x), kF * (4 * n(x) + n(x) * (accumulate ? 2 : 1))};
}
// batchnorm_backward's two passes as separate ops: their bytes add up to its bytes, and their FLOPs
// too without the ReLU; with it each half recomputes the forward output's sign (3), which
// batchnorm_backward counts once.
OpCost batchnorm_backward_reduce(const Shape& x, bool relu) { return {(relu ? 8 : 5) * n(x), kF * 2 * n(x)}; }
OpCost batchnorm_backward_apply(const Shape& x, bool relu, bool accumulate) {
  return {(relu ? 8 : 5) * n(x), kF * (2 * n(x) + n(x) * (accumulate ? 2 : 1))};
}
OpCost batchnorm_backward_frozen(const Shape& x, bool accumulate) {
  // The forward's sign (3) and dy * scale (1); reads x and dy once.
  return {4 * n(x), kF * (2 * n(x) + n(x) * (accumulate ? 2 : 1))};
}
OpCost relu_forward(const Shape& x) { return {n(x), kF * 2 * n(x)}; }
OpCost relu_backward(const Shape& x) { return {n(x), kF * 3 * n(x)}; }
OpCost pool_forward(const Shape& y, const Shape& x, int64_t kernel) {
  return {n(y) * double(kernel * kernel), kF * (n(x) + n(y))};
}
OpCost maxpool_backward(const Shape& dx, const Shape& dy, int64_t kernel) {
  // Reads x again to find each window's maximum.
  return {n(dy) * double(kernel * kernel), kF * (2 * n(dx) + n(dy))};
}
OpCost avgpool_backward(const Shape& dx, const Shape& dy) { return {n(dx), kF * (n(dx) + n(dy))}; }
OpCost global_avgpool(const Shape& x) { return {n(x), kF * (n(x) + double(x.n * x.c))}; }
OpCost dense_forward(int64_t N, int64_t in, int64_t out) {
  return {2.0 * N * in * out, kF * (double(N * in) + double(in * out) + double(out) + double(N * out))};
}
OpCost dense_backward(int64_t N, int64_t in, int64_t out, bool with_dx) {
  const double gemm = 2.0 * N * in * out;
  return {gemm * (with_dx ? 2 : 1) + double(N * out),
          kF * (double(N * out) + double(N * in) + 2.0 * in * out + double(out) + (with_dx ? double(N * in) : 0))};
}
OpCost elementwise(int64_t count, double flops_each, double floats_moved_each) {
  return {flops_each * double(count), kF * floats_moved_each * double(count)};
}
// g = grad + wd p; m, v updates; the bias-corrected step: about 12 FLOPs; reads p, m, v, grad, writes p, m, v.
OpCost adam(int64_t count) { return elementwise(count, 12, 7); }

}  // namespace cxr::cost
