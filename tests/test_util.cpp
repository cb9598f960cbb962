#include "test_util.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "engine/init.h"
#include "engine/model.h"
#include "io/checkpoint.h"
#include "io/classes.h"
#include "io/hdf5.h"
#include "io/weights.h"

namespace cxr::test {

uint64_t fresh_seed() {
  std::random_device rd;
  return (uint64_t(rd()) << 32) ^ rd();
}

std::vector<float> random_vector(size_t n, uint64_t seed, float lo, float hi) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

double rel_error(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return std::numeric_limits<double>::infinity();
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return std::numeric_limits<double>::infinity();
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

DeviceBuffer::DeviceBuffer(Backend& be, size_t count) : be_(be), count_(count) {
  ptr_ = static_cast<float*>(be_.allocate(sizeof(float) * std::max<size_t>(count, 1)));
}
DeviceBuffer::DeviceBuffer(Backend& be, const std::vector<float>& host) : DeviceBuffer(be, host.size()) {
  upload(host);
}
DeviceBuffer::~DeviceBuffer() { be_.release(ptr_); }

std::vector<float> DeviceBuffer::host() const {
  std::vector<float> v(count_);
  be_.copy_to_host(v.data(), ptr_, sizeof(float) * count_);
  be_.synchronize();
  return v;
}
void DeviceBuffer::upload(const std::vector<float>& host) {
  CXR_CHECK(host.size() == count_, "upload of ", host.size(), " values into a buffer of ", count_);
  be_.copy_to_device(ptr_, host.data(), sizeof(float) * count_);
}
void DeviceBuffer::poison() { be_.fill(ptr_, std::numeric_limits<float>::quiet_NaN(), int64_t(count_)); }

std::unique_ptr<Backend> cuda_or_null(std::string* reason) {
  if (cuda_device_count() == 0) {
    *reason = cuda_unavailable_reason();
    return nullptr;
  }
  return make_cuda_backend(0);
}

std::string source_path(const std::string& rel) {
  const char* env = std::getenv("CXR_SOURCE_DIR");  // set where the tests run away from the build tree
  return std::string(env && *env ? env : CXR_SOURCE_DIR) + "/" + rel;
}

std::string generated_fixture_dir(const std::string& prefix, const std::string& key, const std::string& command) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / (prefix + "_" + key);
  if (fs::exists(dir / ".complete")) return dir.string();
  const std::string tmp = dir.string() + ".tmp-" + std::to_string(::getpid());
  std::string cmd = command;
  for (size_t at; (at = cmd.find("{out}")) != std::string::npos;) cmd.replace(at, 5, tmp);
  std::error_code ec;
  fs::remove_all(tmp, ec);
  if (std::system(cmd.c_str()) != 0) {
    fs::remove_all(tmp, ec);
    return "";
  }
  std::ofstream(tmp + "/.complete") << "ok\n";
  fs::rename(tmp, dir, ec);  // another test process may have won the race: its files are the same
  if (ec) fs::remove_all(tmp, ec);
  return dir.string();
}

std::string shared_path(const std::string& rel) {
  const char* env = std::getenv("CXR_SHARED_DIR");
  const std::string p = std::string(env && *env ? env : CXR_SHARED_DIR) + "/" + rel;
  struct stat st;
  return stat(p.c_str(), &st) == 0 ? p : std::string();
}

std::vector<float> read_h5_floats(const std::string& file, const std::string& dataset) {
  namespace h5 = io::h5;
  h5::Silence quiet;
  h5::Handle f = h5::open_file(file);
  const auto info = h5::dataset_info(f, dataset);
  int64_t n = 1;
  for (int64_t d : info.shape) n *= d;
  std::vector<float> v(static_cast<size_t>(n));
  h5::read_floats(f, dataset, v.data(), n);
  return v;
}

void save_random_densenet121(const std::string& path, const std::vector<std::string>& classes, int image_size,
                             uint64_t seed) {
  io::ModelMeta meta;
  meta.class_names = classes;
  if (meta.class_names.empty()) meta.class_names.assign(io::kClassNames.begin(), io::kClassNames.end());
  meta.classes = int64_t(meta.class_names.size());
  meta.image_size = image_size;
  const ParamTable table = io::densenet_param_table(DenseNetConfig::from_arch("densenet121", meta.classes));
  std::vector<float> params, state;
  init_keras_default(table, params, state, seed);
  io::save_checkpoint(path, table, params, state, meta);
}

}  // namespace cxr::test
