// Published per-class ROC AUCs on ChestX-ray14 (as data), and our AUCs formatted beside them as a text
// table and as JSON (the comparison `cxr evaluate` prints and writes).
#pragma once
#include <array>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "io/classes.h"
#include "io/metrics.h"

namespace cxr::io {

// One published column: AUC per class in io/classes.h order, and the mean the source reports.
struct PublishedAucs {
  std::string_view key;     // JSON key: "wang2017", "chexnet2017", "arnoweng", "coursera_week1"
  std::string_view name;    // column header
  std::string_view source;  // citation
  std::array<double, kNumClasses> auc;
  double mean;
  int decimals;             // as published (3 or 4)
  std::string_view split = "";  // the split it was measured on, where FACTS.md records it ("" where not)
};

// The four columns of the table in ../shared/guide/FACTS.md, in that order.
const std::array<PublishedAucs, 4>& published_aucs();
// The column with that key; throws cxr::Error listing the keys.
const PublishedAucs& published(std::string_view key);

// Wang et al. 2017 (ChestX-ray8, arXiv:1705.02315 v5, Table 4): the share of the NIH boxes found at
// T(IoBB) = 0.1, 0.25 and 0.5 per class (IoBB = area(box & map box) / area(map box)); NaN for the six
// classes without boxes. The table gives no values at 0.75 and 0.9.
struct PublishedIobbFound {
  std::string_view source;
  std::array<double, 3> thresholds;
  std::array<std::array<double, 3>, kNumClasses> found;
};
const PublishedIobbFound& wang2017_iobb_found();

// Our AUCs (kNumClasses entries in io/classes.h order, NaN for classes without both labels) beside the
// published ones: one row per class, then the mean. Our mean is over the classes we could score; when
// some are missing, a second row gives each published mean over the same classes, so that like is
// compared with like. `intervals` (optional) adds our bootstrap 95% interval; the last column is ours
// minus CheXNet's.
std::string format_auc_comparison(const std::vector<double>& ours, const BootstrapResult* intervals = nullptr);

// The same as JSON:
// {"classes": [{"name", "auc" (null if undefined), "ci": [lo, hi] (with intervals),
//               "published": {key: auc}}...],
//  "mean": {"auc", "classes": n, "ci": [lo, hi], "published": {key: mean as reported},
//           "published_same_classes": {key: mean over our n classes}},
//  "sources": {key: citation}}
nlohmann::json auc_comparison_json(const std::vector<double>& ours, const BootstrapResult* intervals = nullptr);

}  // namespace cxr::io
