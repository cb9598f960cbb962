// Class activation maps of a DenseNet on its own backend: the map computation behind `cxr gradcam`.
// Four methods (Grad-CAM, Grad-CAM++, HiResCAM, LayerCAM) at one of the network's levels or fused
// over several, all from one backward pass per class (DenseNet::explain_backward).
//
// Note [Grad-CAM of the logit]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// The map of class k uses the gradient of the class's logit z_k (before the sigmoid), not of the
// probability p_k = sigmoid(z_k). By the chain rule dp_k/dA = sigmoid'(z_k) dz_k/dA: the sigmoid's
// derivative multiplies every gradient of an image by the same positive factor. Grad-CAM's,
// HiResCAM's and LayerCAM's maps are linear in the gradient, so the scaling to [0, 1] removes it
// and the map is identical; Grad-CAM++'s weights are not (the factor enters its a_ij), which is
// why the field computes it, as pytorch-grad-cam does, on the class score itself. For a confident
// prediction sigmoid'(z) = p(1 - p) underflows towards 0 (p = 0.99999 gives 1e-5), which costs
// precision or gives an all-zero map. Logits avoid that vanishing gradient.
// At the final BN-ReLU map the gradient comes through the head only (dense layer, global average
// pool), so Grad-CAM's channel weights equal the head's column for class k divided by h*w (Grad-CAM
// = CAM there); at inner levels it comes through the rest of the network (Note [Explaining
// backward] in engine/model.h).
//
// Note [CAM scaling and fusion]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// A map of one level is its ReLU'd low-resolution map divided by its maximum (an all-zero map stays
// zero), then upsampled bilinearly (Note [Grad-CAM upsampling convention] in kernels/cam_ops.h).
// Several levels (`--layer fuse`) are combined as pytorch-grad-cam combines target layers: each
// level's map is min-max scaled, (m - min) / (max - min + 1e-7), upsampled to the output size, the
// levels are averaged, and the average is min-max scaled again. Bilinear upsampling is a convex
// combination, so scaling before or after it is the same map.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/model.h"

namespace cxr::app {

enum class CamMethod { GradCam, GradCamPlusPlus, HiResCam, LayerCam };

// "gradcam", "gradcam++", "hirescam", "layercam"; parse_cam_method throws naming the choices.
const char* cam_method_name(CamMethod m);
CamMethod parse_cam_method(const std::string& name);
const std::vector<std::string>& cam_method_names();

// The levels (DenseNet::level_activations) of a --layer name: "final" (the final BN-ReLU map),
// "block3" / "block2" (the outputs of dense blocks 3 and 2), "fuse" (final, block3 and block2);
// throws naming the choices, or when the network has too few blocks.
std::vector<int> parse_cam_layer(const std::string& name, const DenseNet& net);
const std::vector<std::string>& cam_layer_names();

class CamMaps {
 public:
  // Maps are upsampled to out_h x out_w (the model's input size for overlays).
  CamMaps(DenseNet& net, CamMethod method, std::vector<int> levels, int64_t out_h, int64_t out_w);
  ~CamMaps();
  CamMaps(const CamMaps&) = delete;
  CamMaps& operator=(const CamMaps&) = delete;

  // Maps (N, out_h, out_w) in [0, 1] (Note [CAM scaling and fusion]) for class classes[i] of image i
  // of the last forward(false); classes[i] < 0 gives an all-zero map. classes.size() must equal the
  // model's batch. One backward pass through the network for all the levels.
  std::vector<float> compute(const std::vector<int>& classes);
  // Level i's low-resolution maps (N, h_i, w_i) of the last compute(), after the ReLU and before any
  // scaling: what pytorch-grad-cam's get_cam_image gives, clipped at 0.
  std::vector<float> raw(size_t i) const;
  const std::vector<int>& levels() const { return levels_; }
  int64_t level_h(size_t i) const { return maps_[i].h; }
  int64_t level_w(size_t i) const { return maps_[i].w; }

 private:
  struct Level {
    int level = 0;
    int64_t c = 0, h = 0, w = 0;
    float *cam = nullptr, *up = nullptr;  // (N, h, w) raw; (N, out_h, out_w) upsampled
  };
  void compute_level(const Level& l, const Tensor& grads);
  std::vector<float> fuse() const;
  void release_all();

  DenseNet& net_;
  Backend& be_;
  CamMethod method_;
  std::vector<int> levels_;
  int64_t n_, k_, out_h_, out_w_;
  std::vector<Level> maps_;
  float *dlogits_ = nullptr, *weights_ = nullptr, *ping_ = nullptr, *pong_ = nullptr;
  std::vector<std::vector<float>> raw_;  // each level's raw map of the last compute(), on the host
};

}  // namespace cxr::app
