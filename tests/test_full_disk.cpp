// Writers past a file-size limit (RLIMIT_FSIZE, `ulimit -f`: EFBIG) and on a nearly full filesystem
// (a small tmpfs filled to a few KiB: ENOSPC), as on a full disk (issue 14, item 5): the command
// fails with one line naming the file and the system's reason, the previous file under the final
// name is unchanged, and no temporary file is left beside it. Before, SIGXFSZ killed the process
// with no message.
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
  test::save_random_densenet121(dir_ / "model.h5", {}, 32, 3);
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

TEST_F(FullDisk, ReportIsLeftAsItWas) {
  fs::create_directories(dir_ / "run/run");
  test::write_file(dir_ / "run/run/metrics.jsonl",
                   R"({"type":"epoch","epoch":1,"train_loss":0.5,"val_loss":0.6,"val_mean_auc":0.7,"lr":0.001})"
                   "\n");
  const std::string out = dir_ / "out/report.html";
  test::write_file(out, "an earlier report\n");
  const auto r = run_limited(dir_, 0, "report '" + (dir_ / "run") + "' --out '" + out + "'");
  expect_clean_failure(r, out);
  EXPECT_EQ(test::read_all(out), "an earlier report\n");
  EXPECT_EQ(leftovers(dir_ / "out", {"report.html"}), std::vector<std::string>{});
}

