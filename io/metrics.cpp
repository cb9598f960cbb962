#include "io/metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "engine/error.h"

namespace cxr::io {

namespace {

// Checks an (N, K) pair of matrices and returns N.
int64_t check_matrices(const std::vector<float>& scores, const std::vector<float>& labels, int num_classes) {
  CXR_CHECK(num_classes > 0, "number of classes ", num_classes);
  CXR_CHECK(scores.size() == labels.size(), "scores have ", scores.size(), " values but labels ", labels.size());
  CXR_CHECK(scores.size() % static_cast<size_t>(num_classes) == 0, scores.size(),
            " values is not a whole number of rows of ", num_classes, " classes");
  const int64_t n = static_cast<int64_t>(scores.size()) / num_classes;
  for (int64_t i = 0; i < n; ++i)
    for (int c = 0; c < num_classes; ++c) {
      const float s = scores[i * num_classes + c], y = labels[i * num_classes + c];
      if (!std::isfinite(s)) CXR_FAIL("score of image ", i, " class ", c, " is not finite (", s, ")");
      if (y != 0.0f && y != 1.0f) CXR_FAIL("label of image ", i, " class ", c, " is ", y, ", not 0 or 1");
    }
  return n;
}

// One class's scores sorted from high to low and cut into groups of equal score.
struct SortedClass {
  std::vector<int64_t> order;       // image indices, scores descending (stable)
  std::vector<int64_t> group_end;   // order[group_end[g-1] .. group_end[g]) share one score
  std::vector<double> group_score;  // that score
  std::vector<uint8_t> positive;    // per image (original index)
  int64_t positives = 0, negatives = 0;
};

SortedClass sort_class(const std::vector<float>& scores, const std::vector<float>& labels, int k, int c) {
  const int64_t n = static_cast<int64_t>(scores.size()) / k;
  SortedClass s;
  s.order.resize(n);
  s.positive.resize(n);
  std::iota(s.order.begin(), s.order.end(), int64_t{0});
  std::stable_sort(s.order.begin(), s.order.end(),
                   [&](int64_t a, int64_t b) { return scores[a * k + c] > scores[b * k + c]; });
  for (int64_t i = 0; i < n; ++i) {
    s.positive[i] = labels[i * k + c] == 1.0f;
    (s.positive[i] ? s.positives : s.negatives) += 1;
  }
  for (int64_t j = 0; j < n; ++j) {
    const float v = scores[s.order[j] * k + c];
    if (j + 1 == n || scores[s.order[j + 1] * k + c] != v) {
      s.group_end.push_back(j + 1);
      s.group_score.push_back(v);
    }
  }
  return s;
}

// Cumulative true and false positives after each group (predict positive for score >= group score).
struct Cumulative {
  std::vector<int64_t> tps, fps;
};
Cumulative cumulative(const SortedClass& s) {
  Cumulative cu;
  int64_t tp = 0, fp = 0, j = 0;
  for (int64_t end : s.group_end) {
    for (; j < end; ++j) (s.positive[s.order[j]] ? tp : fp) += 1;
    cu.tps.push_back(tp);
    cu.fps.push_back(fp);
  }
  return cu;
}

// Mann-Whitney U (doubled, so that half-counted ties stay integral) with per-image multiplicities w
// (all 1 for the plain AUC, the bootstrap counts otherwise), sweeping groups from high to low: a
// negative is correctly ranked below every positive of a higher group and half-correctly against each
// positive of its own group. AUC = U / (P N).
double weighted_auc(const SortedClass& s, const int32_t* w) {
  int64_t pos_above = 0, neg_total = 0, u2 = 0, j = 0;
  for (int64_t end : s.group_end) {
    int64_t p = 0, q = 0;
    for (; j < end; ++j) {
      const int64_t i = s.order[j];
      const int64_t m = w ? w[i] : 1;
      (s.positive[i] ? p : q) += m;
    }
    u2 += q * (2 * pos_above + p);
    pos_above += p;
    neg_total += q;
  }
  if (pos_above == 0 || neg_total == 0) return kUndefined;
  return static_cast<double>(u2) / (2.0 * static_cast<double>(pos_above) * static_cast<double>(neg_total));
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Linear-interpolated quantile of sorted values (numpy.percentile's default "linear").
double quantile_sorted(const std::vector<double>& v, double q) {
  if (v.empty()) return kUndefined;
  const double pos = q * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - static_cast<double>(lo)) * (v[hi] - v[lo]);
}

AucInterval interval(double auc, std::vector<double> samples, double level) {
  AucInterval r;
  r.auc = auc;
  samples.erase(std::remove_if(samples.begin(), samples.end(), [](double x) { return std::isnan(x); }),
                samples.end());
  std::sort(samples.begin(), samples.end());
  r.valid = static_cast<int>(samples.size());
  r.lo = quantile_sorted(samples, (1.0 - level) / 2.0);
  r.hi = quantile_sorted(samples, (1.0 + level) / 2.0);
  return r;
}

}  // namespace

std::vector<ClassCounts> class_counts(const std::vector<float>& labels, int num_classes) {
  const int64_t n = check_matrices(std::vector<float>(labels.size(), 0.0f), labels, num_classes);
  std::vector<ClassCounts> counts(num_classes);
  for (int64_t i = 0; i < n; ++i)
    for (int c = 0; c < num_classes; ++c)
      (labels[i * num_classes + c] == 1.0f ? counts[c].positives : counts[c].negatives) += 1;
  return counts;
}

double roc_auc(const std::vector<float>& scores, const std::vector<float>& labels) {
  check_matrices(scores, labels, 1);
  return weighted_auc(sort_class(scores, labels, 1, 0), nullptr);
}

std::vector<double> per_class_auc(const std::vector<float>& scores, const std::vector<float>& labels,
                                  int num_classes) {
  check_matrices(scores, labels, num_classes);
  std::vector<double> auc(num_classes);
  for (int c = 0; c < num_classes; ++c) auc[c] = weighted_auc(sort_class(scores, labels, num_classes, c), nullptr);
  return auc;
}

double mean_auc(const std::vector<double>& aucs) {
  double sum = 0.0;
  int n = 0;
  for (double a : aucs)
    if (std::isfinite(a)) {
      sum += a;
      ++n;
    }
  return n ? sum / n : kUndefined;
}

namespace {
RocCurve curve_of(const SortedClass& s, bool drop_intermediate) {
  Cumulative cu = cumulative(s);
  std::vector<double> thr = s.group_score;
  if (drop_intermediate && cu.fps.size() > 2) {
    // scikit-learn: keep the ends and every point where the second difference of fps or tps is non-zero.
    std::vector<size_t> keep{0};
    for (size_t i = 1; i + 1 < cu.fps.size(); ++i)
      if (cu.fps[i + 1] - 2 * cu.fps[i] + cu.fps[i - 1] != 0 || cu.tps[i + 1] - 2 * cu.tps[i] + cu.tps[i - 1] != 0)
        keep.push_back(i);
    keep.push_back(cu.fps.size() - 1);
    Cumulative kept;
    std::vector<double> kthr;
    for (size_t i : keep) {
      kept.tps.push_back(cu.tps[i]);
      kept.fps.push_back(cu.fps[i]);
      kthr.push_back(thr[i]);
    }
    cu = std::move(kept);
    thr = std::move(kthr);
  }
  RocCurve r;
  r.thresholds.push_back(std::numeric_limits<double>::infinity());
  r.thresholds.insert(r.thresholds.end(), thr.begin(), thr.end());
  r.fpr.push_back(s.negatives ? 0.0 : kUndefined);
  r.tpr.push_back(s.positives ? 0.0 : kUndefined);
  for (size_t i = 0; i < cu.fps.size(); ++i) {
    r.fpr.push_back(s.negatives ? static_cast<double>(cu.fps[i]) / static_cast<double>(s.negatives) : kUndefined);
    r.tpr.push_back(s.positives ? static_cast<double>(cu.tps[i]) / static_cast<double>(s.positives) : kUndefined);
  }
  return r;
}
}  // namespace

RocCurve roc_curve(const std::vector<float>& scores, const std::vector<float>& labels, bool drop_intermediate) {
  check_matrices(scores, labels, 1);
  return curve_of(sort_class(scores, labels, 1, 0), drop_intermediate);
}

std::vector<RocCurve> per_class_roc_curves(const std::vector<float>& scores, const std::vector<float>& labels,
                                           int num_classes, bool drop_intermediate) {
  check_matrices(scores, labels, num_classes);
  std::vector<RocCurve> curves;
  for (int c = 0; c < num_classes; ++c)
    curves.push_back(curve_of(sort_class(scores, labels, num_classes, c), drop_intermediate));
  return curves;
}

BootstrapResult bootstrap_auc(const std::vector<float>& scores, const std::vector<float>& labels, int num_classes,
                              const BootstrapOptions& options) {
  const int64_t n = check_matrices(scores, labels, num_classes);
  CXR_CHECK(options.resamples > 0, "bootstrap resamples ", options.resamples);
  CXR_CHECK(options.level > 0.0 && options.level < 1.0, "confidence level ", options.level);
  const int k = num_classes, reps = options.resamples;
  std::vector<SortedClass> sorted;
  std::vector<double> full(k);
  for (int c = 0; c < k; ++c) {
    sorted.push_back(sort_class(scores, labels, k, c));
    full[c] = weighted_auc(sorted[c], nullptr);
  }
  std::vector<double> samples(static_cast<size_t>(reps) * k, kUndefined), mean_samples(reps, kUndefined);
#pragma omp parallel
  {
    std::vector<int32_t> w(n);
#pragma omp for schedule(static)
    for (int r = 0; r < reps; ++r) {
      // One generator per resample, so that the draws do not depend on the thread count.
      std::mt19937_64 rng(splitmix64(options.seed ^ splitmix64(static_cast<uint64_t>(r))));
      std::fill(w.begin(), w.end(), 0);
      for (int64_t j = 0; j < n; ++j)
        ++w[static_cast<int64_t>((static_cast<unsigned __int128>(rng()) * static_cast<uint64_t>(n)) >> 64)];
      double sum = 0.0;
      int defined = 0;
      bool complete = true;
      for (int c = 0; c < k; ++c) {
        if (std::isnan(full[c])) continue;
        const double a = weighted_auc(sorted[c], w.data());
        samples[static_cast<size_t>(r) * k + c] = a;
        if (std::isnan(a)) complete = false;
        else {
          sum += a;
          ++defined;
        }
      }
      if (complete && defined > 0) mean_samples[r] = sum / defined;
    }
  }
  BootstrapResult res;
  res.resamples = reps;
  res.seed = options.seed;
  res.level = options.level;
  for (int c = 0; c < k; ++c) {
    std::vector<double> col(reps);
    for (int r = 0; r < reps; ++r) col[r] = samples[static_cast<size_t>(r) * k + c];
    res.per_class.push_back(interval(full[c], std::move(col), options.level));
  }
  res.mean = interval(mean_auc(full), std::move(mean_samples), options.level);
  return res;
}

std::vector<ChosenThreshold> choose_thresholds(const std::vector<float>& scores, const std::vector<float>& labels,
                                               int num_classes, ThresholdRule rule) {
  check_matrices(scores, labels, num_classes);
  std::vector<ChosenThreshold> out(num_classes);
  for (int c = 0; c < num_classes; ++c) {
    const SortedClass s = sort_class(scores, labels, num_classes, c);
    if (s.positives == 0 || (rule == ThresholdRule::kYouden && s.negatives == 0)) continue;
    const Cumulative cu = cumulative(s);
    const double p = static_cast<double>(s.positives), q = static_cast<double>(s.negatives);
    for (size_t g = 0; g < cu.tps.size(); ++g) {  // high to low: strict > keeps the highest threshold
      const double tp = static_cast<double>(cu.tps[g]), fp = static_cast<double>(cu.fps[g]);
      const double v = rule == ThresholdRule::kYouden ? tp / p - fp / q : 2.0 * tp / (2.0 * tp + fp + (p - tp));
      if (std::isnan(out[c].criterion) || v > out[c].criterion) out[c] = {s.group_score[g], v};
    }
  }
  return out;
}

const char* threshold_rule_name(ThresholdRule rule) { return rule == ThresholdRule::kYouden ? "youden" : "f1"; }

namespace {
double ratio(int64_t a, int64_t b) { return b ? static_cast<double>(a) / static_cast<double>(b) : kUndefined; }

BinaryMetrics metrics_of(const std::vector<float>& scores, const std::vector<float>& labels, int k, int c,
                         double threshold) {
  BinaryMetrics m;
  m.threshold = threshold;
  if (std::isnan(threshold)) return m;
  const int64_t n = static_cast<int64_t>(scores.size()) / k;
  for (int64_t i = 0; i < n; ++i) {
    const bool pred = static_cast<double>(scores[i * k + c]) >= threshold, pos = labels[i * k + c] == 1.0f;
    (pred ? (pos ? m.tp : m.fp) : (pos ? m.fn : m.tn)) += 1;
  }
  m.sensitivity = ratio(m.tp, m.tp + m.fn);
  m.specificity = ratio(m.tn, m.tn + m.fp);
  m.ppv = ratio(m.tp, m.tp + m.fp);
  m.npv = ratio(m.tn, m.tn + m.fn);
  m.f1 = ratio(2 * m.tp, 2 * m.tp + m.fp + m.fn);
  return m;
}
}  // namespace

BinaryMetrics binary_metrics(const std::vector<float>& scores, const std::vector<float>& labels, double threshold) {
  check_matrices(scores, labels, 1);
  return metrics_of(scores, labels, 1, 0, threshold);
}

std::vector<BinaryMetrics> metrics_at_thresholds(const std::vector<float>& scores, const std::vector<float>& labels,
                                                 int num_classes, const std::vector<double>& thresholds) {
  check_matrices(scores, labels, num_classes);
  CXR_CHECK(thresholds.size() == static_cast<size_t>(num_classes), thresholds.size(), " thresholds for ",
            num_classes, " classes");
  std::vector<BinaryMetrics> out;
  for (int c = 0; c < num_classes; ++c) out.push_back(metrics_of(scores, labels, num_classes, c, thresholds[c]));
  return out;
}

std::vector<double> threshold_values(const std::vector<ChosenThreshold>& chosen) {
  std::vector<double> t;
  for (const auto& c : chosen) t.push_back(c.threshold);
  return t;
}

std::vector<float> column(const std::vector<float>& matrix, int num_classes, int c) {
  CXR_CHECK(num_classes > 0 && c >= 0 && c < num_classes, "column ", c, " of ", num_classes);
  CXR_CHECK(matrix.size() % static_cast<size_t>(num_classes) == 0, matrix.size(), " values is not a whole number of rows of ",
            num_classes);
  std::vector<float> out;
  out.reserve(matrix.size() / num_classes);
  for (size_t i = c; i < matrix.size(); i += num_classes) out.push_back(matrix[i]);
  return out;
}

std::vector<float> labels_to_float(const std::vector<uint8_t>& labels) {
  return std::vector<float>(labels.begin(), labels.end());
}

}  // namespace cxr::io
