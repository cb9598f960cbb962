#include "io/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "engine/error.h"
#include "io/classes.h"
#include "io/fileutil.h"

#ifdef CXR_HAVE_CAIRO
#include <cairo.h>
#endif

namespace cxr::io {

Color palette_color(int i) {
  static const Color kPalette[20] = {
      {31, 119, 180}, {255, 127, 14}, {44, 160, 44},   {214, 39, 40},   {148, 103, 189},
      {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34},  {23, 190, 207},
      {0, 0, 128},    {128, 0, 0},    {0, 100, 0},     {255, 187, 120}, {152, 223, 138},
      {255, 152, 150}, {197, 176, 213}, {196, 156, 148}, {247, 182, 210}, {158, 218, 229}};
  return kPalette[((i % 20) + 20) % 20];
}

namespace {

constexpr double kFont = 12, kTitleFont = 15, kTickFont = 11;
const Color kBlack{0, 0, 0}, kGrid{225, 225, 225}, kGrey{150, 150, 150}, kWhite{255, 255, 255};

enum class Anchor { kStart, kMiddle, kEnd };

// Text width estimate for layout (DejaVu Sans averages ~0.6 em; used by both canvases so that the SVG
// and the PNG have the same layout).
double text_width(const std::string& s, double size) { return 0.6 * size * static_cast<double>(s.size()); }

// What a chart draws with. Coordinates in pixels, y down.
class Canvas {
 public:
  virtual ~Canvas() = default;
  virtual void rect(double x, double y, double w, double h, Color fill, const Color* stroke) = 0;
  virtual void line(double x0, double y0, double x1, double y1, Color c, double width, bool dashed) = 0;
  // One series: polylines (breaks between them), clipped to the plot rectangle.
  virtual void series(const std::vector<std::vector<std::pair<double, double>>>& parts, const Series& s,
                      double cx, double cy, double cw, double ch) = 0;
  virtual void dot(double x, double y, double r, Color c) = 0;
  virtual void text(double x, double y, const std::string& s, double size, Anchor a, bool vertical = false,
                    bool bold = false) = 0;
};

// ---- SVG --------------------------------------------------------------------------------------------
std::string xml_escape(const std::string& s) {
  std::string o;
  for (char ch : s) {
    switch (ch) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      default: o += ch;
    }
  }
  return o;
}

std::string rgb(Color c) {
  char b[24];
  std::snprintf(b, sizeof b, "#%02x%02x%02x", c.r, c.g, c.b);
  return b;
}

std::string f2(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f", v);
  return b;
}

class SvgCanvas : public Canvas {
 public:
  SvgCanvas(int w, int h) {
    out_ << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << w
         << "\" height=\"" << h << "\" viewBox=\"0 0 " << w << " " << h
         << "\" font-family=\"DejaVu Sans, Arial, sans-serif\">\n";
  }
  std::string finish() {
    out_ << "</svg>\n";
    return out_.str();
  }
  void rect(double x, double y, double w, double h, Color fill, const Color* stroke) override {
    out_ << "<rect x=\"" << f2(x) << "\" y=\"" << f2(y) << "\" width=\"" << f2(w) << "\" height=\"" << f2(h)
         << "\" fill=\"" << rgb(fill) << "\"";
    if (stroke) out_ << " stroke=\"" << rgb(*stroke) << "\"";
    out_ << "/>\n";
  }
  void line(double x0, double y0, double x1, double y1, Color c, double width, bool dashed) override {
    out_ << "<line x1=\"" << f2(x0) << "\" y1=\"" << f2(y0) << "\" x2=\"" << f2(x1) << "\" y2=\"" << f2(y1)
         << "\" stroke=\"" << rgb(c) << "\" stroke-width=\"" << f2(width) << "\"" << (dashed ? " stroke-dasharray=\"5,4\"" : "")
         << "/>\n";
  }
  void series(const std::vector<std::vector<std::pair<double, double>>>& parts, const Series& s, double cx,
              double cy, double cw, double ch) override {
    const int id = ++clips_;
    out_ << "<clipPath id=\"clip" << id << "\"><rect x=\"" << f2(cx) << "\" y=\"" << f2(cy) << "\" width=\"" << f2(cw)
         << "\" height=\"" << f2(ch) << "\"/></clipPath>\n";
    out_ << "<path class=\"series\" clip-path=\"url(#clip" << id << ")\" fill=\"none\" stroke=\"" << rgb(s.color)
         << "\" stroke-width=\"" << f2(s.width) << "\" stroke-linejoin=\"round\""
         << (s.dashed ? " stroke-dasharray=\"6,4\"" : "") << " d=\"";
    for (const auto& part : parts)
      for (size_t i = 0; i < part.size(); ++i)
        out_ << (i ? "L" : "M") << f2(part[i].first) << " " << f2(part[i].second) << (i + 1 < part.size() ? " " : "");
    out_ << "\"><title>" << xml_escape(s.label) << "</title></path>\n";
  }
  void dot(double x, double y, double r, Color c) override {
    out_ << "<circle cx=\"" << f2(x) << "\" cy=\"" << f2(y) << "\" r=\"" << f2(r) << "\" fill=\"" << rgb(c) << "\"/>\n";
  }
  void text(double x, double y, const std::string& s, double size, Anchor a, bool vertical, bool bold) override {
    out_ << "<text x=\"" << f2(x) << "\" y=\"" << f2(y) << "\" font-size=\"" << f2(size) << "\"";
    if (a != Anchor::kStart) out_ << " text-anchor=\"" << (a == Anchor::kMiddle ? "middle" : "end") << "\"";
    if (bold) out_ << " font-weight=\"bold\"";
    if (vertical) out_ << " transform=\"rotate(-90 " << f2(x) << " " << f2(y) << ")\"";
    out_ << ">" << xml_escape(s) << "</text>\n";
  }

