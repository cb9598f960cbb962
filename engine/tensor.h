// Tensors: non-owning 4-D float views (N, C, H, W) with 64-bit shapes and strides and a device tag.
// Memory always belongs to someone else (the arena, a parameter buffer, a test's vector).
//
// Layout contract used by every op: each (n, c) plane is contiguous (stride_w == 1,
// stride_h == W, stride_c == H*W), while the batch stride may exceed C*H*W. That is exactly what a
// channel slice of a dense block buffer looks like: layer l reads channels [0, c_in) and writes
// channels [c_in, c_in + 32) of one (N, C_final, H, W) buffer, so concatenation copies nothing.
#pragma once
#include <array>
#include <cstdint>
#include <string>

#include "engine/error.h"

namespace cxr {

enum class Device { CPU, CUDA };
const char* device_name(Device d);

struct Shape {
  int64_t n = 0, c = 0, h = 1, w = 1;
  int64_t numel() const { return n * c * h * w; }
  int64_t plane() const { return h * w; }
  bool operator==(const Shape& o) const { return n == o.n && c == o.c && h == o.h && w == o.w; }
  bool operator!=(const Shape& o) const { return !(*this == o); }
  std::string str() const;
};

struct Tensor {
  float* data = nullptr;
  Shape shape;
  int64_t batch_stride = 0;  // elements between images; >= C*H*W
  Device device = Device::CPU;

  Tensor() = default;
  // A packed (N, C, H, W) tensor.
  Tensor(float* p, Shape s, Device d = Device::CPU)
      : data(p), shape(s), batch_stride(s.c * s.h * s.w), device(d) {}
  Tensor(float* p, Shape s, int64_t bstride, Device d)
      : data(p), shape(s), batch_stride(bstride), device(d) {}

  int64_t n() const { return shape.n; }
  int64_t c() const { return shape.c; }
  int64_t h() const { return shape.h; }
  int64_t w() const { return shape.w; }
  int64_t numel() const { return shape.numel(); }
  bool packed() const { return batch_stride == shape.c * shape.h * shape.w; }

  // Pointer to plane (n, c).
  float* plane(int64_t n, int64_t c) const { return data + n * batch_stride + c * shape.h * shape.w; }

  // Channels [c0, c1) as a view sharing this tensor's batch stride.
  Tensor channels(int64_t c0, int64_t c1) const;
};

// Throws "<what>: expected shape A, got B" when the shapes differ.
void check_shape(const Tensor& t, const Shape& expected, const char* what);
void check_same_shape(const Tensor& a, const Tensor& b, const char* what);
void check_device(const Tensor& t, Device d, const char* what);

// A raw scratch region handed to an op (for im2col columns or a cuDNN workspace).
struct Workspace {
  void* data = nullptr;
  size_t bytes = 0;
};

// Whether a backward op writes (=) or adds to (+=) a gradient.
enum class GradMode { Overwrite, Accumulate };

}  // namespace cxr
