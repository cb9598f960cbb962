// The deletion test's pieces (tools/cam_faithfulness.h): the blur against a direct 2-D Gaussian
// convolution, the top-k and random pixel choices, and the deletion itself.
#include <algorithm>
#include <cmath>
#include <set>

#include "test_util.h"
#include "tools/cam_faithfulness.h"

namespace cxr::test {
namespace {

TEST(CamFaithfulness, BlurEqualsDirectTwoDimensionalGaussian) {
  const int64_t w = 23, h = 17;
  const double sigma = 2.5;
  const auto noise = random_vector(size_t(w * h), fresh_seed(), 0.0f, 255.0f);
  std::vector<uint8_t> grey(noise.size());
  for (size_t i = 0; i < grey.size(); ++i) grey[i] = uint8_t(noise[i]);
  const auto got = app::gaussian_blur(grey.data(), w, h, sigma);
  // Direct: the 2-D kernel exp(-(dx^2 + dy^2) / 2 sigma^2) over the same 3-sigma square (r = 8),
  // normalised, edges clamped. Equal to the separable pass in exact arithmetic; both round half up,
  // so a value within rounding of .5 may land one level apart.
  const int64_t r = int64_t(std::ceil(3 * sigma));
  int64_t off_by_one = 0;
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      double s = 0, z = 0;
      for (int64_t dy = -r; dy <= r; ++dy)
        for (int64_t dx = -r; dx <= r; ++dx) {
          const double k = std::exp(-0.5 * double(dx * dx + dy * dy) / (sigma * sigma));
          s +=
              k *
              grey[size_t(std::clamp<int64_t>(y + dy, 0, h - 1) * w + std::clamp<int64_t>(x + dx, 0, w - 1))];
          z += k;
        }
      const int want = int(std::floor(s / z + 0.5));
      const int diff = std::abs(int(got[size_t(y * w + x)]) - want);
      ASSERT_LE(diff, 1) << "(" << x << ", " << y << ")";
      off_by_one += diff;
    }
  EXPECT_LE(off_by_one, 3) << "only values within rounding of a half may differ";
  // A constant image stays constant (the kernel sums to 1, clamped edges add no dark border).
  const std::vector<uint8_t> flat(size_t(w * h), 77);
  const auto same = app::gaussian_blur(flat.data(), w, h, sigma);
  EXPECT_TRUE(std::all_of(same.begin(), same.end(), [](uint8_t v) { return v == 77; }));
}

TEST(CamFaithfulness, TopPixelsAreTheHighestWithTiesInIndexOrder) {
  const std::vector<float> map = {0.1f, 0.9f, 0.5f, 0.9f, 0.0f, 0.7f};
  EXPECT_EQ(app::top_pixels(map.data(), 6, 3), (std::vector<int64_t>{1, 3, 5}));
  EXPECT_EQ(app::top_pixels(map.data(), 6, 0), (std::vector<int64_t>{}));
  EXPECT_THROW(app::top_pixels(map.data(), 6, 7), Error);
}

TEST(CamFaithfulness, RandomPixelsAreDistinctReproducibleAndSpread) {
  const auto a = app::random_pixels(1000, 300, 42), b = app::random_pixels(1000, 300, 42);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, app::random_pixels(1000, 300, 43));
  const std::set<int64_t> distinct(a.begin(), a.end());
  EXPECT_EQ(distinct.size(), 300u);
  EXPECT_GE(*distinct.begin(), 0);
  EXPECT_LT(*distinct.rbegin(), 1000);
  // Uniform: each half of the range holds about half (binomial sd ~8.7; 5 sd of slack).
  const auto low = std::count_if(a.begin(), a.end(), [](int64_t i) { return i < 500; });
  EXPECT_NEAR(double(low), 150.0, 45.0);
}

TEST(CamFaithfulness, DeletionReplacesExactlyTheChosenPixels) {
  const std::vector<uint8_t> grey = {10, 20, 30, 40}, blurred = {1, 2, 3, 4};
  EXPECT_EQ(app::delete_pixels(grey.data(), blurred.data(), 4, {3, 0}), (std::vector<uint8_t>{1, 20, 30, 4}));
  EXPECT_THROW(app::delete_pixels(grey.data(), blurred.data(), 4, {4}), Error);
}

}  // namespace
}  // namespace cxr::test
