// io/metrics: AUC and ROC curves against scikit-learn (tests/fixtures/metrics_sklearn.json, written by
// make_metrics_fixture.py) and against a brute-force pair count; bootstrap intervals; Youden and F1
// thresholds and confusion counts on hand-made cases; degenerate classes and bad input.
// io/published: the published table's consistency and the comparison table/JSON.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "engine/error.h"
#include "io/metrics.h"
#include "io/published.h"
#include "test_util.h"

namespace cxr::io {
namespace {

using nlohmann::json;

json load_fixture() {
  const std::string path = test::source_path("tests/fixtures/metrics_sklearn.json");
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot open " + path);
  return json::parse(f);
}

struct Fixture {
  int n = 0, k = 0;
  std::vector<float> scores, labels;
  json j;
};

Fixture fixture() {
  Fixture fx;
  fx.j = load_fixture();
  fx.n = fx.j["num_images"];
  fx.k = fx.j["num_classes"];
  for (const auto& row : fx.j["scores"])
    for (const auto& v : row) fx.scores.push_back(static_cast<float>(v.get<double>()));
  for (const auto& row : fx.j["labels"])
    for (const auto& v : row) fx.labels.push_back(static_cast<float>(v.get<int>()));
  return fx;
}

// A JSON number, null (NaN) or "inf".
double value(const json& v) {
  if (v.is_null()) return std::nan("");
  if (v.is_string()) return v.get<std::string>() == "inf" ? INFINITY : std::nan("");
  return v.get<double>();
}

// Same value, both NaN, or both the same infinity. 1e-12: the rates are one division of integers in
// double on both sides, so they agree to the last bit or two.
::testing::AssertionResult same(double a, double b) {
  if ((std::isnan(a) && std::isnan(b)) || a == b || std::fabs(a - b) <= 1e-12) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << a << " vs " << b;
}

TEST(MetricsSklearn, AucMatchesRocAucScore) {
  const Fixture fx = fixture();
  const std::vector<double> auc = per_class_auc(fx.scores, fx.labels, fx.k);
  ASSERT_EQ(auc.size(), static_cast<size_t>(fx.k));
  for (int c = 0; c < fx.k; ++c) {
    EXPECT_TRUE(same(auc[c], value(fx.j["classes"][c]["auc"]))) << "class " << fx.j["class_names"][c];
    // The single-class entry point agrees with the matrix one.
    EXPECT_TRUE(same(roc_auc(column(fx.scores, fx.k, c), column(fx.labels, fx.k, c)), auc[c]));
  }
  EXPECT_TRUE(std::isnan(auc[4]) && std::isnan(auc[5]));  // no positives, no negatives
  EXPECT_NEAR(mean_auc(auc), fx.j["mean_auc"].get<double>(), 1e-12);
  EXPECT_NEAR(mean_auc(auc), fx.j["macro_auc_defined"].get<double>(), 1e-12);
  const auto counts = class_counts(fx.labels, fx.k);
  for (int c = 0; c < fx.k; ++c) {
    EXPECT_EQ(counts[c].positives, fx.j["classes"][c]["positives"].get<int64_t>());
    EXPECT_EQ(counts[c].negatives, fx.j["classes"][c]["negatives"].get<int64_t>());
  }
}

void expect_curve(const RocCurve& ours, const json& ref, const std::string& what) {
  ASSERT_EQ(ours.size(), ref["thresholds"].size()) << what;
  ASSERT_EQ(ours.fpr.size(), ours.size());
  ASSERT_EQ(ours.tpr.size(), ours.size());
  for (size_t i = 0; i < ours.size(); ++i) {
    EXPECT_TRUE(same(ours.fpr[i], value(ref["fpr"][i]))) << what << " fpr[" << i << "]";
    EXPECT_TRUE(same(ours.tpr[i], value(ref["tpr"][i]))) << what << " tpr[" << i << "]";
    EXPECT_TRUE(same(ours.thresholds[i], value(ref["thresholds"][i]))) << what << " thresholds[" << i << "]";
  }
}

TEST(MetricsSklearn, RocCurveMatchesRocCurve) {
  const Fixture fx = fixture();
  for (bool drop : {false, true}) {
    const auto curves = per_class_roc_curves(fx.scores, fx.labels, fx.k, drop);
    for (int c = 0; c < fx.k; ++c)
      expect_curve(curves[c], fx.j["classes"][c][drop ? "roc_drop" : "roc_full"],
                   fx.j["class_names"][c].get<std::string>() + (drop ? " drop_intermediate" : " full"));
  }
}

TEST(MetricsSklearn, TrapezoidAreaOfFullCurveIsTheAuc) {
  const Fixture fx = fixture();
  const auto curves = per_class_roc_curves(fx.scores, fx.labels, fx.k);
  const auto auc = per_class_auc(fx.scores, fx.labels, fx.k);
  for (int c = 0; c < 4; ++c) {
    double area = 0;
    for (size_t i = 1; i < curves[c].size(); ++i)
      area += (curves[c].fpr[i] - curves[c].fpr[i - 1]) * (curves[c].tpr[i] + curves[c].tpr[i - 1]) / 2;
    EXPECT_NEAR(area, auc[c], 1e-12) << "class " << c;
  }
}

// Brute force over all positive-negative pairs, ties 1/2.
double pair_auc(const std::vector<float>& s, const std::vector<float>& y) {
  double wins = 0, pairs = 0;
  for (size_t i = 0; i < s.size(); ++i)
    for (size_t j = 0; j < s.size(); ++j)
      if (y[i] == 1 && y[j] == 0) {
        pairs += 1;
        wins += s[i] > s[j] ? 1.0 : s[i] == s[j] ? 0.5 : 0.0;
      }
  return wins / pairs;
}

TEST(MetricsAuc, MatchesPairCountOnRandomTies) {
  const uint64_t seed = test::fresh_seed();
  std::mt19937_64 rng(seed);
  for (int trial = 0; trial < 20; ++trial) {
    const int n = 2 + static_cast<int>(rng() % 300), levels = 1 + static_cast<int>(rng() % 12);
    std::vector<float> s(n), y(n);
    for (int i = 0; i < n; ++i) {
      y[i] = static_cast<float>(rng() % 3 == 0);
      s[i] = static_cast<float>(rng() % levels) / levels + 0.1f * y[i] * static_cast<float>(rng() % 2);
    }
    y[0] = 1;
    y[1] = 0;
    EXPECT_NEAR(roc_auc(s, y), pair_auc(s, y), 1e-12) << "seed " << seed << " trial " << trial;
  }
}

TEST(MetricsAuc, HandMadeCases) {
  EXPECT_DOUBLE_EQ(roc_auc({0.5f, 0.5f}, {1, 0}), 0.5);                      // one tie
  EXPECT_DOUBLE_EQ(roc_auc({0.9f, 0.8f, 0.1f, 0.2f}, {1, 1, 0, 0}), 1.0);    // perfect
  EXPECT_DOUBLE_EQ(roc_auc({0.1f, 0.2f, 0.9f, 0.8f}, {1, 1, 0, 0}), 0.0);    // inverted
  // Pairs (pos, neg): (0.8, 0.8) tie, (0.8, 0.3) win, (0.3, 0.8) loss, (0.3, 0.3) tie -> 2/4.
  EXPECT_DOUBLE_EQ(roc_auc({0.8f, 0.3f, 0.8f, 0.3f}, {1, 1, 0, 0}), 0.5);
  // Logits instead of probabilities: only the order matters.
  EXPECT_DOUBLE_EQ(roc_auc({-40.f, 12.f, 3.f}, {0, 1, 0}), 1.0);
}

TEST(MetricsAuc, DegenerateClassesAreUndefined) {
  EXPECT_TRUE(std::isnan(roc_auc({0.1f, 0.7f}, {0, 0})));
  EXPECT_TRUE(std::isnan(roc_auc({0.1f, 0.7f}, {1, 1})));
  EXPECT_TRUE(std::isnan(roc_auc({}, {})));
  const auto auc = per_class_auc({0.2f, 0.9f, 0.4f, 0.3f}, {0, 1, 1, 1}, 2);  // class 1 all positive
  EXPECT_DOUBLE_EQ(auc[0], 1.0);
  EXPECT_TRUE(std::isnan(auc[1]));
  EXPECT_DOUBLE_EQ(mean_auc(auc), 1.0);
  EXPECT_TRUE(std::isnan(mean_auc({kUndefined, kUndefined})));
  EXPECT_FALSE(class_counts({0, 1, 1, 1}, 2)[1].defined());
  // roc_curve of a class without positives: NaN tpr, as scikit-learn.
  const RocCurve r = roc_curve({0.1f, 0.7f}, {0, 0});
  ASSERT_EQ(r.size(), 3u);
  EXPECT_TRUE(std::isnan(r.tpr[1]));
  EXPECT_DOUBLE_EQ(r.fpr[2], 1.0);
}

TEST(MetricsInput, BadInputThrowsWithTheLocation) {
  try {
    per_class_auc({0.1f, NAN, 0.3f, 0.4f}, {0, 1, 1, 0}, 2);
    FAIL() << "NaN score accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("image 0 class 1"), std::string::npos) << e.what();
  }
  EXPECT_THROW(roc_auc({0.1f, 0.2f}, {0.f, 0.5f}), Error);    // label not 0/1
  EXPECT_THROW(roc_auc({0.1f, 0.2f}, {0.f}), Error);          // sizes differ
  EXPECT_THROW(per_class_auc({0.1f, 0.2f, 0.3f}, {0, 1, 0}, 2), Error);  // not whole rows
  EXPECT_THROW(roc_auc({INFINITY, 0.2f}, {1.f, 0.f}), Error);
}

// Two classes, N images, positives shifted up by `shift` standard deviations; the seed fixes the data.
void make_set(int n, uint64_t seed, std::vector<float>* s, std::vector<float>* y) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g;
  s->clear();
  y->clear();
  for (int i = 0; i < n; ++i)
    for (int c = 0; c < 2; ++c) {
      const float label = (rng() % 4 == 0) ? 1.f : 0.f;
      y->push_back(label);
      s->push_back(g(rng) + label * (c == 0 ? 1.0f : 2.0f));
    }
}

TEST(MetricsBootstrap, IntervalContainsEstimateAndShrinksWithN) {
  std::vector<float> s, y;
  double width[2];
  const int sizes[2] = {200, 3200};
  for (int t = 0; t < 2; ++t) {
    make_set(sizes[t], 7 + t, &s, &y);
    const BootstrapResult b = bootstrap_auc(s, y, 2, {500, 11, 0.95});
    const auto auc = per_class_auc(s, y, 2);
    ASSERT_EQ(b.per_class.size(), 2u);
    for (int c = 0; c < 2; ++c) {
      EXPECT_DOUBLE_EQ(b.per_class[c].auc, auc[c]);
      EXPECT_LE(b.per_class[c].lo, auc[c]);
      EXPECT_GE(b.per_class[c].hi, auc[c]);
      EXPECT_LT(b.per_class[c].lo, b.per_class[c].hi);
      EXPECT_EQ(b.per_class[c].valid, 500);
    }
    EXPECT_DOUBLE_EQ(b.mean.auc, mean_auc(auc));
    EXPECT_LE(b.mean.lo, b.mean.auc);
    EXPECT_GE(b.mean.hi, b.mean.auc);
    width[t] = b.per_class[0].hi - b.per_class[0].lo;
  }
  // 16x the images: the width should fall about 4x (1/sqrt(N)); 0.5 leaves room for resampling noise.
  EXPECT_LT(width[1], 0.5 * width[0]) << width[0] << " -> " << width[1];
}

TEST(MetricsBootstrap, SeededAndReproducible) {
  std::vector<float> s, y;
  make_set(300, 3, &s, &y);
  const BootstrapResult a = bootstrap_auc(s, y, 2, {200, 5, 0.95});
  const BootstrapResult b = bootstrap_auc(s, y, 2, {200, 5, 0.95});
  const BootstrapResult c = bootstrap_auc(s, y, 2, {200, 6, 0.95});
  EXPECT_EQ(a.per_class[0].lo, b.per_class[0].lo);
  EXPECT_EQ(a.per_class[1].hi, b.per_class[1].hi);
  EXPECT_EQ(a.mean.lo, b.mean.lo);
  EXPECT_NE(a.per_class[0].lo, c.per_class[0].lo);
  // A narrower level gives a narrower interval inside the wider one.
  const BootstrapResult n = bootstrap_auc(s, y, 2, {200, 5, 0.5});
  EXPECT_GE(n.per_class[0].lo, a.per_class[0].lo);
  EXPECT_LE(n.per_class[0].hi, a.per_class[0].hi);
}

TEST(MetricsBootstrap, RareAndDegenerateClasses) {
  // Class 0: one positive in 40 images (missing from about 36% of resamples); class 1: no positives.
  std::vector<float> s, y;
  for (int i = 0; i < 40; ++i) {
    s.push_back(i / 40.f);
    y.push_back(i == 30 ? 1.f : 0.f);
    s.push_back(i / 40.f);
    y.push_back(0.f);
  }
  const BootstrapResult b = bootstrap_auc(s, y, 2, {400, 1, 0.95});
  EXPECT_GT(b.per_class[0].valid, 150);
  EXPECT_LT(b.per_class[0].valid, 400);
  EXPECT_LE(b.per_class[0].lo, b.per_class[0].auc);
  EXPECT_EQ(b.per_class[1].valid, 0);
  EXPECT_TRUE(std::isnan(b.per_class[1].auc) && std::isnan(b.per_class[1].lo) && std::isnan(b.per_class[1].hi));
  EXPECT_EQ(b.mean.valid, b.per_class[0].valid);  // mean over class 0 alone
}

// Scores high to low: 0.9+ 0.8+ 0.7+ 0.6- 0.4+ 0.3- 0.2- 0.1- (P = 4, N = 4).
// t = 0.7: TPR 3/4, FPR 0, J = 0.75, F1 = 6/7.  t = 0.4: TPR 1, FPR 1/4, J = 0.75, F1 = 8/9.
const std::vector<float> kS = {0.1f, 0.2f, 0.3f, 0.4f, 0.6f, 0.7f, 0.8f, 0.9f};
const std::vector<float> kY = {0, 0, 0, 1, 0, 1, 1, 1};

TEST(MetricsThresholds, YoudenAndF1OnAHandMadeCase) {
  const auto youden = choose_thresholds(kS, kY, 1, ThresholdRule::kYouden);
  EXPECT_FLOAT_EQ(static_cast<float>(youden[0].threshold), 0.7f);  // J ties at 0.7 and 0.4: the higher wins
  EXPECT_DOUBLE_EQ(youden[0].criterion, 0.75);
  const auto f1 = choose_thresholds(kS, kY, 1, ThresholdRule::kF1);
  EXPECT_FLOAT_EQ(static_cast<float>(f1[0].threshold), 0.4f);
  EXPECT_DOUBLE_EQ(f1[0].criterion, 8.0 / 9.0);
  // F1 prefers predicting everything positive when positives dominate and the scores are useless.
  const auto all = choose_thresholds({0.5f, 0.4f, 0.3f, 0.2f}, {0, 1, 1, 1}, 1, ThresholdRule::kF1);
  EXPECT_FLOAT_EQ(static_cast<float>(all[0].threshold), 0.2f);
  EXPECT_DOUBLE_EQ(all[0].criterion, 6.0 / 7.0);
}

TEST(MetricsThresholds, MatchArgmaxOverTheCurve) {
  const Fixture fx = fixture();
  const auto curves = per_class_roc_curves(fx.scores, fx.labels, fx.k);
  const auto youden = choose_thresholds(fx.scores, fx.labels, fx.k, ThresholdRule::kYouden);
  for (int c = 0; c < 4; ++c) {
    size_t best = 1;
    for (size_t i = 1; i < curves[c].size(); ++i)
      if (curves[c].tpr[i] - curves[c].fpr[i] > curves[c].tpr[best] - curves[c].fpr[best]) best = i;
    EXPECT_EQ(youden[c].threshold, curves[c].thresholds[best]) << "class " << c;
  }
}

TEST(MetricsThresholds, DegenerateClasses) {
  const auto y = choose_thresholds({0.1f, 0.7f}, {0, 0}, 1, ThresholdRule::kYouden);
  EXPECT_TRUE(std::isnan(y[0].threshold));
  const auto f = choose_thresholds({0.1f, 0.7f}, {0, 0}, 1, ThresholdRule::kF1);
  EXPECT_TRUE(std::isnan(f[0].threshold));
  EXPECT_TRUE(std::isnan(choose_thresholds({0.1f, 0.7f}, {1, 1}, 1, ThresholdRule::kYouden)[0].threshold));
  const auto fp = choose_thresholds({0.1f, 0.7f}, {1, 1}, 1, ThresholdRule::kF1);  // all positive: F1 = 1
  EXPECT_FLOAT_EQ(static_cast<float>(fp[0].threshold), 0.1f);
  EXPECT_DOUBLE_EQ(fp[0].criterion, 1.0);
}

TEST(MetricsAtThresholds, CountsAndRates) {
  const BinaryMetrics m = binary_metrics(kS, kY, 0.4f);
  EXPECT_EQ(m.tp, 4);
  EXPECT_EQ(m.fp, 1);
  EXPECT_EQ(m.tn, 3);
  EXPECT_EQ(m.fn, 0);
  EXPECT_DOUBLE_EQ(m.sensitivity, 1.0);
  EXPECT_DOUBLE_EQ(m.specificity, 0.75);
  EXPECT_DOUBLE_EQ(m.ppv, 0.8);
  EXPECT_DOUBLE_EQ(m.npv, 1.0);
  EXPECT_DOUBLE_EQ(m.f1, 8.0 / 9.0);
  // Above every score: nothing predicted positive, PPV undefined.
  const BinaryMetrics none = binary_metrics(kS, kY, 2.0);
  EXPECT_EQ(none.tp + none.fp, 0);
  EXPECT_TRUE(std::isnan(none.ppv));
  EXPECT_DOUBLE_EQ(none.specificity, 1.0);
  EXPECT_DOUBLE_EQ(none.f1, 0.0);
  const BinaryMetrics undef = binary_metrics(kS, kY, kUndefined);
  EXPECT_EQ(undef.tp + undef.fp + undef.tn + undef.fn, 0);
  EXPECT_TRUE(std::isnan(undef.sensitivity));
}

TEST(MetricsAtThresholds, ChosenOnOneSetAppliedToAnother) {
  std::vector<float> sv, yv, st, yt;
  make_set(400, 21, &sv, &yv);
  make_set(400, 22, &st, &yt);
  const auto chosen = choose_thresholds(sv, yv, 2, ThresholdRule::kYouden);
  const auto m = metrics_at_thresholds(st, yt, 2, threshold_values(chosen));
  ASSERT_EQ(m.size(), 2u);
  const auto counts = class_counts(yt, 2);
  for (int c = 0; c < 2; ++c) {
    EXPECT_EQ(m[c].threshold, chosen[c].threshold);
    EXPECT_EQ(m[c].tp + m[c].fn, counts[c].positives);
    EXPECT_EQ(m[c].tn + m[c].fp, counts[c].negatives);
    // On a similar set, J at the validation threshold is positive and not above the validation optimum
    // by much (it is an estimate, not a bound; 0.15 covers sampling noise at 400 images).
    const double j = m[c].sensitivity + m[c].specificity - 1;
    EXPECT_GT(j, 0.2);
    EXPECT_LT(j, chosen[c].criterion + 0.15);
  }
  EXPECT_THROW(metrics_at_thresholds(st, yt, 2, {0.5}), Error);
}

TEST(MetricsPublished, TableIsConsistentWithItsReportedMeans) {
  const auto& pub = published_aucs();
  ASSERT_EQ(pub.size(), 4u);
  for (const auto& p : pub) {
    double sum = 0;
    for (double a : p.auc) {
      EXPECT_GT(a, 0.5) << p.key;
      EXPECT_LT(a, 1.0) << p.key;
      sum += a;
    }
    // The reported means are rounded to 3 decimals.
    EXPECT_NEAR(sum / kNumClasses, p.mean, 0.0005 + 1e-12) << p.key;
    EXPECT_FALSE(p.source.empty());
  }
  EXPECT_DOUBLE_EQ(published("chexnet2017").auc[1], 0.9248);  // Cardiomegaly
  EXPECT_DOUBLE_EQ(published("arnoweng").auc[13], 0.9104);    // Hernia
  EXPECT_DOUBLE_EQ(published("wang2017").auc[3], 0.609);      // Infiltration
  EXPECT_DOUBLE_EQ(published("coursera_week1").auc[6], 0.679);  // Pneumonia
  EXPECT_THROW(published("chexnet"), Error);
}

TEST(MetricsPublished, ComparisonTableAndJson) {
  std::vector<double> ours(kNumClasses);
  for (int c = 0; c < kNumClasses; ++c) ours[c] = published("chexnet2017").auc[c] + 0.01;
  std::string text = format_auc_comparison(ours);
  for (const auto& name : kClassNames) EXPECT_NE(text.find(std::string(name)), std::string::npos) << name;
  EXPECT_NE(text.find("0.9348"), std::string::npos);  // ours for Cardiomegaly
  EXPECT_NE(text.find("+0.0100"), std::string::npos);
  EXPECT_EQ(text.find("classes)"), std::string::npos);  // all 14 scored: one mean row
  nlohmann::json j = auc_comparison_json(ours);
  EXPECT_EQ(j["classes"].size(), static_cast<size_t>(kNumClasses));
  EXPECT_EQ(j["classes"][1]["name"], "Cardiomegaly");
  EXPECT_DOUBLE_EQ(j["classes"][1]["published"]["chexnet2017"].get<double>(), 0.9248);
  EXPECT_EQ(j["mean"]["classes"], kNumClasses);
  EXPECT_FALSE(j.contains("bootstrap"));

  // Hernia undefined (no positives in a small test set): null in JSON, and published means over the
  // same 13 classes beside ours.
  ours[13] = kUndefined;
  std::vector<float> s(20 * kNumClasses), y(20 * kNumClasses);
  for (size_t i = 0; i < s.size(); ++i) {
    s[i] = static_cast<float>(i % 7);
    y[i] = (i % kNumClasses != 13 && i % 3 == 0) ? 1.f : 0.f;
  }
  const BootstrapResult b = bootstrap_auc(s, y, kNumClasses, {50, 1, 0.95});
  text = format_auc_comparison(ours, &b);
  EXPECT_NE(text.find("mean (13 classes)"), std::string::npos) << text;
  EXPECT_NE(text.find("95% CI"), std::string::npos);
  j = auc_comparison_json(ours, &b);
  EXPECT_TRUE(j["classes"][13]["auc"].is_null());
  EXPECT_TRUE(j["classes"][13]["ci"][0].is_null());
  EXPECT_EQ(j["mean"]["classes"], 13);
  double same = 0;
  for (int c = 0; c < 13; ++c) same += published("chexnet2017").auc[c];
  EXPECT_NEAR(j["mean"]["published_same_classes"]["chexnet2017"].get<double>(), same / 13, 1e-12);
  EXPECT_DOUBLE_EQ(j["mean"]["published"]["chexnet2017"].get<double>(), 0.841);
  EXPECT_EQ(j["bootstrap"]["resamples"], 50);
  EXPECT_THROW(format_auc_comparison({0.5, 0.6}), Error);  // not 14 classes
}

}  // namespace
}  // namespace cxr::io
