// cxr gradcam: class-specific activation maps (tools/cam_maps.h) blended over the images
// (tools/overlay.h) and scored against bounding boxes (tools/cam_scores.h).
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace cxr::app {

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
