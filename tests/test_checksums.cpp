// Corruption is detected, not trained on (issue 14, item 6): packed datasets and checkpoints carry
// checksums (io/digest.h); a flipped byte in an image, a label, a weight or an Adam moment is
// reported with the dataset (and the image) instead of being used; values a packed file cannot hold
// (float pixels, a label of 5, a split code of 7) are refused; `cxr verify` checks a file completely.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <filesystem>
#include <fstream>

#include "engine/init.h"
#include "engine/model.h"
#include "io/checkpoint.h"
#include "io/digest.h"
#include "io/hdf5.h"
#include "io/loader.h"
#include "io/packed.h"
#include "io/synth.h"
#include "io/weights.h"
#include "test_data_util.h"
#include "test_file_damage.h"
#include "test_util.h"

namespace cxr {
namespace {

namespace fs = std::filesystem;

using test::data_offset;
using test::flip_byte;

std::string make_packed(const test::ScratchDir& dir, int S = 32) {
  io::SynthOptions so;
  so.patients = 6, so.size = S;
  io::SynthResult r = io::synth_labels(so);
  r.rows.resize(std::min<size_t>(r.rows.size(), 10));
  std::vector<io::Split> split(r.rows.size(), io::Split::Train);
  io::PackedMeta meta;
  meta.image_size = S;
  const std::string path = dir / "d.h5";
  io::PackedWriter w(path, r.rows, split, meta);
  for (size_t i = 0; i < r.rows.size(); ++i) w.write_image(int64_t(i), io::synth_image(r.rows[i], S, 0, nullptr).data());
  w.finish();
  return path;
}

// A file with only what marks a complete packed file (format, complete) and an /images dataset of
// the given type and extent: what a careless or hostile writer could hand us.
void write_bare_packed(const std::string& path, hid_t type, std::vector<hsize_t> dims, bool chunked) {
  hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  hid_t sp = H5Screate_simple(int(dims.size()), dims.data(), nullptr), dcpl = H5Pcreate(H5P_DATASET_CREATE);
  std::vector<hsize_t> chunk(dims);
  chunk[0] = 1;
  if (chunked) H5Pset_chunk(dcpl, int(chunk.size()), chunk.data());
  hid_t d = H5Dcreate2(f, "/images", type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  io::h5::write_string_attr(f, "format", io::kPackedFormat);
  io::h5::write_int_attr(f, "complete", 1);
  H5Dclose(d), H5Pclose(dcpl), H5Sclose(sp), H5Fclose(f);
}

// Opening `path` as a packed dataset fails with a message containing `text`.
void expect_open_refused(const std::string& path, const std::string& text) {
  try {
    io::PackedDataset d(path);
    ADD_FAILURE() << path << " was opened";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
  }
}

TEST(Checksums, AFlippedImageByteIsReportedWithTheImage) {
  test::ScratchDir dir("checksum_image");
  const std::string path = make_packed(dir);
  {
    io::PackedDataset d(path);
    ASSERT_TRUE(d.has_checksums());
    std::vector<uint8_t> img(size_t(d.image_bytes()));
    for (int64_t i = 0; i < d.size(); ++i) d.read_image(i, img.data());  // intact: every image reads
  }
  const int64_t chunk = data_offset(path, "/images", 3);
  ASSERT_GT(chunk, 0);
  flip_byte(path, chunk + 517);
  io::PackedDataset d(path);
  std::vector<uint8_t> img(size_t(d.image_bytes()));
  d.read_image(2, img.data());
  try {
    d.read_image(3, img.data());
    FAIL() << "a damaged image was read";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(": image 3 (" + d.names()[3] + ") fails its checksum in /images"),
              std::string::npos)
        << e.what();
  }
  // The loader stops with the same error instead of training on it.
  io::Loader loader(d, io::LoaderOptions::eval(io::Split::Train, 4));
  loader.start_epoch(0);
  EXPECT_THROW(
      {
        while (loader.next()) {
        }
      },
      Error);
  // cxr verify names it and fails.
  if (!test::cxr_binary().empty()) {
    const auto r = test::run_cxr(dir, "verify '" + path + "'");
    EXPECT_EQ(r.status, 1) << r.out << r.err;
    EXPECT_NE(r.out.find("image 3 ("), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("1 problem"), std::string::npos) << r.out;
  }
}

TEST(Checksums, LabelsSplitCodesAndPixelTypesAreChecked) {
  test::ScratchDir dir("checksum_labels");
  const std::string path = make_packed(dir);
  if (!test::cxr_binary().empty()) {
    const auto ok = test::run_cxr(dir, "verify '" + path + "'");
    EXPECT_EQ(ok.status, 0) << ok.out << ok.err;
    EXPECT_NE(ok.out.find("packed dataset, 10 images (10 with checksums), intact"), std::string::npos) << ok.out;
  }
  const std::string labels = dir / "labels.h5", split = dir / "split.h5", pixels = dir / "float.h5";
  fs::copy_file(path, labels);
  fs::copy_file(path, split);
  flip_byte(labels, data_offset(labels, "/labels") + 5);
  expect_open_refused(labels, "dataset /labels fails its checksum");
  // A split code of 7 with a checksum that matches it (as a careless writer would leave): the value check.
  {
    hid_t f = H5Fopen(split.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "/split", H5P_DEFAULT);
    std::vector<uint8_t> v(10, 0);
    v[4] = 7;
    H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data());
    H5Adelete(d, io::kDigestAttr);
    H5Dclose(d);
    H5Fclose(f);
  }
  expect_open_refused(split, "/split[4] is 7, expected 0 (train), 1 (val), 2 (test) or 255");
  // Float pixels.
  write_bare_packed(pixels, H5T_IEEE_F32LE, {2, 8, 8}, false);
  expect_open_refused(pixels, "/images holds float32 values, expected uint8");
}

TEST(PackedExtents, AHugeDeclaredSizeIsRefusedBeforeAnythingIsAllocated) {
  // A hostile file: /images declares 2^34 images of 32 x 32 (chunked, nothing stored: a few KB on
  // disk). Opening it must size nothing by that extent (the names, labels and split would be 2^34).
  test::ScratchDir dir("packed_extents");
  const std::string path = dir / "huge.h5";
  write_bare_packed(path, H5T_STD_U8LE, {hsize_t(1) << 34, 32, 32}, true);
  EXPECT_LT(fs::file_size(path), 100000u);
  expect_open_refused(path, "/images declares 17179869184 images of 32 x 32");
}

TEST(Checksums, AFlippedWeightOrAdamMomentIsRefusedByName) {
  test::ScratchDir dir("checksum_weights");
  const ParamTable table = io::densenet_param_table(DenseNetConfig::from_arch("densenet121", 2));
  std::vector<float> params, state;
  init_keras_default(table, params, state, 3);
  io::ModelMeta meta;
  meta.classes = 2;
  meta.class_names = {"Effusion", "Mass"};
  meta.image_size = 32;
  io::TrainingState ts;
  ts.adam_m.assign(params.size(), 0.5f);
  ts.adam_v.assign(params.size(), 0.25f);
  ts.step = 3, ts.epoch = 1, ts.learning_rate = 1e-3;
  const std::string path = dir / "ckpt.h5";
  io::save_checkpoint(path, table, params, state, meta, &ts);
  auto load = [&](const std::string& p) {
    std::vector<float> pp(params.size()), ss(state.size());
    std::optional<io::ModelMeta> m;
    std::optional<io::TrainingState> t;
    io::load_weights(p, table, pp, ss, io::HeadPolicy::Require, 0, &m, &t);
  };
  load(path);  // intact
  if (!test::cxr_binary().empty()) {
    const auto ok = test::run_cxr(dir, "verify '" + path + "'");
    EXPECT_EQ(ok.status, 0) << ok.out << ok.err;
    EXPECT_NE(ok.out.find("intact"), std::string::npos) << ok.out;
  }
  const std::string kernel_ds = table[0].keras_path(), weight = dir / "w.h5", moment = dir / "m.h5";
  fs::copy_file(path, weight);
  fs::copy_file(path, moment);
  flip_byte(weight, data_offset(weight, kernel_ds) + 40);
  try {
    load(weight);
    FAIL() << "a damaged weight was loaded";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(table[0].keras_path()), std::string::npos) << what;
    EXPECT_NE(what.find(" fails its checksum"), std::string::npos) << what;
  }
  flip_byte(moment, data_offset(moment, "/cxr/training_state/adam_m") + 1000);
  EXPECT_THROW(load(moment), Error);
  if (!test::cxr_binary().empty()) {
    const auto r = test::run_cxr(dir, "verify '" + moment + "'");
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.out.find("/cxr/training_state/adam_m fails its checksum"), std::string::npos) << r.out;
    const auto missing = test::run_cxr(dir, "verify '" + (dir / "nothing.h5") + "'");
    EXPECT_NE(missing.status, 0);
    EXPECT_NE(missing.err.find("not an HDF5 file, or it cannot be read"), std::string::npos) << missing.err;
  }
}

}  // namespace
}  // namespace cxr
