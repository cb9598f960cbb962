// The class activation maps' own ops: Grad-CAM's gradient pooling (Selvaraju et al., ICCV 2017),
// Grad-CAM++'s weights (Chattopadhay et al., WACV 2018), the weighted channel sum with ReLU, the
// element-wise products of HiResCAM (Draelos & Carin 2020) and LayerCAM (Jiang et al., TIP 2021),
// per-image scaling to [0, 1] and bilinear upsampling. Free functions on a Backend that
// dispatch to the CPU twins (kernels/cpu/cam_ops_cpu.cpp, the oracle, templates over float/double)
// or the CUDA kernels (kernels/cuda/cam_ops_cuda.cu). Every output is written (=), never added to.
// Buffers are device pointers of `be`; tensors are NCHW views with contiguous planes.
//
// Note [Grad-CAM upsampling convention]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Half-pixel centres, i.e. PyTorch's F.interpolate(mode="bilinear", align_corners=False), OpenCV's
// INTER_LINEAR and TF2's resize(half_pixel_centers=True): output pixel i of H samples the input at
//   s = (i + 0.5) * h / H - 0.5, clamped below at 0;  i0 = floor(s), i1 = min(i0 + 1, h - 1),
//   t = s - i0;  value = (1 - t) * in[i0] + t * in[i1]      (rows and columns alike)
// so each of the h x w feature cells covers an equal square of the image and the image's edge
// pixels take the edge cells' values (no extrapolation). Both twins compute s in double.
#pragma once
#include <cstdint>

#include "engine/backend.h"

namespace cxr {

// weights (N, C) (=) mean over (h, w) of grads (N, C, h, w): Grad-CAM's alpha_c for each image.
void gradcam_channel_weights(Backend& be, float* weights, const Tensor& grads);

// weights (N, C) (=) Grad-CAM++'s channel weights (its paper's eq. 19 with the exponential's powers
// folded in, as pytorch-grad-cam writes it), per image and channel with g = grads, A = features:
//   a_ij = g_ij^2 / (2 g_ij^2 + (sum_ab A_ab) g_ij^3 + 1e-6),  a_ij = 0 where g_ij == 0,
//   w = sum_ij max(g_ij, 0) a_ij.
void gradcam_plusplus_weights(Backend& be, float* weights, const Tensor& grads, const Tensor& features);

// cam (N, h, w) (=) max(0, sum_c weights[n, c] * features[n, c, :, :]); weights (N, C).
void gradcam_weighted_sum_relu(Backend& be, float* cam, const float* weights, const Tensor& features);

// cam (N, h, w) (=) max(0, sum_c g'[n, c, :, :] * features[n, c, :, :]), element-wise, no spatial
// pooling: g' = grads (HiResCAM) or max(grads, 0) (LayerCAM, positive_grads). grads and features
// have the same shape (their batch strides may differ).
void cam_elementwise_relu(Backend& be, float* cam, const Tensor& grads, const Tensor& features, bool positive_grads);

// cam (N, hw) (=) cam / max(cam[n]) per image, in place, so each map's maximum is 1. A map whose
// maximum is <= 0 (all zero after the ReLU) stays all zero.
void gradcam_normalize(Backend& be, float* cam, int64_t n, int64_t hw);

// out (N, out_h, out_w) (=) bilinear upsampling of in (N, h, w); Note [Grad-CAM upsampling
// convention]. Any sizes >= 1 (downsampling works too, without antialiasing).
void bilinear_resize(Backend& be, float* out, int64_t out_h, int64_t out_w, const float* in, int64_t n,
                     int64_t h, int64_t w);

namespace cpu {

// The CPU twins: plain loops, double accumulation. Same semantics as above; grads/features are
// (N, C, h, w) with contiguous planes and batch stride `bstride` (>= C*h*w).
template <typename T>
void gradcam_channel_weights(T* weights, const T* grads, int64_t n, int64_t c, int64_t hw, int64_t bstride);
template <typename T>
void gradcam_plusplus_weights(T* weights, const T* grads, int64_t g_bstride, const T* features, int64_t f_bstride,
                              int64_t n, int64_t c, int64_t hw);
template <typename T>
void gradcam_weighted_sum_relu(T* cam, const T* weights, const T* features, int64_t n, int64_t c, int64_t hw,
                               int64_t bstride);
template <typename T>
void cam_elementwise_relu(T* cam, const T* grads, int64_t g_bstride, const T* features, int64_t f_bstride,
                          int64_t n, int64_t c, int64_t hw, bool positive_grads);
template <typename T>
void gradcam_normalize(T* cam, int64_t n, int64_t hw);
template <typename T>
void bilinear_resize(T* out, int64_t out_h, int64_t out_w, const T* in, int64_t n, int64_t h, int64_t w);

}  // namespace cpu

namespace cuda {

// The CUDA kernels' launchers (kernels/cuda/cam_ops_cuda.cu), enqueued on the CudaBackend's stream.
// Only built with CXR_HAVE_CUDA; call the dispatching functions above instead.
void gradcam_channel_weights(Backend& be, float* weights, const Tensor& grads);
void gradcam_plusplus_weights(Backend& be, float* weights, const Tensor& grads, const Tensor& features);
void gradcam_weighted_sum_relu(Backend& be, float* cam, const float* weights, const Tensor& features);
void cam_elementwise_relu(Backend& be, float* cam, const Tensor& grads, const Tensor& features, bool positive_grads);
void gradcam_normalize(Backend& be, float* cam, int64_t n, int64_t hw);
void bilinear_resize(Backend& be, float* out, int64_t out_h, int64_t out_w, const float* in, int64_t n,
                     int64_t h, int64_t w);

}  // namespace cuda

}  // namespace cxr
