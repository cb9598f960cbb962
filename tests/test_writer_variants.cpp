// Other writers' files (issue 14, item 8): the label and box CSVs as pandas writes them (an index
// column, every field quoted, a column subset, "Unnamed: N" columns), the box file without its
// trailing empty columns, and PNGs as pypng and PIL save them (16-bit, palette, interlaced, gAMA,
// iCCP, grey + alpha, RGB), made at test time from the real NIH files by
// tests/fixtures/make_writer_variants.py and read exactly as the official files are.
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "io/csv.h"
#include "io/image.h"
#include "test_data_util.h"
#include "test_util.h"

namespace cxr {
namespace {

namespace fs = std::filesystem;

// The variants, made once per content of the script; "" and *why when they cannot be made here.
std::string variants_dir(std::string* why, bool* no_tools) {
  *no_tools = false;
  const std::string shared = test::shared_path("data");
  if (shared.empty() || !fs::exists(shared + "/nih-sample-64") || !fs::exists(shared + "/nih-320")) {
    *why = "../shared/data (nih-sample-64, nih-320, nih-labels) is absent";
    return "";
  }
  const std::string script = test::source_path("tests/fixtures/make_writer_variants.py");
  const std::string py = "/usr/bin/python3";
  if (std::system((py + " -c 'import pandas, png, PIL.ImageCms' >/dev/null 2>&1").c_str()) != 0) {
    *why = "no Python with pandas, pypng and PIL (Debian's python3-pandas, python3-png, python3-pil)";
    *no_tools = true;
    return "";
  }
  const std::string cmd = py + " '" + script + "' --shared '" + shared + "' --out '{out}'";
  const std::string dir = test::generated_fixture_dir(
      "cxr_writer_variants", std::to_string(std::hash<std::string>{}(test::read_all(script))), cmd);
  if (dir.empty()) *why = "the script failed: " + cmd, *no_tools = true;
  return dir;
}

#define CXR_NEED_VARIANTS(dir)                                         \
  std::string why_;                                                    \
  bool no_tools_ = false;                                              \
  const std::string dir = variants_dir(&why_, &no_tools_);             \
  if (dir.empty()) {                                                   \
    if (no_tools_ && std::getenv("CI")) FAIL() << why_;                \
    GTEST_SKIP() << why_;                                              \
  }

TEST(WriterVariants, LabelCsvsAsPandasWritesThem) {
  CXR_NEED_VARIANTS(dir);
  const auto official = io::read_label_csv(test::shared_path("data/nih-sample-64/Data_Entry_2017_v2020.csv"));
  ASSERT_EQ(official.size(), 868u);
  for (const char* f : {"labels_pandas_index.csv", "labels_pandas_quoted.csv", "labels_pandas_subset.csv"}) {
    SCOPED_TRACE(f);
    const auto rows = io::read_label_csv(dir + "/" + f);
    ASSERT_EQ(rows.size(), official.size());
    for (size_t i = 0; i < rows.size(); ++i) {
      EXPECT_EQ(rows[i].image, official[i].image);
      EXPECT_EQ(rows[i].labels, official[i].labels) << rows[i].image;
      EXPECT_EQ(rows[i].patient_id, official[i].patient_id) << rows[i].image;
    }
    if (std::string(f) != "labels_pandas_subset.csv") {
      EXPECT_EQ(rows[0].view_position, official[0].view_position);
      EXPECT_EQ(rows[0].width, official[0].width) << "OriginalImage[Width,Height] from two columns";
    }
  }
}

TEST(WriterVariants, BoxCsvsWithAndWithoutTheirTrailingColumns) {
  CXR_NEED_VARIANTS(dir);
  const auto official = io::read_bbox_csv(test::shared_path("data/nih-labels/BBox_List_2017.csv"));
  ASSERT_EQ(official.size(), 984u);
  for (const char* f : {"boxes_pandas.csv", "boxes_no_trailing.csv"}) {
    SCOPED_TRACE(f);
    const auto boxes = io::read_bbox_csv(dir + "/" + f);
    ASSERT_EQ(boxes.size(), official.size());
    for (size_t i = 0; i < boxes.size(); ++i) {
      EXPECT_EQ(boxes[i].image, official[i].image);
      EXPECT_EQ(boxes[i].cls, official[i].cls);
      // pandas prints floats with 15 significant digits (repr of a double round-trips; its CSV
      // writer's default does not always): within 1e-9 pixels.
      EXPECT_NEAR(boxes[i].x, official[i].x, 1e-9);
      EXPECT_NEAR(boxes[i].h, official[i].h, 1e-9);
    }
  }
}

TEST(WriterVariants, PngsAsOtherToolsSaveThem) {
  CXR_NEED_VARIANTS(dir);
  const auto m = nlohmann::json::parse(test::read_all(dir + "/manifest.json"));
  ASSERT_GE(m["pngs"].size(), 7u);
  for (const auto& p : m["pngs"]) {
    const std::string file = p["file"];
    SCOPED_TRACE(file + " (" + p["writer"].get<std::string>() + ")");
    io::GreyImage img;
    std::string err;
    ASSERT_TRUE(io::decode_grey(dir + "/" + file, &img, &err)) << err;
    ASSERT_EQ(img.width, p["columns"].get<int>());
    ASSERT_EQ(img.height, p["rows"].get<int>());
    const std::string expected = test::read_all(dir + "/" + p["expected"].get<std::string>());
    ASSERT_EQ(expected.size(), img.pixels.size());
    size_t differ = 0;
    for (size_t i = 0; i < expected.size(); ++i) differ += uint8_t(expected[i]) != img.pixels[i];
    EXPECT_EQ(differ, 0u) << "pixels as stored: gamma and ICC are not applied, alpha is ignored";
  }
}

}  // namespace
}  // namespace cxr
