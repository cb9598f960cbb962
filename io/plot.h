// Line charts as SVG and PNG: the ROC curves of the 14 classes with their AUCs, and training curves
// (loss and mean AUC per epoch, train vs validation).
//
// A Figure (one or more LineChart panels side by side) is laid out once and drawn on a Canvas: the SVG
// canvas writes plain SVG text (one <path class="series"> per series, real <text>, no dependency); the
// PNG canvas draws with cairo (antialiased lines, text with cairo's toy font API, "DejaVu Sans" via
// fontconfig). PNG needs the build to define CXR_HAVE_CAIRO (pkg-config cairo); without it
// png_supported() is false and write_png throws cxr::Error saying so. Both files are written atomically.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/metrics.h"

namespace cxr::io {

struct Color {
  uint8_t r = 0, g = 0, b = 0;
};
// A 20-colour qualitative palette (matplotlib's tab10, then darker/lighter companions): i modulo 20.
Color palette_color(int i);

struct Series {
  std::string label;         // legend text ("" = not in the legend)
  std::vector<double> x, y;  // same length; a non-finite y (or x) breaks the line there
  Color color;
  bool dashed = false;
  bool markers = false;      // a dot at each point (per-epoch curves)
  double width = 1.8;        // line width in pixels
};

enum class LegendPlace { kNone, kUpperRight, kLowerRight, kRight /* outside the axes */ };

struct LineChart {
  std::string title, x_label, y_label;
  // Axis ranges; NaN = from the finite data, padded by 5% and widened to round tick values.
  double x_min = kUndefined, x_max = kUndefined, y_min = kUndefined, y_max = kUndefined;
  bool integer_x = false;  // ticks on whole numbers only (epochs)
  bool diagonal = false;   // grey dashed y = x (the chance line of a ROC plot)
  bool square = false;     // equal pixel lengths for the x and y axes (ROC)
  LegendPlace legend = LegendPlace::kUpperRight;
  std::vector<Series> series;
};

struct Figure {
  int width = 900, height = 650;     // pixels (PNG) = user units (SVG)
  std::vector<LineChart> panels;     // side by side, equal widths
};

// ---- writers ------------------------------------------------------------------------------------
std::string figure_svg(const Figure& fig);
void write_svg(const Figure& fig, const std::string& path);
bool png_supported();
void write_png(const Figure& fig, const std::string& path);
// Writes <stem>.svg and, where supported, <stem>.png; returns the paths written.
std::vector<std::string> write_figure(const Figure& fig, const std::string& stem);

// ---- the project's charts -----------------------------------------------------------------------
// ROC curves of every class with an AUC in one plot, legend outside on the right "<name>  <AUC>",
// title with the mean AUC; classes with an undefined AUC are left out and named in the legend as
// "n/a". names: one per curve (default: io/classes.h names when there are 14 curves, else "class i").
// Pass curves from per_class_roc_curves(..., drop_intermediate = true): the same picture with only the
// corners (on a 25,000-image test set the full curves would make a ~5 MB SVG).
Figure roc_figure(const std::vector<RocCurve>& curves, const std::vector<double>& aucs,
                  const std::string& title = "ROC curves", const std::vector<std::string>& names = {});

// One epoch of a training run; NaN for a value not measured (e.g. train AUC).
struct EpochPoint {
  double epoch = 0;
  double train_loss = kUndefined, val_loss = kUndefined;
  double train_auc = kUndefined, val_auc = kUndefined;
};
// Two panels: loss per epoch and mean AUC per epoch, each train (solid) vs validation (dashed).
Figure training_figure(const std::vector<EpochPoint>& epochs, const std::string& title = "");

}  // namespace cxr::io
