// The data commands end to end, through the built `cxr` binary (CXR_BINARY, or $CXR_BINARY): synth a
// small dataset, prepare it, then check `cxr split-check` (JSON key shared_patients, per-set counts,
// a deliberately leaky list split) and `cxr stats` (JSON counts, valid SVG and PNG charts), and that
// failures exit non-zero with a one-line reason.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "io/csv.h"
#include "io/image.h"
#include "io/packed.h"
#include "io/stats.h"
#include "tests/test_data_util.h"

namespace cxr::io {
namespace {

using cxr::test::ScratchDir;

using cxr::test::cxr_binary;
using cxr::test::read_all;
using cxr::test::run_cxr;
using cxr::test::RunResult;

class DataCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string bin = cxr_binary();
    struct stat st;
    if (bin.empty() || stat(bin.c_str(), &st) != 0) return;
    dir_ = new ScratchDir("cli");
    const ScratchDir& d = *dir_;
    RunResult r = run_cxr(d, "synth --out '" + (d / "synth") + "' --patients 40 --size 48 --seed 5 --threads 2");
    if (r.status != 0) {
      setup_error_ = "cxr synth failed: " + r.err;
      return;
    }
    r = run_cxr(d, "prepare --csv '" + (d / "synth/Data_Entry_2017_v2020.csv") + "' --images '" + (d / "synth/images") +
                       "' --out '" + (d / "p.h5") + "' --size 32 --seed 2 --threads 2 --quiet --json");
    if (r.status != 0) {
      setup_error_ = "cxr prepare failed: " + r.err;
      return;
    }
    ready_ = true;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (!setup_error_.empty()) FAIL() << setup_error_;
    if (!ready_)
      GTEST_SKIP() << "the cxr binary was not found (set CXR_BINARY, or define it in tests/CMakeLists.txt)";
  }
  static ScratchDir* dir_;
  static bool ready_;
  static std::string setup_error_;
};
ScratchDir* DataCli::dir_ = nullptr;
bool DataCli::ready_ = false;
std::string DataCli::setup_error_;

