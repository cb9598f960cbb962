// The whole DenseNet121 on the CPU backend against real tf.keras (tests/fixtures/
// make_densenet121_fixture.py): same weights (drawn by one deterministic generator on both sides),
// same inputs; logits in inference and training mode, the weighted-BCE loss, the gradient of every
// trainable tensor, and the running statistics after one training-mode forward.
//
// Tolerance 1e-4 relative, norm-wise (the bar): both sides compute in float32 with
// different summation orders through 120 convolutions; measured errors sit near 1e-6.
#include <hdf5.h>

#include <cmath>
#include <cstdlib>

#include "engine/init.h"
#include "engine/model.h"
#include "engine/rng.h"
#include "test_util.h"

namespace cxr {
namespace {

constexpr double kTol = 1e-4;

class H5File {
 public:
  explicit H5File(const std::string& path) : id_(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT)) {
    if (id_ < 0) CXR_FAIL("cannot open HDF5 file ", path);
  }
  ~H5File() { H5Fclose(id_); }
  template <typename T>
  std::vector<T> read(const std::string& name, hid_t type) const {
    const hid_t d = H5Dopen2(id_, name.c_str(), H5P_DEFAULT);
    if (d < 0) CXR_FAIL("fixture has no dataset ", name);
    const hid_t s = H5Dget_space(d);
    const hssize_t n = H5Sget_simple_extent_npoints(s);
    std::vector<T> v(size_t(std::max<hssize_t>(n, 1)));
    const herr_t st = H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data());
    H5Sclose(s);
    H5Dclose(d);
    if (st < 0) CXR_FAIL("cannot read dataset ", name);
    return v;
  }
  std::vector<float> f32(const std::string& n) const { return read<float>(n, H5T_NATIVE_FLOAT); }
  std::vector<double> f64(const std::string& n) const { return read<double>(n, H5T_NATIVE_DOUBLE); }
  std::vector<int64_t> i64(const std::string& n) const { return read<int64_t>(n, H5T_NATIVE_INT64); }

 private:
  hid_t id_;
};

class DenseNetVsKeras : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    fixture_ = new H5File(test::source_path("tests/fixtures/densenet121_keras.h5"));
    be_ = make_cpu_backend().release();
    net_ = new DenseNet(*be_, DenseNetConfig::from_arch("densenet121", 14), 2, 72, 72);
    init_test_generator(net_->table(), params_, state_);
  }
  static void TearDownTestSuite() {
    delete net_;
    delete be_;
    delete fixture_;
  }
  void SetUp() override {
    net_->set_weights(params_, state_);
    const auto x = fixture_->f32("/input");
    ASSERT_EQ(int64_t(x.size()), net_->input().numel());
    be_->copy_to_device(net_->input().data, x.data(), sizeof(float) * x.size());
    // The fixture's input comes from the shared generator too: check both sides agree on it.
    for (size_t i = 0; i < x.size(); i += 997) ASSERT_EQ(x[i], float(2 * hash_signed(1000000, i))) << i;
    const auto y = fixture_->f32("/labels"), wp = fixture_->f32("/w_pos"), wn = fixture_->f32("/w_neg");
    be_->copy_to_device(net_->labels(), y.data(), sizeof(float) * y.size());
    be_->copy_to_device(net_->w_pos(), wp.data(), sizeof(float) * wp.size());
    be_->copy_to_device(net_->w_neg(), wn.data(), sizeof(float) * wn.size());
  }

  static H5File* fixture_;
  static Backend* be_;
  static DenseNet* net_;
  static std::vector<float> params_, state_;
};
H5File* DenseNetVsKeras::fixture_ = nullptr;
Backend* DenseNetVsKeras::be_ = nullptr;
DenseNet* DenseNetVsKeras::net_ = nullptr;
std::vector<float> DenseNetVsKeras::params_, DenseNetVsKeras::state_;

TEST_F(DenseNetVsKeras, TableMatchesTheKerasManifest) {
  const auto& t = net_->table();
  EXPECT_EQ(t.size(), 606);
  EXPECT_EQ(t.trainable_count(), 6968206);  // FACTS.md: DenseNet121 with a 14-class head
  EXPECT_EQ(t.state_count(), 83648);
  EXPECT_EQ(t[0].keras_path(), "/conv1/conv/conv1/conv/kernel:0");
  EXPECT_EQ(t[14].layer, "conv2_block1_2_conv");
  EXPECT_EQ(t[601].layer, "bn");
  EXPECT_EQ(t[604].keras_shape, (std::vector<int64_t>{1024, 14}));
}

TEST_F(DenseNetVsKeras, InferenceLogits) {
  net_->forward(false);
  const double e = test::rel_error(net_->get_logits(), fixture_->f32("/logits_inference"));
  RecordProperty("rel_error", std::to_string(e));
  EXPECT_LT(e, kTol);
}

