// Writers past a file-size limit (RLIMIT_FSIZE, `ulimit -f`), as on a full disk (issue 14, item 5):
// the command fails with one line naming the file and the system's reason, the previous file under
// the final name is unchanged, and no temporary file is left beside it. Before, SIGXFSZ killed the
// process with no message.
#include <algorithm>
#include <filesystem>

#include "engine/init.h"
#include "engine/model.h"
#include "io/checkpoint.h"
#include "io/classes.h"
#include "io/weights.h"
#include "test_data_util.h"
#include "test_util.h"

namespace cxr {
namespace {

namespace fs = std::filesystem;

std::string escape_single(const std::string& s) {
  std::string o;
  for (char c : s) o += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return o;
}

// Runs `cxr args` in a shell whose file-size limit is `kib` KiB.
test::RunResult run_limited(const test::ScratchDir& dir, int kib, const std::string& args) {
  const std::string out = dir / "stdout.txt", err = dir / "stderr.txt";
  // stderr through a pipe: a file it went to would be under the same limit.
  const std::string cmd = "bash -c \"ulimit -f " + std::to_string(kib) + "; exec '" + test::cxr_binary() +
                          "' " + args + "\" 2>&1 >'" + out + "' | cat >'" + err + "'; exit ${PIPESTATUS[0]}";
  const int rc = std::system(("bash -c '" + escape_single(cmd) + "'").c_str());
  test::RunResult r;
  r.status = rc != -1 && WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  r.err = test::read_all(err);
  return r;
}

// Every file of `dir` other than the expected ones (temporary files of failed writes).
std::vector<std::string> leftovers(const std::string& dir, const std::vector<std::string>& expected) {
  std::vector<std::string> extra;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (std::find(expected.begin(), expected.end(), name) == expected.end()) extra.push_back(name);
  }
  return extra;
}

class FullDisk : public ::testing::Test {
 protected:
  void SetUp() override {
    if (test::cxr_binary().empty()) GTEST_SKIP() << "no cxr binary (set CXR_BINARY)";
    fs::create_directories(dir_ / "out");
  }
  void expect_clean_failure(const test::RunResult& r, const std::string& file) {
    EXPECT_NE(r.status, 0) << r.err;
    EXPECT_LT(r.status, 128) << "killed by a signal: " << r.err;
    EXPECT_NE(r.err.find("cxr: error: "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(file), std::string::npos) << "the error does not name " << file << ": " << r.err;
    EXPECT_NE(r.err.find("File too large"), std::string::npos) << "no system reason: " << r.err;
  }
  test::ScratchDir dir_{"full_disk"};
};

TEST_F(FullDisk, ModelFileIsLeftAsItWas) {
  const std::string out = dir_ / "out/model.h5";
  const std::string convert =
      "weights convert '" + test::source_path("tests/fixtures/keras2_reduced.h5") + "' '" + out + "'";
  ASSERT_EQ(test::run_cxr(dir_, convert).status, 0);
  const std::string before = test::read_all(out);
  ASSERT_GT(before.size(), 200u * 1024);
  const auto r = run_limited(dir_, 200, convert);  // the file needs about 800 KiB
  expect_clean_failure(r, out);
  EXPECT_EQ(test::read_all(out), before) << "the previous model file changed";
  EXPECT_EQ(leftovers(dir_ / "out", {"model.h5"}), std::vector<std::string>{});
}

TEST_F(FullDisk, PredictionsCsvIsLeftAsItWas) {
  const ParamTable table = io::densenet_param_table(DenseNetConfig::from_arch("densenet121", 14));
  std::vector<float> params, state;
  init_keras_default(table, params, state, 3);
  io::ModelMeta meta;
  meta.class_names.assign(io::kClassNames.begin(), io::kClassNames.end());
  meta.image_size = 32;
  io::save_checkpoint(dir_ / "model.h5", table, params, state, meta);
  ASSERT_EQ(
      test::run_cxr(dir_, "synth --out '" + (dir_ / "synth") + "' --patients 1 --size 32 --seed 1").status,
      0);
  const std::string image = fs::directory_iterator(dir_ / "synth/images")->path().string();
  const std::string out = dir_ / "out/pred.csv";
  test::write_file(out, "an earlier prediction\n");
  const auto r = run_limited(
      dir_, 0,
      "predict --weights '" + (dir_ / "model.h5") + "' --device cpu --out '" + out + "' '" + image + "'");
  expect_clean_failure(r, out);
  EXPECT_EQ(test::read_all(out), "an earlier prediction\n");
  EXPECT_EQ(leftovers(dir_ / "out", {"pred.csv"}), std::vector<std::string>{});
}

TEST_F(FullDisk, PackedFileIsLeftAsItWas) {
  ASSERT_EQ(
      test::run_cxr(dir_, "synth --out '" + (dir_ / "synth") + "' --patients 12 --size 64 --seed 1").status, 0);
  const std::string out = dir_ / "out/d.h5";
  const std::string prepare = "prepare --csv '" + (dir_ / "synth/Data_Entry_2017_v2020.csv") + "' --images '" +
                              (dir_ / "synth/images") + "' --out '" + out + "' --size 64 --quiet --threads 1";
  ASSERT_EQ(test::run_cxr(dir_, prepare).status, 0);
  const std::string before = test::read_all(out), report = test::read_all(out + ".report.txt");
  ASSERT_GT(before.size(), 100u * 1024);
  const auto r = run_limited(dir_, 64, prepare);  // the file needs about 150 KiB
  expect_clean_failure(r, out);
  EXPECT_LT(std::count(r.err.begin(), r.err.end(), '\n'), 3) << "one line, not HDF5's error stack: " << r.err;
  EXPECT_EQ(test::read_all(out), before) << "the previous packed file changed";
  EXPECT_EQ(test::read_all(out + ".report.txt"), report);
  // What stays is d.h5.partial, prepare's resume state (a rerun with space continues it), no stray file.
  EXPECT_EQ(leftovers(dir_ / "out", {"d.h5", "d.h5.report.txt", "d.h5.partial"}), std::vector<std::string>{});
  ASSERT_EQ(test::run_cxr(dir_, prepare).status, 0) << "the rerun with space";
  EXPECT_FALSE(fs::exists(out + ".partial"));
}

}  // namespace
}  // namespace cxr