TEST_F(DataCli, SplitCheckOnPackedFile) {
  const ScratchDir& d = *dir_;
  RunResult r = run_cxr(d, "split-check --data '" + (d / "p.h5") + "' --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("shared_patients").get<int64_t>(), 0);
  const std::vector<LabelRow> rows = read_label_csv(d / "synth/Data_Entry_2017_v2020.csv");
  int64_t images = 0;
  std::array<int64_t, kNumClasses> pos{}, csv_pos{};
  for (const char* s : kSplitNames) {
    const auto& set = j.at("sets").at(s);
    images += set.at("images").get<int64_t>();
    EXPECT_GT(set.at("patients").get<int64_t>(), 0) << s;
    for (int k = 0; k < kNumClasses; ++k) pos[k] += set.at("positives").at(std::string(kClassNames[k])).get<int64_t>();
  }
  for (auto& row : rows)
    for (int k = 0; k < kNumClasses; ++k) csv_pos[k] += row.labels[k];
  EXPECT_EQ(images, static_cast<int64_t>(rows.size()));
  EXPECT_EQ(pos, csv_pos);
  // The table form prints the same verdict.
  r = run_cxr(d, "split-check --data '" + (d / "p.h5") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("shared patients: 0"), std::string::npos) << r.out;
}

TEST_F(DataCli, SplitCheckFromCsvFindsLeakyLists) {
  const ScratchDir& d = *dir_;
  const std::string csv = d / "synth/Data_Entry_2017_v2020.csv";
  RunResult r = run_cxr(d, "split-check --csv '" + csv + "' --split 0.6,0.2,0.2 --seed 9 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out).at("shared_patients").get<int64_t>(), 0);

  // Official-style lists that put the follow-up images of two patients in the test set while their
  // first images are in train_val: exactly those two patients are shared.
  const std::vector<LabelRow> rows = read_label_csv(csv);
  std::set<int64_t> leaky;
  std::string train_val, test;
  for (auto& row : rows) {
    const bool follow_up = row.image.substr(row.image.size() - 7) != "000.png";
    if (follow_up && leaky.size() < 2) leaky.insert(row.patient_id);
    (follow_up && leaky.count(row.patient_id) ? test : train_val) += row.image + "\n";
  }
  ASSERT_EQ(leaky.size(), 2u) << "the synthetic dataset should have patients with follow-up images";
  cxr::test::write_file(d / "train_val_list.txt", train_val);
  cxr::test::write_file(d / "test_list.txt", test);
  r = run_cxr(d, "split-check --csv '" + csv + "' --split-lists '" + (d / "train_val_list.txt") + "' '" +
                     (d / "test_list.txt") + "' --json");
  EXPECT_NE(r.status, 0) << "a leak fails the check";
  EXPECT_NE(r.err.find("2 patients have images in more than one set (leak)"), std::string::npos) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("shared_patients").get<int64_t>(), 2);
  std::set<int64_t> examples;
  for (auto& v : j.at("shared_examples")) examples.insert(v.get<int64_t>());
  EXPECT_EQ(examples, leaky);
  r = run_cxr(d, "split-check --csv '" + csv + "' --split-lists '" + (d / "train_val_list.txt") + "' '" +
                     (d / "test_list.txt") + "'");
  EXPECT_NE(r.out.find("LEAK"), std::string::npos) << r.out;
  EXPECT_NE(r.status, 0);
}

TEST_F(DataCli, StatsJsonAndCharts) {
  const ScratchDir& d = *dir_;
  const std::string out = d / "stats";
  RunResult r = run_cxr(d, "stats --data '" + (d / "p.h5") + "' --out '" + out + "' --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  PackedDataset p(d / "p.h5");
  const ClassStats st = class_stats(p);
  for (int s = 0; s < kNumSplits; ++s) {
    const auto& set = j.at(kSplitNames[s]);
    ASSERT_EQ(set.at("images").get<int64_t>(), st.images[s]);
    for (int k = 0; k < kNumClasses; ++k) {
      const auto& c = set.at("classes").at(std::string(kClassNames[k]));
      EXPECT_EQ(c.at("positive").get<int64_t>(), st.positives[s][k]);
      EXPECT_EQ(c.at("positive").get<int64_t>() + c.at("negative").get<int64_t>(), st.images[s]);
      EXPECT_NEAR(c.at("positive_frequency").get<double>() + c.at("negative_frequency").get<double>(), 1.0, 1e-12);
    }
  }
  // SVG: a complete document naming every class; PNG: decodable, the chart's size, not blank.
  const std::string svg = read_all(out + "/class_balance.svg");
  ASSERT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  for (int k = 0; k < kNumClasses; ++k) EXPECT_NE(svg.find(std::string(kClassNames[k])), std::string::npos) << k;
  GreyImage png;
  std::string err;
  ASSERT_TRUE(decode_grey(out + "/class_balance.png", &png, &err)) << err;
  EXPECT_EQ(png.width, 900);
  EXPECT_EQ(png.height, 520);
  int64_t dark = 0;
  for (uint8_t v : png.pixels) dark += v < 200;
  EXPECT_GT(dark, 1000) << "the PNG chart looks blank";
  // The table form.
  r = run_cxr(d, "stats --data '" + (d / "p.h5") + "' --out '" + out + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("Hernia"), std::string::npos);
}

TEST_F(DataCli, FailuresExitNonZeroWithOneLine) {
  const ScratchDir& d = *dir_;
  for (const std::string& args : {"stats --data '" + (d / "nonexistent.h5") + "' --out '" + (d / "x") + "'",
                                  "split-check --data '" + (d / "nonexistent.h5") + "'",
                                  "split-check --csv '" + (d / "synth/Data_Entry_2017_v2020.csv") + "' --split 0.5,0.5,0.5"}) {
    RunResult r = run_cxr(d, args);
    EXPECT_NE(r.status, 0) << args;
    EXPECT_EQ(r.err.rfind("cxr: error: ", 0), 0u) << args << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

}  // namespace
}  // namespace cxr::io
