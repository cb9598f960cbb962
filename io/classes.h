// The 14 ChestX-ray14 findings in the standard order used by every published table (Wang 2017,
// CheXNet): the one class table of the project. Label vectors, HDF5 files, metrics and plots index
// classes by their position here.
#pragma once
#include <array>
#include <string>
#include <string_view>

namespace cxr::io {

inline constexpr int kNumClasses = 14;

inline constexpr std::array<std::string_view, kNumClasses> kClassNames = {
    "Atelectasis", "Cardiomegaly", "Effusion",      "Infiltration",       "Mass",
    "Nodule",      "Pneumonia",    "Pneumothorax",  "Consolidation",      "Edema",
    "Emphysema",   "Fibrosis",     "Pleural_Thickening", "Hernia"};

// The label that means "all 14 labels are 0" in Data_Entry_2017.csv.
inline constexpr std::string_view kNoFinding = "No Finding";

// Index of a class name in kClassNames, or -1. Accepts the bounding-box file's spelling
// `Infiltrate` for Infiltration.
int class_index(std::string_view name);

// Comma-separated list of the class names (for error messages).
std::string class_list();

}  // namespace cxr::io
