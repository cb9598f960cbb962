// Localisation scores of class activation maps (tools/cam_scores.h).
#include "tools/cam_scores.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "engine/error.h"

namespace cxr::app {

using nlohmann::json;

namespace {

bool centre_inside(int64_t x, int64_t y, const PixelBox& b, double tolerance) {
  const double cx = double(x) + 0.5, cy = double(y) + 0.5;  // pixel centre
  return cx >= b.x - tolerance && cx <= b.x + b.w + tolerance && cy >= b.y - tolerance &&
         cy <= b.y + b.h + tolerance;
}

bool inside_any(int64_t x, int64_t y, const std::vector<PixelBox>& boxes, double tolerance) {
  for (const PixelBox& b : boxes)
    if (centre_inside(x, y, b, tolerance)) return true;
  return false;
}

float map_max(const float* map, int64_t n) {
  float mx = 0;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, map[i]);
  return mx;
}

double area(const PixelBox& b) { return b.w > 0 && b.h > 0 ? b.w * b.h : 0.0; }

double intersection(const PixelBox& a, const PixelBox& b) {
  const double w = std::min(a.x + a.w, b.x + b.w) - std::max(a.x, b.x);
  const double h = std::min(a.y + a.h, b.y + b.h) - std::max(a.y, b.y);
  return w > 0 && h > 0 ? w * h : 0.0;
}

// Flood fill of the 8-connected component of `start` among pixels with on[i] (labels it `id`);
// returns its size and bounding box [x0, y0, x1, y1].
int64_t fill_component(const std::vector<uint8_t>& on, int64_t w, int64_t h, int64_t start, int32_t id,
                       std::vector<int32_t>& label, std::array<int64_t, 4>& bb) {
  std::vector<int64_t> stack = {start};
  label[size_t(start)] = id;
  bb = {start % w, start / w, start % w, start / w};
  int64_t size = 0;
  while (!stack.empty()) {
    const int64_t i = stack.back();
    stack.pop_back();
    ++size;
    const int64_t x = i % w, y = i / w;
    bb = {std::min(bb[0], x), std::min(bb[1], y), std::max(bb[2], x), std::max(bb[3], y)};
    for (int64_t dy = -1; dy <= 1; ++dy)
      for (int64_t dx = -1; dx <= 1; ++dx) {
        const int64_t nx = x + dx, ny = y + dy, j = ny * w + nx;
        if (nx < 0 || ny < 0 || nx >= w || ny >= h || !on[size_t(j)] || label[size_t(j)] >= 0) continue;
        label[size_t(j)] = id;
        stack.push_back(j);
      }
  }
  return size;
}

json rate(double sum, int64_t n) { return n > 0 ? json(sum / double(n)) : json(nullptr); }

std::string threshold_key(double t) {
  char b[16];
  std::snprintf(b, sizeof b, "%g", t);
  return b;
}

}  // namespace

bool pointing_hit(const float* map, int64_t w, int64_t h, const std::vector<PixelBox>& boxes,
                  double tolerance) {
  const float mx = map_max(map, w * h);
  if (!(mx > 0)) return false;
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      if (map[y * w + x] == mx && inside_any(x, y, boxes, tolerance)) return true;
  return false;
}

std::array<int64_t, 2> map_peak(const float* map, int64_t w, int64_t h) {
  int64_t best = 0;
  for (int64_t i = 1; i < w * h; ++i)
    if (map[i] > map[best]) best = i;
  return {best % w, best / w};
}

double energy_inside(const float* map, int64_t w, int64_t h, const std::vector<PixelBox>& boxes) {
  double total = 0, inside = 0;
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      const double v = std::max(0.0f, map[y * w + x]);
      total += v;
      if (v > 0 && inside_any(x, y, boxes, 0.0)) inside += v;
    }
  return total > 0 ? inside / total : 0.0;
}

bool cam_box(const float* map, int64_t w, int64_t h, double fraction, PixelBox* out) {
  CXR_CHECK(fraction > 0 && fraction <= 1, "the CAM threshold must be a fraction in (0, 1], got ", fraction);
  const float mx = map_max(map, w * h);
  if (!(mx > 0)) return false;
  const double cut = fraction * double(mx);
  std::vector<uint8_t> on(size_t(w * h));
  for (int64_t i = 0; i < w * h; ++i) on[size_t(i)] = double(map[i]) >= cut;
  std::vector<int32_t> label(size_t(w * h), -1);
  int64_t best_size = 0;
  std::array<int64_t, 4> best{}, bb{};
  int32_t next = 0;
  for (int64_t i = 0; i < w * h; ++i) {  // components in order of their first pixel (row-major)
    if (!on[size_t(i)] || label[size_t(i)] >= 0) continue;
    const int64_t size = fill_component(on, w, h, i, next++, label, bb);
    if (size > best_size) best_size = size, best = bb;  // strict: a tie keeps the earlier one
  }
  *out = PixelBox{double(best[0]), double(best[1]), double(best[2] - best[0] + 1),
                  double(best[3] - best[1] + 1)};
  return true;
}

double box_iou(const PixelBox& a, const PixelBox& b) {
  const double aa = area(a), ab = area(b);
  if (aa <= 0 || ab <= 0) return 0.0;
  const double inter = intersection(a, b);
  return inter / (aa + ab - inter);
}

