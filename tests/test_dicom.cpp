// DICOM input (io/dicom.h): the grey-scale pipeline of PS3.3 C.11 against the standard's formulas
// and notes, and decoding of files written by other encoders (pydicom, DCMTK, GDCM's own tools)
// from a real NIH image, in every transfer syntax and pixel variant (tests/fixtures/make_dicom_fixtures.py).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "io/dicom.h"
#include "io/image.h"
#include "dicom_fixtures.h"
#include "test_data_util.h"
#include "test_util.h"

namespace cxr {
namespace {

namespace fs = std::filesystem;
using io::GreyPipeline;
using io::VoiFunction;
using io::voi_window;

// ---- the formulas, against the standard's text and its notes ----------------------------------

TEST(DicomVoi, LinearMatchesTheStandardsNotes) {
  // C.11.2.1.2.1, notes: "for 8 bit data, a Window Center of 128 and Window Width of 256 ... selects
  // the range of input values from 0 to 255" and a 12-bit window of c = 2048, w = 4096 selects
  // 0 .. 4095: the ends map to ymin and ymax, the inside linearly.
  EXPECT_EQ(voi_window(VoiFunction::Linear, 0, 2048, 4096, 0, 255), 0);
  EXPECT_EQ(voi_window(VoiFunction::Linear, 4095, 2048, 4096, 0, 255), 255);
  EXPECT_EQ(voi_window(VoiFunction::Linear, 4096, 2048, 4096, 0, 255), 255);
  for (int x = 0; x < 256; ++x)  // c = 128, w = 256: y = ((x - 127.5) / 255 + 0.5) * 255 = x
    EXPECT_NEAR(voi_window(VoiFunction::Linear, x, 128, 256, 0, 255), x, 1e-9) << x;
  // "A Window Width of 1 ... with a Window Center of 0 ... x <= -0.5 ymin, x > -0.5 ymax": a threshold.
  EXPECT_EQ(voi_window(VoiFunction::Linear, -1, 0, 1, 0, 255), 0);
  EXPECT_EQ(voi_window(VoiFunction::Linear, 0, 0, 1, 0, 255), 255);
  // The centre of the window (x = c - 0.5) is the middle of the output range.
  EXPECT_DOUBLE_EQ(voi_window(VoiFunction::Linear, 999.5, 1000, 500, 0, 255), 127.5);
}

TEST(DicomVoi, LinearExactAndSigmoidMatchTheStandardsFormulas) {
  // C.11.2.1.3.2 LINEAR_EXACT: x <= c - w/2 -> ymin; x > c + w/2 -> ymax; else ((x - c)/w + 0.5)(ymax - ymin) + ymin.
  EXPECT_EQ(voi_window(VoiFunction::LinearExact, 750, 1000, 500, 0, 255), 0);
  EXPECT_EQ(voi_window(VoiFunction::LinearExact, 1250.5, 1000, 500, 0, 255), 255);
  EXPECT_DOUBLE_EQ(voi_window(VoiFunction::LinearExact, 1000, 1000, 500, 0, 255), 127.5);
  EXPECT_DOUBLE_EQ(voi_window(VoiFunction::LinearExact, 1125, 1000, 500, 0, 255), 0.75 * 255);
  // C.11.2.1.3.1 SIGMOID: y = (ymax - ymin) / (1 + exp(-4 (x - c) / w)) + ymin.
  EXPECT_DOUBLE_EQ(voi_window(VoiFunction::Sigmoid, 1000, 1000, 500, 0, 255), 127.5);
  EXPECT_DOUBLE_EQ(voi_window(VoiFunction::Sigmoid, 1125, 1000, 500, 0, 255), 255 / (1 + std::exp(-1.0)));
  EXPECT_NEAR(voi_window(VoiFunction::Sigmoid, -1e6, 1000, 500, 10, 200), 10, 1e-9);
}

TEST(DicomLut, ClampsBelowTheFirstAndAboveTheLastEntry) {
  io::DicomLut lut;
  lut.first = -2;
  lut.bits = 12;
  lut.data = {100, 200, 300, 400};  // stored -2, -1, 0, 1
  EXPECT_EQ(lut.lookup(-100), 100);
  EXPECT_EQ(lut.lookup(-2), 100);
  EXPECT_EQ(lut.lookup(0), 300);
  EXPECT_EQ(lut.lookup(1), 400);
  EXPECT_EQ(lut.lookup(50), 400);
}

TEST(DicomStored, MasksUnusedHighBitsAndSignExtends) {
  EXPECT_EQ(io::stored_value(0xA123, 12, false), 0x123);  // overlay bits above Bits Stored ignored
  EXPECT_EQ(io::stored_value(0x0FFF, 12, true), -1);      // 12-bit two's complement
  EXPECT_EQ(io::stored_value(0xF800, 12, true), -2048);
  EXPECT_EQ(io::stored_value(0x07FF, 12, true), 2047);
  EXPECT_EQ(io::stored_value(0xFFFF, 16, true), -1);
  EXPECT_EQ(io::stored_value(0xFFFF, 16, false), 65535);
  EXPECT_EQ(io::stored_value(0x80, 8, true), -128);
}

// The table render_grey builds equals evaluating the pipeline pixel by pixel, for every kind of
// modality and VOI transform, on fresh random images.
uint8_t reference_pixel(const GreyPipeline& p, int32_t v, double mmin, double mmax) {
  const double m = p.modality_lut ? p.modality.lookup(v) : p.slope * v + p.intercept;
  double y = 0;
  if (p.voi == GreyPipeline::Voi::Window) y = voi_window(p.function, m, p.center, p.width, 0, 255);
  else if (p.voi == GreyPipeline::Voi::Lut) y = p.voi_lut.lookup(m) * 255.0 / ((1 << p.voi_lut.bits) - 1);
  else y = mmax > mmin ? (m - mmin) / (mmax - mmin) * 255 : 0;
  if (p.invert) y = 255 - y;
  return static_cast<uint8_t>(std::clamp(std::floor(y + 0.5), 0.0, 255.0));
}

TEST(DicomRender, TableEqualsPixelByPixelEvaluation) {
  const uint64_t seed = test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> val(-2048, 2047);
  std::vector<int32_t> img(5000);
  for (auto& v : img) v = val(rng);
  io::DicomLut lut;
  lut.first = -1000;
  lut.bits = 12;
  for (int k = 0; k < 2000; ++k) lut.data.push_back(static_cast<uint16_t>((k * 37) % 4096));  // not monotonic
  for (int variant = 0; variant < 8; ++variant) {
    GreyPipeline p;
    p.slope = variant % 2 ? 0.5 : 1.0;
    p.intercept = variant % 2 ? -1024 : 0;
    if (variant == 6) {
      p.modality_lut = true;
      p.modality = lut;
    }
    p.voi = variant < 3 ? GreyPipeline::Voi::Window : variant < 5 ? GreyPipeline::Voi::Lut : GreyPipeline::Voi::MinMax;
    p.function = static_cast<VoiFunction>(variant % 3);
    p.center = 100;
    p.width = 1500;
    p.voi_lut = lut;
    p.invert = variant % 3 == 1;
    double mmin = 1e300, mmax = -1e300;
    for (int32_t v : img) {
      const double m = p.modality_lut ? p.modality.lookup(v) : p.slope * v + p.intercept;
      mmin = std::min(mmin, m);
      mmax = std::max(mmax, m);
    }
    std::vector<uint8_t> out(img.size());
    io::render_grey(img.data(), img.size(), p, out.data());
    for (size_t i = 0; i < img.size(); ++i)
      ASSERT_EQ(out[i], reference_pixel(p, img[i], mmin, mmax)) << "variant " << variant << " value " << img[i];
  }
}

TEST(DicomRender, MonochromeOneIsTheInverseOfMonochromeTwo) {
  std::vector<int32_t> img = {0, 100, 2048, 4095};
  GreyPipeline p;
  p.voi = GreyPipeline::Voi::Window;
  p.center = 2048;
  p.width = 4096;
  std::vector<uint8_t> a(4), b(4);
  io::render_grey(img.data(), 4, p, a.data());
  p.invert = true;
  io::render_grey(img.data(), 4, p, b.data());
  EXPECT_EQ(a[0], 0);
  EXPECT_EQ(a[3], 255);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(int(a[i]) + int(b[i]), 255, 1) << i;  // 1: a .5 tie rounds up both ways
}

// ---- files written by other encoders from a real NIH image ------------------------------------

template <typename A, typename B>
int max_abs_diff(const std::vector<A>& a, const std::vector<B>& b, size_t* count = nullptr) {
  int m = 0;
  size_t c = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const int d = std::abs(int(a[i]) - int(b[i]));
    m = std::max(m, d);
    c += d != 0;
  }
  if (count) *count = c;
  return m;
}

TEST(DicomFiles, EverySyntaxDecodesToTheSourceValues) {
  CXR_NEED_FIXTURES(dir);
  int checked = 0;
  for (const auto& e : files) {
    if (e["expect"] != "ok") continue;
    SCOPED_TRACE(e["file"].get<std::string>() + " (" + e["encoder"].get<std::string>() + ")");
    const size_t n = e["rows"].get<size_t>() * e["columns"].get<size_t>();
    std::vector<int32_t> stored;
    io::DicomInfo info;
    io::GreyPipeline pipe;
    std::string error;
    ASSERT_TRUE(io::read_dicom_stored(dir + "/" + e["file"].get<std::string>(), {}, &stored, &info, &pipe, &error))
        << error;
    ASSERT_EQ(stored.size(), n);
    EXPECT_EQ(info.rows, e["rows"].get<int>());
    EXPECT_EQ(info.columns, e["columns"].get<int>());
    EXPECT_EQ(info.transfer_syntax, e["transfer_syntax"].get<std::string>());
    const auto expect = test::read_raw<int32_t>(dir + "/" + e["stored"].get<std::string>(), n);
    if (e["lossless"].get<bool>()) {
      EXPECT_EQ(max_abs_diff(stored, expect), 0) << "lossless: exactly the source values";
    } else {
      // Lossy: within the bound the manifest derives (JPEG-LS: NEAR, by the standard; JPEG and JPEG 2000:
      // the error an independent decoder measured plus its IDCT / wavelet rounding margin).
      EXPECT_LE(max_abs_diff(stored, expect), e["max_abs_error"].get<int>());
      if (e["decoded_reference"].is_string()) {
        const auto ref = test::read_raw<int32_t>(dir + "/" + e["decoded_reference"].get<std::string>(), n);
        // Another decoder of the same codestream: IDCT / inverse-wavelet rounding differs by a level or two.
        EXPECT_LE(max_abs_diff(stored, ref), 2) << "against " << e["error_decoder"];
      }
    }
    ++checked;
  }
  EXPECT_GE(checked, 40) << "the manifest lists fewer decodable files than the script makes";
}

TEST(DicomFiles, RenderedAsTheStandardSaysAndAsPydicomAndDcmtkDo) {
  CXR_NEED_FIXTURES(dir);
  for (const auto& e : files) {
    if (e["expect"] != "ok" || !e["lossless"].get<bool>()) continue;  // lossy: decoded values differ (above)
    const std::string file = e["file"];
    SCOPED_TRACE(file);
    const size_t n = e["rows"].get<size_t>() * e["columns"].get<size_t>();
    io::GreyImage img;
    std::string error;
    ASSERT_TRUE(io::decode_dicom(dir + "/" + file, {}, &img, nullptr, &error)) << error;
    ASSERT_EQ(img.pixels.size(), n);
    // The script's own evaluation of the standard's formulas in exact rationals; a pixel that falls
    // exactly on .5 may come out one lower in double arithmetic ("display_ties" counts them).
    size_t differ = 0;
    const auto display = test::read_raw<uint8_t>(dir + "/" + e["display"].get<std::string>(), n);
    EXPECT_LE(max_abs_diff(img.pixels, display, &differ), 1);
    EXPECT_LE(differ, e["display_ties"].get<size_t>());
    // pydicom 2.3 (float64 windows, no inversion of its own: the script inverts) agrees but on its
    // 8-bit VOI LUT indexing bug, which the manifest records (a wrap-around above first + 255).
    if (e["display_pydicom"].is_string() && file != "px_voi_lut8.dcm") {
      const auto py = test::read_raw<uint8_t>(dir + "/" + e["display_pydicom"].get<std::string>(), n);
      EXPECT_LE(max_abs_diff(img.pixels, py), 1) << "pydicom";
    }
    // DCMTK's dcm2pnm builds its window on integer table entries and truncates: a level apart. It has
    // no LINEAR_EXACT and its min-max window is a LINEAR window, not a stretch: those are not compared.
    const auto& voi = e["voi"];
    const bool same_definition =
        voi["kind"] == "voi_lut" || (voi["kind"] == "window" && voi["function"] != "LINEAR_EXACT");
    if (e["display_dcmtk"].is_string() && same_definition) {
      const auto dc = test::read_raw<uint8_t>(dir + "/" + e["display_dcmtk"].get<std::string>(), n);
      EXPECT_LE(max_abs_diff(img.pixels, dc), 1) << "dcm2pnm " << e["dcmtk_options"];
    }
  }
}

TEST(DicomFiles, SecondWindowOnRequest) {
  CXR_NEED_FIXTURES(dir);
  for (const auto& e : files) {
    if (!e["display_window2"].is_string()) continue;
    const size_t n = e["rows"].get<size_t>() * e["columns"].get<size_t>();
    io::GreyImage first, second;
    io::DicomInfo info;
    std::string error;
    const std::string path = dir + "/" + e["file"].get<std::string>();
    ASSERT_TRUE(io::decode_dicom(path, io::DicomOptions{2}, &second, &info, &error)) << error;
    EXPECT_NE(info.voi.find("window 2 of 3"), std::string::npos) << info.voi;
    size_t differ = 0;
    EXPECT_LE(max_abs_diff(second.pixels, test::read_raw<uint8_t>(dir + "/" + e["display_window2"].get<std::string>(), n),
                           &differ), 1);
    EXPECT_LE(differ, e["display_ties"].get<size_t>() + 8);
    ASSERT_TRUE(io::decode_dicom(path, {}, &first, nullptr, &error)) << error;
    EXPECT_NE(first.pixels, second.pixels);
    EXPECT_FALSE(io::decode_dicom(path, io::DicomOptions{4}, &second, nullptr, &error));
    EXPECT_NE(error.find("--dicom-window 4 but the file has 3 windows"), std::string::npos) << error;
    return;
  }
  FAIL() << "no file with several windows in the manifest";
}

TEST(DicomFiles, RefusalsSayWhy) {
  CXR_NEED_FIXTURES(dir);
  const std::map<std::string, std::string> words = {
      {"multiframe", "multi-frame"}, {"colour", "Photometric Interpretation"},
      {"damaged", "could not be decoded"}, {"not_dicom", "not a DICOM"}};
  int refused = 0;
  for (const auto& e : files) {
    if (e["expect"] != "refuse") continue;
    SCOPED_TRACE(e["file"].get<std::string>());
    io::GreyImage img;
    std::string error;
    EXPECT_FALSE(io::decode_dicom(dir + "/" + e["file"].get<std::string>(), {}, &img, nullptr, &error));
    const std::string reason = e["reason"];
    ASSERT_TRUE(words.count(reason)) << reason;
    EXPECT_NE(error.find(words.at(reason)), std::string::npos) << "error: " << error;
    ++refused;
  }
  EXPECT_GE(refused, 5);
}

TEST(DicomFiles, HeaderFieldsAndFilesWithoutExtension) {
  CXR_NEED_FIXTURES(dir);
  for (const auto& e : files) {
    if (e["expect"] != "ok") continue;
    const std::string path = dir + "/" + e["file"].get<std::string>();
    SCOPED_TRACE(path);
    EXPECT_TRUE(io::is_dicom_path(path));
    io::DicomInfo info;
    std::string error;
    ASSERT_TRUE(io::read_dicom_info(path, &info, &error)) << error;
    EXPECT_EQ(info.sop_instance_uid, e["sop_instance_uid"].get<std::string>());
    EXPECT_EQ(info.patient_id, e["patient_id"].get<std::string>());
    EXPECT_EQ(info.view_position, e["view"].is_string() ? e["view"].get<std::string>() : "");
    EXPECT_EQ(info.burned_in_annotation, e["burned_in"].get<bool>());
  }
  EXPECT_FALSE(io::is_dicom_path(test::source_path("tests/fixtures/generator.py")));
}

}  // namespace
}  // namespace cxr
