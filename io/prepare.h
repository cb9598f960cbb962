// `cxr prepare`: label CSV + images -> packed HDF5 dataset (io/packed.h) with a patient-wise split.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/split.h"

namespace cxr::io {

struct PrepareOptions {
  std::string csv;         // Data_Entry_2017(_v2020).csv
  std::string images_dir;  // searched recursively (covers images_NNN/images/)
  std::string out;         // packed file; built as <out>.partial, renamed when complete
  int size = 320;
  SplitRatios ratios;                    // used when split_lists is empty (and for a train_val pool)
  std::vector<std::string> split_lists;  // see split_from_lists()
  uint64_t seed = 0;
  int threads = 0;        // 0: all cores
  double reducing_gap = 0.0;  // see resize_grey(); 0: resample the full image directly (the exact filter)
  std::string command;    // recorded in the file
  bool quiet = false;     // no progress output
  int64_t stop_after = -1;  // testing: stop (resumably) after this many new images
  // DICOM (io/dicom.h; the window is the process-wide dicom_options()):
  std::vector<std::string> views;  // keep only images whose View Position is one of these (empty: all)
  std::string patient_key_file;    // --hash-patient-ids: store HMAC-SHA256 of text Patient IDs under this key
};

struct PrepareResult {
  int64_t rows = 0;        // CSV rows
  int64_t images = 0;      // entries in the packed file
  int64_t written = 0;     // images decoded in this run
  int64_t already_done = 0;  // images kept from an earlier run (resume)
  int64_t unreadable = 0;  // decoding failed (listed in the report, split set to 255)
  int64_t missing = 0;     // CSV rows whose image is not under images_dir (listed with line numbers)
  int64_t unlisted = 0;    // rows in none of the split lists
  int64_t dicom = 0;       // DICOM files among the images found
  int64_t burned_in = 0;   // kept DICOM images with Burned In Annotation YES (listed in the report)
  int64_t other_view = 0;  // rows left out because their View Position is not in `views`
  bool complete = false;   // false only when stopped by stop_after
  std::string report;      // path of the report file (<out>.report.txt)
  double seconds = 0;
};

// DICOM images (is_dicom_path(): .dcm, .dicom, or no extension and the DICM preamble) are read like the
// others, with these rules: the label CSV's Image Index is the file name or the SOP Instance UID; its
// Patient ID column is optional text (LabelCsvOptions::text_patient_ids), taken from the file's
// (0010,0020) when empty; the file's View Position replaces the CSV's. Text IDs are stored in
// /patient_keys (as given, or hashed with patient_key_file) and split by patient_number().
PrepareResult prepare_dataset(const PrepareOptions& opt);

// Maps each file name under dir (recursively) to its path. Throws cxr::Error when dir is not a directory.
std::vector<std::pair<std::string, std::string>> scan_images(const std::string& dir);

}  // namespace cxr::io