double box_iobb(const PixelBox& truth, const PixelBox& predicted) {
  const double ap = area(predicted);
  return ap > 0 && area(truth) > 0 ? intersection(truth, predicted) / ap : 0.0;
}

PairScore score_pair(const float* map, int64_t w, int64_t h, const std::vector<PixelBox>& boxes,
                     double tolerance, double cam_fraction) {
  PairScore s;
  s.hit = pointing_hit(map, w, h, boxes, tolerance);
  s.energy = energy_inside(map, w, h, boxes);
  PixelBox predicted;
  s.has_box = cam_box(map, w, h, cam_fraction, &predicted);
  if (!s.has_box) return s;
  for (const PixelBox& truth : boxes) {
    s.iou = std::max(s.iou, box_iou(truth, predicted));
    s.iobb = std::max(s.iobb, box_iobb(truth, predicted));
  }
  return s;
}

// ---- LocalisationTally -------------------------------------------------------------------------

void LocalisationTally::Sums::add(const PairScore& s) {
  n += 1, hits += s.hit;
  energy += s.energy, iou += s.iou, iobb += s.iobb;
  for (size_t t = 0; t < kFoundThresholds.size(); ++t) {
    iou_found[t] += s.iou >= kFoundThresholds[t];
    iobb_found[t] += s.iobb >= kFoundThresholds[t];
  }
}

json LocalisationTally::Sums::to_json() const {
  json iou_f = json::object(), iobb_f = json::object();
  for (size_t t = 0; t < kFoundThresholds.size(); ++t) {
    iou_f[threshold_key(kFoundThresholds[t])] = rate(double(iou_found[t]), n);
    iobb_f[threshold_key(kFoundThresholds[t])] = rate(double(iobb_found[t]), n);
  }
  return {{"pairs", n},
          {"pointing_game", rate(double(hits), n)},
          {"energy_pointing_game", rate(energy, n)},
          {"iou_mean", rate(iou, n)},
          {"iobb_mean", rate(iobb, n)},
          {"iou_found", iou_f},
          {"iobb_found", iobb_f}};
}

LocalisationTally::LocalisationTally(double prob_threshold, double cam_fraction)
    : prob_threshold_(prob_threshold), cam_fraction_(cam_fraction) {
  CXR_CHECK(cam_fraction > 0 && cam_fraction <= 1, "the CAM threshold must be a fraction in (0, 1], got ",
            cam_fraction);
}

void LocalisationTally::add(const std::string& cls, const PairScore& s, bool true_positive) {
  auto it = std::find_if(per_class_.begin(), per_class_.end(), [&](const auto& e) { return e.first == cls; });
  if (it == per_class_.end()) it = per_class_.insert(per_class_.end(), {cls, Split{}});
  for (Split* split : {&overall_, &it->second}) {
    split->all.add(s);
    if (true_positive) split->tp.add(s);
  }
}

json LocalisationTally::to_json() const {
  json per = json::object();
  for (const auto& [cls, split] : per_class_)
    per[cls] = {{"all", split.all.to_json()}, {"true_positive", split.tp.to_json()}};
  json thresholds = json::array();
  for (double t : kFoundThresholds) thresholds.push_back(t);
  return {{"pairs", overall_.all.n},
          {"tp_pairs", overall_.tp.n},
          {"threshold", prob_threshold_},
          {"cam_threshold", cam_fraction_},
          {"iobb_thresholds", thresholds},
          {"overall", {{"all", overall_.all.to_json()}, {"true_positive", overall_.tp.to_json()}}},
          {"per_class", per}};
}

// ---- the table ---------------------------------------------------------------------------------

namespace {

std::string cell(const json& v) {
  if (v.is_null()) return "-";
  char b[16];
  std::snprintf(b, sizeof b, "%.3f", v.get<double>());
  return b;
}

std::string table_row(const std::string& name, const json& split) {
  const json& a = split.at("all");
  const json& tp = split.at("true_positive");
  char line[200];
  std::snprintf(line, sizeof line, "%-20s %6lld %6s %7s %7s %7s %7s %8lld %6s\n", name.c_str(),
                (long long)a.at("pairs").get<int64_t>(), cell(a.at("pointing_game")).c_str(),
                cell(a.at("energy_pointing_game")).c_str(), cell(a.at("iobb_found").at("0.1")).c_str(),
                cell(a.at("iobb_found").at("0.25")).c_str(), cell(a.at("iobb_found").at("0.5")).c_str(),
                (long long)tp.at("pairs").get<int64_t>(), cell(tp.at("pointing_game")).c_str());
  return line;
}

}  // namespace

std::string localisation_table(const json& loc) {
  std::ostringstream os;
  char line[200];
  os << "localisation per (image, class) with boxes: pointing game (PG), energy PG, share of boxes found\n"
     << "at IoBB >= T (box of the map thresholded at " << cell(loc.at("cam_threshold"))
     << " of its maximum); tp: probability >= " << cell(loc.at("threshold")) << "\n";
  std::snprintf(line, sizeof line, "%-20s %6s %6s %7s %7s %7s %7s %8s %6s\n", "class", "pairs", "PG",
                "energy", "T=0.1", "T=0.25", "T=0.5", "tp pairs", "tp PG");
  os << line;
  for (const auto& [name, split] : loc.at("per_class").items()) os << table_row(name, split);
  os << table_row("overall", loc.at("overall"));
  return os.str();
}

}  // namespace cxr::app
