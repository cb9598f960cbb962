// Class activation maps of a DenseNet on its own backend: the map computation behind `cxr gradcam`.
//
// Note [Grad-CAM of the logit]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// The map of class k uses the gradient of the class's logit z_k (before the sigmoid), not of the
// probability p_k = sigmoid(z_k). By the chain rule dp_k/dA = sigmoid'(z_k) dz_k/dA: the sigmoid's
// derivative multiplies every channel weight of an image by the same positive factor, which the
// ReLU keeps and the scaling to [0, 1] removes, so the normalised map is identical; but for a
// confident prediction sigmoid'(z) = p(1 - p) underflows towards 0 (p = 0.99999 gives 1e-5), which
// costs precision or gives an all-zero map. Logits avoid that vanishing gradient.
// The gradient comes from the network's own backward through its head (DenseNet::
// feature_gradients: dense layer, global average pool); for this architecture the channel
// weights therefore equal the head's column for class k divided by h*w (Grad-CAM = CAM here).
#pragma once
#include <cstdint>
#include <vector>

#include "engine/model.h"

namespace cxr::app {


// Grad-CAM maps for a model after net.forward(false), on the model's backend (custom kernels on
// CUDA, their twins on the CPU; kernels/cam_ops.h). Owns its scratch buffers.
class GradCam {
 public:
  // Maps are upsampled to out_h x out_w (the model's input size for overlays).
  GradCam(DenseNet& net, int64_t out_h, int64_t out_w);
  ~GradCam();
  GradCam(const GradCam&) = delete;
  GradCam& operator=(const GradCam&) = delete;

  // Maps (N, out_h, out_w), each scaled to [0, 1], for class classes[i] of image i of the last
  // forward; classes[i] < 0 gives an all-zero map. classes.size() must equal the model's batch.
  std::vector<float> compute(const std::vector<int>& classes);
  // The feature-resolution maps (N, h, w), scaled to [0, 1], of the last compute().
  std::vector<float> low_res() const;
  int64_t feature_h() const { return h_; }
  int64_t feature_w() const { return w_; }

 private:
  DenseNet& net_;
  Backend& be_;
  int64_t n_, k_, c_, h_, w_, out_h_, out_w_;
  float *dlogits_ = nullptr, *weights_ = nullptr, *cam_ = nullptr, *up_ = nullptr;
};

}  // namespace cxr::app
