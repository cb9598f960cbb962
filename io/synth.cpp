#include "io/synth.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "io/fileutil.h"
#include "io/image.h"
#include "io/progress.h"
#include "io/split.h"

namespace cxr::io {

const double kNihPrevalence[kNumClasses] = {0.103, 0.025, 0.119, 0.177, 0.052, 0.056, 0.013,
                                            0.047, 0.042, 0.021, 0.022, 0.015, 0.030, 0.002};

namespace {

enum : int { ATE, CAR, EFF, INF, MAS, NOD, PNA, PTX, CON, EDE, EMP, FIB, PLT, HER };
// Findings that persist over a patient's follow-ups.
constexpr bool kChronic[kNumClasses] = {false, true, false, false, true, true, false,
                                        false, false, false, true, true, true, true};

uint64_t name_hash(const std::string& s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (char c : s) h = (h ^ static_cast<uint8_t>(c)) * 0x100000001B3ull;
  return h;
}

// ---- drawing on a float canvas, coordinates in units of the image side ----------------------------
// A rectangle in units of the image side: a finding's box.
struct Rect {
  double x0, y0, x1, y1;
  bool holds(double x, double y) const { return x >= x0 && x <= x1 && y >= y0 && y <= y1; }
  Rect grown(const Rect& o) const {
    return {std::min(x0, o.x0), std::min(y0, o.y0), std::max(x1, o.x1), std::max(y1, o.y1)};
  }
};

struct Canvas {
  int S;
  std::vector<float> v;
  Rect clip{0, 0, 1, 1};  // pixels whose centre lies outside are left alone (a finding's box)
  explicit Canvas(int s) : S(s), v(static_cast<size_t>(s) * s, 0.f) {}
  float& at(int x, int y) { return v[static_cast<size_t>(y) * S + x]; }
  template <typename F>
  void each(double x0, double y0, double x1, double y1, F f) {  // f(x, y in units, pixel ref)
    const int a = std::max(0, static_cast<int>(x0 * S)), b = std::min(S - 1, static_cast<int>(x1 * S) + 1);
    const int c = std::max(0, static_cast<int>(y0 * S)), d = std::min(S - 1, static_cast<int>(y1 * S) + 1);
    for (int y = c; y <= d; ++y)
      for (int x = a; x <= b; ++x)
        if (clip.holds((x + 0.5) / S, (y + 0.5) / S)) f((x + 0.5) / S, (y + 0.5) / S, at(x, y));
  }
  // The support of gauss(): +-3 sigma (pixel centres outside it are not touched).
  static Rect gauss_support(double cx, double cy, double sx, double sy) {
    return {cx - 3 * sx, cy - 3 * sy, cx + 3 * sx, cy + 3 * sy};
  }
  void gauss(double cx, double cy, double sx, double sy, double amp) {
    const Rect support = gauss_support(cx, cy, sx, sy);
    each(cx - 3 * sx, cy - 3 * sy, cx + 3 * sx, cy + 3 * sy, [&](double x, double y, float& p) {
      if (!support.holds(x, y)) return;
      const double dx = (x - cx) / sx, dy = (y - cy) / sy;
      p += static_cast<float>(amp * std::exp(-0.5 * (dx * dx + dy * dy)));
    });
  }
  // The support of ellipse(): the weight is > 0 where (r - 1) * min(rx, ry) < edge / 2, i.e. within
  // r < 1 + edge / (2 min(rx, ry)) of the centre.
  static Rect ellipse_support(double cx, double cy, double rx, double ry, double edge) {
    const double R = 1 + 0.5 * edge / std::min(rx, ry);
    return {cx - rx * R, cy - ry * R, cx + rx * R, cy + ry * R};
  }
  // Ellipse blended towards `value` with a soft edge of `edge` (units).
  void ellipse(double cx, double cy, double rx, double ry, double value, double edge) {
    each(cx - rx - edge, cy - ry - edge, cx + rx + edge, cy + ry + edge, [&](double x, double y, float& p) {
      const double r = std::sqrt(((x - cx) / rx) * ((x - cx) / rx) + ((y - cy) / ry) * ((y - cy) / ry));
      const double d = (r - 1.0) * std::min(rx, ry);  // ~distance outside, units
      const double w = std::clamp(0.5 - d / edge, 0.0, 1.0);
      p = static_cast<float>(p * (1 - w) + value * w);
    });
  }
  void disc_add(double cx, double cy, double r, double amp, double edge) {
    each(cx - r - edge, cy - r - edge, cx + r + edge, cy + r + edge, [&](double x, double y, float& p) {
      const double d = std::hypot(x - cx, y - cy) - r;
      p += static_cast<float>(amp * std::clamp(0.5 - d / edge, 0.0, 1.0));
    });
  }
};

struct Lung {
  double cx, cy, rx, ry;
  int side;  // -1: image left (patient's right), +1: image right
  double r(double x, double y) const { return std::hypot((x - cx) / rx, (y - cy) / ry); }
  double lateral(double x) const { return (x - cx) * side; }  // > 0 towards the chest wall
};

void add_box(std::vector<BBox>* boxes, const std::string& image, int cls, double x0, double y0, double x1, double y1) {
  if (!boxes) return;
  BBox b;
  b.image = image, b.cls = cls;
  x0 = std::clamp(x0, 0.0, 1.0), x1 = std::clamp(x1, 0.0, 1.0), y0 = std::clamp(y0, 0.0, 1.0), y1 = std::clamp(y1, 0.0, 1.0);
  b.x = x0 * 1024, b.y = y0 * 1024, b.w = (x1 - x0) * 1024, b.h = (y1 - y0) * 1024;  // official 1024 scale
  boxes->push_back(b);
}

void add_box(std::vector<BBox>* boxes, const std::string& image, int cls, const Rect& r) {
  add_box(boxes, image, cls, r.x0, r.y0, r.x1, r.y1);
}

// The noise-free drawing of one image: body, lungs, heart, then each finding of the row (their draws
// from `rng` in this order). synth_image() passes it through exposure, noise and quantisation.
Canvas draw_canvas(const LabelRow& row, int S, Rng& rng, std::vector<BBox>* boxes) {
  auto U = [&](double a, double b) { return a + (b - a) * rng.uniform(); };
  const auto& L = row.labels;
  Canvas c(S);
  const double jx = U(-0.02, 0.02), jy = U(-0.02, 0.02), sc = U(0.95, 1.05);
  // Body and lungs.
  c.each(0, 0, 1, 1, [&](double, double, float& p) { p = 0.08f; });
  c.ellipse(0.5 + jx, 0.56 + jy, 0.44 * sc, 0.52 * sc, 0.52, 0.02);
  const double emph = L[EMP] ? 1.13 : 1.0;
  const double lung_val = L[EMP] ? 0.07 : 0.2;
  Lung lungs[2] = {{0.32 + jx - (emph - 1) * 0.05, 0.45 + jy, 0.13 * sc * emph, 0.27 * sc * emph, -1},
                   {0.68 + jx + (emph - 1) * 0.05, 0.45 + jy, 0.13 * sc * emph, 0.27 * sc * emph, +1}};
  for (const Lung& l : lungs) c.ellipse(l.cx, l.cy, l.rx, l.ry, lung_val, 0.015);
  // Lung texture (value noise, 12 cells) and ribs, inside the lungs only.
  const int G = 13;
  std::vector<double> grid(G * G);
  for (auto& g : grid) g = rng.uniform();
  const double tex_amp = L[EMP] ? 0.03 : 0.09;
  const double rib_phase = U(0, 1);
  for (const Lung& l : lungs)
    c.each(l.cx - l.rx, l.cy - l.ry, l.cx + l.rx, l.cy + l.ry, [&](double x, double y, float& p) {
      if (l.r(x, y) > 1) return;
      const double gx = x * (G - 1), gy = y * (G - 1);
      const int ix = std::min(G - 2, static_cast<int>(gx)), iy = std::min(G - 2, static_cast<int>(gy));
      const double fx = gx - ix, fy = gy - iy;
      const double n = grid[iy * G + ix] * (1 - fx) * (1 - fy) + grid[iy * G + ix + 1] * fx * (1 - fy) +
                       grid[(iy + 1) * G + ix] * (1 - fx) * fy + grid[(iy + 1) * G + ix + 1] * fx * fy;
      const double dx = (x - l.cx) / l.rx;
      const double rib = std::pow(std::max(0.0, std::cos(6.283 * ((y - 0.12 * dx * dx) / 0.065 + rib_phase))), 8);
      p += static_cast<float>(tex_amp * (n - 0.5) + 0.1 * rib);
    });
  // Mediastinum, spine, heart.
  c.ellipse(0.5 + jx, 0.38 + jy, 0.055, 0.25, 0.7, 0.01);
  const double hrx = (L[CAR] ? 0.205 : 0.135) * sc, hry = (L[CAR] ? 0.135 : 0.11) * sc;
  const double hcx = 0.535 + jx + (L[CAR] ? 0.02 : 0.0), hcy = 0.63 + jy;
  c.ellipse(hcx, hcy, hrx, hry, 0.74, 0.012);
  // The enlarged heart's soft edge included (the normal heart it replaces lies inside it).
  if (L[CAR]) add_box(boxes, row.image, CAR, Canvas::ellipse_support(hcx, hcy, hrx, hry, 0.012));
  auto pick = [&]() -> const Lung& { return lungs[rng.below(2)]; };

  if (L[EFF]) {  // fluid at a lung base, meniscus rising laterally
    const Lung& l = pick();
    const double level = l.cy + U(0.45, 0.6) * l.ry;
    c.each(l.cx - l.rx, level - 0.12, l.cx + l.rx, l.cy + l.ry, [&](double x, double y, float& p) {
      if (l.r(x, y) > 1.02) return;
      const double t = std::max(0.0, l.lateral(x) / l.rx);
      if (y > level - 0.1 * t * t) p = 0.66f;
    });
    // Drawn where r <= 1.02, so t <= 1.02 and the meniscus rises to level - 0.1 * 1.02^2.
    add_box(boxes, row.image, EFF, l.cx - 1.02 * l.rx, level - 0.1 * 1.02 * 1.02, l.cx + 1.02 * l.rx, l.cy + 1.02 * l.ry);
  }
  if (L[ATE]) {  // plate-like band, lower zone
    const Lung& l = pick();
    const double cx = l.cx + U(-0.3, 0.3) * l.rx, cy = l.cy + U(0.2, 0.4) * l.ry, w = 0.075, h = 0.012, tilt = U(-0.3, 0.3);
    c.each(cx - w, cy - w, cx + w, cy + w, [&](double x, double y, float& p) {
      const double u = (x - cx), v = (y - cy) - tilt * u;
      if (std::fabs(u) < w && std::fabs(v) < h) p += 0.32f;
    });
    const double half_h = h + std::fabs(tilt) * w;  // the tilted band's vertical reach
    add_box(boxes, row.image, ATE, cx - w, cy - half_h, cx + w, cy + half_h);
  }
  if (L[INF]) {  // patchy soft opacities, mid zone
    const Lung& l = pick();
    const double cx = l.cx + U(-0.3, 0.3) * l.rx, cy = l.cy + U(-0.2, 0.15) * l.ry;
    const int n = 5 + static_cast<int>(rng.below(4));
    Rect box{cx, cy, cx, cy};
    for (int k = 0; k < n; ++k) {  // draws in the order GCC evaluated the former one-line call's arguments
      const double sy = U(0.012, 0.02), sx = U(0.012, 0.02), by = cy + U(-0.07, 0.07), bx = cx + U(-0.06, 0.06);
      c.gauss(bx, by, sx, sy, 0.16);
      box = box.grown(Canvas::gauss_support(bx, by, sx, sy));
    }
    add_box(boxes, row.image, INF, box);
  }
  if (L[MAS]) {
    const Lung& l = pick();
    const double r = U(0.06, 0.08), cx = l.cx + U(-0.35, 0.35) * l.rx, cy = l.cy + U(-0.5, 0.3) * l.ry;
    c.disc_add(cx, cy, r, 0.34, 0.006);
    const double reach = r + 0.5 * 0.006;  // the soft edge's outer half
    add_box(boxes, row.image, MAS, cx - reach, cy - reach, cx + reach, cy + reach);
  }
  if (L[NOD]) {
    const Lung& l = pick();
    const double r = U(0.022, 0.03), cx = l.cx + U(-0.6, 0.6) * l.rx, cy = l.cy + U(-0.6, 0.4) * l.ry;
    c.disc_add(cx, cy, r, 0.42, 0.004);
    const double reach = r + 0.5 * 0.004;  // the soft edge's outer half
    add_box(boxes, row.image, NOD, cx - reach, cy - reach, cx + reach, cy + reach);
  }
  if (L[PNA]) {  // large fuzzy lower-lobe opacity
    const Lung& l = pick();
    const double cx = l.cx + U(-0.15, 0.15) * l.rx, cy = l.cy + U(0.25, 0.45) * l.ry;
    c.gauss(cx, cy, 0.055, 0.06, 0.3);  // still 0.04 (10 grey levels) at 2 sigma: the box is its 3-sigma support
    add_box(boxes, row.image, PNA, Canvas::gauss_support(cx, cy, 0.055, 0.06));
  }
  if (L[PTX]) {  // apex: no texture, dark, bright pleural line
    const Lung& l = pick();
    const double ccx = l.cx - 0.25 * l.rx * l.side, ccy = l.cy + 0.15 * l.ry, crx = l.rx * 0.75, cry = l.ry * 0.85;
    const Rect box{l.cx - l.rx, l.cy - l.ry, l.cx + l.rx, l.cy};
    c.clip = box;  // each() reaches a pixel row past l.cy
    c.each(l.cx - l.rx, l.cy - l.ry, l.cx + l.rx, l.cy, [&](double x, double y, float& p) {
      if (l.r(x, y) > 1) return;
      const double rc = std::hypot((x - ccx) / crx, (y - ccy) / cry);
      if (rc > 1.06) p = 0.04f;
      else if (rc > 1.0) p = 0.6f;
    });
    c.clip = Rect{0, 0, 1, 1};
    add_box(boxes, row.image, PTX, box);
  }
  if (L[CON]) {  // homogeneous sharp-edged dense patch, upper/mid zone
    const Lung& l = pick();
    const double cx = l.cx + U(-0.2, 0.2) * l.rx, cy = l.cy + U(-0.45, -0.1) * l.ry, w = 0.055, h = 0.045;
    c.each(cx - w, cy - h, cx + w, cy + h, [&](double x, double y, float& p) {
      if (std::pow(std::fabs(x - cx) / w, 4) + std::pow(std::fabs(y - cy) / h, 4) < 1) p = 0.62f;
    });
    add_box(boxes, row.image, CON, cx - w, cy - h, cx + w, cy + h);
  }
  if (L[EDE]) {  // bilateral perihilar haze
    for (const Lung& l : lungs) c.gauss(l.cx - 0.05 * l.side, l.cy + 0.02, 0.06, 0.1, 0.22);
    // The two hazes' 3-sigma supports (0.22 * e^-2 = 0.03 at 2 sigma is still visible).
    const Rect left = Canvas::gauss_support(lungs[0].cx + 0.05, lungs[0].cy + 0.02, 0.06, 0.1);
    add_box(boxes, row.image, EDE, left.grown(Canvas::gauss_support(lungs[1].cx - 0.05, lungs[1].cy + 0.02, 0.06, 0.1)));
  }
  if (L[EMP])  // both enlarged lungs with their soft edges (the normal lungs lie inside)
    add_box(boxes, row.image, EMP,
            Canvas::ellipse_support(lungs[0].cx, lungs[0].cy, lungs[0].rx, lungs[0].ry, 0.015)
                .grown(Canvas::ellipse_support(lungs[1].cx, lungs[1].cy, lungs[1].rx, lungs[1].ry, 0.015)));
  if (L[FIB]) {  // coarse reticular net, upper outer zone
    const Lung& l = pick();
    const double cx = l.cx + 0.4 * l.rx * l.side, cy = l.cy - 0.4 * l.ry, rx = 0.07, ry = 0.1, sp = 0.028;
    c.each(cx - rx, cy - ry, cx + rx, cy + ry, [&](double x, double y, float& p) {
      if (std::hypot((x - cx) / rx, (y - cy) / ry) > 1 || l.r(x, y) > 1) return;
      const double fx = std::fabs(std::fmod(x + 10, sp) / sp - 0.5), fy = std::fabs(std::fmod(y + 10, sp) / sp - 0.5);
      if (fx > 0.36 || fy > 0.36) p += 0.22f;
    });
    add_box(boxes, row.image, FIB, cx - rx, cy - ry, cx + rx, cy + ry);
  }
  if (L[PLT]) {  // lateral chest-wall band, upper half
    const Lung& l = pick();
    const double x0 = l.side > 0 ? l.cx + 0.4 * l.rx : l.cx - l.rx, x1 = l.side > 0 ? l.cx + l.rx : l.cx - 0.4 * l.rx;
    const Rect box{x0, l.cy - l.ry, x1, l.cy + 0.1 * l.ry};
    c.clip = box;  // the band's apical end (lateral offset < 0.4 rx) lies outside the lateral box
    c.each(l.cx - l.rx, l.cy - l.ry, l.cx + l.rx, l.cy + 0.1 * l.ry, [&](double x, double y, float& p) {
      const double r = l.r(x, y);
      if (r > 0.84 && r <= 1.0 && l.lateral(x) > 0 && y < l.cy + 0.1 * l.ry) p = 0.64f;
    });
    c.clip = Rect{0, 0, 1, 1};
    add_box(boxes, row.image, PLT, box);
  }
  if (L[HER]) {  // retrocardiac gas bubble with air-fluid level
    const double cx = hcx - 0.02 + U(-0.02, 0.02), cy = hcy + U(-0.01, 0.03), r = U(0.05, 0.065);
    c.each(cx - r - 0.01, cy - r - 0.01, cx + r + 0.01, cy + r + 0.01, [&](double x, double y, float& p) {
      const double d = std::hypot(x - cx, y - cy);
      if (d < r - 0.008) p = y > cy + 0.2 * r ? 0.72f : 0.16f;
      else if (d < r) p = 0.92f;
    });
    add_box(boxes, row.image, HER, cx - r, cy - r, cx + r, cy + r);
  }
  return c;
}

}  // namespace

std::vector<float> synth_canvas(const LabelRow& row, int S, uint64_t seed, std::vector<BBox>* boxes) {
  Rng rng(mix64(seed ^ name_hash(row.image)));
  return draw_canvas(row, S, rng, boxes).v;
}

std::vector<uint8_t> synth_image(const LabelRow& row, int S, uint64_t seed, std::vector<BBox>* boxes) {
  Rng rng(mix64(seed ^ name_hash(row.image)));
  const Canvas c = draw_canvas(row, S, rng, boxes);
  // Exposure, noise, quantisation: per pixel, from the draws that follow the drawing's.
  auto U = [&](double a, double b) { return a + (b - a) * rng.uniform(); };
  const double gain = U(0.85, 1.15), bias = U(-0.06, 0.06), noise = U(0.01, 0.03);
  std::vector<uint8_t> out(static_cast<size_t>(S) * S);
  for (size_t i = 0; i < out.size(); ++i) {
    const double v = c.v[i] * gain + bias + noise * rng.normal();
    out[i] = static_cast<uint8_t>(std::clamp(v, 0.0, 1.0) * 255.0 + 0.5);
  }
  return out;
}

SynthResult synth_labels(const SynthOptions& opt) {
  CXR_CHECK(opt.patients > 0 && opt.size >= 32, "synth: patients ", opt.patients, ", size ", opt.size, " (>= 32)");
  Rng rng(mix64(opt.seed ^ 0x5197ull));
  SynthResult res;
  for (int p = 1; p <= opt.patients; ++p) {
    const int n = 1 + std::min(11, static_cast<int>(-std::log(1.0 - rng.uniform()) * 2.2));
    std::array<uint8_t, kNumClasses> chronic{};
    for (int k = 0; k < kNumClasses; ++k)
      if (kChronic[k]) chronic[k] = rng.uniform() < kNihPrevalence[k] / 0.8;
    const int age = 20 + static_cast<int>(rng.below(65));
    const std::string gender = rng.uniform() < 0.56 ? "M" : "F";
    for (int f = 0; f < n; ++f) {
      LabelRow r;
      char name[32];
      std::snprintf(name, sizeof name, "%08d_%03d.png", p, f);
      r.image = name, r.patient_id = p, r.follow_up = f, r.age = age + f / 4, r.gender = gender;
      auto& L = r.labels;
      for (int k = 0; k < kNumClasses; ++k)
        L[k] = kChronic[k] ? (chronic[k] && rng.uniform() < 0.8) : rng.uniform() < kNihPrevalence[k];
      // NIH-like co-occurrences.
      if (L[EDE] && rng.uniform() < 0.4) L[EFF] = 1;
      if (L[EDE] && rng.uniform() < 0.2) L[CAR] = 1;
      if (L[EFF] && rng.uniform() < 0.2) L[ATE] = 1;
      if (L[PNA] && rng.uniform() < 0.4) L[INF] = 1;
      if (L[CON] && rng.uniform() < 0.25) L[INF] = 1;
      if (L[MAS] && rng.uniform() < 0.15) L[NOD] = 1;
      int nl = 0;
      for (auto l : L) nl += l;
      r.view_position = (nl >= 2 && rng.uniform() < 0.6) || rng.uniform() < 0.3 ? "AP" : "PA";
      r.width = r.height = opt.size;
      r.spacing_x = r.spacing_y = 0.143 * 1024.0 / opt.size;
      res.rows.push_back(r);
    }
  }
  // Floor: every class gets at least max(12, 0.5% of the images) positives, added to random images.
  const int64_t N = static_cast<int64_t>(res.rows.size());
  const int64_t floor_n = std::min<int64_t>(N, std::max<int64_t>(12, N / 200));
  for (int k = 0; k < kNumClasses; ++k) {
    int64_t have = 0;
    for (auto& r : res.rows) have += r.labels[k];
    for (int guard = 0; have < floor_n && guard < 100 * N; ++guard) {
      LabelRow& r = res.rows[rng.below(N)];
      if (!r.labels[k]) r.labels[k] = 1, ++have;
    }
  }
  return res;
}

SynthResult synth_dataset(const SynthOptions& opt) {
  namespace fs = std::filesystem;
  SynthResult res = synth_labels(opt);
  res.images_dir = opt.out + "/images";
  res.csv = opt.out + "/Data_Entry_2017_v2020.csv";
  res.bbox_csv = opt.out + "/BBox_List_2017.csv";
  fs::create_directories(res.images_dir);
  const int64_t N = static_cast<int64_t>(res.rows.size());
  std::vector<std::vector<BBox>> boxes(N);
  const int threads = opt.threads > 0 ? opt.threads : omp_get_num_procs();
  Progress progress(N, "synth", "images", opt.quiet);
  const int64_t block = 256;
  for (int64_t b0 = 0; b0 < N; b0 += block) {
    const int64_t nb = std::min(block, N - b0);
    std::string error;  // exceptions must not leave an OpenMP region
#pragma omp parallel for num_threads(threads) schedule(dynamic, 4)
    for (int64_t i = b0; i < b0 + nb; ++i) {
      try {
        std::vector<uint8_t> px = synth_image(res.rows[i], opt.size, opt.seed, &boxes[i]);
        write_png(res.images_dir + "/" + res.rows[i].image, px.data(), opt.size, opt.size, 1);
      } catch (const std::exception& e) {
#pragma omp critical(cxr_synth_error)
        if (error.empty()) error = e.what();
      }
    }
    if (!error.empty()) throw Error(error);
    progress.update(b0 + nb);
  }
  progress.finish();
  for (auto& b : boxes) res.boxes.insert(res.boxes.end(), b.begin(), b.end());
  write_label_csv(res.csv, res.rows);
  write_bbox_csv(res.bbox_csv, res.boxes);
  const nlohmann::json marker = {
      {"generator", "cxr synth"}, {"synthetic", true},  {"patients", opt.patients}, {"size", opt.size},
      {"seed", opt.seed},         {"images", N},        {"boxes", res.boxes.size()},
      {"note", "procedurally drawn chest-like images (io/synth.h), not patient data"}};
  write_text_file(opt.out + "/" + kSynthMarker, marker.dump(2) + "\n");
  return res;
}

std::string synth_marker_of(const std::string& file) {
  namespace fs = std::filesystem;
  if (file.empty()) return "";
  std::error_code ec;
  const fs::path folder = fs::absolute(fs::path(file), ec).parent_path();
  if (ec) return "";
  for (const fs::path& dir : {folder, folder.parent_path()}) {
    const fs::path marker = dir / kSynthMarker;
    std::error_code missing;
    if (fs::is_regular_file(marker, missing)) return marker.string();
  }
  return "";
}

}  // namespace cxr::io
