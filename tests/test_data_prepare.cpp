// `cxr prepare` end to end: the 868-image NIH sample (https://nihcc.app.box.com/v/ChestXray-NIHCC;
// Wang et al., CVPR 2017; data provided by the NIH Clinical Center), broken and missing images,
// resume after an interrupted run.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "io/csv.h"
#include "io/fileutil.h"
#include "io/image.h"
#include "io/packed.h"
#include "io/prepare.h"
#include "tests/test_data_util.h"
#include "tests/test_util.h"

namespace cxr::io {
namespace {

using cxr::test::ScratchDir;

TEST(DataPrepare, NihSample64PreparesCompletely) {
  const std::string dir = cxr::test::shared_path("data/nih-sample-64");
  if (dir.empty()) GTEST_SKIP() << "../shared/data/nih-sample-64 absent";
  ScratchDir out("prep64");
  PrepareOptions o;
  o.csv = dir + "/Data_Entry_2017_v2020.csv";
  o.images_dir = dir + "/images";
  o.out = out / "sample.h5";
  o.size = 64;
  o.seed = 3;
  o.threads = 2;
  o.quiet = true;
  o.command = "test";
  PrepareResult r = prepare_dataset(o);
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.images, 868);
  EXPECT_EQ(r.written, 868);
  EXPECT_EQ(r.unreadable, 0);
  EXPECT_EQ(r.missing, 0);
  EXPECT_FALSE(std::filesystem::exists(o.out + ".partial"));

  PackedDataset d(o.out);
  ASSERT_EQ(d.size(), 868);
  EXPECT_EQ(d.image_size(), 64);
  EXPECT_EQ(d.class_names().at(13), "Hernia");
  EXPECT_EQ(d.attribute("source_csv"), o.csv);
  EXPECT_EQ(d.attribute("split_method"), "random");
  EXPECT_NE(d.attribute("resize").find("mitchell"), std::string::npos) << d.attribute("resize");
  EXPECT_EQ(d.seed(), 3u);
  auto rows = read_label_csv(o.csv);
  std::map<std::string, const LabelRow*> by_name;
  for (auto& row : rows) by_name[row.image] = &row;
  for (int64_t i = 0; i < d.size(); ++i) {
    const LabelRow* row = by_name.at(d.names()[i]);
    for (int c = 0; c < kNumClasses; ++c)
      ASSERT_EQ(d.labels()[i * kNumClasses + c], row->labels[c]) << d.names()[i];
    ASSERT_EQ(d.patient_ids()[i], row->patient_id);
    ASSERT_EQ(d.view_positions()[i], row->view_position);
    ASSERT_NE(d.split()[i], Split::Excluded);
  }
  // Already 64x64: the stored pixels equal the decoded source (R=G=B, RGBA with alpha 255).
  for (int64_t i : {int64_t(0), int64_t(431), d.size() - 1}) {
    GreyImage src;
    std::string err;
    ASSERT_TRUE(decode_grey(o.images_dir + "/" + d.names()[i], &src, &err));
    std::vector<uint8_t> px(64 * 64);
    d.read_image(i, px.data());
    EXPECT_EQ(px, src.pixels) << d.names()[i];
  }
  SplitCheck c = check_split(d.patient_ids(), d.labels(), d.split());
  EXPECT_EQ(c.shared_patients, 0);
}

// A small dataset on disk: n grey PNGs of 40x40 with a CSV, in nested folders like images_001/images/.
struct Toy {
  std::string csv, images;
  std::vector<LabelRow> rows;
};
Toy make_toy(const ScratchDir& dir, int n) {
  Toy t;
  t.images = dir / "imgs";
  std::filesystem::create_directories(t.images + "/images_001/images");
  std::filesystem::create_directories(t.images + "/images_002/images");
  for (int i = 0; i < n; ++i) {
    LabelRow r;
    char name[32];
    std::snprintf(name, sizeof name, "%08d_%03d.png", i / 2 + 1, i % 2);
    r.image = name, r.patient_id = i / 2 + 1, r.labels[i % kNumClasses] = 1,
    r.view_position = i % 3 ? "PA" : "AP";
    t.rows.push_back(r);
    std::vector<uint8_t> px(40 * 40);
    for (int k = 0; k < 40 * 40; ++k) px[k] = static_cast<uint8_t>((k * 7 + i * 13) & 0xFF);
    write_png(t.images + (i < n / 2 ? "/images_001/images/" : "/images_002/images/") + name, px.data(), 40,
              40, 1);
  }
  t.csv = dir / "labels.csv";
  write_label_csv(t.csv, t.rows);
  return t;
}

TEST(DataPrepare, SymlinkLoopsAreWalkedOnce) {
  // Issue 14: two links back up the tree made the scan run for ever, its memory growing.
  ScratchDir dir("symlink_loops");
  namespace fs = std::filesystem;
  fs::create_directories(dir / "images/sub");
  cxr::test::write_file(dir / "images/a.png", "a");
  cxr::test::write_file(dir / "images/sub/b.png", "b");
  fs::create_directory_symlink("..", dir / "images/sub/up");          // a loop
  fs::create_directory_symlink(dir / "images", dir / "images/self");  // another
  fs::create_directory_symlink(dir / "images/sub", dir / "images/also_sub");
  const auto found = scan_images(dir / "images");
  std::map<std::string, int> names;
  for (const auto& [name, path] : found) ++names[name];
  EXPECT_EQ(found.size(), 2u);
  EXPECT_EQ(names["a.png"], 1);
  EXPECT_EQ(names["b.png"], 1);
}

TEST(DataPrepare, BrokenAndMissingImagesAreReported) {
  ScratchDir dir("prep_bad");
  Toy t = make_toy(dir, 20);
  const std::string i1 = t.images + "/images_001/images/";
  std::string bytes = read_text_file(i1 + t.rows[1].image);
  cxr::test::write_file(i1 + t.rows[1].image, bytes.substr(0, bytes.size() / 2));  // truncated PNG
  cxr::test::write_file(i1 + t.rows[2].image, "");                                 // empty file
  cxr::test::write_file(i1 + t.rows[3].image, "not an image at all");              // non-image
  std::filesystem::remove(i1 + t.rows[4].image);                                   // missing on disk
  PrepareOptions o;
  o.csv = t.csv, o.images_dir = t.images, o.out = dir / "toy.h5", o.size = 16, o.quiet = true, o.threads = 2;
  PrepareResult r = prepare_dataset(o);
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.images, 19);
  EXPECT_EQ(r.unreadable, 3);
  EXPECT_EQ(r.missing, 1);
  const std::string report = read_text_file(r.report);
  EXPECT_NE(report.find("missing " + t.csv + ":6 " + t.rows[4].image), std::string::npos)
      << report;  // row 5 = line 6
  EXPECT_NE(report.find("unreadable " + i1 + t.rows[1].image + ": cannot decode"), std::string::npos)
      << report;
  EXPECT_NE(report.find("unreadable " + i1 + t.rows[2].image + ": empty file"), std::string::npos) << report;
  EXPECT_NE(report.find("unreadable " + i1 + t.rows[3].image + ": cannot decode"), std::string::npos)
      << report;
  PackedDataset d(o.out);
  int excluded = 0;
  for (int64_t i = 0; i < d.size(); ++i) excluded += d.split()[i] == Split::Excluded;
  EXPECT_EQ(excluded, 3);
}

