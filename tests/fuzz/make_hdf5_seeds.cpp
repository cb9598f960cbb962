// Writes the seeds of the HDF5 fuzz targets with cxr's own writers, small enough for the fuzzer:
//   make_hdf5_seeds OUT   ->  OUT/weights/cxr_tiny.h5        model file of tests/fuzz/tiny_model.h
//                             OUT/checkpoint/cxr_tiny_ckpt.h5 the same with a training state
//                             OUT/packed/tiny_packed.h5       6 images of 8x8, 3 patients, checksums
// tests/fuzz/make_hdf5_seeds.py then adds the other writers' layouts of the same weights (Keras 2
// with h5py 2.x's fixed-length strings, Keras 3). The committed corpora came from these two; rerun
// them only to refresh the seeds.
#include <cstdio>
#include <filesystem>
#include <vector>

#include "engine/init.h"
#include "io/checkpoint.h"
#include "io/packed.h"
#include "tests/fuzz/tiny_model.h"

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_hdf5_seeds OUT\n");
    return 2;
  }
  const fs::path out = argv[1];
  for (const char* d : {"weights", "checkpoint", "packed"}) fs::create_directories(out / d);

  const cxr::ParamTable& table = cxr::fuzz::tiny_table();
  std::vector<float> params, state;
  cxr::init_test_generator(table, params, state);
  cxr::io::ModelMeta meta;
  meta.classes = 2;
  meta.class_names = {"Effusion", "Mass"};
  meta.image_size = 32;
  cxr::io::save_checkpoint((out / "weights" / "cxr_tiny.h5").string(), table, params, state, meta);
  cxr::io::TrainingState ts;
  ts.adam_m.assign(params.size(), 0.5f);
  ts.adam_v.assign(params.size(), 0.25f);
  ts.step = 3, ts.epoch = 1, ts.learning_rate = 1e-3;
  ts.rng_state = "1 2 3";
  ts.config_json = R"({"batch":2,"lr":0.001})";
  ts.scheduler_json = R"({"best":0.5,"bad_epochs":0})";
  cxr::io::save_checkpoint((out / "checkpoint" / "cxr_tiny_ckpt.h5").string(), table, params, state, meta, &ts);

  std::vector<cxr::io::LabelRow> rows;
  std::vector<cxr::io::Split> split;
  for (int i = 0; i < 6; ++i) {
    cxr::io::LabelRow r;
    r.image = "0000000" + std::to_string(i / 2 + 1) + "_00" + std::to_string(i % 2) + ".png";
    r.patient_id = i / 2 + 1;
    r.labels[static_cast<size_t>(i % cxr::io::kNumClasses)] = 1;
    r.view_position = i % 2 ? "AP" : "PA";
    r.line = i + 2;
    rows.push_back(r);
    split.push_back(static_cast<cxr::io::Split>(i / 2));
  }
  cxr::io::PackedMeta pm;
  pm.image_size = 8;
  pm.command = "make_hdf5_seeds";
  pm.split_method = "random";
  const std::string packed = (out / "packed" / "tiny_packed.h5").string();
  cxr::io::PackedWriter w(packed, rows, split, pm);
  std::vector<uint8_t> px(64);
  for (int i = 0; i < 6; ++i) {
    for (size_t k = 0; k < px.size(); ++k) px[k] = static_cast<uint8_t>(i * 40 + k);
    w.write_image(i, px.data());
  }
  w.finish();
  for (const char* d : {"weights", "checkpoint", "packed"})
    for (const auto& e : fs::directory_iterator(out / d))
      std::printf("%s %ju bytes\n", e.path().c_str(), static_cast<uintmax_t>(fs::file_size(e.path())));
  return 0;
}