// The same writers on a nearly full filesystem: a 4 MiB tmpfs mounted in a private user and mount
// namespace (`unshare -rm`, no privileges needed where the kernel allows user namespaces), seeded
// with the previous files, then filled to `free_kib` KiB with one filler file. The command runs in
// the namespace; afterwards the filler is removed and what the filesystem holds is copied to
// dir/after for the checks (the mount is gone when the namespace ends).
class FullFilesystem : public FullDisk {
 protected:
  void SetUp() override {
    FullDisk::SetUp();
    if (IsSkipped()) return;
    fs::create_directories(dir_ / "seed");
    fs::create_directories(dir_ / "fs");
    test::write_file(dir_ / "fs.sh", R"(set -u
mount -t tmpfs -o size=4m tmpfs "$FS" || exit 97
cp -a "$SEED"/. "$FS"/ || exit 96
avail=$(df -k --output=avail "$FS" | tail -1)
if [ "$avail" -gt "$FREE_KIB" ]; then fallocate -l "$((avail - FREE_KIB))k" "$FS/filler" || exit 96; fi
"$@" >"$DIR/stdout.txt" 2>"$DIR/stderr.txt"
rc=$?
rm -f "$FS/filler"
mkdir -p "$DIR/after" && cp -a "$FS"/. "$DIR/after"/
exit $rc
)");
    const int rc = std::system(("unshare -rm sh -c 'mount -t tmpfs -o size=64k tmpfs \"" + (dir_ / "fs") +
                                "\"' >/dev/null 2>&1")
                                   .c_str());
    if (rc != 0) GTEST_SKIP() << "cannot mount a tmpfs in a user namespace here (unshare -rm; kernel setting "
                                 "kernel.unprivileged_userns_clone or a container's seccomp)";
  }
  // Runs `cxr args` (paths under dir/fs are on the small filesystem) with `free_kib` KiB left.
  test::RunResult run_full(int free_kib, const std::string& args) {
    const std::string cmd = "DIR='" + dir_.path() + "' FS='" + (dir_ / "fs") + "' SEED='" + (dir_ / "seed") +
                            "' FREE_KIB=" + std::to_string(free_kib) + " unshare -rm bash '" + (dir_ / "fs.sh") +
                            "' '" + test::cxr_binary() + "' " + args;
    const int rc = std::system(("bash -c '" + escape_single(cmd) + "'").c_str());
    test::RunResult r;
    r.status = rc != -1 && WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    r.err = test::read_all(dir_ / "stderr.txt");
    return r;
  }
  void expect_no_space(const test::RunResult& r, const std::string& file) {
    ASSERT_NE(r.status, 97) << "the tmpfs could not be mounted";
    ASSERT_NE(r.status, 96) << "the tmpfs could not be seeded or filled";
    EXPECT_NE(r.status, 0) << r.err;
    EXPECT_LT(r.status, 128) << "killed by a signal: " << r.err;
    EXPECT_NE(r.err.find("cxr: error: "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(file), std::string::npos) << "the error does not name " << file << ": " << r.err;
    EXPECT_NE(r.err.find("No space left on device"), std::string::npos) << "no system reason: " << r.err;
    EXPECT_LT(std::count(r.err.begin(), r.err.end(), '\n'), 3) << "one line: " << r.err;
  }
};

TEST_F(FullFilesystem, ModelFileIsLeftAsItWas) {
  const std::string convert_src = "weights convert '" + test::source_path("tests/fixtures/keras2_reduced.h5") + "' ";
  ASSERT_EQ(test::run_cxr(dir_, convert_src + "'" + (dir_ / "seed/model.h5") + "'").status, 0);
  const std::string before = test::read_all(dir_ / "seed/model.h5");
  const std::string out = dir_ / "fs/model.h5";
  const auto r = run_full(100, convert_src + "'" + out + "'");  // the file needs about 800 KiB
  expect_no_space(r, out);
  EXPECT_EQ(test::read_all(dir_ / "after/model.h5"), before) << "the previous model file changed";
  EXPECT_EQ(leftovers(dir_ / "after", {"model.h5"}), std::vector<std::string>{});
}

TEST_F(FullFilesystem, PackedFileIsLeftAsItWas) {
  ASSERT_EQ(
      test::run_cxr(dir_, "synth --out '" + (dir_ / "synth") + "' --patients 12 --size 64 --seed 1").status, 0);
  const std::string args = "prepare --csv '" + (dir_ / "synth/Data_Entry_2017_v2020.csv") + "' --images '" +
                           (dir_ / "synth/images") + "' --size 64 --quiet --threads 1 --out ";
  ASSERT_EQ(test::run_cxr(dir_, args + "'" + (dir_ / "seed/d.h5") + "'").status, 0);
  const std::string before = test::read_all(dir_ / "seed/d.h5"), report = test::read_all(dir_ / "seed/d.h5.report.txt");
  ASSERT_GT(before.size(), 100u * 1024);
  const std::string out = dir_ / "fs/d.h5";
  const auto r = run_full(40, args + "'" + out + "'");  // the file needs about 150 KiB
  expect_no_space(r, out);
  EXPECT_EQ(test::read_all(dir_ / "after/d.h5"), before) << "the previous packed file changed";
  EXPECT_EQ(test::read_all(dir_ / "after/d.h5.report.txt"), report);
  // At most d.h5.partial, prepare's resume state, stays beside them.
  EXPECT_EQ(leftovers(dir_ / "after", {"d.h5", "d.h5.report.txt", "d.h5.partial"}), std::vector<std::string>{});
}

TEST_F(FullFilesystem, PredictionsAndReportAreLeftAsTheyWere) {
  test::save_random_densenet121(dir_ / "model.h5", {}, 32, 3);
  ASSERT_EQ(
      test::run_cxr(dir_, "synth --out '" + (dir_ / "synth") + "' --patients 1 --size 32 --seed 1").status, 0);
  const std::string image = fs::directory_iterator(dir_ / "synth/images")->path().string();
  test::write_file(dir_ / "seed/pred.csv", "an earlier prediction\n");
  test::write_file(dir_ / "seed/report.html", "an earlier report\n");
  const std::string pred = dir_ / "fs/pred.csv";
  auto r = run_full(0, "predict --weights '" + (dir_ / "model.h5") + "' --device cpu --out '" + pred + "' '" +
                           image + "'");
  expect_no_space(r, pred);
  EXPECT_EQ(test::read_all(dir_ / "after/pred.csv"), "an earlier prediction\n");
  EXPECT_EQ(leftovers(dir_ / "after", {"pred.csv", "report.html"}), std::vector<std::string>{});

  fs::remove_all(dir_ / "after");
  fs::create_directories(dir_ / "run/run");
  test::write_file(dir_ / "run/run/metrics.jsonl",
                   R"({"type":"epoch","epoch":1,"train_loss":0.5,"val_loss":0.6,"val_mean_auc":0.7,"lr":0.001})"
                   "\n");
  const std::string report = dir_ / "fs/report.html";
  r = run_full(0, "report '" + (dir_ / "run") + "' --out '" + report + "'");
  expect_no_space(r, report);
  EXPECT_EQ(test::read_all(dir_ / "after/report.html"), "an earlier report\n");
  EXPECT_EQ(leftovers(dir_ / "after", {"pred.csv", "report.html"}), std::vector<std::string>{});
}

}  // namespace
}  // namespace cxr
