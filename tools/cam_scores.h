// Localisation scores of class activation maps against bounding boxes: the pointing game (Zhang et
// al., "Top-down neural attention by excitation backprop", ECCV 2016).
#pragma once
#include <array>
#include <cstdint>
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

}  // namespace cxr::app
