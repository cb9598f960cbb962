// libFuzzer target: the split-list reader (io/split.h split_from_lists), official one-name-a-line
// lists and CheXNet-style `<image> <14 ints>` lists. The first input byte picks the file's name,
// which decides its set (test / train_val pool / val / train / by position); the rest is the file.
// Any input either gives a split or throws cxr::Error; a crash, a sanitizer report, a leak or a
// hang is a finding.
#include <vector>

#include "engine/error.h"
#include "io/split.h"
#include "tests/fuzz/fuzz_input.h"

namespace {

// Twelve images of five patients, named as the NIH files are (and as the seeds list them).
std::vector<cxr::io::LabelRow> rows() {
  std::vector<cxr::io::LabelRow> r;
  for (int p = 1; p <= 5; ++p)
    for (int k = 0; k < (p % 3) + 1; ++k) {
      cxr::io::LabelRow row;
      row.image = "0000000" + std::to_string(p) + "_00" + std::to_string(k) + ".png";
      row.patient_id = p;
      row.labels[static_cast<size_t>((p + k) % cxr::io::kNumClasses)] = 1;
      row.line = static_cast<int64_t>(r.size()) + 2;
      r.push_back(row);
    }
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<cxr::io::LabelRow> kRows = rows();
  static const char* kSuffixes[] = {"_test_list.txt", "_train_val_list.txt", "_val_list.txt", "_train_list.txt",
                                    "_other.txt"};
  const char* suffix = kSuffixes[size ? data[0] % 5 : 0];
  const std::string path = cxr::fuzz::input_file(size ? data + 1 : data, size ? size - 1 : 0, suffix);
  try {
    int64_t unlisted = 0, missing = 0;
    const auto split = cxr::io::split_from_lists(kRows, {path}, cxr::io::SplitRatios{}, 7, &unlisted, &missing);
    if (split.size() != kRows.size()) std::abort();  // one set per row, always
    cxr::fuzz::explain("split");
  } catch (const cxr::Error& e) {
    cxr::fuzz::explain("refused", e.what());
  }
  return 0;
}
