// Crash safety proven by killing (issue 14, item 4): `cxr train` and `cxr prepare` are killed with
// SIGKILL at every write step (io/fault.h: CXR_FAULT_KILL_AT=N kills at the Nth) and at random times,
// then resumed (or rerun), and must end bitwise where an uninterrupted run ends, with every file they
// keep loadable, each step and epoch logged once, and no temporary file left.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <map>
#include <random>
#include <sstream>

#include "engine/model.h"
#include "io/checkpoint.h"
#include "io/packed.h"
#include "io/weights.h"
#include "test_data_util.h"
#include "test_util.h"

namespace cxr {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Runs `env cxr args` in dir's shell; true when it exited (0 or not), false when it was killed.
bool run(const test::ScratchDir& dir, const std::string& env, const std::string& args, int* status = nullptr) {
  const std::string cmd = env + " '" + test::cxr_binary() + "' " + args + " >>'" + (dir / "log.txt") + "' 2>&1";
  const int rc = std::system(cmd.c_str());
  if (status) *status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  // std::system runs sh -c: a killed child shows as sh's exit status 128 + 9.
  return !(WIFSIGNALED(rc) || (WIFEXITED(rc) && WEXITSTATUS(rc) == 128 + SIGKILL) ||
           (WIFEXITED(rc) && WEXITSTATUS(rc) == 124 + 0 && env.find("timeout") != std::string::npos));
}

std::vector<std::string> lines_of(const std::string& path) {
  std::vector<std::string> out;
  std::istringstream in(test::read_all(path));
  for (std::string l; std::getline(in, l);)
    if (!l.empty()) out.push_back(l);
  return out;
}

class KillCli : public ::testing::Test {
 protected:
  void SetUp() override {
    if (test::cxr_binary().empty()) GTEST_SKIP() << "no cxr binary (set CXR_BINARY)";
    ASSERT_TRUE(run(dir_, "", "synth --out '" + (dir_ / "s") + "' --patients 12 --size 32 --seed 2"));
    csv_ = dir_ / "s/Data_Entry_2017_v2020.csv";
    images_ = dir_ / "s/images";
  }
  // The number of fault points of a run of `args`, counted through CXR_FAULT_LOG.
  int64_t count_points(const std::string& args) {
    const std::string log = dir_ / "points.txt";
    fs::remove(log);
    EXPECT_TRUE(run(dir_, "CXR_FAULT_LOG='" + log + "'", args));
    return int64_t(lines_of(log).size());
  }
  test::ScratchDir dir_{"kill"};
  std::string csv_, images_;
};

// The weights of a checkpoint (params then state) and its training step.
std::vector<float> weights_of(const std::string& path, int64_t* step) {
  const ParamTable table = io::densenet_param_table(DenseNetConfig::from_arch("densenet121", 14));
  std::vector<float> params(size_t(table.trainable_count())), state(size_t(table.state_count()));
  std::optional<io::ModelMeta> meta;
  std::optional<io::TrainingState> training;
  io::load_weights(path, table, params, state, io::HeadPolicy::Require, 0, &meta, &training);
  if (step) *step = training ? training->step : -1;
  params.insert(params.end(), state.begin(), state.end());
  return params;
}

TEST_F(KillCli, TrainKilledAtFiftyPointsResumesToTheUninterruptedRun) {
  ASSERT_TRUE(run(dir_, "", "prepare --csv '" + csv_ + "' --images '" + images_ + "' --out '" + (dir_ / "d.h5") +
                                "' --size 32 --quiet --threads 1"));
  const std::string train = "train --data '" + (dir_ / "d.h5") +
                            "' --device cpu --epochs 2 --batch 4 --max-steps-per-epoch 3 --log-every 1 --quiet "
                            "--seed 1 --out ";
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(run(dir_, "", train + "'" + (dir_ / "ref") + "'"));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  int64_t ref_step = 0;
  const auto ref_last = weights_of(dir_ / "ref/last.h5", &ref_step), ref_best = weights_of(dir_ / "ref/best.h5", nullptr);
  std::map<int64_t, double> ref_epochs;
  for (const auto& l : lines_of(dir_ / "ref/metrics.jsonl")) {
    const json j = json::parse(l);
    if (j["type"] == "epoch") ref_epochs[j["epoch"]] = j["train_loss"];
  }
  ASSERT_EQ(ref_epochs.size(), 2u);
  const int64_t points = count_points(train + "'" + (dir_ / "count") + "'");
  ASSERT_GE(points, 20) << "every metrics line and every checkpoint step is a fault point";

  // Every fault point, then random times within the run, to 50 kills in all.
  std::mt19937_64 rng(test::fresh_seed());
  std::uniform_real_distribution<double> when(0.05, std::max(0.1, seconds));
  const int64_t kills = std::max<int64_t>(50, points);
  int64_t killed = 0;
  for (int64_t k = 1; k <= kills; ++k) {
    const std::string out = dir_ / ("k" + std::to_string(k));
    const std::string env = k <= points ? "CXR_FAULT_KILL_AT=" + std::to_string(k)
                                        : "timeout -s KILL " + std::to_string(when(rng));
    SCOPED_TRACE("kill " + std::to_string(k) + ": " + env);
    killed += !run(dir_, env, train + "'" + out + "'");
    // Recover as a user would: resume from last.h5, or start again without one.
    int status = 0;
    const bool resumable = fs::exists(out + "/last.h5");
    ASSERT_TRUE(run(dir_, "", train + "'" + out + "'" + (resumable ? " --resume" : ""), &status));
    ASSERT_EQ(status, 0) << test::read_all(dir_ / "log.txt").substr(0, 2000);
    int64_t step = 0;
    EXPECT_EQ(weights_of(out + "/last.h5", &step), ref_last) << "last.h5 differs from the uninterrupted run's";
    EXPECT_EQ(step, ref_step);
    EXPECT_EQ(weights_of(out + "/best.h5", nullptr), ref_best) << "best.h5";
    std::map<int64_t, int> epochs, steps;
    for (const auto& l : lines_of(out + "/metrics.jsonl")) {
      const json j = json::parse(l);  // no line cut by the kill is left
      if (j["type"] == "epoch") {
        ++epochs[j["epoch"]];
        EXPECT_EQ(j["train_loss"].get<double>(), ref_epochs[j["epoch"]]);
      } else {
        ++steps[j["step"]];
      }
    }
    EXPECT_EQ(epochs, (std::map<int64_t, int>{{1, 1}, {2, 1}})) << "each epoch logged once";
    EXPECT_EQ(steps.size(), size_t(ref_step));
    for (const auto& [s, n] : steps) EXPECT_EQ(n, 1) << "step " << s << " logged " << n << " times";
    for (const auto& e : fs::directory_iterator(out))
      EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << "left behind: " << e.path();
    fs::remove_all(out);
  }
  EXPECT_GE(killed, points) << "every fault point killed its run";
  RecordProperty("kills", std::to_string(kills));
  RecordProperty("killed", std::to_string(killed));
}

TEST_F(KillCli, PrepareKilledAtFiftyPointsRerunsToTheSameFile) {
  const std::string prepare = "prepare --csv '" + csv_ + "' --images '" + images_ + "' --size 32 --quiet --threads 1 --out ";
  ASSERT_TRUE(run(dir_, "", prepare + "'" + (dir_ / "ref.h5") + "'"));
  io::PackedDataset ref(dir_ / "ref.h5");
  std::vector<uint8_t> ref_pixels(size_t(ref.size() * ref.image_bytes()));
  std::vector<int64_t> all(size_t(ref.size()));
  for (int64_t i = 0; i < ref.size(); ++i) all[size_t(i)] = i;
  ref.read_batch(all.data(), ref.size(), ref_pixels.data());
  const int64_t points = count_points(prepare + "'" + (dir_ / "count.h5") + "'");
  ASSERT_GE(points, ref.size()) << "every image written is a fault point";
  std::mt19937_64 rng(test::fresh_seed());
  std::uniform_real_distribution<double> when(0.01, 0.3);
  const int64_t kills = std::max<int64_t>(50, points);
  for (int64_t k = 1; k <= kills; ++k) {
    const std::string out = dir_ / "p.h5";
    const std::string env = k <= points ? "CXR_FAULT_KILL_AT=" + std::to_string(k)
                                        : "timeout -s KILL " + std::to_string(when(rng));
    SCOPED_TRACE("kill " + std::to_string(k) + ": " + env);
    run(dir_, env, prepare + "'" + out + "'");
    ASSERT_TRUE(run(dir_, "", prepare + "'" + out + "'"));  // resumes from p.h5.partial when there is one
    io::PackedDataset d(out);  // complete, every image checked against its checksum below
    ASSERT_EQ(d.size(), ref.size());
    EXPECT_EQ(d.names(), ref.names());
    EXPECT_EQ(d.labels(), ref.labels());
    EXPECT_EQ(d.split(), ref.split());
    EXPECT_EQ(d.patient_ids(), ref.patient_ids());
    std::vector<uint8_t> pixels(ref_pixels.size());
    d.read_batch(all.data(), d.size(), pixels.data());
    EXPECT_EQ(pixels, ref_pixels);
    EXPECT_FALSE(fs::exists(out + ".partial"));
    for (const auto& e : fs::directory_iterator(dir_.path()))
      EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << "left behind: " << e.path();
    fs::remove(out);
  }
}

}  // namespace
}  // namespace cxr
