// Rendering of class activation maps: the Turbo colour map blended over the grey image, box
// outlines and peak markers, on RGB buffers (h, w, 3).
#pragma once
#include <array>
#include <cstdint>
#include <vector>

namespace cxr::app {

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

}  // namespace cxr::app
