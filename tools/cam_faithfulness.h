// Faithfulness of a class activation map by deletion: replace the pixels the map ranks highest with
// a blurred copy of the image and see how much the class probability drops, beside the same number
// of random pixels (the confidence-drop test of pytorch-grad-cam's metrics and of ROAD, Rong et al.,
// ICML 2022, with blurring as the imputation). A map that points at what the model uses drops the
// probability more than random deletion does.
#pragma once
#include <cstdint>
#include <vector>

namespace cxr::app {

// Separable Gaussian blur of a grey w x h image (sigma in pixels, kernel to 3 sigma, edges clamped),
// rounded half up to 8 bits.
std::vector<uint8_t> gaussian_blur(const uint8_t* grey, int64_t w, int64_t h, double sigma);

// Indices of the `count` highest map values, highest first; ties in index order.
std::vector<int64_t> top_pixels(const float* map, int64_t size, int64_t count);
// `count` distinct indices of [0, size) drawn uniformly from `seed` (a partial Fisher-Yates shuffle).
std::vector<int64_t> random_pixels(int64_t size, int64_t count, uint64_t seed);

// Copy of grey with the pixels at `which` taken from `blurred`.
std::vector<uint8_t> delete_pixels(const uint8_t* grey, const uint8_t* blurred, int64_t size,
                                   const std::vector<int64_t>& which);

}  // namespace cxr::app
