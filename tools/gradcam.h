// cxr gradcam: class-specific Grad-CAM maps (Selvaraju et al., ICCV 2017) on DenseNet's final
// feature map, blended over the image as colour overlays, and the pointing game against
// bounding boxes (Zhang et al., "Top-down neural attention by excitation backprop", ECCV 2016).
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
#include <array>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/model.h"

namespace cxr::app {

// Grad-CAM maps for a model after net.forward(false), on the model's backend (custom kernels on
// CUDA, their twins on the CPU; kernels/gradcam.h). Owns its scratch buffers.
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

// ---- rendering ------------------------------------------------------------------------------

// Google's Turbo colour map (Mikhailov 2019,
// https://ai.googleblog.com/2019/08/turbo-improved-rainbow-colormap-for.html; table from
// https://gist.github.com/mikhailov-work/6a308c20e494d9e0ccc29036b28faa7a, Apache-2.0).
const std::array<std::array<uint8_t, 3>, 256>& turbo_colormap();

// RGB (h, w, 3) = (1 - alpha) * grey + alpha * turbo(map), map in [0, 1] (clamped).
std::vector<uint8_t> blend_overlay(const uint8_t* grey, const float* map, int64_t w, int64_t h, double alpha);

// A box outline (x, y, w, h in pixels) `thickness` pixels wide inside the box edge, in colour c,
// clipped to the image; rgb is (h, w, 3).
void draw_box(uint8_t* rgb, int64_t width, int64_t height, double x, double y, double bw, double bh,
              std::array<uint8_t, 3> c, int thickness);
// A small cross centred at (x, y).
void draw_cross(uint8_t* rgb, int64_t width, int64_t height, int64_t x, int64_t y, std::array<uint8_t, 3> c,
                int radius);

// ---- pointing game ------------------------------------------------------------------------------

struct PixelBox {
  double x = 0, y = 0, w = 0, h = 0;  // in map pixels
};
// The pointing game for one (image, class): a hit when the map's maximum is attained at a pixel
// whose centre lies inside one of the boxes (grown by `tolerance` pixels on each side). Every pixel
// tied for the maximum counts (no arbitrary tie-break); an all-zero map is never a hit.
bool pointing_hit(const float* map, int64_t w, int64_t h, const std::vector<PixelBox>& boxes,
                  double tolerance);
// Location (x, y) of the first maximum in row-major order.
std::array<int64_t, 2> map_peak(const float* map, int64_t w, int64_t h);

// ---- the command ------------------------------------------------------------------------------

struct GradcamOptions {
  std::string weights, out, boxes;
  std::vector<std::string> inputs;   // image files, folders (recursive) or .txt lists
  std::vector<std::string> classes;  // --class (repeatable, or comma-separated)
  int top_k = 0;                     // --top-k
  bool all = false;                  // --all
  std::string device = "auto", normalize;
  int64_t size = 0, batch = 8;
  double alpha = 0.45;      // overlay opacity of the colour map
  double threshold = 0.5;   // probability above which a boxed class counts as a true positive
  double box_frame = 1024;  // boxes' coordinate frame (official file: 1024x1024)
  double tolerance = 0;     // pointing-game tolerance, in pixels of the box frame
  bool quiet = false;
};

// Writes one overlay PNG per (image, class) into opt.out, named
// "<image stem>_<Class>_p<probability>.png", and gradcam.json (what it returns):
//   images, image_size, gradient ("logit"), colormap, maps: [{image, class, probability, file,
//   peak: [x, y], boxes: [[x, y, w, h]] (map pixels), hit}], and with --boxes pointing_game (overall
//   hit rate over (image, class) pairs with boxes), pointing_game_per_class {class: rate},
//   pointing_game_true_positive (over pairs whose probability >= threshold) and its per-class rates,
//   and pointing_game_counts {class: {pairs, hits, tp_pairs, tp_hits}}.
// Each map is printed as one line on stdout unless `print_lines` is false.
nlohmann::json gradcam(const GradcamOptions& opt, bool print_lines);
// The pointing-game table of a gradcam() result ("" without boxes).
std::string pointing_game_table(const nlohmann::json& result);

}  // namespace cxr::app
