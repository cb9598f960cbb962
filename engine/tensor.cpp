#include "engine/tensor.h"

#include <sstream>

namespace cxr {

const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

std::string Shape::str() const {
  std::ostringstream os;
  os << "(" << n << ", " << c << ", " << h << ", " << w << ")";
  return os.str();
}

Tensor Tensor::channels(int64_t c0, int64_t c1) const {
  CXR_CHECK(0 <= c0 && c0 <= c1 && c1 <= shape.c, "channel slice [", c0, ", ", c1, ") of ",
            shape.str());
  Shape s = shape;
  s.c = c1 - c0;
  return Tensor(data + c0 * shape.h * shape.w, s, batch_stride, device);
}

void check_shape(const Tensor& t, const Shape& expected, const char* what) {
  if (t.shape != expected)
    CXR_FAIL(what, ": expected shape ", expected.str(), ", got ", t.shape.str());
}

void check_same_shape(const Tensor& a, const Tensor& b, const char* what) {
  if (a.shape != b.shape) CXR_FAIL(what, ": shapes differ: ", a.shape.str(), " vs ", b.shape.str());
}

void check_device(const Tensor& t, Device d, const char* what) {
  if (t.device != d)
    CXR_FAIL(what, ": tensor is on ", device_name(t.device), ", expected ", device_name(d));
}

}  // namespace cxr
