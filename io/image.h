// Image decoding (stb_image: PNG 8/16-bit grey/RGB/RGBA, JPEG, ...; a faster path for 8-bit PNGs) to
// 8-bit grey, antialiased separable resizing (own implementation), and PNG/JPEG writing (stb_image_write).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace cxr::io {

struct GreyImage {
  int width = 0, height = 0;
  std::vector<uint8_t> pixels;  // (height, width), row-major
};

// Decodes a file to 8-bit grey. Colour is converted with ITU-R BT.601 luma (0.299, 0.587, 0.114),
// alpha is ignored, 16-bit samples are scaled to 8 bits with rounding (v * 255 / 65535).
// Returns false and sets *error (e.g. "empty file", stb_image's reason) when the file cannot be decoded.
// DICOM files (is_dicom_path(), io/dicom.h) are decoded and rendered by decode_dicom() with the
// process-wide dicom_options().
// 8-bit non-interlaced PNGs take a faster path (stb_image's inflate, a branch-free row unfilter; see
// Note [PNG fast path] in image.cpp) that gives the same bytes; png_fast_path = false forces stb_image.
// Images declaring more pixels than the limit are refused from their header, before any pixel is
// decoded (a decompression bomb: a 20000 x 20000 PNG of a few kilobytes would take 1.6 GB). The
// limit is process-wide, set once from `--max-image-pixels` before any decoding starts.
constexpr int64_t kDefaultMaxImagePixels = int64_t(16384) * 16384;
void set_max_image_pixels(int64_t pixels);
int64_t max_image_pixels();
bool decode_grey(const std::string& path, GreyImage* out, std::string* error);
bool decode_grey_memory(const uint8_t* data, size_t size, GreyImage* out, std::string* error,
                        bool png_fast_path = true);
// The PNG fast path alone: false (out unspecified) when the data is not an 8-bit non-interlaced
// PNG that it handles, or is damaged; decode_grey_memory then asks stb_image.
bool decode_png8(const uint8_t* data, size_t size, GreyImage* out);

enum class ResizeFilter {
  Box,       // area average; for an integer factor exactly the mean of each k x k block
  Triangle,  // bilinear (tent) scaled to the output pixel when downsampling
  Mitchell,  // Mitchell-Netravali B=C=1/3, scaled to the output pixel when downsampling (default)
};

// Resizes grey (h, w) to (out_h, out_w) with a separable filter (see Note [separable resampling] in
// image.cpp): downsampling widens the filter to the output pixel's footprint (antialiasing); edges
// are clamped; float weights and sums, rounded to nearest. About 0.7 ms for 1024 -> 320 on one core.
// reducing_gap > 0 (as Pillow's `reducing_gap`): first average r x r blocks exactly, with
// r = floor(scale / reducing_gap), then resample the reduced image with `filter`; with a gap >= 1.5
// the result differs from direct resampling by a few grey levels (and is no faster here).
// A partial block at the right/bottom edge averages the pixels it has.
void resize_grey(uint8_t* out, int out_w, int out_h, const uint8_t* in, int in_w, int in_h,
                 ResizeFilter filter = ResizeFilter::Mitchell, double reducing_gap = 0.0);

// Exact r x r block mean (rounded to nearest): out is (ceil(h / r), ceil(w / r)).
void reduce_box(std::vector<uint8_t>* out, int* out_w, int* out_h, const uint8_t* in, int in_w, int in_h, int r);

// Write an 8-bit image (channels 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA), atomically; throw cxr::Error on failure.
void write_png(const std::string& path, const uint8_t* pixels, int width, int height, int channels);
void write_jpg(const std::string& path, const uint8_t* pixels, int width, int height, int channels, int quality = 95);

}  // namespace cxr::io
