#include "io/published.h"

#include <cmath>
#include <cstdio>

#include "engine/error.h"

namespace cxr::io {

// Sources (the numbers are facts as published; ../shared/guide/FACTS.md gathers them):
//  - Wang X, Peng Y, Lu L, Lu Z, Bagheri M, Summers RM. "ChestX-ray8: Hospital-scale Chest X-ray
//    Database and Benchmarks on Weakly-Supervised Classification and Localization of Common Thorax
//    Diseases", CVPR 2017; the 14-class AUCs of the revised arXiv:1705.02315, as reproduced in Table 1 of
//    the CheXNet paper.
//  - Rajpurkar P, Irvin J, et al. "CheXNet: Radiologist-Level Pneumonia Detection on Chest X-Rays with
//    Deep Learning", arXiv:1711.05225 (2017), Table 1.
//  - arnoweng/CheXNet (GitHub), a PyTorch reimplementation of CheXNet: the per-class AUCs in its README.
//  - DeepLearning.AI "AI for Medical Diagnosis" (Coursera), week 1 assignment (chest X-ray
//    classification with DenseNet121): the per-class AUCs of its pretrained model.
const std::array<PublishedAucs, 4>& published_aucs() {
  static const std::array<PublishedAucs, 4> table = {{
      {"wang2017", "Wang 2017",
       "Wang et al., ChestX-ray8, CVPR 2017 / arXiv:1705.02315 (14 classes, as in CheXNet Table 1)",
       {.716, .807, .784, .609, .706, .671, .633, .806, .708, .835, .815, .769, .708, .767},
       .738, 3},
      {"chexnet2017", "CheXNet 2017", "Rajpurkar et al., CheXNet, arXiv:1711.05225, Table 1",
       {.8094, .9248, .8638, .7345, .8676, .7802, .7680, .8887, .7901, .8878, .9371, .8047, .8062, .9164},
       .841, 4, "random 70/10/20 patient-wise split (the splits-chexnet lists)"},
      {"arnoweng", "arnoweng", "arnoweng/CheXNet on GitHub (PyTorch reimplementation), README",
       {.8294, .9165, .8870, .7143, .8597, .7873, .7745, .8726, .8142, .8932, .9254, .8304, .7831, .9104},
       .843, 4},
      {"coursera_week1", "Coursera wk1",
       "DeepLearning.AI, AI for Medical Diagnosis (Coursera), week 1 assignment",
       {.786, .896, .762, .652, .819, .655, .679, .802, .752, .856, .796, .728, .712, .773},
       .762, 3},
  }};
  return table;
}

// FACTS.md, "Localisation on the NIH boxes (published)".
const PublishedIobbFound& wang2017_iobb_found() {
  constexpr double X = NAN;  // no boxes of this class in the NIH box file
  static const PublishedIobbFound table = {
      "Wang et al., ChestX-ray8, CVPR 2017 / arXiv:1705.02315 v5, Table 4",
      {0.1, 0.25, 0.5},
      {{{.728, .550, .283}, {.993, .979, .877}, {.712, .542, .333}, {.789, .577, .423}, {.435, .282, .141},
        {.165, .051, .013}, {.750, .558, .383}, {.459, .347, .184}, {X, X, X}, {X, X, X}, {X, X, X},
        {X, X, X}, {X, X, X}, {X, X, X}}}};
  return table;
}

const PublishedAucs& published(std::string_view key) {
  std::string keys;
  for (const auto& p : published_aucs()) {
    if (p.key == key) return p;
    keys += (keys.empty() ? "" : ", ") + std::string(p.key);
  }
  CXR_FAIL("no published AUC column '", key, "' (known: ", keys, ")");
}

namespace {

void check_ours(const std::vector<double>& ours, const BootstrapResult* intervals) {
  CXR_CHECK(ours.size() == static_cast<size_t>(kNumClasses), ours.size(), " AUCs given, the published table has ",
            kNumClasses, " classes");
  if (intervals)
    CXR_CHECK(intervals->per_class.size() == static_cast<size_t>(kNumClasses), intervals->per_class.size(),
              " bootstrap intervals for ", kNumClasses, " classes");
}

// Mean of a published column over the classes where ours is defined.
double mean_over_ours(const PublishedAucs& p, const std::vector<double>& ours) {
  double s = 0;
  int n = 0;
  for (int c = 0; c < kNumClasses; ++c)
    if (std::isfinite(ours[c])) {
      s += p.auc[c];
      ++n;
    }
  return n ? s / n : kUndefined;
}

int defined_count(const std::vector<double>& ours) {
  int n = 0;
  for (double a : ours) n += std::isfinite(a);
  return n;
}

std::string num(double v, int decimals) {
  if (!std::isfinite(v)) return "-";
  char b[32];
  std::snprintf(b, sizeof b, "%.*f", decimals, v);
  return b;
}

std::string ci_text(const AucInterval& a) {
  if (!std::isfinite(a.lo)) return "-";
  return "[" + num(a.lo, 3) + ", " + num(a.hi, 3) + "]";
}

nlohmann::json jnum(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

}  // namespace

std::string format_auc_comparison(const std::vector<double>& ours, const BootstrapResult* intervals) {
  check_ours(ours, intervals);
  const auto& pub = published_aucs();
  const double chexnet_mean_same = mean_over_ours(published("chexnet2017"), ours);
  char line[512];
  std::string out;
  auto row = [&](const std::string& name, const std::string& our, const std::string& ci,
                 const std::array<std::string, 4>& p, const std::string& diff) {
    if (intervals)
      std::snprintf(line, sizeof line, "%-20s %7s %-16s %10s %13s %9s %13s %14s\n", name.c_str(), our.c_str(),
                    ci.c_str(), p[0].c_str(), p[1].c_str(), p[2].c_str(), p[3].c_str(), diff.c_str());
    else
      std::snprintf(line, sizeof line, "%-20s %7s %10s %13s %9s %13s %14s\n", name.c_str(), our.c_str(),
                    p[0].c_str(), p[1].c_str(), p[2].c_str(), p[3].c_str(), diff.c_str());
    out += line;
  };
  std::array<std::string, 4> heads;
  for (int j = 0; j < 4; ++j) heads[j] = std::string(pub[j].name);
  row("class", "ours", intervals ? "95% CI" : "", heads, "ours-CheXNet");
  for (int c = 0; c < kNumClasses; ++c) {
    std::array<std::string, 4> p;
    for (int j = 0; j < 4; ++j) p[j] = num(pub[j].auc[c], pub[j].decimals);
    const double d = ours[c] - published("chexnet2017").auc[c];
    row(std::string(kClassNames[c]), num(ours[c], 4), intervals ? ci_text(intervals->per_class[c]) : "", p,
        std::isfinite(d) ? (d >= 0 ? "+" : "") + num(d, 4) : "-");
  }
  const int n = defined_count(ours);
  const double m = mean_auc(ours);
  std::array<std::string, 4> pm;
  for (int j = 0; j < 4; ++j) pm[j] = num(pub[j].mean, 3);
  const std::string mean_name = n == kNumClasses ? "mean" : "mean (" + std::to_string(n) + " classes)";
  if (n == kNumClasses) {
    const double d = m - chexnet_mean_same;
    row(mean_name, num(m, 4), intervals ? ci_text(intervals->mean) : "", pm, (d >= 0 ? "+" : "") + num(d, 4));
  } else {
    // Published means as reported (all 14), then over the classes we scored.
    row("mean (reported, 14)", "", "", pm, "");
    std::array<std::string, 4> ps;
    for (int j = 0; j < 4; ++j) ps[j] = num(mean_over_ours(pub[j], ours), 4);
    const double d = m - chexnet_mean_same;
    row(mean_name, num(m, 4), intervals ? ci_text(intervals->mean) : "", ps,
        std::isfinite(d) ? (d >= 0 ? "+" : "") + num(d, 4) : "-");
  }
  return out;
}

nlohmann::json auc_comparison_json(const std::vector<double>& ours, const BootstrapResult* intervals) {
  check_ours(ours, intervals);
  nlohmann::json j;
  j["classes"] = nlohmann::json::array();
  for (int c = 0; c < kNumClasses; ++c) {
    nlohmann::json row;
    row["name"] = std::string(kClassNames[c]);
    row["auc"] = jnum(ours[c]);
    if (intervals) row["ci"] = {jnum(intervals->per_class[c].lo), jnum(intervals->per_class[c].hi)};
    for (const auto& p : published_aucs()) row["published"][std::string(p.key)] = p.auc[c];
    j["classes"].push_back(row);
  }
  nlohmann::json& mean = j["mean"];
  mean["auc"] = jnum(mean_auc(ours));
  mean["classes"] = defined_count(ours);
  if (intervals) {
    mean["ci"] = {jnum(intervals->mean.lo), jnum(intervals->mean.hi)};
    j["bootstrap"] = {{"resamples", intervals->resamples}, {"seed", intervals->seed}, {"level", intervals->level}};
  }
  for (const auto& p : published_aucs()) {
    mean["published"][std::string(p.key)] = p.mean;
    mean["published_same_classes"][std::string(p.key)] = jnum(mean_over_ours(p, ours));
    j["sources"][std::string(p.key)] = std::string(p.source);
  }
  return j;
}

}  // namespace cxr::io