 private:
  std::ostringstream out_;
  int clips_ = 0;
};

// ---- cairo ------------------------------------------------------------------------------------------
#ifdef CXR_HAVE_CAIRO
class CairoCanvas : public Canvas {
 public:
  explicit CairoCanvas(cairo_t* cr) : cr_(cr) {}
  void rect(double x, double y, double w, double h, Color fill, const Color* stroke) override {
    cairo_rectangle(cr_, x, y, w, h);
    set(fill);
    cairo_fill_preserve(cr_);
    if (stroke) {
      set(*stroke);
      cairo_set_line_width(cr_, 1.0);
      cairo_stroke(cr_);
    }
    cairo_new_path(cr_);
  }
  void line(double x0, double y0, double x1, double y1, Color c, double width, bool dashed) override {
    cairo_move_to(cr_, x0, y0);
    cairo_line_to(cr_, x1, y1);
    stroke(c, width, dashed ? 5.0 : 0.0);
  }
  void series(const std::vector<std::vector<std::pair<double, double>>>& parts, const Series& s, double cx,
              double cy, double cw, double ch) override {
    cairo_save(cr_);
    cairo_rectangle(cr_, cx, cy, cw, ch);
    cairo_clip(cr_);
    for (const auto& part : parts)
      for (size_t i = 0; i < part.size(); ++i)
        (i ? cairo_line_to : cairo_move_to)(cr_, part[i].first, part[i].second);
    cairo_set_line_join(cr_, CAIRO_LINE_JOIN_ROUND);
    stroke(s.color, s.width, s.dashed ? 6.0 : 0.0);
    cairo_restore(cr_);
  }
  void dot(double x, double y, double r, Color c) override {
    cairo_arc(cr_, x, y, r, 0, 2 * M_PI);
    set(c);
    cairo_fill(cr_);
  }
  void text(double x, double y, const std::string& s, double size, Anchor a, bool vertical, bool bold) override {
    cairo_save(cr_);
    cairo_select_font_face(cr_, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL,
                           bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr_, size);
    cairo_text_extents_t e;
    cairo_text_extents(cr_, s.c_str(), &e);
    const double shift = a == Anchor::kStart ? 0.0 : a == Anchor::kMiddle ? e.x_advance / 2 : e.x_advance;
    cairo_translate(cr_, x, y);
    if (vertical) cairo_rotate(cr_, -M_PI / 2);
    cairo_move_to(cr_, -shift, 0);
    set(kBlack);
    cairo_show_text(cr_, s.c_str());
    cairo_restore(cr_);
  }

