// Engine pieces: parameter counts of the three architectures, the memory plan, sizes, and the errors
// a user meets (shape mismatches naming both shapes, an image too small, an unknown device).
#include <gtest/gtest.h>

#include "engine/arena.h"
#include "engine/model.h"
#include "test_util.h"

namespace cxr {
namespace {

int64_t total_params(const std::string& arch, int64_t classes) {
  auto be = make_cpu_backend();
  DenseNet net(*be, DenseNetConfig::from_arch(arch, classes), 1, 32, 32, /*trainable=*/false);
  return net.table().trainable_count() + net.table().state_count();
}

TEST(EngineModel, ParameterCountsMatchKerasWith1000ClassTop) {
  // Keras model.summary() totals (trainable + BN moving statistics) of the ImageNet models.
  EXPECT_EQ(total_params("densenet121", 1000), 8062504);
  EXPECT_EQ(total_params("densenet169", 1000), 14307880);
  EXPECT_EQ(total_params("densenet201", 1000), 20242984);
}

TEST(EngineModel, TrainingPlanHasGradientsAndInferencePlanDoesNot) {
  auto be = make_cpu_backend();
  const auto cfg = DenseNetConfig::from_arch("densenet121");
  DenseNet train(*be, cfg, 2, 64, 64, true), infer(*be, cfg, 2, 64, 64, false);
  EXPECT_GE(train.plan().category_bytes(MemCategory::Gradients), size_t(6968206) * 4);
  EXPECT_EQ(infer.plan().category_bytes(MemCategory::Gradients), 0u);
  EXPECT_LT(infer.plan().total_bytes(), train.plan().total_bytes());
  EXPECT_THROW(infer.forward(true), Error);
  // One allocation: what the backend handed out is the plans' totals.
  EXPECT_EQ(be->peak_allocated_bytes(), train.plan().total_bytes() + infer.plan().total_bytes());
}

TEST(EngineModel, ImageTooSmallIsAClearError) {
  auto be = make_cpu_backend();
  try {
    DenseNet net(*be, DenseNetConfig::from_arch("densenet121"), 1, 16, 16);
    FAIL() << "no error for a 16x16 image";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("16x16 is too small"), std::string::npos) << e.what();
  }
  EXPECT_THROW(DenseNetConfig::from_arch("resnet50"), Error);
}

TEST(EngineModel, OutOfMemoryNamesTheNeedAndWhatToLower) {
  // ~17 TB for batch 200,000 at 320x320: no machine has it, so the one arena allocation fails (on a
  // GPU the same message wraps cudaMalloc's out-of-memory error).
  auto be = make_cpu_backend();
  try {
    DenseNet net(*be, DenseNetConfig::from_arch("densenet121"), 200000, 320, 320);
    FAIL() << "a 17 TB arena was allocated";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("cannot allocate"), std::string::npos) << m;
    EXPECT_NE(m.find("TiB"), std::string::npos) << m;
    EXPECT_NE(m.find("batch 200000"), std::string::npos) << m;
    EXPECT_NE(m.find("lower the batch size or the image size"), std::string::npos) << m;
  }
}

TEST(EngineErrors, ConvolutionShapeMismatchNamesBothShapes) {
  auto be = make_cpu_backend();
  test::DeviceBuffer x(*be, 2 * 3 * 8 * 8), y(*be, 2 * 4 * 8 * 8), w(*be, 4 * 5 * 3 * 3);
  const Shape xs{2, 3, 8, 8}, ys{2, 4, 8, 8}, ws{4, 5, 3, 3};  // w expects 5 input channels
  try {
    be->conv2d_forward(y.tensor(ys), x.tensor(xs), w.data(), ws, ConvGeom{3, 1, 1}, Workspace{});
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(xs.str()), std::string::npos) << m;
    EXPECT_NE(m.find(ws.str()), std::string::npos) << m;
    EXPECT_NE(m.find("conv2d_forward"), std::string::npos) << m;
  }
}

TEST(EngineErrors, UnknownOrMissingDevice) {
  EXPECT_THROW(make_backend("tpu"), Error);
  if (cuda_device_count() == 0) {
    try {
      make_backend("cuda");
      FAIL() << "no error without a GPU";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("no usable GPU"), std::string::npos) << e.what();
    }
  }
}

TEST(EngineArena, PlanAlignsAndGrows) {
  MemoryPlan p;
  const auto a = p.add("a", MemCategory::Activations, 10);
  const auto b = p.add("b", MemCategory::Workspace, 300);
  EXPECT_EQ(p.entry(a).offset, 0u);
  EXPECT_EQ(p.entry(b).offset, 256u);
  p.grow(a, 1000);
  EXPECT_EQ(p.entry(b).offset, 1024u);
  EXPECT_EQ(p.total_bytes(), 1024u + 512u);
  EXPECT_EQ(p.category_bytes(MemCategory::Workspace), 512u);
}

TEST(EngineArena, ParsesSizes) {
  EXPECT_EQ(parse_bytes("4096"), 4096u);
  EXPECT_EQ(parse_bytes("512M"), 512u << 20);
  EXPECT_EQ(parse_bytes("12G"), size_t(12) << 30);
  EXPECT_EQ(parse_bytes("1.5GiB"), size_t(3) << 29);
  EXPECT_THROW(parse_bytes("lots"), Error);
  EXPECT_THROW(parse_bytes("12X"), Error);
}

}  // namespace
}  // namespace cxr
