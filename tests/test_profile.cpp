// Op-level profiling (engine/profiler.h, engine/op_cost.h, cxr profile): the network's work against
// an independent count, the trace's structure, the table against the step time, the JSON's schema and
// the comparison of two runs.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "engine/init.h"
#include "engine/model.h"
#include "engine/op_cost.h"
#include "engine/profiler.h"
#include "test_data_util.h"
#include "test_util.h"

namespace cxr {
namespace {

using nlohmann::json;

TEST(OpCost, ConvolutionAndDenseByHand) {
  // y (2, 4, 5, 5) from x (2, 3, 7, 7) by a 3x3 kernel: 2*4*5*5 outputs of 3*3*3 multiply-adds.
  const auto c = cost::conv2d({2, 4, 5, 5}, {2, 3, 7, 7}, {4, 3, 3, 3});
  EXPECT_DOUBLE_EQ(c.flops, 2.0 * 2 * 4 * 5 * 5 * 27);
  EXPECT_DOUBLE_EQ(c.bytes, 4.0 * (2 * 3 * 49 + 4 * 27 + 2 * 4 * 25));
  EXPECT_DOUBLE_EQ(cost::dense_forward(8, 1024, 14).flops, 2.0 * 8 * 1024 * 14);
  const auto acc = cost::conv2d_backward_data({2, 3, 7, 7}, {2, 4, 5, 5}, {4, 3, 3, 3}, true);
  EXPECT_DOUBLE_EQ(acc.bytes, 4.0 * (2 * 4 * 25 + 4 * 27 + 2 * 2 * 3 * 49)) << "an accumulated dx is read and written";
}

TEST(OpCost, DenseNet121ForwardMatchesThePublishedCount) {
  // FACTS.md: 5.78 GMACs forward at 320x320 with the original transition order (BN-ReLU, 1x1
  // convolution, then the 2x2 average pool). Ours pools first, so each transition's 1x1 convolution
  // runs on a quarter of the pixels: the three transitions (256->128 at 80x80, 512->256 at 40x40,
  // 1024->512 at 20x20) cost 3 x 80*80*256*128 = 629.1 M MACs the original way, 157.3 M ours.
  auto cpu = make_cpu_backend();
  ProfilingBackend prof(*cpu);
  DenseNet net(prof, DenseNetConfig::from_arch("densenet121", 1000), 1, 320, 320, /*trainable=*/false);
  prof.begin_step(1);
  net.forward(false);
  prof.end_step();
  double macs = 0, transition_macs = 0;
  for (const auto& o : prof.ops()) {
    if (o.op != "conv2d_forward" && o.op != "dense_forward") continue;
    macs += o.flops / 2;
    if (o.layer.rfind("pool", 0) == 0) transition_macs += o.flops / 2;
  }
  EXPECT_DOUBLE_EQ(transition_macs, 3.0 * 40 * 40 * 256 * 128);
  const double original_order = macs - transition_macs + 4 * transition_macs;
  // 5.78 is given to three digits: +-0.005 G (0.09%).
  EXPECT_NEAR(original_order, 5.78e9, 0.005e9) << "ours " << macs << " MACs";
}

TEST(ProfilingBackend, SyncBnHalvesAreForwardedAndCostedAsTheBackwardSplit) {
  // The profiler passes both halves through (results equal to the inner backend's) and records each
  // with its share of batchnorm_backward's cost: the bytes add up to the fused op's, and the FLOPs
  // too without the ReLU (with it each half recomputes the mask, 3 FLOPs an element).
  auto cpu = make_cpu_backend();
  ProfilingBackend prof(*cpu);
  const Shape s{2, 3, 4, 5};
  const auto n = size_t(s.numel());
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::vector<float> x = test::random_vector(n, seed), dy = test::random_vector(n, seed + 1),
                     gamma = test::random_vector(3, seed + 2, 0.5f, 1.5f), beta = test::random_vector(3, seed + 3),
                     mean(3), invstd(3);
  const Tensor xt(x.data(), s, Device::CPU), dyt(dy.data(), s, Device::CPU);
  cpu->batchnorm_stats(mean.data(), invstd.data(), nullptr, nullptr, xt, 1e-3, 0.99, 1.0);
  const double count = double(s.n * s.h * s.w);
  prof.begin_step(1);
  for (bool relu : {false, true}) {
    std::vector<float> a_dyx(3), a_dy(3), b_dyx(3), b_dy(3), adx(n), bdx(n, 0.5f);
    prof.batchnorm_backward_reduce(a_dyx.data(), a_dy.data(), dyt, xt, gamma.data(), beta.data(), mean.data(),
                                   invstd.data(), relu);
    cpu->batchnorm_backward_reduce(b_dyx.data(), b_dy.data(), dyt, xt, gamma.data(), beta.data(), mean.data(),
                                   invstd.data(), relu);
    EXPECT_EQ(a_dyx, b_dyx);
    EXPECT_EQ(a_dy, b_dy);
    prof.batchnorm_backward_apply(Tensor(adx.data(), s, Device::CPU), GradMode::Overwrite, dyt, xt, gamma.data(),
                                  beta.data(), mean.data(), invstd.data(), a_dyx.data(), a_dy.data(), count, relu);
    cpu->batchnorm_backward_apply(Tensor(bdx.data(), s, Device::CPU), GradMode::Overwrite, dyt, xt, gamma.data(),
                                  beta.data(), mean.data(), invstd.data(), b_dyx.data(), b_dy.data(), count, relu);
    EXPECT_EQ(adx, bdx);
  }
  prof.end_step();
  ASSERT_EQ(prof.ops().size(), 4u);
  const char* names[] = {"batchnorm_backward_reduce", "batchnorm_backward_apply", "batchnorm_relu_backward_reduce",
                         "batchnorm_relu_backward_apply"};
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(prof.ops()[i].op, names[i]);
    EXPECT_EQ(prof.ops()[i].shapes, "x 2x3x4x5");
  }
  const auto fused = cost::batchnorm_backward(s, false, false);
  EXPECT_DOUBLE_EQ(prof.ops()[0].bytes + prof.ops()[1].bytes, fused.bytes);
  EXPECT_DOUBLE_EQ(prof.ops()[0].flops + prof.ops()[1].flops, fused.flops);
  EXPECT_DOUBLE_EQ(prof.ops()[2].flops + prof.ops()[3].flops, cost::batchnorm_backward(s, true, false).flops + 3.0 * n);
  EXPECT_DOUBLE_EQ(cost::batchnorm_backward_apply(s, false, true).bytes - cost::batchnorm_backward_apply(s, false, false).bytes,
                   4.0 * n) << "an accumulated dx is read and written";
}

// `cxr profile` on a small network: the trace, the JSON, the table's total.
class ProfileCli : public ::testing::Test {
 protected:
  void SetUp() override {
    if (test::cxr_binary().empty()) GTEST_SKIP() << "no cxr binary (set CXR_BINARY)";
  }
  json run_json(const std::string& args) {
    const auto r = test::run_cxr(dir_, "profile --device cpu --batch 2 --size 64 --steps 2 --warmup 1 --json " + args);
    EXPECT_EQ(r.status, 0) << r.err;
    return json::parse(r.out);
  }
  test::ScratchDir dir_{"profile_cli"};
};

TEST_F(ProfileCli, TraceEventsNestAndHoldEveryLayersOps) {
  const json j = run_json("--trace '" + (dir_ / "t.json") + "'");
  const json trace = json::parse(test::read_all(dir_ / "t.json"));  // valid JSON
  ASSERT_TRUE(trace.contains("traceEvents"));
  std::map<int, std::vector<const json*>> by_tid;
  std::set<std::string> thread_names;
  for (const auto& e : trace["traceEvents"]) {
    ASSERT_TRUE(e.contains("ph") && e.contains("name") && e.contains("pid"));
    if (e["ph"] == "M") {
      if (e["name"] == "thread_name") thread_names.insert(e["args"]["name"].get<std::string>());
      continue;
    }
    ASSERT_EQ(e["ph"], "X");
    ASSERT_GE(e["dur"].get<double>(), 0.0);
    by_tid[e["tid"].get<int>()].push_back(&e);
  }
  EXPECT_EQ(thread_names, std::set<std::string>{"cpu ops"});
  // Nesting: on each track, sorted by start (the longer first on ties), every event ends within the
  // enclosing one or starts after it ends. The host clock is read in order, so no slack is needed.
  for (auto& [tid, ev] : by_tid) {
    std::sort(ev.begin(), ev.end(), [](const json* a, const json* b) {
      const double sa = (*a)["ts"], sb = (*b)["ts"];
      return sa != sb ? sa < sb : (*a)["dur"].get<double>() > (*b)["dur"].get<double>();
    });
    std::vector<std::pair<double, std::string>> open;  // end, name
    for (const json* e : ev) {
      const double ts = (*e)["ts"], end = ts + (*e)["dur"].get<double>();
      while (!open.empty() && open.back().first <= ts) open.pop_back();
      if (!open.empty()) {
        ASSERT_LE(end, open.back().first) << (*e)["name"] << " at " << ts << " overlaps " << open.back().second;
      }
      open.emplace_back(end, (*e)["name"].get<std::string>());
    }
  }
  // Each dense layer: 2 convolutions forward, 2 filter and 2 data gradients backward, per step; the
  // stem's convolution has no data gradient (the image needs none).
  std::map<std::string, std::map<std::string, int>> per_layer;  // "phase/layer" -> op -> count
  int steps = 0;
  for (const auto& e : trace["traceEvents"]) {
    if (e["ph"] == "X" && e["cat"] == "step") ++steps;
    if (e["ph"] != "X" || e["cat"] != "op") continue;
    per_layer[e["args"]["phase"].get<std::string>() + "/" + e["args"]["layer"].get<std::string>()]
             [e["name"].get<std::string>()]++;
  }
  EXPECT_EQ(steps, 2);
  const std::vector<int> blocks{6, 12, 24, 16};
  for (size_t b = 0; b < blocks.size(); ++b)
    for (int l = 1; l <= blocks[b]; ++l) {
      const std::string name = "conv" + std::to_string(b + 2) + "_block" + std::to_string(l);
      EXPECT_EQ(per_layer["forward/" + name]["conv2d_forward"], 2 * 2) << name;
      EXPECT_EQ(per_layer["backward/" + name]["conv2d_backward_filter"], 2 * 2) << name;
      EXPECT_EQ(per_layer["backward/" + name]["conv2d_backward_data"], 2 * 2) << name;
    }
  for (const char* t : {"pool2", "pool3", "pool4"}) {
    EXPECT_EQ(per_layer[std::string("forward/") + t]["conv2d_forward"], 2) << t;
    EXPECT_EQ(per_layer[std::string("backward/") + t]["conv2d_backward_data"], 2) << t;
  }
  EXPECT_EQ(per_layer["forward/conv1"]["conv2d_forward"], 2);
  EXPECT_EQ(per_layer["backward/conv1"]["conv2d_backward_filter"], 2);
  EXPECT_EQ(per_layer["backward/conv1"].count("conv2d_backward_data"), 0u);
  EXPECT_EQ(per_layer["optimizer/optimizer"]["adam_update"], 2);
  // Every op carries its shapes and work.
  for (const auto& e : trace["traceEvents"])
    if (e["ph"] == "X" && e["name"] == "conv2d_forward") {
      EXPECT_NE(e["args"]["shapes"].get<std::string>().find("w "), std::string::npos);
      EXPECT_GT(e["args"]["flops"].get<double>(), 0);
    }
}

TEST_F(ProfileCli, JsonSchemaAndTableTotalAgainstTheStep) {
  const json j = run_json("--by block");
  for (const char* k : {"images_per_second", "step_ms", "median_step_ms", "peak_gflops", "peak_gbps"})
    ASSERT_TRUE(j.contains(k) && j[k].is_number()) << k;
  for (const char* k : {"device", "mode", "timing", "by", "peaks_from"}) ASSERT_TRUE(j[k].is_string()) << k;
  EXPECT_EQ(j["by"], "block");
  EXPECT_GT(j["peak_gflops"].get<double>(), 1.0);
  EXPECT_GT(j["peak_gbps"].get<double>(), 0.1);
  for (const char* table : {"rows", "by_op", "by_layer", "by_block"}) {
    ASSERT_TRUE(j[table].is_array() && !j[table].empty()) << table;
    for (const auto& r : j[table])
      for (const char* k : {"calls", "total_ms", "mean_ms", "share", "flops", "bytes", "gflops", "gbps", "roofline"})
        ASSERT_TRUE(r.contains(k) && r[k].is_number() && r[k].get<double>() >= 0) << table << "." << k;
  }
  EXPECT_EQ(j["rows"], j["by_block"]);
  std::set<std::string> blocks;
  for (const auto& r : j["by_block"]) blocks.insert(r["key"].get<std::string>());
  for (const char* b : {"stem", "conv2", "pool2", "conv3", "pool3", "conv4", "pool4", "conv5", "head", "optimizer"})
    EXPECT_TRUE(blocks.count(b)) << b;
  // The ops are a part of the step's wall time (<= 1); what is left is the model's host code between
  // ops (0.6% measured at batch 8, 128x128), a larger share of a step as small as this one's.
  for (const char* table : {"by_op", "by_layer", "by_block"}) {
    double total = 0;
    for (const auto& r : j[table]) total += r["total_ms"].get<double>();
    const double step = j["step_ms"];
    EXPECT_LE(total, step * 1.0000001) << table;
    EXPECT_GE(total, step * 0.90) << table;
  }
}

TEST_F(ProfileCli, CompareShowsTheBiggestChangesFirst) {
  const auto a = run_json("");
  test::write_file(dir_ / "a.json", a.dump());
  const auto b = run_json("--recompute bn-relu+bottleneck");
  test::write_file(dir_ / "b.json", b.dump());
  const auto r = test::run_cxr(dir_, "profile --compare '" + (dir_ / "a.json") + "' '" + (dir_ / "b.json") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  // The op table comes first; its rows are ordered by |B - A|.
  std::istringstream in(r.out);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line.rfind("op ", 0), 0u) << line;
  std::vector<double> deltas;
  while (std::getline(in, line) && !line.empty()) {
    std::istringstream ls(line);
    std::string key;
    double av, bv, d;
    ls >> key >> av >> bv >> d;
    deltas.push_back(std::fabs(d));
  }
  ASSERT_GE(deltas.size(), 5u);
  EXPECT_TRUE(std::is_sorted(deltas.rbegin(), deltas.rend())) << r.out;
  EXPECT_NE(r.out.find("conv3"), std::string::npos) << "the block table";
  const auto bad = test::run_cxr(dir_, "profile --compare '" + (dir_ / "a.json") + "' '" +
                                           test::source_path("tests/fixtures/metrics_sklearn.json") + "'");
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.err.find("not the JSON of `cxr profile --json`"), std::string::npos) << bad.err;
}

