// Training workflow on a tiny synthetic dataset (32x32, DenseNet121 on the CPU): the run folder, exact
// resumption (bitwise on the CPU, also after Ctrl-C in the middle of an epoch), a non-finite loss, and
// the errors a user meets.
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "engine/model.h"
#include "io/checkpoint.h"
#include "io/prepare.h"
#include "io/synth.h"
#include "test_util.h"
#include "tools/evaluator.h"
#include "tools/pipeline.h"
#include "tools/trainer.h"

namespace cxr {
namespace {

namespace fs = std::filesystem;

// One small dataset for the whole suite: 24 synthetic patients (~70 images) packed at 32x32.
class TrainWorkflow : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = fs::temp_directory_path() / ("cxr_train_test_" + std::to_string(getpid()));
    fs::create_directories(root_);
    io::SynthOptions so;
    so.out = (root_ / "synth").string();
    so.patients = 24;
    so.size = 64;
    so.seed = 3;
    so.quiet = true;
    io::synth_dataset(so);
    io::PrepareOptions po;
    po.csv = so.out + "/Data_Entry_2017_v2020.csv";
    po.images_dir = so.out + "/images";
    po.out = (root_ / "data.h5").string();
    po.size = 32;
    po.quiet = true;
    io::prepare_dataset(po);
    po.out = (root_ / "test_only.h5").string();
    po.ratios = io::parse_ratios("0,0,1");
    io::prepare_dataset(po);
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }

  static app::TrainOptions options(const std::string& run, int64_t epochs) {
    app::TrainOptions o;
    o.data = (root_ / "data.h5").string();
    o.out = (root_ / run).string();
    o.device = "cpu";
    o.epochs = epochs;
    o.batch = 8;
    o.lr = 1e-3;
    o.seed = 5;
    o.quiet = true;
    return o;
  }
  static std::vector<float> params_of(const std::string& file, std::vector<float>* state = nullptr) {
    auto be = make_cpu_backend();
    DenseNet net(*be, DenseNetConfig::from_arch("densenet121"), 2, 32, 32, false, /*allocate=*/false);
    std::vector<float> p(size_t(net.table().trainable_count())), s(size_t(net.table().state_count()));
    io::load_weights(file, net.table(), p, s, io::HeadPolicy::Require, 0);
    if (state) *state = s;
    return p;
  }
  static int epoch_lines(const std::string& run) {
    std::ifstream f((root_ / run / "metrics.jsonl").string());
    std::string line;
    int n = 0;
    while (std::getline(f, line)) n += line.find("\"type\":\"epoch\"") != std::string::npos;
    return n;
  }
  static fs::path root_;
};
fs::path TrainWorkflow::root_;

TEST_F(TrainWorkflow, WritesCheckpointsLogAndCurves) {
  const auto r = app::train(options("basic", 2));
  EXPECT_EQ(r.epochs_done, 2);
  EXPECT_FALSE(r.interrupted);
  for (const char* f : {"last.h5", "best.h5", "metrics.jsonl", "training_curves.svg"})
    EXPECT_TRUE(fs::exists(root_ / "basic" / f)) << f;
  EXPECT_EQ(epoch_lines("basic"), 2);
  auto meta = io::read_model_meta((root_ / "basic" / "last.h5").string());
  ASSERT_TRUE(meta.has_value());
  EXPECT_EQ(meta->image_size, 32);
  EXPECT_EQ(meta->normalization, "sample");
  EXPECT_EQ(meta->class_names.size(), 14u);
  // A second run into the same folder without --resume is refused (nothing is overwritten).
  EXPECT_THROW(app::train(options("basic", 2)), Error);
}

TEST_F(TrainWorkflow, ResumingGivesBitwiseTheSameWeights) {
  app::train(options("straight", 3));
  app::train(options("resumed", 1));
  auto o = options("resumed", 3);
  o.resume = true;
  app::train(o);
  std::vector<float> sa, sb;
  const auto a = params_of((root_ / "straight" / "last.h5").string(), &sa);
  const auto b = params_of((root_ / "resumed" / "last.h5").string(), &sb);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), sizeof(float) * a.size()), 0) << "parameters differ";
  EXPECT_EQ(std::memcmp(sa.data(), sb.data(), sizeof(float) * sa.size()), 0) << "running statistics differ";
}

