// Class activation maps on the model's backend (tools/cam_maps.h).
#include "tools/cam_maps.h"

#include "kernels/cam_ops.h"

namespace cxr::app {

GradCam::GradCam(DenseNet& net, int64_t out_h, int64_t out_w)
    : net_(net), be_(net.backend()), n_(net.batch()), k_(net.config().classes) {
  const Shape f = net.features().shape;  // (N, C, h, w)
  c_ = f.c, h_ = f.h, w_ = f.w, out_h_ = out_h, out_w_ = out_w;
  CXR_CHECK(out_h >= 1 && out_w >= 1, "Grad-CAM output size ", out_h, "x", out_w);
  dlogits_ = static_cast<float*>(be_.allocate(sizeof(float) * size_t(n_ * k_)));
  weights_ = static_cast<float*>(be_.allocate(sizeof(float) * size_t(n_ * c_)));
  cam_ = static_cast<float*>(be_.allocate(sizeof(float) * size_t(n_ * h_ * w_)));
  up_ = static_cast<float*>(be_.allocate(sizeof(float) * size_t(n_ * out_h_ * out_w_)));
}

GradCam::~GradCam() {
  for (float* p : {dlogits_, weights_, cam_, up_})
    if (p) be_.release(p);
}

std::vector<float> GradCam::compute(const std::vector<int>& classes) {
  CXR_CHECK(int64_t(classes.size()) == n_, "Grad-CAM: ", classes.size(), " classes for a batch of ", n_);
  std::vector<float> onehot(size_t(n_ * k_), 0.0f);  // d(sum onehot * logits) = d logit_{class(i)}
  for (int64_t i = 0; i < n_; ++i) {
    const int c = classes[size_t(i)];
    CXR_CHECK(c < k_, "Grad-CAM: class ", c, " of a model with ", k_, " classes");
    if (c >= 0) onehot[size_t(i * k_ + c)] = 1.0f;
  }
  be_.copy_to_device(dlogits_, onehot.data(), sizeof(float) * onehot.size());
  const Tensor grads = net_.feature_gradients(dlogits_);  // (N, C, h, w), the network's own backward
  gradcam_channel_weights(be_, weights_, grads);
  gradcam_weighted_sum_relu(be_, cam_, weights_, net_.features());
  gradcam_normalize(be_, cam_, n_, h_ * w_);
  bilinear_resize(be_, up_, out_h_, out_w_, cam_, n_, h_, w_);
  std::vector<float> maps(size_t(n_ * out_h_ * out_w_));
  be_.copy_to_host(maps.data(), up_, sizeof(float) * maps.size());
  be_.synchronize();
  return maps;
}

std::vector<float> GradCam::low_res() const {
  std::vector<float> m(size_t(n_ * h_ * w_));
  be_.copy_to_host(m.data(), cam_, sizeof(float) * m.size());
  be_.synchronize();
  return m;
}

}  // namespace cxr::app