TEST_F(ProfileCli, TrainTracesASliceOfARealRun) {
  auto r = test::run_cxr(dir_, "synth --out '" + (dir_ / "synth") + "' --patients 12 --size 32 --seed 2");
  ASSERT_EQ(r.status, 0) << r.err;
  r = test::run_cxr(dir_, "prepare --csv '" + (dir_ / "synth/Data_Entry_2017_v2020.csv") + "' --images '" +
                              (dir_ / "synth/images") + "' --out '" + (dir_ / "d.h5") + "' --size 32 --quiet");
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string train = "train --data '" + (dir_ / "d.h5") + "' --device cpu --epochs 1 --batch 4 "
                            "--max-steps-per-epoch 4 --quiet ";
  r = test::run_cxr(dir_, train + "--out '" + (dir_ / "run") + "' --trace-steps 2:3");
  ASSERT_EQ(r.status, 0) << r.err;
  const json trace = json::parse(test::read_all(dir_ / "run/trace.json"));
  std::map<std::string, int> tid_of;
  std::map<std::string, int> count;  // by category
  for (const auto& e : trace["traceEvents"]) {
    if (e["ph"] == "M" && e["name"] == "thread_name") tid_of[e["args"]["name"].get<std::string>()] = e["tid"];
    if (e["ph"] == "X") count[e["cat"].get<std::string>()]++;
  }
  ASSERT_TRUE(tid_of.count("cpu ops") && tid_of.count("upload") && tid_of.count("loader (waiting for the next batch)"))
      << trace["traceEvents"][1];
  EXPECT_EQ(count["step"], 2) << "steps 2 and 3";
  EXPECT_EQ(count["loader"], 2);
  int adam = 0, uploads = 0;
  for (const auto& e : trace["traceEvents"]) {
    if (e["ph"] != "X" || e["cat"] != "op") continue;
    adam += e["name"] == "adam_update";
    if (e["tid"] == tid_of["upload"]) {
      EXPECT_EQ(e["name"], "copy_to_device");
      ++uploads;
    }
  }
  EXPECT_EQ(adam, 2);
  EXPECT_EQ(uploads, 2 * 2) << "images and labels, per step";
  // The training itself is unchanged by tracing: the same loss log as an untraced run.
  r = test::run_cxr(dir_, train + "--out '" + (dir_ / "plain") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  auto losses = [](const std::string& log) {
    std::vector<double> v;
    std::istringstream in(log);
    for (std::string line; std::getline(in, line);) {
      const json j = json::parse(line);
      if (j["type"] == "epoch") v.push_back(j["train_loss"]);
    }
    return v;
  };
  EXPECT_EQ(losses(test::read_all(dir_ / "run/metrics.jsonl")), losses(test::read_all(dir_ / "plain/metrics.jsonl")));
  for (const char* bad : {"0:2", "3:2", "x", "2:"}) {
    const auto b = test::run_cxr(dir_, train + "--out '" + (dir_ / "bad") + "' --trace-steps " + bad);
    EXPECT_NE(b.status, 0) << bad;
    EXPECT_NE(b.err.find("--trace-steps"), std::string::npos) << bad << ": " << b.err;
  }
}

}  // namespace
}  // namespace cxr
