// The synthetic generator (io/synth.h) keeps each finding's visible signature inside its box: for a
// row with one finding, every pixel whose noise-free value differs from the same row drawn without
// the finding lies inside the box the generator returns. Over all 14 classes, three image names and
// seeds, and sides 64, 128 and 320.
//
// Why the canvas (synth_canvas) and not the final image: synth_image() maps the canvas pixel by
// pixel (gain, bias and noise drawn after the drawing), and a finding's own random draws shift those
// later draws, so the two final images differ everywhere by noise. The canvas is what the finding
// changes; the image differs from the finding-free image's exposure only where the canvas does.
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>

#include "io/classes.h"
#include "io/synth.h"

namespace cxr::io {
namespace {

struct Leak {
  int64_t changed = 0, outside = 0;
  double max_diff_outside = 0, max_pixels_outside = 0;  // largest value change / distance (pixels)
};

// Compares the canvas with and without the finding; box in the 1024 frame, as the CSV has it.
Leak compare(const std::vector<float>& with, const std::vector<float>& without, const BBox& b, int S) {
  // A pixel is inside when its centre lies in the closed box. 1e-6 (in the 1024 frame) absorbs the
  // rounding of the same edge computed two ways (units * 1024 here, units in the drawing); a real
  // leak is at least a pixel (1024 / 320 = 3.2 frame units).
  const double eps = 1e-6, scale = 1024.0 / S;
  Leak r;
  for (int y = 0; y < S; ++y)
    for (int x = 0; x < S; ++x) {
      const size_t i = size_t(y) * size_t(S) + size_t(x);
      if (with[i] == without[i]) continue;
      ++r.changed;
      const double cx = (x + 0.5) * scale, cy = (y + 0.5) * scale;
      const double dx = std::max({b.x - cx, cx - (b.x + b.w), 0.0}),
                   dy = std::max({b.y - cy, cy - (b.y + b.h), 0.0});
      if (dx <= eps && dy <= eps) continue;
      ++r.outside;
      r.max_diff_outside = std::max(r.max_diff_outside, double(std::fabs(with[i] - without[i])));
      r.max_pixels_outside = std::max(r.max_pixels_outside, std::max(dx, dy) / scale);
    }
  return r;
}

TEST(Synth, EachFindingIsDrawnInsideItsBox) {
  std::ostringstream leaks;
  for (int k = 0; k < kNumClasses; ++k)
    for (int S : {64, 128, 320})
      for (uint64_t seed : {1u, 2u, 3u}) {
        LabelRow row;
        row.image = "0000000" + std::to_string(seed) + "_00" + std::to_string(k % 3) + ".png";
        const std::vector<float> without = synth_canvas(row, S, seed, nullptr);
        row.labels[size_t(k)] = 1;
        std::vector<BBox> boxes, image_boxes;
        const std::vector<float> with = synth_canvas(row, S, seed, &boxes);
        synth_image(row, S, seed, &image_boxes);
        ASSERT_EQ(boxes.size(), 1u) << kClassNames[size_t(k)];
        ASSERT_EQ(image_boxes.size(), 1u);
        EXPECT_EQ(image_boxes[0].x, boxes[0].x) << "synth_image draws what synth_canvas draws";
        EXPECT_EQ(image_boxes[0].h, boxes[0].h);
        const Leak r = compare(with, without, boxes[0], S);
        const std::string where = std::string(kClassNames[size_t(k)]) + " at " + std::to_string(S) +
                                  " px, seed " + std::to_string(seed);
        EXPECT_GT(r.changed, 0) << where << ": the finding changes nothing";
        if (r.outside > 0)
          leaks << where << ": " << r.outside << " of " << r.changed
                << " changed pixels outside the box, up to " << r.max_pixels_outside
                << " px out, value change up to " << r.max_diff_outside << "\n";
      }
  EXPECT_EQ(leaks.str(), "") << "findings drawn outside their boxes:\n" << leaks.str();
}

}  // namespace
}  // namespace cxr::io