 private:
  void set(Color c) { cairo_set_source_rgb(cr_, c.r / 255.0, c.g / 255.0, c.b / 255.0); }
  void stroke(Color c, double width, double dash) {
    set(c);
    cairo_set_line_width(cr_, width);
    if (dash > 0) {
      const double d[2] = {dash, dash * 0.7};
      cairo_set_dash(cr_, d, 2, 0);
    }
    cairo_stroke(cr_);
    cairo_set_dash(cr_, nullptr, 0, 0);
  }
  cairo_t* cr_;
};
#endif

// ---- layout -------------------------------------------------------------------------------------------
struct Axis {
  double lo, hi, step;
};

// A "nice" tick step (1, 2, 2.5 (not for integers) or 5 x 10^k) giving about `target` intervals over `range`.
double nice_step(double range, int target, bool integer) {
  const double raw = range / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag * 10;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (raw <= m * mag && !(integer && m == 2.5)) {
      step = m * mag;
      break;
    }
  return integer ? std::max(1.0, std::round(step)) : step;
}

// Range from the fixed ends or the finite data (padded 5%, then out to whole steps).
Axis make_axis(double fixed_lo, double fixed_hi, double data_lo, double data_hi, bool integer) {
  double lo = std::isfinite(fixed_lo) ? fixed_lo : data_lo, hi = std::isfinite(fixed_hi) ? fixed_hi : data_hi;
  if (!std::isfinite(lo) || !std::isfinite(hi)) lo = 0, hi = 1;  // no data
  if (hi - lo <= 0) {
    const double pad = std::max(std::fabs(lo) * 0.1, integer ? 1.0 : 0.05);
    lo -= pad;
    hi += pad;
  }
  const double pad = 0.05 * (hi - lo);
  if (!std::isfinite(fixed_lo)) lo -= pad;
  if (!std::isfinite(fixed_hi)) hi += pad;
  const double step = nice_step(hi - lo, 5, integer);
  if (!std::isfinite(fixed_lo)) lo = std::floor(lo / step + 1e-9) * step;
  if (!std::isfinite(fixed_hi)) hi = std::ceil(hi / step - 1e-9) * step;
  return {lo, hi, step};
}

std::string tick_label(double v, double step) {
  int decimals = 0;
  while (decimals < 6 && std::fabs(step * std::pow(10.0, decimals) - std::round(step * std::pow(10.0, decimals))) > 1e-6)
    ++decimals;
  char b[32];
  std::snprintf(b, sizeof b, "%.*f", decimals, std::fabs(v) < step * 1e-9 ? 0.0 : v);
  return b;
}

double legend_width(const LineChart& ch) {
  double w = 0;
  for (const auto& s : ch.series)
    if (!s.label.empty()) w = std::max(w, text_width(s.label, kFont));
  return w + 40;  // swatch and padding
}

void draw_legend(Canvas& cv, const LineChart& ch, double x, double y) {
  std::vector<const Series*> items;
  for (const auto& s : ch.series)
    if (!s.label.empty()) items.push_back(&s);
  if (items.empty()) return;
  const double row = kFont + 6, w = legend_width(ch), h = row * items.size() + 8;
  cv.rect(x, y, w, h, kWhite, &kGrey);
  for (size_t i = 0; i < items.size(); ++i) {
    const double yy = y + 4 + row * (i + 0.5);
    cv.line(x + 6, yy, x + 28, yy, items[i]->color, items[i]->width + 0.7, items[i]->dashed);
    if (items[i]->markers) cv.dot(x + 17, yy, 3, items[i]->color);
    cv.text(x + 34, yy + kFont * 0.35, items[i]->label, kFont, Anchor::kStart);
  }
}

double legend_height(const LineChart& ch) {
  int n = 0;
  for (const auto& s : ch.series) n += !s.label.empty();
  return (kFont + 6) * n + 8;
}

// Draws one chart in the box (x0, y0, w, h).
void draw_chart(Canvas& cv, const LineChart& ch, double x0, double y0, double w, double h) {
  double dx_lo = INFINITY, dx_hi = -INFINITY, dy_lo = INFINITY, dy_hi = -INFINITY;
  for (const auto& s : ch.series) {
    CXR_CHECK(s.x.size() == s.y.size(), "series '", s.label, "' has ", s.x.size(), " x and ", s.y.size(), " y values");
    for (size_t i = 0; i < s.x.size(); ++i)
      if (std::isfinite(s.x[i]) && std::isfinite(s.y[i])) {
        dx_lo = std::min(dx_lo, s.x[i]), dx_hi = std::max(dx_hi, s.x[i]);
        dy_lo = std::min(dy_lo, s.y[i]), dy_hi = std::max(dy_hi, s.y[i]);
      }
  }
  const Axis ax = make_axis(ch.x_min, ch.x_max, dx_lo, dx_hi, ch.integer_x);
  const Axis ay = make_axis(ch.y_min, ch.y_max, dy_lo, dy_hi, false);
  // Plot rectangle inside the box: room for the title, tick labels, axis labels and an outside legend.
  double left = x0 + 62, top = y0 + (ch.title.empty() ? 16 : 40), right = x0 + w - 18, bottom = y0 + h - 52;
  if (ch.legend == LegendPlace::kRight) right -= legend_width(ch) + 12;
  if (ch.square) {
    const double side = std::min(right - left, bottom - top);
    right = left + side;
    bottom = top + side;
  }
  const double pw = right - left, ph = bottom - top;
  auto px = [&](double v) { return left + (v - ax.lo) / (ax.hi - ax.lo) * pw; };
  auto py = [&](double v) { return bottom - (v - ay.lo) / (ay.hi - ay.lo) * ph; };

  if (!ch.title.empty()) cv.text(x0 + w / 2, y0 + 24, ch.title, kTitleFont, Anchor::kMiddle, false, true);
  for (double t = ax.lo; t <= ax.hi + ax.step * 1e-6; t += ax.step) {  // grid and ticks
    cv.line(px(t), top, px(t), bottom, kGrid, 1, false);
    cv.text(px(t), bottom + 16, tick_label(t, ax.step), kTickFont, Anchor::kMiddle);
  }
  for (double t = ay.lo; t <= ay.hi + ay.step * 1e-6; t += ay.step) {
    cv.line(left, py(t), right, py(t), kGrid, 1, false);
    cv.text(left - 6, py(t) + 4, tick_label(t, ay.step), kTickFont, Anchor::kEnd);
  }
  const Color* frame = &kBlack;
  cv.line(left, bottom, right, bottom, *frame, 1, false);
  cv.line(left, top, left, bottom, *frame, 1, false);
  if (!ch.x_label.empty()) cv.text(left + pw / 2, bottom + 40, ch.x_label, kFont, Anchor::kMiddle);
  if (!ch.y_label.empty()) cv.text(x0 + 16, top + ph / 2, ch.y_label, kFont, Anchor::kMiddle, true);
  if (ch.diagonal) {
    const double lo = std::max(ax.lo, ay.lo), hi = std::min(ax.hi, ay.hi);
    if (hi > lo) cv.line(px(lo), py(lo), px(hi), py(hi), kGrey, 1, true);
  }
  for (const auto& s : ch.series) {
    std::vector<std::vector<std::pair<double, double>>> parts(1);
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (std::isfinite(s.x[i]) && std::isfinite(s.y[i])) parts.back().emplace_back(px(s.x[i]), py(s.y[i]));
      else if (!parts.back().empty()) parts.emplace_back();
    }
    if (parts.back().empty()) parts.pop_back();
    cv.series(parts, s, left, top, pw, ph);
    if (s.markers)
      for (const auto& part : parts)
        for (const auto& p : part) cv.dot(p.first, p.second, 3, s.color);
  }
  switch (ch.legend) {
    case LegendPlace::kNone: break;
    case LegendPlace::kUpperRight: draw_legend(cv, ch, right - legend_width(ch) - 8, top + 8); break;
    case LegendPlace::kLowerRight: draw_legend(cv, ch, right - legend_width(ch) - 8, bottom - legend_height(ch) - 8); break;
    case LegendPlace::kRight: draw_legend(cv, ch, right + 12, top); break;
  }
}

