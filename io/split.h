// Patient-wise train/validation/test splits. A patient's images always land in one set: NIH patients
// have up to ~180 follow-up images, so a split by image leaks patients between sets.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "io/classes.h"
#include "io/csv.h"

namespace cxr::io {

// Values of the /split dataset of a packed file.
enum class Split : uint8_t { Train = 0, Val = 1, Test = 2, Excluded = 255 };
inline constexpr int kNumSplits = 3;
inline constexpr const char* kSplitNames[kNumSplits] = {"train", "val", "test"};
// "train" | "val" | "test" (also "validation") -> Split; throws cxr::Error otherwise.
Split parse_split_name(const std::string& name);

struct SplitRatios {
  double train = 0.7, val = 0.1, test = 0.2;
};
// Parses "0.7,0.1,0.2"; fractions >= 0 that sum to 1 (within 1e-6); throws cxr::Error otherwise.
SplitRatios parse_ratios(const std::string& text);

// Random patient-wise split: patients are shuffled with `seed`, then taken in that order into train
// until it holds ratios.train of the images, then into val, the rest into test. Set sizes in images
// therefore match the ratios up to one patient's images. Returns one Split per row.
std::vector<Split> random_split(const std::vector<LabelRow>& rows, const SplitRatios& ratios, uint64_t seed);

// Split from image lists. Each file is either the official one-name-a-line list
// (train_val_list.txt, test_list.txt) or a CheXNet-style `<image> <14 ints>` list. The set of a file
// comes from its name: containing "test" -> test; "train_val"/"trainval" -> a train+val pool;
// "val" -> val; "train" -> train; otherwise by position (train, val, test). When a pool is given and
// no val list, val patients are drawn from the pool (seeded) so that val holds
// ratios.val / (ratios.train + ratios.val) of the pool's images. Rows in no list get
// Split::Excluded; `unlisted` (optional) receives their count, `missing` (optional) the listed
// names absent from rows.
std::vector<Split> split_from_lists(const std::vector<LabelRow>& rows, const std::vector<std::string>& files,
                                    const SplitRatios& ratios, uint64_t seed, int64_t* unlisted = nullptr,
                                    int64_t* missing = nullptr);

// Leakage and class balance of a split.
struct SplitCheck {
  std::array<int64_t, kNumSplits> images{};
  std::array<int64_t, kNumSplits> patients{};
  std::array<std::array<int64_t, kNumClasses>, kNumSplits> positives{};  // [split][class]
  // Patients found in both sets of a pair: [0] train-val, [1] train-test, [2] val-test.
  std::array<int64_t, 3> shared_pairs{};
  int64_t shared_patients = 0;           // patients in more than one set
  std::vector<int64_t> shared_examples;  // up to 10 shared patient IDs
  int64_t excluded = 0;                  // rows in no set
};
SplitCheck check_split(const std::vector<int64_t>& patient_ids, const std::vector<uint8_t>& labels,  // (N, 14)
                       const std::vector<Split>& split);
SplitCheck check_split(const std::vector<LabelRow>& rows, const std::vector<Split>& split);

// Deterministic 64-bit mixing (splitmix64), used wherever a reproducible random stream is needed.
uint64_t mix64(uint64_t x);

// A small reproducible generator (splitmix64 stream): same seed, same numbers on every platform.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t next() { return mix64(s_ += 0x9E3779B97F4A7C15ull); }
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }  // [0,1)
  uint64_t below(uint64_t n) { return n ? next() % n : 0; }  // bias < 2^-40 for n < 2^24
  double normal();  // standard normal (Box-Muller)
 private:
  uint64_t s_;
};

// In-place Fisher-Yates shuffle with Rng.
template <typename T>
void shuffle(std::vector<T>& v, Rng& rng) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng.below(i)]);
}

}  // namespace cxr::io