TEST_F(DenseNetVsKeras, TrainingLogitsLossGradientsAndRunningStatistics) {
  net_->forward(true);
  EXPECT_LT(test::rel_error(net_->get_logits(), fixture_->f32("/logits_training")), kTol);
  const double loss = net_->loss();
  const double ref_loss = fixture_->f64("/loss")[0];
  EXPECT_LT(std::abs(loss - ref_loss) / std::abs(ref_loss), kTol);
  net_->backward();

  const auto grads = net_->get_grads();
  const auto& table = net_->table();
  const auto index = fixture_->i64("/grad/tensor_index");
  const auto norms = fixture_->f64("/grad/norm");
  const auto sketch = fixture_->f64("/grad/sketch");
  const auto sample_index = fixture_->i64("/grad/sample_index");
  const auto sample_value = fixture_->f32("/grad/sample_value");
  ASSERT_EQ(index.size(), 364u);
  double total_err2 = 0, total_ref2 = 0;
  struct TensorError {
    double err, norm;
    std::string name;
  };
  std::vector<TensorError> errors;
  std::vector<float> keras;
  for (size_t row = 0; row < index.size(); ++row) {
    const ParamEntry& e = table[int(index[row])];
    ASSERT_TRUE(e.trainable) << e.layer;
    keras.resize(size_t(e.numel));
    ours_to_keras(e, grads.data() + e.offset, keras.data());
    // Norm-wise error estimate: full tensors where stored, else a 16-row random-sign sketch
    // (E[(r.d)^2] = |d|^2, so the mean over rows estimates |ours - ref|^2) plus 64 exact samples.
    double err2 = 0;
    const std::string full = "/grad/full/" + std::to_string(e.index);
    if (e.role != ParamRole::ConvKernel) {  // the fixture stores every non-convolution gradient whole
      const auto ref = fixture_->f32(full);
      for (size_t i = 0; i < ref.size(); ++i) err2 += std::pow(double(keras[i]) - ref[i], 2);
    } else {
      for (int k = 0; k < 16; ++k) {
        double s = 0;
        for (int64_t i = 0; i < e.numel; ++i) {
          const bool plus = (splitmix64(((3000000 + 16 * uint64_t(e.index) + uint64_t(k)) << 32) | uint64_t(i)) >> 63) != 0;
          s += plus ? keras[size_t(i)] : -keras[size_t(i)];
        }
        err2 += std::pow(s - sketch[row * 16 + size_t(k)], 2) / 16;
      }
      double se = 0, sr = 0;
      for (size_t k = 0; k < 64; ++k) {
        const double ours = keras[size_t(sample_index[row * 64 + k])], ref = sample_value[row * 64 + k];
        se += (ours - ref) * (ours - ref);
        sr += ref * ref;
      }
      EXPECT_LT(std::sqrt(se / sr), 10 * kTol) << e.layer << ": sampled elements";  // 64 values: noisier
    }
    const double rel = std::sqrt(err2) / norms[row];
    if (std::getenv("CXR_VERBOSE"))
      std::printf("%4d %-28s %-16s %.3g (norm %.3g)\n", e.index, e.layer.c_str(), e.weight().c_str(), rel, norms[row]);
    errors.push_back({std::sqrt(err2), norms[row], e.layer + "/" + e.weight()});
    total_err2 += err2;
    total_ref2 += norms[row] * norms[row];
  }
  // Per tensor: 1e-4 relative, with an absolute floor of 1e-6 of the whole gradient's norm for
  // tensors whose true gradient is ~0 (conv1/bn beta: every later training-mode BN subtracts a
  // per-channel shift again, so only float32 noise is left on both sides).
  const double floor = 1e-6 * std::sqrt(total_ref2);
  double worst = 0;
  std::string worst_name;
  for (const auto& t : errors) {
    EXPECT_LT(t.err, kTol * t.norm + floor) << t.name << " (gradient norm " << t.norm << ")";
    if (t.norm > 100 * floor && t.err / t.norm > worst) worst = t.err / t.norm, worst_name = t.name;
  }
  const double total = std::sqrt(total_err2 / total_ref2);
  std::printf("gradients vs Keras: all parameters %.3g relative (norm-wise); worst tensor %s %.3g\n", total,
              worst_name.c_str(), worst);
  EXPECT_LT(total, kTol);

  // Running statistics after the one training forward (Keras momentum 0.99, unbiased variance).
  std::vector<float> state;
  net_->get_weights(nullptr, &state);
  double se = 0, sr = 0;
  for (const auto& e : table.entries()) {
    if (e.trainable) continue;
    const auto ref = fixture_->f32("/moving_after/" + std::to_string(e.index));
    for (int64_t i = 0; i < e.numel; ++i) {
      se += std::pow(double(state[size_t(e.offset + i)]) - ref[size_t(i)], 2);
      sr += double(ref[size_t(i)]) * ref[size_t(i)];
    }
  }
  EXPECT_LT(std::sqrt(se / sr), kTol);
}

}  // namespace
}  // namespace cxr
