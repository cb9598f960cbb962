// Class frequencies per split of a packed dataset, and the seed's bar chart of positive vs negative
// frequency per class (SVG written as text, PNG drawn with stb_easy_font labels).
#pragma once
#include <array>
#include <cstdint>
#include <string>

#include "io/classes.h"
#include "io/packed.h"

namespace cxr::io {

struct ClassStats {
  std::array<int64_t, kNumSplits> images{};
  std::array<std::array<int64_t, kNumClasses>, kNumSplits> positives{};  // [split][class]
  int64_t excluded = 0;
  double pos_freq(int s, int c) const { return images[s] ? double(positives[s][c]) / double(images[s]) : 0.0; }
};

ClassStats class_stats(const PackedDataset& d);

// Writes <dir>/class_balance.svg and <dir>/class_balance.png: per class, the positive and the negative
// frequency of `split` (the training set, as in the seed), each file written atomically.
void write_balance_charts(const ClassStats& st, Split split, const std::string& dir);

}  // namespace cxr::io