void draw_figure(Canvas& cv, const Figure& fig) {
  CXR_CHECK(fig.width >= 100 && fig.height >= 100 && fig.width <= 20000 && fig.height <= 20000, "figure size ",
            fig.width, "x", fig.height);
  CXR_CHECK(!fig.panels.empty(), "a figure needs at least one chart");
  cv.rect(0, 0, fig.width, fig.height, kWhite, nullptr);
  const double w = static_cast<double>(fig.width) / fig.panels.size();
  for (size_t i = 0; i < fig.panels.size(); ++i) draw_chart(cv, fig.panels[i], w * i, 0, w, fig.height);
}

}  // namespace

std::string figure_svg(const Figure& fig) {
  SvgCanvas cv(fig.width, fig.height);
  draw_figure(cv, fig);
  return cv.finish();
}

void write_svg(const Figure& fig, const std::string& path) { write_text_file(path, figure_svg(fig)); }

bool png_supported() {
#ifdef CXR_HAVE_CAIRO
  return true;
#else
  return false;
#endif
}

void write_png(const Figure& fig, const std::string& path) {
#ifdef CXR_HAVE_CAIRO
  cairo_surface_t* surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, fig.width, fig.height);
  cairo_t* cr = cairo_create(surface);
  try {
    CairoCanvas cv(cr);
    draw_figure(cv, fig);
  } catch (...) {
    cairo_destroy(cr);
    cairo_surface_destroy(surface);
    throw;
  }
  const cairo_status_t drawn = cairo_status(cr);
  cairo_destroy(cr);
  cairo_surface_flush(surface);
  cairo_status_t written = CAIRO_STATUS_SUCCESS;
  try {
    if (drawn == CAIRO_STATUS_SUCCESS)
      write_atomically(path, [&](const std::string& tmp) {
        written = cairo_surface_write_to_png(surface, tmp.c_str());
        // Thrown here, so that write_atomically removes the temporary file instead of renaming it.
        if (written != CAIRO_STATUS_SUCCESS) CXR_FAIL(path, ": cannot write PNG: ", cairo_status_to_string(written));
      });
  } catch (...) {
    cairo_surface_destroy(surface);
    throw;
  }
  cairo_surface_destroy(surface);
  if (drawn != CAIRO_STATUS_SUCCESS) CXR_FAIL(path, ": cairo drawing failed: ", cairo_status_to_string(drawn));
  if (written != CAIRO_STATUS_SUCCESS) CXR_FAIL(path, ": cannot write PNG: ", cairo_status_to_string(written));
