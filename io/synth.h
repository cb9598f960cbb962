// The built-in synthetic ChestX-ray14-shaped dataset: procedurally drawn chest-like grey images
// (two lung fields, mediastinum, heart, ribs, texture, noise) in which each of the 14 findings has
// its own visible signature at a known place, with a label CSV in the official format and a box CSV
// in the format of BBox_List_2017.csv. Deterministic by seed (whatever the thread count).
//
// Signatures (sides and positions jittered per image; box = where it is drawn: every pixel a finding
// changes has its centre inside the finding's box, soft edges and Gaussian tails to 3 sigma included;
// tests/test_synth_boxes.cpp checks it):
//   Atelectasis        thin dense plate-like band in a lower lung zone
//   Cardiomegaly       heart shadow ~1.5x wider
//   Effusion           dense fluid at a lung base with a meniscus (blunted costophrenic angle)
//   Infiltration       cluster of small soft patchy opacities in a mid zone
//   Mass               bright disc, radius ~7% of the image
//   Nodule             small bright disc, radius ~2.5%
//   Pneumonia          large fuzzy opacity in a lower lobe
//   Pneumothorax       dark rim without lung texture at an apex, bounded by a bright pleural line
//   Consolidation      homogeneous sharp-edged dense patch in an upper/mid zone
//   Edema              bilateral symmetric perihilar haze ("bat wings")
//   Emphysema          larger, darker (hyperlucent) lungs with little texture
//   Fibrosis           coarse reticular net in an upper outer zone
//   Pleural_Thickening bright band along the lateral chest wall, upper half
//   Hernia             round retrocardiac gas bubble with a bright rim and an air-fluid level
// Prevalences follow NIH ChestX-ray14 (Infiltration ~18% ... Hernia ~0.2%) with a floor so that every
// class has positives (at least max(12, 0.5% of the images)); co-occurrences as in NIH (Effusion with
// Atelectasis, Edema with Effusion and Cardiomegaly, Pneumonia/Consolidation with Infiltration, Mass
// with Nodule); chronic findings persist over a patient's follow-up images.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/csv.h"

namespace cxr::io {

struct SynthOptions {
  std::string out;     // folder: images/, Data_Entry_2017_v2020.csv, BBox_List_2017.csv
  int patients = 1000;
  int size = 256;
  uint64_t seed = 0;
  int threads = 0;     // 0: all cores
  bool quiet = false;
};

struct SynthResult {
  std::vector<LabelRow> rows;
  std::vector<BBox> boxes;
  std::string csv, bbox_csv, images_dir;
};

// NIH image prevalence per class (fraction of images), kClassNames order.
extern const double kNihPrevalence[kNumClasses];

// Labels, patients and boxes only (no drawing): what synth_dataset() would write for these options.
SynthResult synth_labels(const SynthOptions& opt);
// Draws one image (size x size) of a row of synth_labels(); also returns its finding boxes (in the
// official 1024 x 1024 frame, as BBox_List_2017.csv has them).
std::vector<uint8_t> synth_image(const LabelRow& row, int size, uint64_t seed, std::vector<BBox>* boxes);
// The noise-free drawing behind synth_image() (values before exposure, noise and quantisation,
// row-major size x size). synth_image() maps it pixel by pixel (gain, bias, its own noise draws), so a
// finding changes the image only where it changes this canvas; the canvas of a row depends on the
// row's image name, seed and labels, and a finding's drawing on its own draws alone (drawn after the
// anatomy, whose draws do not depend on the labels).
std::vector<float> synth_canvas(const LabelRow& row, int size, uint64_t seed, std::vector<BBox>* boxes);
// Writes the whole dataset, and last the marker kSynthMarker in opt.out.
SynthResult synth_dataset(const SynthOptions& opt);

// The marker synth_dataset() writes beside its CSVs: JSON naming the generator and its options. Data
// made from a folder holding it are synthetic; `cxr prepare` records that in the packed file
// (root attribute "synthetic"), and evaluate and train copy it into their outputs (synthetic_data).
inline constexpr const char* kSynthMarker = "cxr_synth.json";
// The marker's path when `file` (a label CSV, a box CSV, an image) lies in a folder that cxr synth
// wrote, or in a folder inside it (images/); "" otherwise.
std::string synth_marker_of(const std::string& file);

}  // namespace cxr::io
