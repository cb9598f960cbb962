// Deletion-based faithfulness of class activation maps (tools/cam_faithfulness.h).
#include "tools/cam_faithfulness.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "engine/error.h"

namespace cxr::app {

std::vector<uint8_t> gaussian_blur(const uint8_t* grey, int64_t w, int64_t h, double sigma) {
  CXR_CHECK(w >= 1 && h >= 1 && sigma > 0, "gaussian_blur: ", w, "x", h, ", sigma ", sigma);
  const int64_t r = std::max<int64_t>(1, int64_t(std::ceil(3 * sigma)));
  std::vector<double> k(size_t(2 * r + 1));
  double sum = 0;
  for (int64_t i = -r; i <= r; ++i)
    sum += k[size_t(i + r)] = std::exp(-0.5 * double(i * i) / (sigma * sigma));
  for (double& v : k) v /= sum;
  auto at = [](int64_t i, int64_t n) { return std::clamp<int64_t>(i, 0, n - 1); };
  std::vector<double> rows(size_t(w * h));
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      double s = 0;
      for (int64_t i = -r; i <= r; ++i) s += k[size_t(i + r)] * grey[y * w + at(x + i, w)];
      rows[size_t(y * w + x)] = s;
    }
  std::vector<uint8_t> out(size_t(w * h));
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      double s = 0;
      for (int64_t i = -r; i <= r; ++i) s += k[size_t(i + r)] * rows[size_t(at(y + i, h) * w + x)];
      out[size_t(y * w + x)] = uint8_t(std::clamp(std::floor(s + 0.5), 0.0, 255.0));
    }
  return out;
}

std::vector<int64_t> top_pixels(const float* map, int64_t size, int64_t count) {
  CXR_CHECK(count >= 0 && count <= size, "top_pixels: ", count, " of ", size);
  std::vector<int64_t> idx(static_cast<size_t>(size));
  std::iota(idx.begin(), idx.end(), int64_t(0));
  std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return map[a] > map[b]; });
  idx.resize(static_cast<size_t>(count));
  return idx;
}

std::vector<int64_t> random_pixels(int64_t size, int64_t count, uint64_t seed) {
  CXR_CHECK(count >= 0 && count <= size, "random_pixels: ", count, " of ", size);
  std::vector<int64_t> idx(static_cast<size_t>(size));
  std::iota(idx.begin(), idx.end(), int64_t(0));
  std::mt19937_64 rng(seed);
  for (int64_t i = 0; i < count; ++i) {
    std::uniform_int_distribution<int64_t> pick(i, size - 1);
    std::swap(idx[size_t(i)], idx[size_t(pick(rng))]);
  }
  idx.resize(static_cast<size_t>(count));
  return idx;
}

std::vector<uint8_t> delete_pixels(const uint8_t* grey, const uint8_t* blurred, int64_t size,
                                   const std::vector<int64_t>& which) {
  std::vector<uint8_t> out(grey, grey + size);
  for (int64_t i : which) {
    CXR_CHECK(i >= 0 && i < size, "delete_pixels: index ", i, " of ", size);
    out[size_t(i)] = blurred[i];
  }
  return out;
}

}  // namespace cxr::app