#else
  (void)fig;
  CXR_FAIL(path, ": this build has no PNG charts (built without cairo: install libcairo2-dev and rebuild)");
#endif
}

std::vector<std::string> write_figure(const Figure& fig, const std::string& stem) {
  std::vector<std::string> written{stem + ".svg"};
  write_svg(fig, written[0]);
  if (png_supported()) {
    written.push_back(stem + ".png");
    write_png(fig, written[1]);
  }
  return written;
}

// ---- the project's charts -----------------------------------------------------------------------------
Figure roc_figure(const std::vector<RocCurve>& curves, const std::vector<double>& aucs, const std::string& title,
                  const std::vector<std::string>& names) {
  CXR_CHECK(curves.size() == aucs.size(), curves.size(), " ROC curves but ", aucs.size(), " AUCs");
  CXR_CHECK(names.empty() || names.size() == curves.size(), names.size(), " names for ", curves.size(), " curves");
  LineChart ch;
  const double mean = mean_auc(aucs);
  char buf[64];
  std::snprintf(buf, sizeof buf, " (mean AUC %.3f)", mean);
  ch.title = title + (std::isfinite(mean) ? buf : "");
  ch.x_label = "False positive rate (1 - specificity)";
  ch.y_label = "True positive rate (sensitivity)";
  ch.x_min = ch.y_min = 0;
  ch.x_max = ch.y_max = 1;
  ch.diagonal = ch.square = true;
  ch.legend = LegendPlace::kRight;
  for (size_t c = 0; c < curves.size(); ++c) {
    std::string name = !names.empty()                                 ? names[c]
                       : curves.size() == static_cast<size_t>(kNumClasses) ? std::string(kClassNames[c])
                                                                      : "class " + std::to_string(c);
    Series s;
    s.color = palette_color(static_cast<int>(c));
    s.dashed = c >= 10;  // the palette's last four share hues with the first ten
    s.width = 1.6;
    if (std::isfinite(aucs[c])) {
      std::snprintf(buf, sizeof buf, "  %.3f", aucs[c]);
      s.label = name + buf;
      s.x = curves[c].fpr;
      s.y = curves[c].tpr;
    } else {
      s.label = name + "  n/a";
    }
    ch.series.push_back(std::move(s));
  }
  // A class without an AUC keeps its legend entry and colour (an empty path), so colours stay stable.
  Figure fig;
  fig.width = 900;
  fig.height = 660;
  fig.panels.push_back(std::move(ch));
  return fig;
}

