// Localisation scores of class activation maps against bounding boxes, as the literature scores
// them: the pointing game (Zhang et al., "Top-down neural attention by excitation backprop", ECCV
// 2016), the energy-based pointing game (Wang et al., "Score-CAM", CVPRW 2020), and the box from the
// thresholded map scored by IoU and by IoBB (Wang et al., "ChestX-ray8", CVPR 2017, Table 4).
//
// Maps are float, row-major, w x h, values >= 0 (after the ReLU); boxes are in map pixels, pixel
// (x, y) covering [x, x+1) x [y, y+1). A pixel is "inside" a box when its centre (x+0.5, y+0.5) lies
// in the closed box. All functions are plain CPU loops with double accumulation.
#pragma once
#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace cxr::app {

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

// Energy-based pointing game: the share of the map's positive mass at pixels whose centre lies in
// any of the boxes (their union: a pixel counts once). An all-zero map gives 0.
double energy_inside(const float* map, int64_t w, int64_t h, const std::vector<PixelBox>& boxes);

// The box of a thresholded map: pixels >= fraction * max (fraction in (0, 1]), their largest
// 8-connected component (a diagonal touch joins), its bounding box in pixel units
// {x0, y0, x1 - x0 + 1, y1 - y0 + 1}. Ties in size go to the component holding the first pixel in
// row-major order. Returns false (out untouched) when the map's maximum is not > 0.
bool cam_box(const float* map, int64_t w, int64_t h, double fraction, PixelBox* out);

// Intersection over union of two boxes; 0 when either has no area.
double box_iou(const PixelBox& a, const PixelBox& b);
// IoBB (Wang et al. 2017): area(truth ∩ predicted) / area(predicted); 0 when predicted has no area.
double box_iobb(const PixelBox& truth, const PixelBox& predicted);

// All scores of one (image, class) with boxes. iou and iobb are the maximum over the class's boxes,
// 0 when cam_box finds nothing (has_box false). The energy ignores `tolerance` (the boxes as given).
struct PairScore {
  bool hit = false;
  double energy = 0, iou = 0, iobb = 0;
  bool has_box = false;
};
PairScore score_pair(const float* map, int64_t w, int64_t h, const std::vector<PixelBox>& boxes,
                     double tolerance, double cam_fraction);

// The IoU/IoBB thresholds T of "share of boxes found at T" (found: score >= T), Wang et al.'s Table 4.
inline constexpr std::array<double, 5> kFoundThresholds = {0.1, 0.25, 0.5, 0.75, 0.9};

// Per-class and overall localisation scores over all pairs and over true positives (pairs whose
// class probability >= prob_threshold; the caller decides and passes true_positive). to_json():
//   {"pairs": N, "tp_pairs": M, "threshold": p, "cam_threshold": f, "iobb_thresholds": [0.1, ...],
//    "overall": {"all": S, "true_positive": S}, "per_class": {"<Class>": {"all": S, "true_positive": S}}}
//   S = {"pairs": n, "pointing_game": rate, "energy_pointing_game": mean, "iou_mean": mean,
//        "iobb_mean": mean, "iou_found": {"0.1": share, ...}, "iobb_found": {"0.1": share, ...}}
// Every rate, mean and share is null when n = 0.
class LocalisationTally {
 public:
  explicit LocalisationTally(double prob_threshold, double cam_fraction);
  void add(const std::string& cls, const PairScore& s, bool true_positive);
  nlohmann::json to_json() const;

  struct Sums {
    int64_t n = 0, hits = 0;
    double energy = 0, iou = 0, iobb = 0;
    std::array<int64_t, kFoundThresholds.size()> iou_found{}, iobb_found{};
    void add(const PairScore& s);
    nlohmann::json to_json() const;
  };

 private:
  struct Split {
    Sums all, tp;
  };
  double prob_threshold_, cam_fraction_;
  Split overall_;
  std::vector<std::pair<std::string, Split>> per_class_;  // in order of first appearance
};

// A plain-text table of a LocalisationTally::to_json() object: one row per class and an overall row
// with pairs, pointing game, energy PG, IoBB found at 0.1/0.25/0.5 (all pairs) and the true-positive
// pairs and pointing game. "-" where a value is null.
std::string localisation_table(const nlohmann::json& localisation);

}  // namespace cxr::app