TEST(DataPrepare, ResumesWhereItStopped) {
  ScratchDir dir("prep_resume");
  Toy t = make_toy(dir, 30);
  PrepareOptions o;
  o.csv = t.csv, o.images_dir = t.images, o.size = 24, o.quiet = true, o.threads = 2, o.seed = 9;
  o.out = dir / "full.h5";
  prepare_dataset(o);
  o.out = dir / "resumed.h5";
  o.stop_after = 11;
  PrepareResult a = prepare_dataset(o);
  EXPECT_FALSE(a.complete);
  EXPECT_EQ(a.written, 11);
  EXPECT_TRUE(std::filesystem::exists(o.out + ".partial"));
  EXPECT_FALSE(std::filesystem::exists(o.out));
  o.stop_after = -1;
  PrepareResult b = prepare_dataset(o);
  EXPECT_TRUE(b.complete);
  EXPECT_EQ(b.already_done, 11);
  EXPECT_EQ(b.written, 19);
  PackedDataset full(dir / "full.h5"), res(o.out);
  ASSERT_EQ(full.size(), res.size());
  EXPECT_EQ(full.split(), res.split());
  std::vector<uint8_t> p(24 * 24), q(24 * 24);
  for (int64_t i = 0; i < full.size(); ++i) {
    full.read_image(i, p.data());
    res.read_image(i, q.data());
    ASSERT_EQ(p, q) << i;
  }
}

TEST(DataPrepare, CsvErrorStopsWithLine) {
  ScratchDir dir("prep_csv");
  Toy t = make_toy(dir, 4);
  std::string csv = read_text_file(t.csv);
  csv += "00000009_000.png,Tumour,0,9,1,M,PA,1,1,0.1,0.1\n";
  cxr::test::write_file(t.csv, csv);
  PrepareOptions o;
  o.csv = t.csv, o.images_dir = t.images, o.out = dir / "x.h5", o.quiet = true;
  try {
    prepare_dataset(o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(t.csv + ":6: unknown label 'Tumour'"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace cxr::io
