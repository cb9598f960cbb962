// Patient-wise splits on the full NIH label file (https://nihcc.app.box.com/v/ChestXray-NIHCC;
// Wang et al., CVPR 2017; data provided by the NIH Clinical Center) and on small hand-made cases.
#include <gtest/gtest.h>

#include <cmath>

#include "io/csv.h"
#include "io/split.h"
#include "tests/test_data_util.h"
#include "tests/test_util.h"

namespace cxr::io {
namespace {

const std::vector<LabelRow>& full_rows() {
  static std::vector<LabelRow> rows = [] {
    const std::string p = cxr::test::shared_path("data/nih-labels/Data_Entry_2017_v2020.csv");
    return p.empty() ? std::vector<LabelRow>{} : read_label_csv(p);
  }();
  return rows;
}

std::vector<LabelRow> toy_rows(int patients, int per_patient) {
  std::vector<LabelRow> rows;
  for (int p = 1; p <= patients; ++p)
    for (int k = 0; k < per_patient + p % 3; ++k) {
      LabelRow r;
      char name[32];
      std::snprintf(name, sizeof name, "%08d_%03d.png", p, k);
      r.image = name, r.patient_id = p, r.labels[p % 14] = 1;
      rows.push_back(r);
    }
  return rows;
}

TEST(DataSplit, RandomFullFileNoLeakAndRatios) {
  const auto& rows = full_rows();
  if (rows.empty()) GTEST_SKIP() << "../shared/data/nih-labels absent";
  for (SplitRatios r : {SplitRatios{0.7, 0.1, 0.2}, SplitRatios{0.62, 0.07, 0.31}}) {
    auto split = random_split(rows, r, 42);
    SplitCheck c = check_split(rows, split);
    EXPECT_EQ(c.shared_patients, 0);
    const double n = static_cast<double>(rows.size());
    const double want[3] = {r.train, r.val, r.test};
    for (int s = 0; s < 3; ++s)
      EXPECT_NEAR(c.images[s] / n, want[s], 0.01) << kSplitNames[s];  // within 1% of the ratio
    EXPECT_EQ(c.images[0] + c.images[1] + c.images[2], static_cast<int64_t>(rows.size()));
  }
}

TEST(DataSplit, SeededAndZeroFractions) {
  auto rows = toy_rows(300, 2);
  auto a = random_split(rows, {}, 1), b = random_split(rows, {}, 1), c = random_split(rows, {}, 2);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_EQ(check_split(rows, a).shared_patients, 0);
  auto test_only = random_split(rows, parse_ratios("0,0,1"), 3);
  for (Split s : test_only) EXPECT_EQ(s, Split::Test);
  EXPECT_THROW(parse_ratios("0.5,0.5"), Error);
  EXPECT_THROW(parse_ratios("0.5,0.6,0.1"), Error);
}

TEST(DataSplit, CheckFindsSharedPatients) {
  auto rows = toy_rows(10, 2);
  std::vector<Split> s(rows.size(), Split::Train);
  s[0] = Split::Test;  // patient 1 now in train and test
  SplitCheck c = check_split(rows, s);
  EXPECT_EQ(c.shared_patients, 1);
  EXPECT_EQ(c.shared_pairs[1], 1);
  EXPECT_EQ(c.shared_examples.at(0), 1);
  EXPECT_EQ(c.positives[2][1], 1);  // patient 1 has class 1
}

TEST(DataSplit, CheXNetListsReproducePublishedSizes) {
  const auto& rows = full_rows();
  const std::string dir = cxr::test::shared_path("data/splits-chexnet");
  if (rows.empty() || dir.empty()) GTEST_SKIP() << "../shared/data/nih-labels or splits-chexnet absent";
  int64_t unlisted = -1, missing = -1;
  auto split = split_from_lists(rows, {dir + "/train_list.txt", dir + "/val_list.txt", dir + "/test_list.txt"}, {}, 0,
                                &unlisted, &missing);
  SplitCheck c = check_split(rows, split);
  EXPECT_EQ(c.images[0], 78468);
  EXPECT_EQ(c.images[1], 11219);
  EXPECT_EQ(c.images[2], 22433);
  EXPECT_EQ(c.shared_patients, 0);
  EXPECT_EQ(missing, 0);
  EXPECT_EQ(unlisted, 0);
}

TEST(DataSplit, OfficialStyleListsWithPool) {
  cxr::test::ScratchDir dir("lists");
  auto rows = toy_rows(200, 2);
  std::string pool, test;
  for (auto& r : rows) (r.patient_id <= 160 ? pool : test) += r.image + "\n";
  cxr::test::write_file(dir / "train_val_list.txt", pool);
  cxr::test::write_file(dir / "test_list.txt", test);
  auto split = split_from_lists(rows, {dir / "train_val_list.txt", dir / "test_list.txt"}, {0.7, 0.1, 0.2}, 5);
  SplitCheck c = check_split(rows, split);
  EXPECT_EQ(c.shared_patients, 0);
  EXPECT_GT(c.images[1], 0);
  const double pool_n = static_cast<double>(c.images[0] + c.images[1]);
  EXPECT_NEAR(c.images[1] / pool_n, 0.125, 0.03);
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i].patient_id > 160) {
      EXPECT_EQ(split[i], Split::Test);
    }
  }
}

}  // namespace
}  // namespace cxr::io
