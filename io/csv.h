// Readers and writers for the ChestX-ray14 CSV files:
//  - the label file Data_Entry_2017.csv / Data_Entry_2017_v2020.csv, whose header names 9 columns while
//    rows have 11 fields (`OriginalImage[Width,Height]` and `OriginalImagePixelSpacing[x,y]` each span
//    two unquoted fields);
//  - the box file BBox_List_2017.csv (`Image Index,Finding Label,Bbox [x,y,w,h],,,`, 6 fields a row,
//    boxes in 1024x1024 pixel coordinates, `Infiltrate` meaning Infiltration).
// Every problem throws cxr::Error with a message starting "<file>:<line>: ", one of:
//   missing column '<name>' | malformed row: N fields, expected M | unknown label '<x>' |
//   duplicate image '<name>' (first on line L) | bad patient ID '<x>' | bad box value '<x>'
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "io/classes.h"

namespace cxr::io {

struct LabelRow {
  std::string image;                          // "00000001_000.png"
  std::array<uint8_t, kNumClasses> labels{};  // 0/1 in kClassNames order
  int64_t patient_id = 0;
  std::string patient_key;  // LabelCsvOptions::text_patient_ids: the Patient ID as written (may be empty)
  int follow_up = 0;
  int age = 0;
  std::string gender;         // "M" / "F"
  std::string view_position;  // "PA" / "AP"
  int width = 0, height = 0;  // OriginalImage[Width,Height], 0 when absent
  double spacing_x = 0, spacing_y = 0;
  int64_t line = 0;  // 1-based line in the file (the header is line 1)
};

// How the label file's Patient ID column is read.
struct LabelCsvOptions {
  // false (NIH's file): required, a positive integer agreeing with the image name's first 8 digits.
  // true (labels for DICOM images): optional, any text, kept in LabelRow::patient_key (patient_id
  // stays 0); empty means the Patient ID comes from the image file (cxr prepare).
  bool text_patient_ids = false;
};

// Reads the label file. Required columns: Image Index, Finding Labels, Patient ID (see
// LabelCsvOptions); the others are optional. Empty lines are skipped; CRLF line ends accepted.
std::vector<LabelRow> read_label_csv(const std::string& path, const LabelCsvOptions& opt = {});

// Writes rows in the official format (9-name header, 11 fields a row), to a temporary file renamed
// into place.
void write_label_csv(const std::string& path, const std::vector<LabelRow>& rows);

struct BBox {
  std::string image;
  int cls = 0;             // index into kClassNames
  double x = 0, y = 0, w = 0, h = 0;  // pixels, 1024x1024 image coordinates
  int64_t line = 0;
};

std::vector<BBox> read_bbox_csv(const std::string& path);
// Writes boxes in the format of BBox_List_2017.csv (Infiltration spelled `Infiltrate` as there).
void write_bbox_csv(const std::string& path, const std::vector<BBox>& boxes);

// "Cardiomegaly|Emphysema", or "No Finding".
std::string label_string(const std::array<uint8_t, kNumClasses>& labels);

// Patient ID encoded in an official image name (first 8 digits), or -1 when the name does not
// start with 8 digits and '_'.
int64_t patient_from_image_name(const std::string& image);

}  // namespace cxr::io
