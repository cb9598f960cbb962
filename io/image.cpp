#include "io/image.h"
#include "io/dicom.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <utility>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <cstdio>
#include <fstream>
#include <iterator>

#include "engine/error.h"
#include "io/fileutil.h"

// The implementations are compiled once in io/stb_impl.cpp, with the same configuration.
#define STBI_NO_STDIO
#define STBI_FAILURE_USERMSG
#include <stb_image.h>
#include <stb_image_write.h>

namespace cxr::io {

namespace {

// 8-bit samples are copied (grey, or RGB with R = G = B); 16-bit ones are rounded exactly,
// round(v * 255 / 65535) = floor((v + 128) / 257); other colours use BT.601 luma.
template <typename T>
void to_grey(const T* src, int64_t n, int ch, uint8_t* dst) {
  constexpr bool k16 = sizeof(T) == 2;
  auto conv = [](uint32_t v) -> uint8_t { return static_cast<uint8_t>(k16 ? (v + 128) / 257 : v); };
  const double luma_scale = k16 ? 255.0 / 65535.0 : 1.0;
  for (int64_t i = 0; i < n; ++i) {
    const T* p = src + i * ch;
    if (ch <= 2 || (p[0] == p[1] && p[1] == p[2])) {  // grey, grey+alpha, or an X-ray stored as RGB
      dst[i] = conv(p[0]);
    } else {
      const double y = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
      dst[i] = static_cast<uint8_t>(y * luma_scale + 0.5);
    }
  }
}

bool decode_stb(const uint8_t* data, size_t size, GreyImage* out, std::string* error) {
  int w = 0, h = 0, ch = 0;
  const int len = static_cast<int>(size);
  if (stbi_is_16_bit_from_memory(data, len)) {
    stbi_us* p = stbi_load_16_from_memory(data, len, &w, &h, &ch, 0);
    if (!p) {
      *error = std::string("cannot decode: ") + stbi_failure_reason();
      return false;
    }
    if (w <= 0 || h <= 0) {
      stbi_image_free(p);
      *error = "cannot decode: an image of " + std::to_string(w) + " x " + std::to_string(h) + " pixels";
      return false;
    }
    out->width = w, out->height = h;
    out->pixels.resize(static_cast<size_t>(w) * h);
    to_grey(p, static_cast<int64_t>(w) * h, ch, out->pixels.data());
    stbi_image_free(p);
    return true;
  }
  stbi_uc* p = stbi_load_from_memory(data, len, &w, &h, &ch, 0);
  if (!p) {
    *error = std::string("cannot decode: ") + stbi_failure_reason();
    return false;
  }
  if (w <= 0 || h <= 0) {  // stb_image returns a PNM header of "P5 0 ..." as a 0 x N image
    stbi_image_free(p);
    *error = "cannot decode: an image of " + std::to_string(w) + " x " + std::to_string(h) + " pixels";
    return false;
  }
  out->width = w, out->height = h;
  const size_t n = static_cast<size_t>(w) * h;
  out->pixels.resize(n);
  if (ch == 1) std::memcpy(out->pixels.data(), p, n);
  else to_grey(p, static_cast<int64_t>(n), ch, out->pixels.data());
  stbi_image_free(p);
  return true;
}

// ---- PNG fast path --------------------------------------------------------------------------------
//
// Note [PNG fast path]
// ~~~~~~~~~~~~~~~~~~~~
// stb_image 2.27 (Debian's) undoes the PNG row filters with a branchy Paeth predictor: on the NIH
// 1024x1024 PNGs (rows filtered Paeth and Average about 45% each) that took as long as inflating.
// For the common case, 8-bit non-interlaced grey/grey+alpha/RGB/RGBA, the chunks are parsed here,
// the IDAT stream is inflated by stb_image's own zlib decoder (stbi_zlib_decode_buffer), and the
// filters are undone with a branch-free Paeth (the formulation of later stb_image versions). Anything
// else, or anything irregular (truncation, a bad filter byte, a short stream), is left to the full stb
// decoder, which then also gives its usual error message. Checked byte for byte against stb on
// every filter type and channel count (DataImage.PngFastPathMatchesStb).

uint32_t be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

// Paeth predictor of PNG: the one of a (left), b (up), c (up-left) nearest to a + b - c, ties in
// that order; branch-free form (equivalent to the specification's).
inline int paeth(int a, int b, int c) {
  const int thresh = c * 3 - (a + b);
  const int lo = a < b ? a : b, hi = a < b ? b : a;
  const int t0 = (hi <= thresh) ? lo : c;
  return (thresh <= lo) ? hi : t0;
}

// Undoes one row's filter: cur (n bytes) from raw, prior = the previous unfiltered row (zeros for the
// first). BPP bytes per pixel. Returns false for an unknown filter type.
template <int BPP>
bool unfilter_row(uint8_t* __restrict cur, const uint8_t* __restrict raw, const uint8_t* __restrict prior, int64_t n,
                  int filter) {
  // The left neighbours live in registers (left[]): reloading cur[k - BPP] would put a store-to-load
  // forward on the serial dependency chain of Sub, Average and Paeth.
  unsigned left[BPP], upleft[BPP];
  switch (filter) {
    case 0:
      std::memcpy(cur, raw, static_cast<size_t>(n));
      return true;
    case 1:  // Sub
      for (int c = 0; c < BPP; ++c) cur[c] = raw[c], left[c] = raw[c];
      for (int64_t k = BPP; k < n; k += BPP)
        for (int c = 0; c < BPP; ++c) cur[k + c] = static_cast<uint8_t>(left[c] = (raw[k + c] + left[c]) & 0xFFu);
      return true;
    case 2:  // Up
      for (int64_t k = 0; k < n; ++k) cur[k] = static_cast<uint8_t>(raw[k] + prior[k]);
      return true;
    case 3:  // Average
      for (int c = 0; c < BPP; ++c) cur[c] = static_cast<uint8_t>(left[c] = (raw[c] + (prior[c] >> 1)) & 0xFFu);
      for (int64_t k = BPP; k < n; k += BPP)
        for (int c = 0; c < BPP; ++c)
          cur[k + c] = static_cast<uint8_t>(left[c] = (raw[k + c] + ((prior[k + c] + left[c]) >> 1)) & 0xFFu);
      return true;
    case 4:  // Paeth
      for (int c = 0; c < BPP; ++c) {  // paeth(0, b, 0) = b
        cur[c] = static_cast<uint8_t>(left[c] = (raw[c] + prior[c]) & 0xFFu);
        upleft[c] = prior[c];
      }
      for (int64_t k = BPP; k < n; k += BPP)
        for (int c = 0; c < BPP; ++c) {
          const unsigned up = prior[k + c];
          left[c] = (raw[k + c] + static_cast<unsigned>(paeth(static_cast<int>(left[c]), static_cast<int>(up),
                                                               static_cast<int>(upleft[c])))) & 0xFFu;
          upleft[c] = up;
          cur[k + c] = static_cast<uint8_t>(left[c]);
        }
      return true;
    default:
      return false;
  }
}

// Grey 8-bit rows are unfiltered two at a time: row y + 1's byte k needs row y's bytes k - 1 and k,
// so one loop produces both rows, and the out-of-order core overlaps the two serial chains (left
// neighbour -> predictor -> byte) that bound Sub, Average and Paeth. Measured on the NIH 1024x1024
// PNGs: ~1.4 ms an image, from ~2.0 ms one row at a time (stb 2.27: ~3.5 ms).
template <int F>
inline unsigned unfilter_step(unsigned raw, unsigned up, unsigned upleft, unsigned left) {
  if constexpr (F == 0) return raw;
  if constexpr (F == 1) return (raw + left) & 0xFFu;
  if constexpr (F == 2) return (raw + up) & 0xFFu;
  if constexpr (F == 3) return (raw + ((up + left) >> 1)) & 0xFFu;
  if constexpr (F == 4)
    return (raw + static_cast<unsigned>(paeth(static_cast<int>(left), static_cast<int>(up), static_cast<int>(upleft)))) &
           0xFFu;
  return 0;
}

template <int F0, int F1>
void unfilter_grey_pair(uint8_t* __restrict c0, uint8_t* __restrict c1, const uint8_t* __restrict r0,
                        const uint8_t* __restrict r1, const uint8_t* __restrict p0, int64_t n) {
  unsigned l0 = unfilter_step<F0>(r0[0], p0[0], 0, 0);
  unsigned l1 = unfilter_step<F1>(r1[0], l0, 0, 0);
  c0[0] = static_cast<uint8_t>(l0), c1[0] = static_cast<uint8_t>(l1);
  for (int64_t k = 1; k < n; ++k) {
    const unsigned n0 = unfilter_step<F0>(r0[k], p0[k], p0[k - 1], l0);
    const unsigned n1 = unfilter_step<F1>(r1[k], n0, l0, l1);
    c0[k] = static_cast<uint8_t>(n0), c1[k] = static_cast<uint8_t>(n1);
    l0 = n0, l1 = n1;
  }
}

using PairFn = void (*)(uint8_t*, uint8_t*, const uint8_t*, const uint8_t*, const uint8_t*, int64_t);
template <int F0, int... F1>
constexpr std::array<PairFn, 5> pair_row(std::integer_sequence<int, F1...>) {
  return {&unfilter_grey_pair<F0, F1>...};
}
template <int... F0>
constexpr std::array<std::array<PairFn, 5>, 5> pair_table(std::integer_sequence<int, F0...>) {
  return {pair_row<F0>(std::make_integer_sequence<int, 5>())...};
}
constexpr auto kGreyPairs = pair_table(std::make_integer_sequence<int, 5>());

bool unfilter_grey(const uint8_t* z, int w, int h, uint8_t* grey) {
  const int64_t n = w;
  thread_local std::vector<uint8_t> zeros;
  zeros.assign(static_cast<size_t>(n), 0);
  int y = 0;
  for (; y + 1 < h; y += 2) {
    const uint8_t* r0 = z + y * (n + 1);
    const uint8_t* r1 = r0 + (n + 1);
    if (r0[0] > 4 || r1[0] > 4) return false;
    uint8_t* c0 = grey + y * n;
    kGreyPairs[r0[0]][r1[0]](c0, c0 + n, r0 + 1, r1 + 1, y ? c0 - n : zeros.data(), n);
  }
  if (y < h) {
    const uint8_t* r = z + y * (n + 1);
    uint8_t* c = grey + y * n;
    if (!unfilter_row<1>(c, r + 1, y ? c - n : zeros.data(), n, r[0])) return false;
  }
  return true;
}

// Unfilters h rows of w pixels of BPP bytes from z ((1 + w * BPP) bytes a row) and converts them to grey.
template <int BPP>
bool unfilter_to_grey(const uint8_t* z, int w, int h, uint8_t* grey) {
  const int64_t n = static_cast<int64_t>(w) * BPP;
  thread_local std::vector<uint8_t> rows;
  rows.assign(static_cast<size_t>(2 * n), 0);  // previous and current row (the row before the first is 0)
  for (int y = 0; y < h; ++y) {
    const uint8_t* raw = z + y * (n + 1);
    uint8_t* dst = BPP == 1 ? grey + static_cast<int64_t>(y) * w : rows.data() + (y & 1) * n;
    const uint8_t* prior = BPP == 1 ? (y ? dst - w : rows.data()) : rows.data() + ((y + 1) & 1) * n;
    if (!unfilter_row<BPP>(dst, raw + 1, prior, n, raw[0])) return false;
    if (BPP > 1) to_grey(dst, w, BPP, grey + static_cast<int64_t>(y) * w);
  }
  return true;
}

}  // namespace

bool decode_png8(const uint8_t* data, size_t size, GreyImage* out) {
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (size < 8 + 25 || std::memcmp(data, sig, 8) != 0) return false;
  size_t p = 8;
  uint32_t w = 0, h = 0;
  int bpp = 0;
  thread_local std::vector<uint8_t> idat;
  idat.clear();
  bool header = false, end = false;
  while (p + 12 <= size) {
    const uint32_t len = be32(data + p);
    const uint8_t* type = data + p + 4;
    if (len > size - p - 12) return false;  // truncated
    const uint8_t* d = data + p + 8;
    if (std::memcmp(type, "IHDR", 4) == 0) {
      if (header || len != 13) return false;
      w = be32(d), h = be32(d + 4);
      const int depth = d[8], colour = d[9];
      if (depth != 8 || d[10] != 0 || d[11] != 0 || d[12] != 0) return false;  // 8-bit, non-interlaced only
      bpp = colour == 0 ? 1 : colour == 4 ? 2 : colour == 2 ? 3 : colour == 6 ? 4 : 0;
      if (bpp == 0 || w == 0 || h == 0 || w > (1u << 24) || h > (1u << 24) ||
          uint64_t(w) * h * bpp > (uint64_t(1) << 30))
        return false;
      header = true;
    } else if (!header) {
      return false;
    } else if (std::memcmp(type, "IDAT", 4) == 0) {
      idat.insert(idat.end(), d, d + len);
    } else if (std::memcmp(type, "IEND", 4) == 0) {
      end = true;
      break;
    } else if (std::memcmp(type, "PLTE", 4) == 0 || std::memcmp(type, "CgBI", 4) == 0) {
      return false;  // stb knows these cases
    }
    p += 12 + size_t(len);
  }
  if (!end || idat.empty() || idat.size() > size_t(INT32_MAX)) return false;
  const int64_t zbytes = int64_t(h) * (1 + int64_t(w) * bpp);
  thread_local std::vector<uint8_t> z;
  z.resize(static_cast<size_t>(zbytes));
  const int got = stbi_zlib_decode_buffer(reinterpret_cast<char*>(z.data()), static_cast<int>(zbytes),
                                          reinterpret_cast<const char*>(idat.data()), static_cast<int>(idat.size()));
  if (got != zbytes) return false;
  out->width = static_cast<int>(w), out->height = static_cast<int>(h);
  out->pixels.resize(size_t(w) * h);
  const int iw = static_cast<int>(w), ih = static_cast<int>(h);
  switch (bpp) {
    case 1: return unfilter_grey(z.data(), iw, ih, out->pixels.data());
    case 2: return unfilter_to_grey<2>(z.data(), iw, ih, out->pixels.data());
    case 3: return unfilter_to_grey<3>(z.data(), iw, ih, out->pixels.data());
    default: return unfilter_to_grey<4>(z.data(), iw, ih, out->pixels.data());
  }
}

namespace {
std::atomic<int64_t> g_max_image_pixels{kDefaultMaxImagePixels};

// Note [PNG chunk lengths]
// ~~~~~~~~~~~~~~~~~~~~~~~~
// stb_image 2.27 (Debian's) trusts an IDAT chunk's declared length: it grows its IDAT buffer
// (doubling what it holds) until the declared bytes fit, and only then finds that the file ends
// sooner. A 2,269-byte PNG whose chunk declares a length far past the file's end made it allocate
// 2 GiB (found by tests/fuzz/fuzz_png.cpp; RELIABILITY.md, png finding 5). So before stb_image or the
// fast path sees a PNG, its chunks are walked here up to IEND (8-byte signature, then per chunk a
// 4-byte big-endian length, a 4-byte type, the data, a 4-byte CRC), and a chunk whose declared length
// exceeds the PNG limit of 2^31 - 1 or runs past the end of the file is refused with one line. Then
// no chunk's length can exceed the file's size, and stb's buffer stays under twice the file. A file
// without IEND, or one that ends inside the last CRC, is left to the decoders as before (stb_image
// refuses the first and reads the second).
std::string chunk_name(const uint8_t* t) {
  std::string s;
  for (int i = 0; i < 4; ++i) {
    if (t[i] >= 0x20 && t[i] < 0x7F && t[i] != '\\') {
      s += static_cast<char>(t[i]);
    } else {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02X", t[i]);
      s += hex;
    }
  }
  return s;
}

bool png_chunks_fit(const uint8_t* data, size_t size, std::string* error) {
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (size < 8 || std::memcmp(data, sig, 8) != 0) return true;  // not a PNG
  size_t p = 8;
  while (size - p >= 8) {
    const uint32_t len = be32(data + p);
    const uint8_t* type = data + p + 4;
    const size_t left = size - p - 8;  // bytes after this chunk's length and type
    if (len > uint32_t(INT32_MAX) || len > left) {
      *error = "cannot decode: PNG chunk '" + chunk_name(type) + "' at byte " + std::to_string(p) + " declares " +
               std::to_string(len) + " bytes of data, but " +
               (len > uint32_t(INT32_MAX) ? std::string("a PNG chunk holds at most 2147483647")
                                          : "the file ends " + std::to_string(left) + " bytes later") +
               " (a damaged or truncated PNG)";
      return false;
    }
    if (std::memcmp(type, "IEND", 4) == 0) return true;
    p += 12 + size_t(len);
    if (p > size) return true;  // the last chunk's CRC is cut
  }
  return true;
}
}  // namespace

void set_max_image_pixels(int64_t pixels) { g_max_image_pixels.store(pixels, std::memory_order_relaxed); }
int64_t max_image_pixels() { return g_max_image_pixels.load(std::memory_order_relaxed); }

bool decode_grey_memory(const uint8_t* data, size_t size, GreyImage* out, std::string* error, bool png_fast_path) {
  if (size == 0) {
    *error = "empty file";
    return false;
  }
  if (size > static_cast<size_t>(INT32_MAX)) {
    *error = "file too large";
    return false;
  }
  if (!png_chunks_fit(data, size, error)) return false;  // Note [PNG chunk lengths]
  int w = 0, h = 0, ch = 0;  // the header alone (stb_image reads no pixel for this)
  if (stbi_info_from_memory(data, static_cast<int>(size), &w, &h, &ch) && int64_t(w) * h > max_image_pixels()) {
    *error = "image of " + std::to_string(w) + " x " + std::to_string(h) + " pixels exceeds the limit of " +
             std::to_string(max_image_pixels()) + " pixels (a decompression bomb?): raise --max-image-pixels to read it";
    return false;
  }
  if (png_fast_path && decode_png8(data, size, out)) return true;
  return decode_stb(data, size, out, error);
}

bool decode_grey(const std::string& path, GreyImage* out, std::string* error) {
  if (is_dicom_path(path)) return decode_dicom(path, dicom_options(), out, nullptr, error);
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) {
    *error = "cannot open file";
    return false;
  }
  const std::streamoff n = f.tellg();
  if (n < 0) {
    *error = "read error";
    return false;
  }
  thread_local std::vector<uint8_t> bytes;  // reused: one PNG a call on each prepare thread
  bytes.resize(static_cast<size_t>(n));
  f.seekg(0);
  if (n > 0 && !f.read(reinterpret_cast<char*>(bytes.data()), n)) {
    *error = "read error";
    return false;
  }
  return decode_grey_memory(bytes.data(), bytes.size(), out, error);
}

