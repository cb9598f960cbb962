#include "io/split.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <unordered_map>

#include "engine/error.h"
#include "io/fileutil.h"

namespace cxr::io {

uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double Rng::normal() {
  double u1 = uniform(), u2 = uniform();
  if (u1 < 1e-300) u1 = 1e-300;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

Split parse_split_name(const std::string& name) {
  if (name == "train") return Split::Train;
  if (name == "val" || name == "validation") return Split::Val;
  if (name == "test") return Split::Test;
  throw Error("unknown split '" + name + "': expected train, val or test");
}

SplitRatios parse_ratios(const std::string& text) {
  std::vector<double> v;
  std::stringstream ss(text);
  std::string tok;
  while (std::getline(ss, tok, ',')) {
    char* end = nullptr;
    const double x = std::strtod(tok.c_str(), &end);
    if (tok.empty() || *end != '\0' || !(x >= 0.0) || x > 1.0)
      throw Error("--split '" + text + "': expected three fractions TRAIN,VAL,TEST in [0,1]");
    v.push_back(x);
  }
  if (v.size() != 3) throw Error("--split '" + text + "': expected three fractions TRAIN,VAL,TEST");
  if (std::fabs(v[0] + v[1] + v[2] - 1.0) > 1e-6)
    throw Error("--split '" + text + "': fractions must sum to 1");
  return {v[0], v[1], v[2]};
}

namespace {

// Assigns patients (in the given order) to sets so that cumulative image counts follow the ratios.
void assign_in_order(const std::vector<int64_t>& patients, const std::unordered_map<int64_t, int64_t>& count,
                     double f_train, double f_val, int64_t total, std::unordered_map<int64_t, Split>* out) {
  const double t1 = f_train * static_cast<double>(total);
  const double t2 = (f_train + f_val) * static_cast<double>(total);
  int64_t cum = 0;
  for (int64_t p : patients) {
    const int64_t n = count.at(p);
    // A patient goes to the set where the middle of its images falls: this keeps each boundary
    // within half a patient of its target.
    const double mid = static_cast<double>(cum) + 0.5 * static_cast<double>(n);
    Split s = mid < t1 ? Split::Train : (mid < t2 ? Split::Val : Split::Test);
    if (f_train == 0 && s == Split::Train) s = Split::Val;
    if (f_val == 0 && s == Split::Val) s = mid < t1 ? Split::Train : Split::Test;
    (*out)[p] = s;
    cum += n;
  }
}

}  // namespace

std::vector<Split> random_split(const std::vector<LabelRow>& rows, const SplitRatios& r, uint64_t seed) {
  std::map<int64_t, int64_t> ordered;  // patient -> images, sorted so the shuffle input is canonical
  for (const LabelRow& row : rows) ++ordered[row.patient_id];
  std::vector<int64_t> patients;
  std::unordered_map<int64_t, int64_t> count;
  for (auto& [p, n] : ordered) {
    patients.push_back(p);
    count[p] = n;
  }
  Rng rng(mix64(seed ^ 0x5EED5711ull));
  shuffle(patients, rng);
  std::unordered_map<int64_t, Split> of;
  assign_in_order(patients, count, r.train, r.val, static_cast<int64_t>(rows.size()), &of);
  std::vector<Split> out(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) out[i] = of[rows[i].patient_id];
  return out;
}

namespace {

enum class ListKind { Train, Val, Test, Pool };

ListKind kind_of(const std::string& file, size_t pos, size_t nfiles) {
  std::string base = std::filesystem::path(file).filename().string();
  std::transform(base.begin(), base.end(), base.begin(), ::tolower);
  if (base.find("test") != std::string::npos) return ListKind::Test;
  if (base.find("train_val") != std::string::npos || base.find("trainval") != std::string::npos)
    return ListKind::Pool;
  if (base.find("val") != std::string::npos) return ListKind::Val;
  if (base.find("train") != std::string::npos) return nfiles == 2 ? ListKind::Pool : ListKind::Train;
  if (nfiles == 2) return pos == 0 ? ListKind::Pool : ListKind::Test;
  return pos == 0 ? ListKind::Train : (pos == 1 ? ListKind::Val : ListKind::Test);
}

}  // namespace

std::vector<Split> split_from_lists(const std::vector<LabelRow>& rows, const std::vector<std::string>& files,
                                    const SplitRatios& ratios, uint64_t seed, int64_t* unlisted,
                                    int64_t* missing) {
  std::unordered_map<std::string, size_t> index;
  index.reserve(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) index.emplace(rows[i].image, i);
  std::vector<int> kind(rows.size(), -1);
  bool have_val = false, have_pool = false;
  int64_t n_missing = 0;
  for (size_t k = 0; k < files.size(); ++k) {
    const ListKind lk = kind_of(files[k], k, files.size());
    have_val |= lk == ListKind::Val;
    have_pool |= lk == ListKind::Pool;
    const std::vector<std::string> lines = read_lines(files[k]);
    for (size_t li = 0; li < lines.size(); ++li) {
      std::stringstream ss(lines[li]);
      std::string name;
      if (!(ss >> name)) continue;  // empty line; CheXNet lists carry 14 labels after the name
      auto it = index.find(name);
      if (it == index.end()) {
        ++n_missing;
        continue;
      }
      if (kind[it->second] >= 0 && kind[it->second] != static_cast<int>(lk))
        throw Error(files[k] + ":" + std::to_string(li + 1) + ": image '" + name + "' is already in another list");
      kind[it->second] = static_cast<int>(lk);
    }
  }
  // Pool -> train, or train/val by patient when no val list was given.
  std::unordered_map<int64_t, Split> pool_split;
  if (have_pool) {
    std::map<int64_t, int64_t> ordered;
    int64_t total = 0;
    for (size_t i = 0; i < rows.size(); ++i)
      if (kind[i] == static_cast<int>(ListKind::Pool)) ++ordered[rows[i].patient_id], ++total;
    std::vector<int64_t> patients;
    std::unordered_map<int64_t, int64_t> count;
    for (auto& [p, n] : ordered) patients.push_back(p), count[p] = n;
    Rng rng(mix64(seed ^ 0x9001ull));
    shuffle(patients, rng);
    const double tv = ratios.train + ratios.val;
    const double f_val = (have_val || tv <= 0) ? 0.0 : ratios.val / tv;
    assign_in_order(patients, count, 1.0 - f_val, f_val, total, &pool_split);
  }
  std::vector<Split> out(rows.size(), Split::Excluded);
  int64_t n_unlisted = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    switch (kind[i]) {
      case static_cast<int>(ListKind::Train): out[i] = Split::Train; break;
      case static_cast<int>(ListKind::Val): out[i] = Split::Val; break;
      case static_cast<int>(ListKind::Test): out[i] = Split::Test; break;
      case static_cast<int>(ListKind::Pool): out[i] = pool_split.at(rows[i].patient_id); break;
      default: ++n_unlisted;
    }
  }
  if (unlisted) *unlisted = n_unlisted;
  if (missing) *missing = n_missing;
  return out;
}

SplitCheck check_split(const std::vector<int64_t>& pids, const std::vector<uint8_t>& labels,
                       const std::vector<Split>& split) {
  CXR_CHECK(pids.size() == split.size() && labels.size() == pids.size() * kNumClasses,
            "patient IDs ", pids.size(), ", labels ", labels.size(), ", split ", split.size());
  SplitCheck c;
  std::unordered_map<int64_t, unsigned> sets;  // patient -> bitmask of sets
  for (size_t i = 0; i < pids.size(); ++i) {
    const auto s = static_cast<unsigned>(split[i]);
    if (s >= kNumSplits) {
      ++c.excluded;
      continue;
    }
    ++c.images[s];
    for (int k = 0; k < kNumClasses; ++k) c.positives[s][k] += labels[i * kNumClasses + k];
    sets[pids[i]] |= 1u << s;
  }
  std::vector<int64_t> shared;
  for (auto& [p, m] : sets) {
    for (int s = 0; s < kNumSplits; ++s) c.patients[s] += (m >> s) & 1u;
    if ((m & 3u) == 3u) ++c.shared_pairs[0];
    if ((m & 5u) == 5u) ++c.shared_pairs[1];
    if ((m & 6u) == 6u) ++c.shared_pairs[2];
    if (m != 1u && m != 2u && m != 4u) shared.push_back(p);
  }
  std::sort(shared.begin(), shared.end());
  c.shared_patients = static_cast<int64_t>(shared.size());
  c.shared_examples.assign(shared.begin(), shared.begin() + std::min<size_t>(10, shared.size()));
  return c;
}

SplitCheck check_split(const std::vector<LabelRow>& rows, const std::vector<Split>& split) {
  std::vector<int64_t> pids(rows.size());
  std::vector<uint8_t> labels(rows.size() * kNumClasses);
  for (size_t i = 0; i < rows.size(); ++i) {
    pids[i] = rows[i].patient_id;
    std::copy(rows[i].labels.begin(), rows[i].labels.end(), labels.begin() + i * kNumClasses);
  }
  return check_split(pids, labels, split);
}

}  // namespace cxr::io
