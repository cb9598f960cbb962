// DICOM from the command line: `cxr prepare` on a folder of DICOM files (labels keyed by file name or
// SOP Instance UID, Patient IDs from the files, --views, --hash-patient-ids, burned-in annotations
// and undecodable files reported), `predict` and `gradcam` on .dcm files, and no identifying tag in
// any output. The files come from tests/fixtures/make_dicom_fixtures.py (a real NIH image).
#include <filesystem>
#include <set>
#include <sstream>

#include "dicom_fixtures.h"
#include "engine/init.h"
#include "engine/model.h"
#include "io/checkpoint.h"
#include "io/classes.h"
#include "io/packed.h"
#include "io/weights.h"
#include "test_data_util.h"
#include "test_util.h"

namespace cxr {
namespace {

namespace fs = std::filesystem;

const nlohmann::json* entry(const nlohmann::json& files, const std::string& name) {
  for (const auto& e : files)
    if (e["file"] == name) return &e;
  return nullptr;
}

// Copies a fixture, optionally giving it another Patient ID with DCMTK's dcmodify (-nb: no backup);
// an empty id erases (0010,0020).
void copy_fixture(const std::string& dir, const std::string& name, const std::string& to,
                  const std::string* patient = nullptr) {
  fs::copy_file(dir + "/" + name, to, fs::copy_options::overwrite_existing);
  if (!patient) return;
  const std::string cmd = patient->empty() ? "dcmodify -nb -ea '(0010,0020)' '" + to + "' >/dev/null 2>&1"
                                           : "dcmodify -nb -m '(0010,0020)=" + *patient + "' '" + to + "' >/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

std::string slurp_tree(const std::string& root) {
  std::string all;
  for (const auto& f : fs::recursive_directory_iterator(root))
    if (f.is_regular_file()) all += f.path().string() + "\n" + test::read_all(f.path().string());
  return all;
}

class DicomCli : public ::testing::Test {
 protected:
  void SetUp() override {
    if (test::cxr_binary().empty()) GTEST_SKIP() << "no cxr binary (set CXR_BINARY)";
  }
  // A DenseNet121 with the 14 ChestX-ray14 classes at 32x32, random weights.
  std::string model() {
    const std::string path = dir_ / "model.h5";
    if (fs::exists(path)) return path;
    test::save_random_densenet121(path, {}, 32, 5);
    return path;
  }
  test::ScratchDir dir_{"dicom_cli"};
};

TEST_F(DicomCli, PrepareTakesPatientsAndViewsFromTheFiles) {
  CXR_NEED_FIXTURES(fx);
  const std::string images = dir_ / "images";
  fs::create_directories(images + "/sub");
  const std::string p1 = "HOSP-17", p2 = "HOSP-42";
  copy_fixture(fx, "ts_explicit_le.dcm", images + "/a.dcm", &p1);
  copy_fixture(fx, "ts_jpeg_sv1_dcmtk.dcm", images + "/sub/b.dcm", &p1);
  copy_fixture(fx, "misc_noext", images + "/sub/c", &p2);               // no extension: found by DICM
  copy_fixture(fx, "misc_view_ap.dcm", images + "/d.dcm", &p2);         // labelled by SOP Instance UID
  copy_fixture(fx, "misc_view_ll.dcm", images + "/e.dcm", &p2);         // left out by --views PA,AP
  copy_fixture(fx, "misc_burned_in.dcm", images + "/f.dcm", &p1);       // kept, warned about
  copy_fixture(fx, "refuse_rgb.dcm", images + "/g.dcm", &p1);           // undecodable: reported
  const std::string uid = (*entry(files, "misc_view_ap.dcm"))["sop_instance_uid"];
  // A hospital's label file: no Patient ID column, one row keyed by UID.
  test::write_file(dir_ / "labels.csv", "Image Index,Finding Labels\na.dcm,Effusion\nb.dcm,No Finding\n"
                                        "c,Mass|Nodule\n" + uid + ",Cardiomegaly\ne.dcm,No Finding\n"
                                        "f.dcm,Effusion\ng.dcm,No Finding\n");
  const auto r = test::run_cxr(dir_, "prepare --csv '" + (dir_ / "labels.csv") + "' --images '" + images +
                                         "' --out '" + (dir_ / "d.h5") + "' --size 64 --split 0.5,0,0.5 --views PA,AP "
                                         "--threads 2 --quiet --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["dicom"], 7);
  EXPECT_EQ(j["images"], 6);      // e.dcm (LL) left out
  EXPECT_EQ(j["other_view"], 1);
  EXPECT_EQ(j["unreadable"], 1);  // g.dcm (RGB)
  EXPECT_EQ(j["burned_in"], 1);
  EXPECT_NE(r.err.find("Burned In Annotation"), std::string::npos) << r.err;
  const std::string report = test::read_all(dir_ / "d.h5.report.txt");
  EXPECT_NE(report.find("g.dcm: colour or unsupported Photometric Interpretation 'RGB'"), std::string::npos) << report;
  EXPECT_NE(report.find("view LL not in --views"), std::string::npos) << report;
  EXPECT_NE(report.find("burned-in annotation (0028,0301) YES: " + images + "/f.dcm"), std::string::npos) << report;

  io::PackedDataset d(dir_ / "d.h5");
  ASSERT_EQ(d.size(), 6);
  EXPECT_EQ(d.attribute("patient_key_hash"), "none");
  ASSERT_EQ(d.patient_keys().size(), 6u);
  std::map<std::string, std::set<int>> splits_of;  // patient -> the sets its images are in
  for (int64_t i = 0; i < d.size(); ++i) {
    const std::string& name = d.names()[size_t(i)];
    const std::string& key = d.patient_keys()[size_t(i)];
    EXPECT_EQ(key, name == "a.dcm" || name == "b.dcm" || name == "f.dcm" || name == "g.dcm" ? p1 : p2) << name;
    if (name == "d.dcm") EXPECT_EQ(d.view_positions()[size_t(i)], "AP") << "the file's View Position";
    else EXPECT_EQ(d.view_positions()[size_t(i)], "PA") << name;
    if (d.split()[size_t(i)] != io::Split::Excluded) splits_of[key].insert(int(d.split()[size_t(i)]));
  }
  for (const auto& [patient, sets] : splits_of) EXPECT_EQ(sets.size(), 1u) << patient << " in two sets";
  EXPECT_EQ(d.names()[0], "a.dcm");
}

TEST_F(DicomCli, HashedPatientIdsAndMissingOnes) {
  CXR_NEED_FIXTURES(fx);
  const std::string images = dir_ / "images";
  fs::create_directories(images);
  const std::string p1 = "HOSP-17", p2 = "HOSP-42";
  copy_fixture(fx, "ts_explicit_le.dcm", images + "/a.dcm", &p1);
  copy_fixture(fx, "ts_rle_dcmtk.dcm", images + "/b.dcm", &p1);
  copy_fixture(fx, "ts_jpegls_gdcm.dcm", images + "/c.dcm", &p2);
  test::write_file(dir_ / "labels.csv", "Image Index,Finding Labels\na.dcm,Effusion\nb.dcm,Mass\nc.dcm,No Finding\n");
  test::write_file(dir_ / "key", "0123456789abcdef-site-secret\n");
  test::write_file(dir_ / "short", "0123\n");
  const std::string base = "prepare --csv '" + (dir_ / "labels.csv") + "' --images '" + images + "' --size 32 --quiet ";
  auto r = test::run_cxr(dir_, base + "--out '" + (dir_ / "h.h5") + "' --hash-patient-ids '" + (dir_ / "key") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  io::PackedDataset d(dir_ / "h.h5");
  EXPECT_EQ(d.attribute("patient_key_hash"), "hmac-sha256");
  const auto& k = d.patient_keys();
  ASSERT_EQ(k.size(), 3u);
  for (const auto& key : k)
    EXPECT_TRUE(key.size() == 32 && key.find_first_not_of("0123456789abcdef") == std::string::npos) << key;
  EXPECT_EQ(k[0], k[1]) << "one patient, one key";
  EXPECT_NE(k[0], k[2]);
  EXPECT_EQ(d.patient_ids()[0], d.patient_ids()[1]);
  EXPECT_NE(d.patient_ids()[0], d.patient_ids()[2]);
  const std::string raw = test::read_all(dir_ / "h.h5");
  EXPECT_EQ(raw.find("HOSP-"), std::string::npos) << "a raw Patient ID in the hashed file";

  r = test::run_cxr(dir_, base + "--out '" + (dir_ / "s.h5") + "' --hash-patient-ids '" + (dir_ / "short") + "'");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("has 4 bytes, expected at least 16"), std::string::npos) << r.err;

  const std::string none;
  copy_fixture(fx, "ts_explicit_le.dcm", images + "/a.dcm", &none);  // (0010,0020) erased
  r = test::run_cxr(dir_, base + "--out '" + (dir_ / "m.h5") + "'");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("labels.csv:2: a.dcm: no Patient ID in the CSV or in the file's (0010,0020)"), std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "m.h5"));
}

TEST_F(DicomCli, PredictOnDicomEqualsPredictOnItsPng) {
  CXR_NEED_FIXTURES(fx);
  // x.dcm is the source PNG itself (a refusal fixture: a PNG under a .dcm name); px_8bit and
  // px_16bit_p8x257 store its pixels with windows that display them unchanged (c 128 / w 256 and
  // c 32768 / w 65536: the LINEAR formula gives exactly x and x / 257).
  fs::copy_file(fx + "/x.dcm", dir_ / "p8.png");
  copy_fixture(fx, "px_8bit.dcm", dir_ / "p8.dcm");
  copy_fixture(fx, "px_16bit_p8x257.dcm", dir_ / "p16.dcm");
  const auto r = test::run_cxr(dir_, "predict --weights '" + model() + "' --device cpu --out '" + (dir_ / "p.csv") +
                                         "' '" + (dir_ / "p8.png") + "' '" + (dir_ / "p8.dcm") + "' '" +
                                         (dir_ / "p16.dcm") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  std::istringstream in(test::read_all(dir_ / "p.csv"));
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  ASSERT_EQ(lines.size(), 4u);
  auto values = [](const std::string& line) { return line.substr(line.find(',')); };
  EXPECT_EQ(values(lines[2]), values(lines[1])) << "8-bit DICOM against its PNG";
  EXPECT_EQ(values(lines[3]), values(lines[1])) << "16-bit DICOM against its PNG";
  // A folder: its DICOM files (with and without extension) are found.
  fs::create_directories(dir_ / "folder");
  copy_fixture(fx, "misc_noext", dir_ / "folder/noext");
  copy_fixture(fx, "px_monochrome1.dcm", dir_ / "folder/m1.dcm");
  const auto f = test::run_cxr(dir_, "predict --weights '" + model() + "' --device cpu --out '" +
                                         (dir_ / "f.csv") + "' '" + (dir_ / "folder") + "'");
  ASSERT_EQ(f.status, 0) << f.err;
  const std::string csv = test::read_all(dir_ / "f.csv");
  EXPECT_NE(csv.find("folder/noext,"), std::string::npos) << csv;
  EXPECT_NE(csv.find("folder/m1.dcm,"), std::string::npos) << csv;
  // Undecodable DICOM files follow the PNG rules: one line naming the file, the others written, exit 1.
  copy_fixture(fx, "refuse_multiframe.dcm", dir_ / "folder/two_frames.dcm");
  const auto bad = test::run_cxr(dir_, "predict --weights '" + model() + "' --device cpu --out '" +
                                           (dir_ / "b.csv") + "' '" + (dir_ / "folder") + "'");
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.err.find("skipping " + (dir_ / "folder/two_frames.dcm") + ": multi-frame image (2 frames)"),
            std::string::npos)
      << bad.err;
  EXPECT_NE(test::read_all(dir_ / "b.csv").find("folder/m1.dcm,"), std::string::npos);
}

TEST_F(DicomCli, NoIdentifyingTagInAnyOutput) {
  CXR_NEED_FIXTURES(fx);
  const auto* privacy = entry(files, "misc_privacy.dcm");
  ASSERT_NE(privacy, nullptr);
  const auto& markers = (*privacy)["markers"];
  ASSERT_GE(markers.size(), 10u);
  const std::string images = dir_ / "images";
  fs::create_directories(images);
  const std::string marker_pid = "MARKER_PID_7f3a";
  copy_fixture(fx, "misc_privacy.dcm", images + "/p.dcm", &marker_pid);
  copy_fixture(fx, "misc_burned_in.dcm", images + "/q.dcm", &marker_pid);
  test::write_file(dir_ / "labels.csv", "Image Index,Finding Labels\np.dcm,Effusion\nq.dcm,Mass\n");
  test::write_file(dir_ / "key", "a-key-of-more-than-16-bytes\n");
  const std::string out = dir_ / "out";
  fs::create_directories(out);
  std::string logs;
  auto run = [&](const std::string& args) {
    const auto r = test::run_cxr(dir_, args);
    logs += r.out + r.err;
    return r.status;
  };
  EXPECT_EQ(run("prepare --csv '" + (dir_ / "labels.csv") + "' --images '" + images + "' --out '" + out +
                "/d.h5' --size 32 --hash-patient-ids '" + (dir_ / "key") + "'"),
            0)
      << logs;
  EXPECT_EQ(run("prepare --json --csv '" + (dir_ / "labels.csv") + "' --images '" + images + "' --out '" + out +
                "/d2.h5' --size 32 --hash-patient-ids '" + (dir_ / "key") + "'"),
            0)
      << logs;
  EXPECT_EQ(run("stats --data '" + out + "/d.h5' --out '" + out + "/stats'"), 0) << logs;
  EXPECT_EQ(run("predict --weights '" + model() + "' --device cpu --out '" + out + "/p.csv' '" + images + "'"), 0)
      << logs;
  EXPECT_EQ(run("gradcam --weights '" + model() + "' --device cpu --top-k 2 --out '" + out + "/cam' '" + images + "'"),
            0)
      << logs;
  const std::string all = slurp_tree(out) + logs;
  ASSERT_GT(all.size(), 10000u) << "the outputs were written";
  for (const auto& [tag, value] : markers.items()) {
    const std::string v = value.get<std::string>();
    EXPECT_EQ(all.find(v), std::string::npos) << tag << " (" << v << ") appears in an output";
  }
  EXPECT_EQ(all.find(marker_pid), std::string::npos) << "the Patient ID, with --hash-patient-ids";
  EXPECT_TRUE(fs::exists(out + "/cam")) << "gradcam wrote its overlays";
  // The scan sees what a file holds: without --hash-patient-ids the ID is stored as given.
  ASSERT_EQ(run("prepare --csv '" + (dir_ / "labels.csv") + "' --images '" + images + "' --out '" + dir_.path() +
                "/plain.h5' --size 32"),
            0);
  EXPECT_NE(test::read_all(dir_ / "plain.h5").find(marker_pid), std::string::npos);
}

}  // namespace
}  // namespace cxr
