#include "io/classes.h"

namespace cxr::io {

int class_index(std::string_view name) {
  for (int c = 0; c < kNumClasses; ++c)
    if (kClassNames[c] == name) return c;
  if (name == "Infiltrate") return 3;  // BBox_List_2017.csv spelling
  return -1;
}

std::string class_list() {
  std::string s;
  for (int c = 0; c < kNumClasses; ++c) {
    if (c) s += ", ";
    s += kClassNames[c];
  }
  return s;
}

}  // namespace cxr::io