// ---- resizing -------------------------------------------------------------------------------------
//
// Note [separable resampling]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Output pixel j of an axis of n -> m pixels sits at source coordinate c_j = (j + 0.5) * n / m - 0.5
// (pixel centres at integers). With s = max(1, n / m) (the filter is widened to the output pixel's
// footprint when downsampling: antialiasing), its value is sum_i w_ji x_clamp(i) / sum_i w_ji with
// w_ji = f((i - c_j) / s); the box filter instead weighs each input pixel [i - 1/2, i + 1/2] by its
// overlap with the footprint [c_j - s/2, c_j + s/2] (an exact area average). Indices outside the image
// are clamped, so their weights fold onto the edge pixel. The weights are computed in double and
// stored as float; the image is filtered along columns first (uint8 -> float rows, the large pass,
// vectorised across the row), the float result is stored transposed so that the second pass is the
// same vectorised row combination, and the result is rounded to nearest and clamped to [0, 255].
// Each output value is a fixed sequence of float operations whatever the vector width, so the
// AVX2 clone and the SSE2 baseline give identical bytes (no FMA contraction: neither target has it).

namespace {

double mitchell(double x) {  // Mitchell-Netravali, B = C = 1/3
  x = std::fabs(x);
  constexpr double B = 1.0 / 3, C = 1.0 / 3;
  if (x < 1) return ((12 - 9 * B - 6 * C) * x * x * x + (-18 + 12 * B + 6 * C) * x * x + (6 - 2 * B)) / 6;
  if (x < 2) return ((-B - 6 * C) * x * x * x + (6 * B + 30 * C) * x * x + (-12 * B - 48 * C) * x + (8 * B + 24 * C)) / 6;
  return 0;
}

// The weights of one axis: out[j] = sum_{k < taps} w[j * taps + k] * in[first[j] + k] (zero padded).
struct AxisWeights {
  int taps = 0;
  std::vector<int> first;  // (m)
  std::vector<float> w;    // (m, taps)
};

AxisWeights axis_weights(int n, int m, ResizeFilter filter) {
  const double scale = static_cast<double>(n) / m;  // input pixels per output pixel
  const double s = std::max(1.0, scale);
  const double support = filter == ResizeFilter::Box ? 0.5 * s + 0.5 : (filter == ResizeFilter::Triangle ? 1.0 : 2.0) * s;
  std::vector<std::vector<double>> ws(m);
  std::vector<int> lo(m);
  AxisWeights a;
  for (int j = 0; j < m; ++j) {
    const double c = (j + 0.5) * scale - 0.5;
    std::vector<double> w(static_cast<size_t>(n), 0.0);  // by clamped index
    int l = n, h = -1;
    for (int i = static_cast<int>(std::floor(c - support)); i <= static_cast<int>(std::ceil(c + support)); ++i) {
      double v;
      if (filter == ResizeFilter::Box) v = std::max(0.0, std::min(i + 0.5, c + 0.5 * s) - std::max(i - 0.5, c - 0.5 * s));
      else if (filter == ResizeFilter::Triangle) v = std::max(0.0, 1.0 - std::fabs((i - c) / s));
      else v = mitchell((i - c) / s);
      if (v == 0.0) continue;
      const int ic = std::clamp(i, 0, n - 1);
      w[ic] += v;
      l = std::min(l, ic), h = std::max(h, ic);
    }
    CXR_CHECK(h >= l, "resize: no filter taps for output pixel ", j, " of ", m, " (input ", n, ")");
    double sum = 0;
    for (int i = l; i <= h; ++i) sum += w[i];
    for (int i = l; i <= h; ++i) w[i] /= sum;
    lo[j] = l;
    ws[j].assign(w.begin() + l, w.begin() + h + 1);
    a.taps = std::max(a.taps, h - l + 1);
  }
  a.first.resize(m);
  a.w.assign(static_cast<size_t>(m) * a.taps, 0.f);
  for (int j = 0; j < m; ++j) {
    // Shift windows that would run past the end left; the padding zeros then lead.
    const int f = std::min(lo[j], n - a.taps);
    a.first[j] = f;
    for (size_t k = 0; k < ws[j].size(); ++k) a.w[static_cast<size_t>(j) * a.taps + (lo[j] - f) + k] = static_cast<float>(ws[j][k]);
  }
  return a;
}

// acc[x] = sum_k w[k] * rows[k][x] for x < n, in the order of k. T: uint8_t or float.
// Compiled for AVX2 and the baseline (chosen at load time); the loops vectorise over x.
template <typename T>
[[gnu::always_inline]] inline void combine_rows_impl(float* acc, const T* src, int64_t stride, int first,
                                                     const float* w, int taps, int n) {
  int k = 0;
  while (k < taps && w[k] == 0.f) ++k;  // leading padding
  int end = taps;
  while (end > k && w[end - 1] == 0.f) --end;
  if (k == end) {  // cannot happen for normalised weights; keeps the reads in range regardless
    for (int x = 0; x < n; ++x) acc[x] = 0.f;
    return;
  }
  {
    const T* r = src + (first + k) * stride;
    const float w0 = w[k];
    for (int x = 0; x < n; ++x) acc[x] = w0 * static_cast<float>(r[x]);
    ++k;
  }
  for (; k + 1 < end; k += 2) {
    const T* r0 = src + (first + k) * stride;
    const T* r1 = r0 + stride;
    const float w0 = w[k], w1 = w[k + 1];
    for (int x = 0; x < n; ++x) acc[x] = acc[x] + w0 * static_cast<float>(r0[x]) + w1 * static_cast<float>(r1[x]);
  }
  for (; k < end; ++k) {
    const T* r = src + (first + k) * stride;
    const float w0 = w[k];
    for (int x = 0; x < n; ++x) acc[x] = acc[x] + w0 * static_cast<float>(r[x]);
  }
}

// Not under ThreadSanitizer: the clones' ifunc resolver is instrumented and runs during dynamic
// relocation, before TSan's runtime is up, and crashes every binary at start (scripts/test_tsan.sh).
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
#define CXR_RESIZE_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CXR_RESIZE_CLONES
#endif

CXR_RESIZE_CLONES void combine_rows_u8(float* acc, const uint8_t* src, int64_t stride, int first, const float* w,
                                       int taps, int n) {
  combine_rows_impl(acc, src, stride, first, w, taps, n);
}
CXR_RESIZE_CLONES void combine_rows_f32(float* acc, const float* src, int64_t stride, int first, const float* w,
                                        int taps, int n) {
  combine_rows_impl(acc, src, stride, first, w, taps, n);
}

// Scratch reused across calls on one thread (prepare resizes thousands of images per thread).
struct ResizeScratch {
  int n_w = 0, n_h = 0, m_w = 0, m_h = 0;
  ResizeFilter filter = ResizeFilter::Mitchell;
  AxisWeights wx, wy;
  std::vector<float> acc, tmp_t;
};

uint8_t to_u8(float v) { return static_cast<uint8_t>(std::clamp(v, 0.f, 255.f) + 0.5f); }

void resample(uint8_t* out, int out_w, int out_h, const uint8_t* in, int in_w, int in_h, ResizeFilter filter) {
  thread_local ResizeScratch sc;
  if (sc.n_w != in_w || sc.n_h != in_h || sc.m_w != out_w || sc.m_h != out_h || sc.filter != filter) {
    sc.wx = axis_weights(in_w, out_w, filter);
    sc.wy = axis_weights(in_h, out_h, filter);
    sc.n_w = in_w, sc.n_h = in_h, sc.m_w = out_w, sc.m_h = out_h, sc.filter = filter;
  }
  // Rows are produced kBlock at a time so that the transposed stores fill kBlock consecutive floats.
  constexpr int kBlock = 8;
  sc.acc.resize(static_cast<size_t>(kBlock) * std::max(in_w, out_h));
  sc.tmp_t.resize(static_cast<size_t>(in_w) * out_h);
  float* acc = sc.acc.data();      // (kBlock, in_w) in pass 1, (kBlock, out_h) in pass 2
  float* tmp_t = sc.tmp_t.data();  // (in_w, out_h): the column-filtered image, transposed
  // Pass 1: output row y combines input rows first[y] .. first[y] + taps - 1.
  for (int y0 = 0; y0 < out_h; y0 += kBlock) {
    const int nb = std::min(kBlock, out_h - y0);
    for (int r = 0; r < nb; ++r)
      combine_rows_u8(acc + static_cast<size_t>(r) * in_w, in, in_w, sc.wy.first[y0 + r],
                      &sc.wy.w[static_cast<size_t>(y0 + r) * sc.wy.taps], sc.wy.taps, in_w);
    for (int x = 0; x < in_w; ++x) {
      float* t = tmp_t + static_cast<size_t>(x) * out_h + y0;
      for (int r = 0; r < nb; ++r) t[r] = acc[static_cast<size_t>(r) * in_w + x];
    }
  }
  // Pass 2: output column x combines rows of tmp_t (input columns).
  for (int x0 = 0; x0 < out_w; x0 += kBlock) {
    const int nb = std::min(kBlock, out_w - x0);
    for (int c = 0; c < nb; ++c)
      combine_rows_f32(acc + static_cast<size_t>(c) * out_h, tmp_t, out_h, sc.wx.first[x0 + c],
                       &sc.wx.w[static_cast<size_t>(x0 + c) * sc.wx.taps], sc.wx.taps, out_h);
    for (int y = 0; y < out_h; ++y) {
      uint8_t* o = out + static_cast<size_t>(y) * out_w + x0;
      for (int c = 0; c < nb; ++c) o[c] = to_u8(acc[static_cast<size_t>(c) * out_h + y]);
    }
  }
}

}  // namespace