Figure training_figure(const std::vector<EpochPoint>& epochs, const std::string& title) {
  LineChart loss, auc;
  loss.title = title.empty() ? "Loss" : title + ": loss";
  auc.title = title.empty() ? "Mean AUC" : title + ": mean AUC";
  loss.x_label = auc.x_label = "epoch";
  loss.y_label = "loss";
  auc.y_label = "mean ROC AUC";
  loss.integer_x = auc.integer_x = true;
  loss.legend = LegendPlace::kUpperRight;
  auc.legend = LegendPlace::kLowerRight;
  auc.y_max = 1.0;
  auto add = [&](LineChart& ch, const char* label, double EpochPoint::*field, int color, bool dashed) {
    Series s;
    s.label = label;
    s.color = palette_color(color);
    s.dashed = dashed;
    s.markers = true;
    bool any = false;
    for (const auto& e : epochs) {
      s.x.push_back(e.epoch);
      s.y.push_back(e.*field);
      any = any || std::isfinite(e.*field);
    }
    if (any) ch.series.push_back(std::move(s));  // a value never measured gets no line and no legend

  };
  add(loss, "train", &EpochPoint::train_loss, 0, false);
  add(loss, "validation", &EpochPoint::val_loss, 1, true);
  add(auc, "train", &EpochPoint::train_auc, 0, false);
  add(auc, "validation", &EpochPoint::val_auc, 1, true);
  Figure fig;
  fig.width = 1100;
  fig.height = 440;
  fig.panels = {std::move(loss), std::move(auc)};
  return fig;
}

}  // namespace cxr::io
