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
  double alpha = 0.45;             // overlay opacity of the colour map
  double threshold = 0.5;          // probability above which a boxed class counts as a true positive
  double box_frame = 1024;         // boxes' coordinate frame (official file: 1024x1024)
  double tolerance = 0;            // pointing-game tolerance, in pixels of the box frame
  std::string method = "gradcam";  // --method: gradcam, gradcam++, hirescam, layercam (tools/cam_maps.h)
  std::string layer = "final";     // --layer: final, block3, block2, fuse
  double cam_threshold =
      0.15;                   // --cam-threshold: the map's box is where it reaches this share of its maximum
  double delete_percent = 0;  // --faithfulness P: delete the map's top P% of pixels (0: off)
  uint64_t seed = 1;          // the random pixels of the faithfulness test
  bool quiet = false;
};

// Writes one overlay PNG per (image, class) into opt.out, named
// "<image stem>_<Class>_p<probability>.png", and gradcam.json (what it returns):
//   images, image_size, method, layer, levels [[h, w]...], gradient ("logit"), colormap,
//   maps: [{image, class, probability, file, peak: [x, y], and with boxes: boxes [[x, y, w, h]] (map
//   pixels), hit, energy, iou, iobb, cam_box}];
//   with --boxes: localisation (tools/cam_scores.h: per class and overall, over all pairs and over
//   true positives, probability >= threshold), and at the top level as CLI.md names them
//   pointing_game, energy_pointing_game, iobb_found (overall, all pairs), plus the per-class
//   pointing-game keys of earlier versions (pointing_game_per_class, pointing_game_true_positive,
//   pointing_game_true_positive_per_class, pointing_game_counts, pointing_game_pairs);
//   with --faithfulness P: faithfulness {delete_percent, blur_sigma, pairs, mean_drop_map,
//   mean_drop_random, map_beats_random} (tools/cam_faithfulness.h).
// Each map is printed as one line on stdout unless `print_lines` is false.
nlohmann::json gradcam(const GradcamOptions& opt, bool print_lines);
// The tables of a gradcam() result for stdout: localisation scores and faithfulness ("" if neither).
std::string gradcam_tables(const nlohmann::json& result);

}  // namespace cxr::app