void reduce_box(std::vector<uint8_t>* out, int* out_w, int* out_h, const uint8_t* in, int in_w, int in_h, int r) {
  CXR_CHECK(r >= 1 && r <= 512 && in_w > 0 && in_h > 0, "reduce_box ", in_w, "x", in_h, " by ", r);
  const int ow = (in_w + r - 1) / r, oh = (in_h + r - 1) / r;
  out->resize(static_cast<size_t>(ow) * oh);
  std::vector<uint32_t> col(static_cast<size_t>(in_w));  // column sums of one band of r rows
  for (int oy = 0; oy < oh; ++oy) {
    const int y0 = oy * r, y1 = std::min(in_h, y0 + r);
    const uint8_t* row = in + static_cast<size_t>(y0) * in_w;
    for (int x = 0; x < in_w; ++x) col[x] = row[x];
    for (int y = y0 + 1; y < y1; ++y) {
      row = in + static_cast<size_t>(y) * in_w;
      for (int x = 0; x < in_w; ++x) col[x] += row[x];
    }
    uint8_t* dst = out->data() + static_cast<size_t>(oy) * ow;
    const uint32_t rows = static_cast<uint32_t>(y1 - y0);
    // floor((s + n/2) / n), rounding to nearest (halves up), as a multiplication: the quotient is
    // below 256, so x * fl(1/n) is within 2^-43 of it, while a non-integer quotient is at least
    // 1/n >= 2^-18 below the next integer; adding 2^-20 and truncating is therefore exact.
    const uint32_t n_full = rows * static_cast<uint32_t>(r);
    const double inv_full = 1.0 / n_full;
    const int full = in_w / r;
    for (int ox = 0; ox < full; ++ox) {
      uint32_t s = 0;
      for (int x = ox * r; x < ox * r + r; ++x) s += col[x];
      dst[ox] = static_cast<uint8_t>(static_cast<double>(s + n_full / 2) * inv_full + 0x1p-20);
    }
    for (int ox = full; ox < ow; ++ox) {  // the partial block at the right edge
      const int x0 = ox * r, x1 = std::min(in_w, x0 + r);
      uint32_t s = 0;
      for (int x = x0; x < x1; ++x) s += col[x];
      const uint32_t n = rows * static_cast<uint32_t>(x1 - x0);
      dst[ox] = static_cast<uint8_t>((s + n / 2) / n);
    }
  }
  *out_w = ow, *out_h = oh;
}

