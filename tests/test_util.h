// Shared helpers for the tests: fresh random inputs, poisoned outputs, norm-wise comparison, and
// moving data between host vectors and a backend.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/backend.h"

namespace cxr::test {

// A fresh seed per call (std::random_device), printed by the caller on failure for reproduction.
uint64_t fresh_seed();
std::vector<float> random_vector(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f);

// ||a - b|| / ||b|| in double; infinite if either contains a NaN or infinity.
double rel_error(const std::vector<float>& a, const std::vector<float>& b);

// A buffer on a backend, filled from or read back to a host vector. Poisoned (NaN) on request so
// that an element an op fails to write fails the comparison.
class DeviceBuffer {
 public:
  DeviceBuffer(Backend& be, size_t count);
  DeviceBuffer(Backend& be, const std::vector<float>& host);
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  float* data() const { return ptr_; }
  size_t size() const { return count_; }
  std::vector<float> host() const;
  void upload(const std::vector<float>& host);
  void poison();  // fill with NaN
  Tensor tensor(Shape s) const { return Tensor(ptr_, s, be_.device()); }
  Tensor tensor(Shape s, int64_t batch_stride) const { return Tensor(ptr_, s, batch_stride, be_.device()); }

 private:
  Backend& be_;
  float* ptr_ = nullptr;
  size_t count_ = 0;
};

// Returns a CUDA backend, or nullptr after recording why (use with GTEST_SKIP() << reason).
std::unique_ptr<Backend> cuda_or_null(std::string* reason);

// Path of a file in the source tree ($CXR_SOURCE_DIR, else the configured source directory).
std::string source_path(const std::string& rel);
// Path under ../shared (the real NIH data; $CXR_SHARED_DIR overrides); empty if it does not exist.
std::string shared_path(const std::string& rel);
// Fixtures written at test time by a script, once per `key` (a hash of the script's content) and
// shared by the test processes (ctest runs each test in its own): `command` is run with its
// "{out}" replaced by a private temporary folder, which is then renamed to
// <tmp>/<prefix>_<key>; a process that loses that race drops its copy (the files are the same).
// Returns the folder, or "" when the command failed.
std::string generated_fixture_dir(const std::string& prefix, const std::string& key, const std::string& command);

// A whole float32 dataset of an HDF5 file (fixtures' inputs and reference outputs).
std::vector<float> read_h5_floats(const std::string& file, const std::string& dataset);

// Saves a cxr model file of DenseNet121 at `path`: random weights (Keras's default initialisers from
// `seed`), a head for `classes` (empty: the 14 ChestX-ray14 classes), images of image_size: the
// model the command-line tests predict and explain with.
void save_random_densenet121(const std::string& path, const std::vector<std::string>& classes, int image_size,
                             uint64_t seed);

}  // namespace cxr::test

// Skips the current test with a message when no CUDA device is present.
#define CXR_REQUIRE_CUDA(backend_var)                                                   \
  std::string cxr_skip_reason_;                                                          \
  auto backend_var = ::cxr::test::cuda_or_null(&cxr_skip_reason_);                       \
  if (!backend_var) GTEST_SKIP() << "no CUDA device: " << cxr_skip_reason_
