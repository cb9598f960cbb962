// Localisation scores of class activation maps (tools/cam_scores.h).
#include "tools/cam_scores.h"

#include <algorithm>

namespace cxr::app {

bool pointing_hit(const float* map, int64_t w, int64_t h, const std::vector<PixelBox>& boxes,
                  double tolerance) {
  float mx = 0;
  for (int64_t i = 0; i < w * h; ++i) mx = std::max(mx, map[i]);
  if (!(mx > 0)) return false;
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      if (map[y * w + x] != mx) continue;
      const double cx = double(x) + 0.5, cy = double(y) + 0.5;  // pixel centre
      for (const PixelBox& b : boxes)
        if (cx >= b.x - tolerance && cx <= b.x + b.w + tolerance && cy >= b.y - tolerance &&
            cy <= b.y + b.h + tolerance)
          return true;
    }
  return false;
}

std::array<int64_t, 2> map_peak(const float* map, int64_t w, int64_t h) {
  int64_t best = 0;
  for (int64_t i = 1; i < w * h; ++i)
    if (map[i] > map[best]) best = i;
  return {best % w, best / w};
}

}  // namespace cxr::app
