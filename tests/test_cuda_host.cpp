// The CUDA backend's host-side rules, tested on any machine (no GPU needed): which views take the
// kernels' 32-bit index path and that its arithmetic equals the 64-bit one at the boundary, how BN
// statistics are split over blocks, the loaded-vs-compiled library version policy, and which cuDNN
// statuses count as an algorithm's refusal.
#include <gtest/gtest.h>

#include <cstdint>

#include "engine/library_versions.h"
#include "kernels/bn_launch.h"
#include "kernels/view_index.h"
#include "test_data_util.h"
#ifdef CXR_HAVE_CUDA
#include "kernels/cuda/conv_cuda.h"
#endif

namespace cxr {
namespace {

constexpr int64_t kMax32 = INT32_MAX;

// ---- Note [32-bit kernel indices] ------------------------------------------------------------

TEST(KernelIndex, Fits32BitExactlyUpToInt32Max) {
  // One image: the span is the count.
  EXPECT_TRUE(fits_32bit_index(1, 1, kMax32, kMax32));
  EXPECT_FALSE(fits_32bit_index(1, 1, kMax32 + 1, kMax32 + 1));
  // Two images, 2^30 - 1 channels of one element, 2^30 apart: span (2-1) * 2^30 + 2^30 - 1 = INT32_MAX.
  const int64_t b = int64_t(1) << 30;
  EXPECT_TRUE(fits_32bit_index(2, b - 1, 1, b));
  EXPECT_FALSE(fits_32bit_index(2, b - 1, 1, b + 1));  // span INT32_MAX + 1
  EXPECT_FALSE(fits_32bit_index(2, b, 1, b));          // span 2^31
  // The count alone over the limit (a packed view, span = count = 2^31).
  EXPECT_FALSE(fits_32bit_index(int64_t(1) << 11, 1024, 1024, 1024 * 1024));
  // DenseNet121's largest view at batch 32, 320x320: the 256-channel block-1 buffer at 80x80.
  EXPECT_TRUE(fits_32bit_index(32, 256, 80 * 80, 256 * 80 * 80));
  // No elements: nothing to index, whatever the stride.
  EXPECT_TRUE(fits_32bit_index(0, 7, 9, int64_t(1) << 40));
}

TEST(KernelIndex, ThirtyTwoBitArithmeticEqualsSixtyFourAtTheBoundary) {
  // The largest view the 32-bit path accepts: its last offset is INT32_MAX - 1.
  const int64_t b = int64_t(1) << 30;
  ASSERT_TRUE(fits_32bit_index(2, b - 1, 1, b));
  const ViewIndex<int64_t> wide{2, b - 1, 1, b};
  const ViewIndex<uint32_t> narrow{2, uint32_t(b - 1), 1, uint32_t(b)};
  EXPECT_EQ(int64_t(narrow.count()), wide.count());
  for (int64_t i : {int64_t(0), b - 2, b - 1, b, wide.count() - 2, wide.count() - 1}) {
    EXPECT_EQ(int64_t(narrow.offset(uint32_t(i))), wide.offset(i)) << "element " << i;
    EXPECT_EQ(int64_t(narrow.channel_of(uint32_t(i))), wide.channel_of(i)) << "element " << i;
  }
  EXPECT_EQ(wide.offset(wide.count() - 1), kMax32 - 1);
  // channel_offset on planes of several elements: 2 images of 3 channels of 2^28 - 1, 2^30 apart.
  const int64_t hw = (int64_t(1) << 28) - 1, bs = int64_t(1) << 30;
  ASSERT_TRUE(fits_32bit_index(2, 3, hw, bs));
  const ViewIndex<int64_t> w2{2, 3, hw, bs};
  const ViewIndex<uint32_t> n2{2, 3, uint32_t(hw), uint32_t(bs)};
  for (int64_t j : {int64_t(0), hw - 1, hw, 2 * hw - 1})
    for (int64_t ch : {0, 2})
      EXPECT_EQ(int64_t(n2.channel_offset(uint32_t(ch), uint32_t(j))), w2.channel_offset(ch, j));
}

// ---- Note [BN statistics over many blocks] ---------------------------------------------------

TEST(BnLaunch, FewChannelsSpreadOverManyBlocks) {
  const int64_t sms = 132, target = 4 * sms, min_chunk = 2048, cap = 8 * sms;
  // A dense layer's 32 new channels at batch 32, 80x80: 17 blocks each, 544 in all.
  EXPECT_EQ(bn_stat_splits(32, 32 * 80 * 80, target, min_chunk, cap), 17);
  // Many channels already fill the device: one block each.
  EXPECT_EQ(bn_stat_splits(1024, 32 * 10 * 10, target, min_chunk, cap), 1);
  // Small channels: no block gets fewer than min_chunk elements.
  EXPECT_EQ(bn_stat_splits(32, 3 * min_chunk + 1, target, min_chunk, cap), 3);
  EXPECT_EQ(bn_stat_splits(32, min_chunk - 1, target, min_chunk, cap), 1);
  // The scratch bounds channels * splits.
  EXPECT_EQ(bn_stat_splits(100, int64_t(1) << 30, target, min_chunk, 250), 2);
  for (int64_t c = 1; c <= 2000; c += 37)
    for (int64_t per : {int64_t(1), int64_t(5000), int64_t(1) << 22}) {
      const int64_t s = bn_stat_splits(c, per, target, min_chunk, cap);
      EXPECT_GE(s, 1);
      if (s > 1) {
        EXPECT_LE(c * s, cap) << c << " channels of " << per;
        EXPECT_GE(per / s, min_chunk) << c << " channels of " << per;
      }
    }
}

// ---- Note [cuDNN version policy] -------------------------------------------------------------

TEST(LibraryVersions, DecodesCudnnAndCublasEncoding) {
  const LibraryVersion v = decode_library_version(91900);
  EXPECT_EQ(v.major, 9);
  EXPECT_EQ(v.minor, 19);
  EXPECT_EQ(v.patch, 0);
  EXPECT_EQ(decode_library_version(130103).str(), "13.1.3");
}

TEST(LibraryVersions, RefusesAnotherMajorWarnsOnOlderMinor) {
  const LibraryVersion built{9, 19, 0};
  EXPECT_EQ(check_library_version("cuDNN", built, {9, 19, 0}).message, "");
  EXPECT_FALSE(check_library_version("cuDNN", built, {9, 19, 0}).refuse);
  EXPECT_EQ(check_library_version("cuDNN", built, {9, 21, 1}).message, "");  // newer minor: fine
  const VersionVerdict older = check_library_version("cuDNN", built, {9, 10, 2});
  EXPECT_FALSE(older.refuse);
  EXPECT_NE(older.message.find("9.19.0"), std::string::npos) << older.message;
  EXPECT_NE(older.message.find("9.10.2"), std::string::npos) << older.message;
  const VersionVerdict other_major = check_library_version("cuDNN", built, {8, 9, 7});
  EXPECT_TRUE(other_major.refuse);
  EXPECT_NE(other_major.message.find("compiled against cuDNN 9.19.0 but loaded 8.9.7"), std::string::npos)
      << other_major.message;
  EXPECT_TRUE(check_library_version("cuBLAS", {13, 1, 0}, {12, 9, 1}).refuse);
}

TEST(LibraryVersions, NamedInVersionText) {
  const std::string text = cuda_library_versions();
#ifdef CXR_HAVE_CUDA
  // Read from the loaded libraries, which need no GPU.
  EXPECT_NE(text.find("cuDNN "), std::string::npos) << text;
  EXPECT_NE(text.find("cuBLAS "), std::string::npos) << text;
  EXPECT_NE(text.find("(compiled "), std::string::npos) << text;
#else
  EXPECT_EQ(text, "no CUDA backend in this build");
#endif
}

TEST(LibraryVersions, CliVersionNamesThem) {
  test::ScratchDir dir("version");
  const test::RunResult r = test::run_cxr(dir, "--version");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("cxr "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(cuda_library_versions()), std::string::npos) << r.out;
}

// ---- Note [cuDNN refusals] -------------------------------------------------------------------

#ifdef CXR_HAVE_CUDA
TEST(CudnnRefusal, NotSupportedCategoryAndMisalignedPointer) {
  for (int code = 3000; code <= 3014; ++code) EXPECT_TRUE(cuda::cudnn_refused(cudnnStatus_t(code))) << code;
  EXPECT_TRUE(cuda::cudnn_refused(CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER));
  for (cudnnStatus_t s : {CUDNN_STATUS_SUCCESS, CUDNN_STATUS_BAD_PARAM, CUDNN_STATUS_NOT_INITIALIZED,
                          CUDNN_STATUS_INTERNAL_ERROR, CUDNN_STATUS_EXECUTION_FAILED})
    EXPECT_FALSE(cuda::cudnn_refused(s)) << int(s);
}

TEST(CudnnRefusal, AlgorithmNamesForTheLog) {
  EXPECT_STREQ(cuda::algorithm_name(cuda::ConvDirection::Forward, 1), "IMPLICIT_PRECOMP_GEMM");
  EXPECT_STREQ(cuda::algorithm_name(cuda::ConvDirection::BackwardData, 1), "ALGO_1");
  EXPECT_STREQ(cuda::algorithm_name(cuda::ConvDirection::BackwardFilter, 6), "FFT_TILING");
  EXPECT_STREQ(cuda::algorithm_name(cuda::ConvDirection::Forward, 8), "?");
}
#endif

}  // namespace
}  // namespace cxr