TEST_F(TrainWorkflow, CtrlCSavesAndResumesExactly) {
  app::train(options("uninterrupted", 2));
  // Interrupt the second run once it has logged a few steps of its first epoch.
  auto o = options("interrupted", 2);
  o.log_batches = true;
  std::atomic<bool> done{false};
  std::thread killer([&] {
    const auto log = root_ / "interrupted" / "batches.jsonl";
    while (!done) {
      std::ifstream f(log.string());
      int n = 0;
      std::string line;
      while (std::getline(f, line)) ++n;
      if (n >= 3) {
        std::raise(SIGINT);
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  const auto r = app::train(o);
  done = true;
  killer.join();
  ASSERT_TRUE(r.interrupted) << "the run finished before the interrupt arrived";
  o.resume = true;
  o.log_batches = false;
  const auto r2 = app::train(o);
  EXPECT_FALSE(r2.interrupted);
  const auto a = params_of((root_ / "uninterrupted" / "last.h5").string());
  const auto b = params_of((root_ / "interrupted" / "last.h5").string());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), sizeof(float) * a.size()), 0) << "parameters differ after Ctrl-C + resume";
}

TEST_F(TrainWorkflow, NonFiniteLossStopsAndKeepsTheLastGoodCheckpoint) {
  app::train(options("diverge", 1));
  const auto before = params_of((root_ / "diverge" / "last.h5").string());
  auto o = options("diverge", 3);
  o.resume = true;
  o.reset_lr = true;
  o.lr = 1e38;  // Adam moves every weight by ~lr: logits overflow to infinity within a step or two
  try {
    app::train(o);
    FAIL() << "no error for a diverging run";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("the loss became"), std::string::npos) << e.what();
  }
  const auto after = params_of((root_ / "diverge" / "last.h5").string());
  EXPECT_EQ(std::memcmp(before.data(), after.data(), sizeof(float) * before.size()), 0);
}

TEST_F(TrainWorkflow, ClearErrors) {
  auto o = options("errors", 1);
  o.data = (root_ / "test_only.h5").string();
  try {
    app::train(o);
    FAIL() << "no error for a dataset without training images";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no training images"), std::string::npos) << e.what();
  }
  o = options("errors", 1);
  o.size = 64;
  try {
    app::train(o);
    FAIL() << "no error for a size the packed images do not have";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("differs from the packed images"), std::string::npos) << e.what();
  }
  o = options("errors", 1);
  o.resume = true;
  EXPECT_THROW(app::train(o), Error);  // nothing to resume
  EXPECT_FALSE(fs::exists(root_ / "errors" / "last.h5"));
}

TEST_F(TrainWorkflow, ClassWeightsBalancePositivesAndNegatives) {
  // The seed's check: with w_pos = frequency of negatives and w_neg = of positives, each class's
  // weighted positive and negative contributions are equal over the training set.
  io::PackedDataset data((root_ / "data.h5").string());
  const auto w = app::class_weights(data, io::Split::Train, false);
  const auto idx = data.indices(io::Split::Train);
  for (int k = 0; k < io::kNumClasses; ++k) {
    double pos = 0, neg = 0;
    for (int64_t i : idx) (data.labels()[size_t(i * io::kNumClasses + k)] ? pos : neg) += 1;
    EXPECT_NEAR(w.pos[size_t(k)] * pos, w.neg[size_t(k)] * neg, 1e-3 * double(idx.size())) << k;
    EXPECT_NEAR(w.pos[size_t(k)] + w.neg[size_t(k)], 1.0, 1e-6);
  }
  const auto plain = app::class_weights(data, io::Split::Train, true);
  EXPECT_EQ(plain.pos[0], 1.0f);
  EXPECT_EQ(plain.neg[0], 1.0f);
}

TEST_F(TrainWorkflow, EvaluateAndPredictWriteTheirOutputs) {
  app::train(options("for_eval", 1));
  const std::string weights = (root_ / "for_eval" / "best.h5").string();
  app::EvaluateOptions e;
  e.weights = weights;
  e.data = (root_ / "data.h5").string();
  e.out = (root_ / "for_eval" / "eval").string();
  e.device = "cpu";
  e.bootstrap = 20;
  e.quiet = true;
  const auto r = app::evaluate(e);
  ASSERT_TRUE(r.contains("auc") && r.contains("mean_auc")) << r.dump();
  EXPECT_GT(r["images"].get<int64_t>(), 0);
  for (const auto& [name, auc] : r["auc"].items()) {
    EXPECT_GE(auc.get<double>(), 0.0) << name;
    EXPECT_LE(auc.get<double>(), 1.0) << name;
  }
  EXPECT_TRUE(r.contains("auc_ci95"));
  EXPECT_TRUE(r.contains("published"));
  for (const char* f : {"metrics.json", "per_class.csv", "roc_curves.svg", "roc_curves.png"})
    EXPECT_TRUE(fs::exists(fs::path(e.out) / f)) << f;
  EXPECT_NE(app::evaluation_table(r).find("CheXNet"), std::string::npos);
  // The test set has no validation set of its own here only when val is empty; ours has one.
  EXPECT_TRUE(r.contains("thresholds"));

  app::PredictOptions p;
  p.weights = weights;
  p.out = (root_ / "for_eval" / "pred.csv").string();
  p.device = "cpu";
  p.inputs = {(root_ / "synth" / "images").string()};
  p.thresholds = (fs::path(e.out) / "metrics.json").string();
  p.quiet = true;
  const int64_t n = app::predict(p).written;
  EXPECT_GT(n, 10);
  std::ifstream f(p.out);
  std::string header, line;
  std::getline(f, header);
  EXPECT_EQ(std::count(header.begin(), header.end(), ','), 28);  // image + 14 probabilities + 14 labels
  int64_t rows = 0;
  while (std::getline(f, line)) ++rows;
  EXPECT_EQ(rows, n);
}

}  // namespace
}  // namespace cxr