void resize_grey(uint8_t* out, int out_w, int out_h, const uint8_t* in, int in_w, int in_h, ResizeFilter filter,
                 double reducing_gap) {
  CXR_CHECK(out_w > 0 && out_h > 0 && in_w > 0 && in_h > 0, "resize ", in_w, "x", in_h, " -> ", out_w, "x", out_h);
  if (reducing_gap > 0 && filter != ResizeFilter::Box) {
    const double scale = std::min(static_cast<double>(in_w) / out_w, static_cast<double>(in_h) / out_h);
    const int r = static_cast<int>(scale / reducing_gap);
    if (r >= 2) {
      thread_local std::vector<uint8_t> tmp;
      int tw = 0, th = 0;
      reduce_box(&tmp, &tw, &th, in, in_w, in_h, r);
      resample(out, out_w, out_h, tmp.data(), tw, th, filter);
      return;
    }
  }
  if (out_w == in_w && out_h == in_h) {
    std::copy(in, in + static_cast<size_t>(in_w) * in_h, out);
    return;
  }
  resample(out, out_w, out_h, in, in_w, in_h, filter);
}

void write_png(const std::string& path, const uint8_t* pixels, int width, int height, int channels) {
  write_atomically(path, [&](const std::string& tmp) {
    if (!stbi_write_png(tmp.c_str(), width, height, channels, pixels, width * channels))
      throw Error(tmp + ": cannot write PNG");
  });
}

void write_jpg(const std::string& path, const uint8_t* pixels, int width, int height, int channels, int quality) {
  write_atomically(path, [&](const std::string& tmp) {
    if (!stbi_write_jpg(tmp.c_str(), width, height, channels, pixels, quality))
      throw Error(tmp + ": cannot write JPEG");
  });
}

}  // namespace cxr::io
