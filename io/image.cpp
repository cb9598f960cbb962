#include "io/image.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>

#include "engine/error.h"
#include "io/fileutil.h"

#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_STDIO
#define STBI_FAILURE_USERMSG
#define STB_IMAGE_STATIC
#include <stb_image.h>

#define STB_IMAGE_RESIZE_IMPLEMENTATION
#define STB_IMAGE_RESIZE_STATIC
#include <stb_image_resize.h>

#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#include <stb_image_write.h>

namespace cxr::io {

namespace {

template <typename T>
void to_grey(const T* src, int n, int ch, uint8_t* dst, double scale) {
  if (ch <= 2) {  // grey or grey+alpha
    for (int i = 0; i < n; ++i) dst[i] = static_cast<uint8_t>(src[i * ch] * scale + 0.5);
    return;
  }
  for (int i = 0; i < n; ++i) {
    const T* p = src + static_cast<size_t>(i) * ch;
    if (p[0] == p[1] && p[1] == p[2]) {  // the usual case for X-rays stored as RGB
      dst[i] = static_cast<uint8_t>(p[0] * scale + 0.5);
    } else {
      const double y = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
      dst[i] = static_cast<uint8_t>(y * scale + 0.5);
    }
  }
}

}  // namespace

bool decode_grey_memory(const uint8_t* data, size_t size, GreyImage* out, std::string* error) {
  if (size == 0) {
    *error = "empty file";
    return false;
  }
  int w = 0, h = 0, ch = 0;
  const int len = static_cast<int>(size);
  if (stbi_is_16_bit_from_memory(data, len)) {
    stbi_us* p = stbi_load_16_from_memory(data, len, &w, &h, &ch, 0);
    if (!p) {
      *error = std::string("cannot decode: ") + stbi_failure_reason();
      return false;
    }
    out->width = w, out->height = h;
    out->pixels.resize(static_cast<size_t>(w) * h);
    to_grey(p, w * h, ch, out->pixels.data(), 255.0 / 65535.0);
    stbi_image_free(p);
    return true;
  }
  stbi_uc* p = stbi_load_from_memory(data, len, &w, &h, &ch, 0);
  if (!p) {
    *error = std::string("cannot decode: ") + stbi_failure_reason();
    return false;
  }
  out->width = w, out->height = h;
  out->pixels.resize(static_cast<size_t>(w) * h);
  to_grey(p, w * h, ch, out->pixels.data(), 1.0);
  stbi_image_free(p);
  return true;
}

bool decode_grey(const std::string& path, GreyImage* out, std::string* error) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    *error = "cannot open file";
    return false;
  }
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (f.bad()) {
    *error = "read error";
    return false;
  }
  return decode_grey_memory(bytes.data(), bytes.size(), out, error);
}

void reduce_box(std::vector<uint8_t>* out, int* out_w, int* out_h, const uint8_t* in, int in_w, int in_h, int r) {
  const int ow = (in_w + r - 1) / r, oh = (in_h + r - 1) / r;
  out->assign(static_cast<size_t>(ow) * oh, 0);
  std::vector<uint32_t> acc(ow);
  for (int oy = 0; oy < oh; ++oy) {
    std::fill(acc.begin(), acc.end(), 0u);
    const int y0 = oy * r, y1 = std::min(in_h, y0 + r);
    for (int y = y0; y < y1; ++y) {
      const uint8_t* row = in + static_cast<size_t>(y) * in_w;
      for (int ox = 0; ox < ow; ++ox) {
        const int x0 = ox * r, x1 = std::min(in_w, x0 + r);
        uint32_t s = 0;
        for (int x = x0; x < x1; ++x) s += row[x];
        acc[ox] += s;
      }
    }
    for (int ox = 0; ox < ow; ++ox) {
      const uint32_t n = static_cast<uint32_t>((y1 - y0) * (std::min(in_w, ox * r + r) - ox * r));
      (*out)[static_cast<size_t>(oy) * ow + ox] = static_cast<uint8_t>((acc[ox] + n / 2) / n);
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
      std::vector<uint8_t> tmp;
      int tw = 0, th = 0;
      reduce_box(&tmp, &tw, &th, in, in_w, in_h, r);
      resize_grey(out, out_w, out_h, tmp.data(), tw, th, filter, 0.0);
      return;
    }
  }
  if (out_w == in_w && out_h == in_h) {
    std::copy(in, in + static_cast<size_t>(in_w) * in_h, out);
    return;
  }
  const stbir_filter f = filter == ResizeFilter::Box        ? STBIR_FILTER_BOX
                         : filter == ResizeFilter::Triangle ? STBIR_FILTER_TRIANGLE
                                                            : STBIR_FILTER_MITCHELL;
  const int ok = stbir_resize_uint8_generic(in, in_w, in_h, 0, out, out_w, out_h, 0, 1, STBIR_ALPHA_CHANNEL_NONE, 0,
                                            STBIR_EDGE_CLAMP, f, STBIR_COLORSPACE_LINEAR, nullptr);
  CXR_CHECK(ok, "stb_image_resize failed: ", in_w, "x", in_h, " -> ", out_w, "x", out_h);
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
