// The grey-scale rendering steps of DICOM PS3.3 C.11 (declared in io/dicom.h); no file I/O.
#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/error.h"
#include "io/dicom.h"

namespace cxr::io {

double DicomLut::lookup(double x) const {
  // C.11.1.1.1 / C.11.2.1.1: inputs below the first value mapped take the first entry, inputs past the
  // last entry take the last. Inputs are integers here (stored or modality values); a fractional one,
  // from a rescale slope, is rounded.
  CXR_CHECK(!data.empty(), "empty LUT");
  const double k = std::floor(x + 0.5) - static_cast<double>(first);
  if (k <= 0) return data.front();
  if (k >= static_cast<double>(data.size() - 1)) return data.back();
  return data[static_cast<size_t>(k)];
}

double voi_window(VoiFunction f, double x, double c, double w, double ymin, double ymax) {
  switch (f) {
    case VoiFunction::Linear:
      // C.11.2.1.2.1: if (x <= c - 0.5 - (w-1)/2) y = ymin; else if (x > c - 0.5 + (w-1)/2) y = ymax;
      // else y = ((x - (c - 0.5)) / (w-1) + 0.5) * (ymax - ymin) + ymin.  (w >= 1)
      if (x <= c - 0.5 - (w - 1) / 2) return ymin;
      if (x > c - 0.5 + (w - 1) / 2) return ymax;
      return ((x - (c - 0.5)) / (w - 1) + 0.5) * (ymax - ymin) + ymin;
    case VoiFunction::LinearExact:
      // C.11.2.1.3.2: if (x <= c - w/2) y = ymin; else if (x > c + w/2) y = ymax;
      // else y = ((x - c) / w + 0.5) * (ymax - ymin) + ymin.  (w > 0)
      if (x <= c - w / 2) return ymin;
      if (x > c + w / 2) return ymax;
      return ((x - c) / w + 0.5) * (ymax - ymin) + ymin;
    case VoiFunction::Sigmoid:
      // C.11.2.1.3.1: y = (ymax - ymin) / (1 + exp(-4 (x - c) / w)) + ymin.  (w > 0)
      return (ymax - ymin) / (1 + std::exp(-4 * (x - c) / w)) + ymin;
  }
  return ymin;
}

namespace {

double modality_value(const GreyPipeline& p, int32_t stored) {
  return p.modality_lut ? p.modality.lookup(stored) : p.slope * stored + p.intercept;
}

uint8_t to_byte(double y) {
  // Round half up, clamped: the 8-bit output of the presentation step.
  const double r = std::floor(y + 0.5);
  return static_cast<uint8_t>(std::clamp(r, 0.0, 255.0));
}

}  // namespace

void render_grey(const int32_t* stored, size_t n, const GreyPipeline& p, uint8_t* out) {
  if (n == 0) return;
  const auto [lo_it, hi_it] = std::minmax_element(stored, stored + n);
  const int32_t lo = *lo_it, hi = *hi_it;
  CXR_CHECK(int64_t(hi) - lo < (int64_t(1) << 17), "stored values span ", lo, "..", hi, ": more than 17 bits");
  const size_t range = static_cast<size_t>(hi - lo) + 1;
  // The values present, for the min..max VOI (a modality LUT need not be monotonic).
  std::vector<uint8_t> present(range, 0);
  for (size_t i = 0; i < n; ++i) present[static_cast<size_t>(stored[i] - lo)] = 1;
  double mmin = std::numeric_limits<double>::infinity(), mmax = -mmin;
  if (p.voi == GreyPipeline::Voi::MinMax) {
    for (size_t k = 0; k < range; ++k) {
      if (!present[k]) continue;
      const double m = modality_value(p, lo + static_cast<int32_t>(k));
      mmin = std::min(mmin, m);
      mmax = std::max(mmax, m);
    }
  }
  std::vector<uint8_t> table(range, 0);
  for (size_t k = 0; k < range; ++k) {
    if (!present[k]) continue;
    const double m = modality_value(p, lo + static_cast<int32_t>(k));
    double y = 0;  // in [0, 255]
    switch (p.voi) {
      case GreyPipeline::Voi::Window:
        y = voi_window(p.function, m, p.center, p.width, 0.0, 255.0);
        break;
      case GreyPipeline::Voi::Lut:
        // The VOI LUT's output is 0 .. 2^bits - 1 (C.11.2.1.1); scaled to the 8-bit range.
        y = p.voi_lut.lookup(m) * 255.0 / double((int64_t(1) << p.voi_lut.bits) - 1);
        break;
      case GreyPipeline::Voi::MinMax:
        y = mmax > mmin ? (m - mmin) / (mmax - mmin) * 255.0 : 0.0;
        break;
    }
    if (p.invert) y = 255.0 - y;
    table[k] = to_byte(y);
  }
  for (size_t i = 0; i < n; ++i) out[i] = table[static_cast<size_t>(stored[i] - lo)];
}

}  // namespace cxr::io
