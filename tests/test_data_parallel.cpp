// Data parallel in one process (the two-rank checks are tests/test_data_parallel_mpi.cpp, under
// mpirun): the gradient buckets' plan, the gradient hook's promise that a bucket is final when it is
// started, and the one-rank communicator.
#include <gtest/gtest.h>

#include <cstdlib>

#include "engine/comm.h"
#include "engine/data_parallel.h"
#include "engine/init.h"
#include "engine/model.h"
#include "tests/test_util.h"

namespace cxr {
namespace {

// A small DenseNet (2 blocks, growth 8) at 16x16 for `batch` images, Keras-initialised, with fixed
// inputs, labels (a few positives) and unit loss weights uploaded.
std::unique_ptr<DenseNet> small_model_with_inputs(Backend& be, int64_t batch) {
  DenseNetConfig cfg;
  cfg.blocks = {2, 3};
  cfg.growth = 8, cfg.bottleneck = 16, cfg.stem = 16;
  auto model = std::make_unique<DenseNet>(be, cfg, batch, 16, 16, true);
  DenseNet& net = *model;
  std::vector<float> p, s;
  net.get_weights(&p, &s);
  init_keras_default(net.table(), p, s, 3);
  net.set_weights(p, s);
  std::vector<float> img(size_t(batch * 3 * 16 * 16)), lab(size_t(batch * 14), 0.0f), w(14, 1.0f);
  for (size_t i = 0; i < img.size(); ++i) img[i] = float((i * 37) % 101) / 50.0f - 1.0f;
  for (size_t i = 1; i < lab.size(); i += 19) lab[i] = 1.0f;
  be.copy_to_device(net.input().data, img.data(), sizeof(float) * img.size());
  be.copy_to_device(net.labels(), lab.data(), sizeof(float) * lab.size());
  be.copy_to_device(net.w_pos(), w.data(), sizeof(float) * w.size());
  be.copy_to_device(net.w_neg(), w.data(), sizeof(float) * w.size());
  return model;
}

TEST(DataParallel, BucketsCoverTheGradientsFromTheEndAtTensorBoundaries) {
  auto be = make_cpu_backend();
  const DenseNet net(*be, DenseNetConfig::from_arch("densenet121"), 2, 32, 32, true, /*allocate=*/false);
  const ParamTable& t = net.table();
  std::vector<int64_t> starts;  // the offsets where a trainable tensor starts
  for (const ParamEntry& e : t.entries())
    if (e.trainable) starts.push_back(e.offset);
  starts.push_back(t.trainable_count());
  for (const double mb : {25.0, 4.0, 0.5}) {
    const auto buckets = plan_gradient_buckets(t, mb);
    ASSERT_FALSE(buckets.empty());
    EXPECT_EQ(buckets.front().end, t.trainable_count());
    EXPECT_EQ(buckets.back().begin, 0);
    for (size_t i = 0; i < buckets.size(); ++i) {
      const auto& b = buckets[i];
      EXPECT_LT(b.begin, b.end);
      if (i > 0) {
        EXPECT_EQ(b.end, buckets[i - 1].begin) << "contiguous, from the end";
      }
      EXPECT_TRUE(std::binary_search(starts.begin(), starts.end(), b.begin)) << "cut at a tensor boundary";
      // At most the cap, unless a single tensor is larger (then alone).
      const double cap = (i == 0 ? 1.0 : mb) * 1e6;
      const bool one_tensor = *std::upper_bound(starts.begin(), starts.end(), b.begin) == b.end;
      EXPECT_TRUE(double(b.floats()) * 4 <= cap || one_tensor) << "bucket " << i << " of " << b.floats() * 4 << " bytes";
    }
    // The first bucket is small: the head (dense kernel and bias, the final BN) of about 0.06 MB.
    EXPECT_LE(buckets.front().floats() * 4, 1000000);
  }
  // DenseNet121's 27.9 MB of FP32 gradients in about 25 MB buckets: 1 MB first, then two.
  EXPECT_EQ(plan_gradient_buckets(t, 25.0).size(), 3u);
}

// Every offset the hook reports is final: the gradients from it to the end do not change until
// backward returns (snapshots after each call against the final gradients). The offsets decrease
// and the last one is 0.
TEST(DataParallel, GradientHookReportsOnlyFinalGradients) {
  auto be = make_cpu_backend();
  const auto model = small_model_with_inputs(*be, 3);
  DenseNet& net = *model;
  // Poison the gradients: anything not written by this backward shows up.
  be->fill(net.grads(), 1e30f, net.table().trainable_count());
  std::vector<std::pair<int64_t, std::vector<float>>> seen;
  net.set_gradient_hook([&](int64_t first) {
    const auto g = net.get_grads();
    seen.emplace_back(first, std::vector<float>(g.begin() + first, g.end()));
  });
  net.forward(true);
  net.loss();
  net.backward();
  const auto final = net.get_grads();
  ASSERT_GE(seen.size(), 3u);
  EXPECT_EQ(seen.back().first, 0);
  for (size_t i = 0; i < seen.size(); ++i) {
    if (i > 0) {
      EXPECT_LT(seen[i].first, seen[i - 1].first);
    }
    EXPECT_EQ(seen[i].second, std::vector<float>(final.begin() + seen[i].first, final.end()))
        << "gradients from offset " << seen[i].first << " changed after the hook called them final";
  }
  for (float g : final) ASSERT_LT(std::abs(g), 1e29f) << "a gradient backward never wrote";
}

TEST(DataParallel, OneRankCommunicatorIsTheIdentity) {
  auto comm = make_single_process_comm();
  EXPECT_EQ(comm->size(), 1);
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_TRUE(comm->root());
  double d[2] = {1.5, -2.0};
  comm->allreduce_sum(d, 2, "test");
  EXPECT_EQ(d[0], 1.5);
  EXPECT_EQ(d[1], -2.0);
  EXPECT_EQ(comm->allgather(std::vector<float>{1.f, 2.f}, "test"), (std::vector<float>{1.f, 2.f}));
  std::vector<float> g{1.f, 2.f, 3.f};
  auto reducer = make_host_gradient_reducer(*comm, g.data(), {{0, 3}});
  reducer->begin();
  reducer->gradients_final_from(0);
  reducer->finish();
  EXPECT_EQ(g, (std::vector<float>{1.f, 2.f, 3.f}));
}

// NCCL with one rank on one GPU (scripts/gpu_check.sh runs it): the all-reduce (ncclAvg over one
// rank) leaves a known buffer exactly as it was, bucket by bucket; and a training step with the
// reducer attached gives the gradients of a plain step.
TEST(DataParallelGpu, NcclOneRankIsTheIdentityAndAStepEqualsAPlainOne) {
  CXR_REQUIRE_CUDA(be);
  auto comm = make_single_process_comm();
  const auto model = small_model_with_inputs(*be, 4);
  DenseNet& net = *model;
  const int64_t n = net.table().trainable_count();
  auto reducer = make_gradient_reducer(*be, *comm, net.grads(), plan_gradient_buckets(net.table(), 0.002, 0.002));
  // A known buffer through every bucket.
  std::vector<float> known(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) known[size_t(i)] = float(i % 1000) * 0.001f - 0.3f;
  be->copy_to_device(net.grads(), known.data(), sizeof(float) * known.size());
  reducer->begin();
  reducer->gradients_final_from(0);
  reducer->finish();
  EXPECT_EQ(net.get_grads(), known) << "ncclAvg over one rank changed the gradients";
  // A plain step, then the same step with the reducer in backward.
  net.forward(true);
  net.loss();
  net.backward();
  const std::vector<float> plain = net.get_grads();
  net.set_gradient_hook([r = reducer.get()](int64_t first) { r->gradients_final_from(first); });
  reducer->begin();
  net.forward(true);
  net.loss();
  net.backward();
  reducer->finish();
  const std::vector<float> reduced = net.get_grads();
  // cuDNN may pick backward algorithms that accumulate in a run-dependent order (atomics): two
  // plain steps can differ by float rounding; 1e-5 of the largest gradient is far above that and
  // far below a missed or doubled bucket.
  double diff = 0, scale = 1e-30;
  for (size_t i = 0; i < plain.size(); ++i) {
    diff = std::max(diff, double(std::abs(reduced[i] - plain[i])));
    scale = std::max(scale, double(std::abs(plain[i])));
  }
  EXPECT_LT(diff / scale, 1e-5);
}

// The GPU a rank takes, without GPUs: node-local rank r takes GPU r; one visible GPU per rank (Slurm's
// --gpus-per-task=1) is each rank's GPU 0; too few GPUs, or two ranks on one, are refused by name.
TEST(DataParallel, EachRankItsOwnGpuAndTwoOnOneRefused) {
  EXPECT_EQ(gpu_for_local_rank(5, 1, 4, 8), 1);
  EXPECT_EQ(gpu_for_local_rank(3, 3, 4, 4), 3);
  EXPECT_EQ(gpu_for_local_rank(3, 3, 4, 1), 0);
  try {
    gpu_for_local_rank(2, 2, 4, 2);
    ADD_FAILURE() << "4 ranks on 2 GPUs were accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("4 ranks on this node but 2 GPUs"), std::string::npos) << e.what();
  }
  // Slurm: each rank sees one GPU through its own CUDA_VISIBLE_DEVICES: no sharing.
  const std::vector<int64_t> own = {gpu_key("node1", "", "0", 0), gpu_key("node1", "", "1", 0),
                                    gpu_key("node2", "", "0", 0)};
  for (int r = 0; r < 3; ++r) EXPECT_EQ(gpu_sharing_error(own, r, "node1", 0), "");
  // The bus id decides when known: one GPU called "0" in one rank and "GPU-<uuid>" in another is
  // one GPU; two containers that each call their own GPU "0" are two.
  EXPECT_EQ(gpu_key("node1", "0000:3b:00.0", "0", 0), gpu_key("node1", "0000:3b:00.0", "GPU-1234", 0));
  EXPECT_NE(gpu_key("node1", "0000:3b:00.0", "0", 0), gpu_key("node1", "0000:5e:00.0", "0", 0));
  // Two ranks of node1 that both see every GPU and got one GPU between them (mpirun -np 2 on a
  // one-GPU machine): both refuse, naming each other.
  const std::vector<int64_t> shared = {gpu_key("node1", "", nullptr, 0), gpu_key("node1", "", nullptr, 0),
                                       gpu_key("node2", "", nullptr, 0)};
  EXPECT_NE(gpu_sharing_error(shared, 0, "node1", 0).find("ranks 0 and 1 would share GPU 0 of node1"), std::string::npos)
      << gpu_sharing_error(shared, 0, "node1", 0);
  EXPECT_NE(gpu_sharing_error(shared, 1, "node1", 0).find("ranks 0 and 1"), std::string::npos);
  EXPECT_EQ(gpu_sharing_error(shared, 2, "node2", 0), "");
}

// ctest runs this suite without a launcher: one process, no MPI_Init.
TEST(DataParallel, WithoutALauncherAProgramIsOneRank) {
  if (launched_by_mpi()) GTEST_SKIP() << "this run was started by a launcher";
  EXPECT_EQ(process_comm().size(), 1);
  EXPECT_EQ(process_comm().name(), "single process");
}

}  // namespace
}  // namespace cxr
