// cxr gradcam: Grad-CAM maps on the model's backend, overlays, and the pointing game.
#include "tools/gradcam.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "io/classes.h"
#include "io/csv.h"
#include "io/fileutil.h"
#include "io/image.h"
#include "io/normalize.h"
#include "io/progress.h"
#include "kernels/gradcam.h"
#include "tools/pipeline.h"

namespace cxr::app {

namespace fs = std::filesystem;
using nlohmann::json;

// ---- GradCam ------------------------------------------------------------------------------------

GradCam::GradCam(DenseNet& net, int64_t out_h, int64_t out_w)
    : net_(net), be_(net.backend()), n_(net.batch()), k_(net.config().classes) {
  const Shape f = net.features().shape;  // (N, C, h, w)
  c_ = f.c, h_ = f.h, w_ = f.w, out_h_ = out_h, out_w_ = out_w;
  CXR_CHECK(out_h >= 1 && out_w >= 1, "Grad-CAM output size ", out_h, "x", out_w);
  dlogits_ = static_cast<float*>(be_.allocate(sizeof(float) * size_t(n_ * k_)));
  weights_ = static_cast<float*>(be_.allocate(sizeof(float) * size_t(n_ * c_)));
  cam_ = static_cast<float*>(be_.allocate(sizeof(float) * size_t(n_ * h_ * w_)));
  up_ = static_cast<float*>(be_.allocate(sizeof(float) * size_t(n_ * out_h_ * out_w_)));
}

GradCam::~GradCam() {
  for (float* p : {dlogits_, weights_, cam_, up_})
    if (p) be_.release(p);
}

std::vector<float> GradCam::compute(const std::vector<int>& classes) {
  CXR_CHECK(int64_t(classes.size()) == n_, "Grad-CAM: ", classes.size(), " classes for a batch of ", n_);
  std::vector<float> onehot(size_t(n_ * k_), 0.0f);  // d(sum onehot * logits) = d logit_{class(i)}
  for (int64_t i = 0; i < n_; ++i) {
    const int c = classes[size_t(i)];
    CXR_CHECK(c < k_, "Grad-CAM: class ", c, " of a model with ", k_, " classes");
    if (c >= 0) onehot[size_t(i * k_ + c)] = 1.0f;
  }
  be_.copy_to_device(dlogits_, onehot.data(), sizeof(float) * onehot.size());
  const Tensor grads = net_.feature_gradients(dlogits_);  // (N, C, h, w), the network's own backward
  gradcam_channel_weights(be_, weights_, grads);
  gradcam_weighted_sum_relu(be_, cam_, weights_, net_.features());
  gradcam_normalize(be_, cam_, n_, h_ * w_);
  bilinear_resize(be_, up_, out_h_, out_w_, cam_, n_, h_, w_);
  std::vector<float> maps(size_t(n_ * out_h_ * out_w_));
  be_.copy_to_host(maps.data(), up_, sizeof(float) * maps.size());
  be_.synchronize();
  return maps;
}

std::vector<float> GradCam::low_res() const {
  std::vector<float> m(size_t(n_ * h_ * w_));
  be_.copy_to_host(m.data(), cam_, sizeof(float) * m.size());
  be_.synchronize();
  return m;
}

// ---- rendering ------------------------------------------------------------------------------------

const std::array<std::array<uint8_t, 3>, 256>& turbo_colormap() {
  // Turbo, 256 sRGB entries: Anton Mikhailov, Google LLC, Apache License 2.0,
  // https://gist.github.com/mikhailov-work/6a308c20e494d9e0ccc29036b28faa7a (turbo_srgb_bytes).
  // A perceptually ordered rainbow: monotone lightness on each side of its centre, no banding.
  static const std::array<std::array<uint8_t, 3>, 256> kTurbo = {{
      {48, 18, 59},   {50, 21, 67},   {51, 24, 74},    {52, 27, 81},    {53, 30, 88},   {54, 33, 95},
      {55, 36, 102},  {56, 39, 109},  {57, 42, 115},   {58, 45, 121},   {59, 47, 128},  {60, 50, 134},
      {61, 53, 139},  {62, 56, 145},  {63, 59, 151},   {63, 62, 156},   {64, 64, 162},  {65, 67, 167},
      {65, 70, 172},  {66, 73, 177},  {66, 75, 181},   {67, 78, 186},   {68, 81, 191},  {68, 84, 195},
      {68, 86, 199},  {69, 89, 203},  {69, 92, 207},   {69, 94, 211},   {70, 97, 214},  {70, 100, 218},
      {70, 102, 221}, {70, 105, 224}, {70, 107, 227},  {71, 110, 230},  {71, 113, 233}, {71, 115, 235},
      {71, 118, 238}, {71, 120, 240}, {71, 123, 242},  {70, 125, 244},  {70, 128, 246}, {70, 130, 248},
      {70, 133, 250}, {70, 135, 251}, {69, 138, 252},  {69, 140, 253},  {68, 143, 254}, {67, 145, 254},
      {66, 148, 255}, {65, 150, 255}, {64, 153, 255},  {62, 155, 254},  {61, 158, 254}, {59, 160, 253},
      {58, 163, 252}, {56, 165, 251}, {55, 168, 250},  {53, 171, 248},  {51, 173, 247}, {49, 175, 245},
      {47, 178, 244}, {46, 180, 242}, {44, 183, 240},  {42, 185, 238},  {40, 188, 235}, {39, 190, 233},
      {37, 192, 231}, {35, 195, 228}, {34, 197, 226},  {32, 199, 223},  {31, 201, 221}, {30, 203, 218},
      {28, 205, 216}, {27, 208, 213}, {26, 210, 210},  {26, 212, 208},  {25, 213, 205}, {24, 215, 202},
      {24, 217, 200}, {24, 219, 197}, {24, 221, 194},  {24, 222, 192},  {24, 224, 189}, {25, 226, 187},
      {25, 227, 185}, {26, 228, 182}, {28, 230, 180},  {29, 231, 178},  {31, 233, 175}, {32, 234, 172},
      {34, 235, 170}, {37, 236, 167}, {39, 238, 164},  {42, 239, 161},  {44, 240, 158}, {47, 241, 155},
      {50, 242, 152}, {53, 243, 148}, {56, 244, 145},  {60, 245, 142},  {63, 246, 138}, {67, 247, 135},
      {70, 248, 132}, {74, 248, 128}, {78, 249, 125},  {82, 250, 122},  {85, 250, 118}, {89, 251, 115},
      {93, 252, 111}, {97, 252, 108}, {101, 253, 105}, {105, 253, 102}, {109, 254, 98}, {113, 254, 95},
      {117, 254, 92}, {121, 254, 89}, {125, 255, 86},  {128, 255, 83},  {132, 255, 81}, {136, 255, 78},
      {139, 255, 75}, {143, 255, 73}, {146, 255, 71},  {150, 254, 68},  {153, 254, 66}, {156, 254, 64},
      {159, 253, 63}, {161, 253, 61}, {164, 252, 60},  {167, 252, 58},  {169, 251, 57}, {172, 251, 56},
      {175, 250, 55}, {177, 249, 54}, {180, 248, 54},  {183, 247, 53},  {185, 246, 53}, {188, 245, 52},
      {190, 244, 52}, {193, 243, 52}, {195, 241, 52},  {198, 240, 52},  {200, 239, 52}, {203, 237, 52},
      {205, 236, 52}, {208, 234, 52}, {210, 233, 53},  {212, 231, 53},  {215, 229, 53}, {217, 228, 54},
      {219, 226, 54}, {221, 224, 55}, {223, 223, 55},  {225, 221, 55},  {227, 219, 56}, {229, 217, 56},
      {231, 215, 57}, {233, 213, 57}, {235, 211, 57},  {236, 209, 58},  {238, 207, 58}, {239, 205, 58},
      {241, 203, 58}, {242, 201, 58}, {244, 199, 58},  {245, 197, 58},  {246, 195, 58}, {247, 193, 58},
      {248, 190, 57}, {249, 188, 57}, {250, 186, 57},  {251, 184, 56},  {251, 182, 55}, {252, 179, 54},
      {252, 177, 54}, {253, 174, 53}, {253, 172, 52},  {254, 169, 51},  {254, 167, 50}, {254, 164, 49},
      {254, 161, 48}, {254, 158, 47}, {254, 155, 45},  {254, 153, 44},  {254, 150, 43}, {254, 147, 42},
      {254, 144, 41}, {253, 141, 39}, {253, 138, 38},  {252, 135, 37},  {252, 132, 35}, {251, 129, 34},
      {251, 126, 33}, {250, 123, 31}, {249, 120, 30},  {249, 117, 29},  {248, 114, 28}, {247, 111, 26},
      {246, 108, 25}, {245, 105, 24}, {244, 102, 23},  {243, 99, 21},   {242, 96, 20},  {241, 93, 19},
      {240, 91, 18},  {239, 88, 17},  {237, 85, 16},   {236, 83, 15},   {235, 80, 14},  {234, 78, 13},
      {232, 75, 12},  {231, 73, 12},  {229, 71, 11},   {228, 69, 10},   {226, 67, 10},  {225, 65, 9},
      {223, 63, 8},   {221, 61, 8},   {220, 59, 7},    {218, 57, 7},    {216, 55, 6},   {214, 53, 6},
      {212, 51, 5},   {210, 49, 5},   {208, 47, 5},    {206, 45, 4},    {204, 43, 4},   {202, 42, 4},
      {200, 40, 3},   {197, 38, 3},   {195, 37, 3},    {193, 35, 2},    {190, 33, 2},   {188, 32, 2},
      {185, 30, 2},   {183, 29, 2},   {180, 27, 1},    {178, 26, 1},    {175, 24, 1},   {172, 23, 1},
      {169, 22, 1},   {167, 20, 1},   {164, 19, 1},    {161, 18, 1},    {158, 16, 1},   {155, 15, 1},
      {152, 14, 1},   {149, 13, 1},   {146, 11, 1},    {142, 10, 1},    {139, 9, 2},    {136, 8, 2},
      {133, 7, 2},    {129, 6, 2},    {126, 5, 2},     {122, 4, 3},
  }};
  return kTurbo;
}

std::vector<uint8_t> blend_overlay(const uint8_t* grey, const float* map, int64_t w, int64_t h,
                                   double alpha) {
  const auto& lut = turbo_colormap();
  std::vector<uint8_t> rgb(size_t(w * h * 3));
  for (int64_t i = 0; i < w * h; ++i) {
    float m = map[i];
    m = std::isfinite(m) ? std::clamp(m, 0.0f, 1.0f) : 0.0f;
    const auto& c = lut[size_t(std::lround(double(m) * 255.0))];
    for (int k = 0; k < 3; ++k)
      rgb[size_t(i * 3 + k)] = uint8_t(std::lround((1 - alpha) * grey[i] + alpha * c[size_t(k)]));
  }
  return rgb;
}

namespace {
void put(uint8_t* rgb, int64_t width, int64_t height, int64_t x, int64_t y, std::array<uint8_t, 3> c) {
  if (x < 0 || y < 0 || x >= width || y >= height) return;
  for (int k = 0; k < 3; ++k) rgb[size_t((y * width + x) * 3 + k)] = c[size_t(k)];
}
}  // namespace

void draw_box(uint8_t* rgb, int64_t width, int64_t height, double x, double y, double bw, double bh,
              std::array<uint8_t, 3> c, int thickness) {
  const int64_t x0 = int64_t(std::llround(x)), y0 = int64_t(std::llround(y));
  const int64_t x1 = std::max<int64_t>(x0, int64_t(std::llround(x + bw)) - 1);
  const int64_t y1 = std::max<int64_t>(y0, int64_t(std::llround(y + bh)) - 1);
  for (int t = 0; t < thickness; ++t) {
    for (int64_t px = x0; px <= x1; ++px)
      put(rgb, width, height, px, y0 + t, c), put(rgb, width, height, px, y1 - t, c);
    for (int64_t py = y0; py <= y1; ++py)
      put(rgb, width, height, x0 + t, py, c), put(rgb, width, height, x1 - t, py, c);
  }
}

void draw_cross(uint8_t* rgb, int64_t width, int64_t height, int64_t x, int64_t y, std::array<uint8_t, 3> c,
                int radius) {
  for (int64_t d = -radius; d <= radius; ++d) {
    put(rgb, width, height, x + d, y, c);
    put(rgb, width, height, x, y + d, c);
  }
}

// ---- pointing game ----------------------------------------------------------------------------------

bool pointing_hit(const float* map, int64_t w, int64_t h, const std::vector<PixelBox>& boxes,
                  double tolerance) {
  float mx = 0;
  for (int64_t i = 0; i < w * h; ++i) mx = std::max(mx, map[i]);
  if (!(mx > 0)) return false;
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      if (map[y * w + x] != mx) continue;
      const double cx = double(x) + 0.5, cy = double(y) + 0.5;  // pixel centre
      for (const PixelBox& b : boxes)
        if (cx >= b.x - tolerance && cx <= b.x + b.w + tolerance && cy >= b.y - tolerance &&
            cy <= b.y + b.h + tolerance)
          return true;
    }
  return false;
}

std::array<int64_t, 2> map_peak(const float* map, int64_t w, int64_t h) {
  int64_t best = 0;
  for (int64_t i = 1; i < w * h; ++i)
    if (map[i] > map[best]) best = i;
  return {best % w, best / w};
}

// ---- the command --------------------------------------------------------------------------------

namespace {

// Model class index of a name (the model's own names, or the box file's spellings via kClassNames).
int model_class(const std::vector<std::string>& names, const std::string& name) {
  for (size_t i = 0; i < names.size(); ++i)
    if (names[i] == name) return int(i);
  const int k = io::class_index(name);
  if (k >= 0)
    for (size_t i = 0; i < names.size(); ++i)
      if (names[i] == io::kClassNames[size_t(k)]) return int(i);
  return -1;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

struct Tally {
  int64_t pairs = 0, hits = 0, tp_pairs = 0, tp_hits = 0;
};

json rate(int64_t hits, int64_t n) { return n > 0 ? json(double(hits) / double(n)) : json(nullptr); }

}  // namespace

json gradcam(const GradcamOptions& opt, bool print_lines) {
  const int modes = int(!opt.classes.empty()) + int(opt.top_k > 0) + int(opt.all);
  CXR_CHECK(modes == 1, "choose exactly one of --class NAME, --top-k K or --all");
  CXR_CHECK(opt.batch >= 1, "--batch must be at least 1, got ", opt.batch);
  CXR_CHECK(opt.alpha >= 0 && opt.alpha <= 1, "--alpha must be in [0, 1], got ", opt.alpha);
  CXR_CHECK(opt.box_frame > 0, "--box-frame must be positive, got ", opt.box_frame);
  const auto files = expand_image_inputs(opt.inputs);
  CXR_CHECK(!files.empty(), "no images given (files, folders or .txt lists)");

  LoadedModel m = load_model(opt.weights, opt.device, opt.batch, opt.size, opt.normalize);
  DenseNet& net = *m.net;
  const int64_t S = m.meta.image_size, K = net.config().classes, N = net.batch();
  std::vector<std::string> names = m.meta.class_names;
  if (int64_t(names.size()) != K) {
    names.clear();
    for (int64_t k = 0; k < K; ++k)
      names.push_back(k < io::kNumClasses ? std::string(io::kClassNames[size_t(k)])
                                          : "class" + std::to_string(k));
  }
  std::vector<int> selected;  // --class
  for (const auto& arg : opt.classes) {
    std::stringstream ss(arg);
    std::string name;
    while (std::getline(ss, name, ',')) {
      if (name.empty()) continue;
      const int k = model_class(names, name);
      CXR_CHECK(k >= 0, "--class ", name, ": not a class of this model (", join(names), ")");
      if (std::find(selected.begin(), selected.end(), k) == selected.end()) selected.push_back(k);
    }
  }
  std::map<std::string, std::vector<io::BBox>> boxes_of;  // image file name -> its boxes
  if (!opt.boxes.empty())
    for (const io::BBox& b : io::read_bbox_csv(opt.boxes)) boxes_of[b.image].push_back(b);

  fs::create_directories(opt.out);
  const io::NormParams norm = norm_params(m.meta);
  GradCam cam(net, S, S);
  const double box_scale = double(S) / opt.box_frame;

  json maps = json::array();
  std::map<int, Tally> tally;
  Tally total;
  std::set<std::string> used_names;
  std::vector<uint8_t> pixels(size_t(N * S * S));
  std::vector<float> input(size_t(N * 3 * S * S));
  std::vector<std::string> batch_files;
  int64_t done = 0, images = 0;
  io::Progress progress(int64_t(files.size()), "gradcam", "images", opt.quiet);

  auto flush = [&] {
    if (batch_files.empty()) return;
    const int64_t n = int64_t(batch_files.size());
    io::normalize_cpu(input.data(), pixels.data(), n, S * S, norm);
    Backend& be = net.backend();
    be.copy_to_device(net.input().data, input.data(), sizeof(float) * size_t(n * 3 * S * S));
    if (n < N) be.fill(net.input().data + n * 3 * S * S, 0.0f, (N - n) * 3 * S * S);
    net.forward(false);
    const std::vector<float> logits = net.get_logits();
    auto prob = [&](int64_t i, int k) { return 1.0 / (1.0 + std::exp(-double(logits[size_t(i * K + k)]))); };

    // The classes of each image: the selection, then any class with boxes on it.
    std::vector<std::vector<int>> todo(static_cast<size_t>(n));
    std::vector<std::map<int, std::vector<PixelBox>>> boxes(static_cast<size_t>(n));
    size_t rounds = 0;
    for (int64_t i = 0; i < n; ++i) {
      auto& list = todo[size_t(i)];
      if (opt.all) {
        for (int k = 0; k < int(K); ++k) list.push_back(k);
      } else if (opt.top_k > 0) {
        std::vector<int> order(static_cast<size_t>(K));
        for (int k = 0; k < int(K); ++k) order[size_t(k)] = k;
        std::stable_sort(order.begin(), order.end(),
                         [&](int a, int b) { return logits[size_t(i * K + a)] > logits[size_t(i * K + b)]; });
        list.assign(order.begin(), order.begin() + std::min<int64_t>(opt.top_k, K));
      } else {
        list = selected;
      }
      const auto it = boxes_of.find(fs::path(batch_files[size_t(i)]).filename().string());
      if (it != boxes_of.end())
        for (const io::BBox& b : it->second) {
          const int k = model_class(names, std::string(io::kClassNames[size_t(b.cls)]));
          if (k < 0) continue;
          boxes[size_t(i)][k].push_back(
              PixelBox{b.x * box_scale, b.y * box_scale, b.w * box_scale, b.h * box_scale});
          if (std::find(list.begin(), list.end(), k) == list.end()) list.push_back(k);
        }
      rounds = std::max(rounds, list.size());
    }

    std::vector<std::vector<std::pair<json, std::string>>> per_image(static_cast<size_t>(n));
    for (size_t r = 0; r < rounds; ++r) {
      std::vector<int> cls(size_t(N), -1);
      for (int64_t i = 0; i < n; ++i)
        if (r < todo[size_t(i)].size()) cls[size_t(i)] = todo[size_t(i)][r];
      const std::vector<float> all = cam.compute(cls);
      for (int64_t i = 0; i < n; ++i) {
        const int k = cls[size_t(i)];
        if (k < 0) continue;
        const float* map = all.data() + i * S * S;
        const uint8_t* grey = pixels.data() + i * S * S;
        const double p = prob(i, k);
        std::vector<uint8_t> rgb = blend_overlay(grey, map, S, S, opt.alpha);
        json entry = {{"image", batch_files[size_t(i)]}, {"class", names[size_t(k)]}, {"probability", p}};
        const auto peak = map_peak(map, S, S);
        entry["peak"] = {peak[0], peak[1]};
        const auto bit = boxes[size_t(i)].find(k);
        if (bit != boxes[size_t(i)].end()) {
          json jb = json::array();
          for (const PixelBox& b : bit->second) {
            draw_box(rgb.data(), S, S, b.x - 1, b.y - 1, b.w + 2, b.h + 2, {0, 0, 0},
                     1);  // dark rim for contrast
            draw_box(rgb.data(), S, S, b.x, b.y, b.w, b.h, {255, 255, 255}, std::max<int>(1, int(S / 160)));
            jb.push_back({b.x, b.y, b.w, b.h});
          }
          const bool hit = pointing_hit(map, S, S, bit->second, opt.tolerance * box_scale);
          entry["boxes"] = jb;
          entry["hit"] = hit;
          for (Tally* t : {&tally[k], &total}) {
            t->pairs += 1, t->hits += hit;
            if (p >= opt.threshold) t->tp_pairs += 1, t->tp_hits += hit;
          }
        }
        draw_cross(rgb.data(), S, S, peak[0], peak[1], {255, 255, 255}, std::max<int>(2, int(S / 64)));
        char prob_text[32];
        std::snprintf(prob_text, sizeof prob_text, "%.3f", p);
        std::string base =
            fs::path(batch_files[size_t(i)]).stem().string() + "_" + names[size_t(k)] + "_p" + prob_text;
        std::string name = base + ".png";
        for (int dup = 2; used_names.count(name); ++dup) name = base + "_" + std::to_string(dup) + ".png";
        used_names.insert(name);
        const std::string path = (fs::path(opt.out) / name).string();
        io::write_png(path, rgb.data(), int(S), int(S), 3);
        entry["file"] = name;
        char line[1024];
        std::snprintf(
            line, sizeof line, "%s  %-18s p=%s  %s%s\n", batch_files[size_t(i)].c_str(),
            names[size_t(k)].c_str(), prob_text, path.c_str(),
            entry.contains("hit") ? (entry["hit"].get<bool>() ? "  pointing: hit" : "  pointing: miss") : "");
        per_image[size_t(i)].emplace_back(std::move(entry), line);
      }
    }
    // Maps and printed lines grouped by image, in input order (the rounds interleave them).
    for (auto& list : per_image)
      for (auto& [entry, line] : list) {
        if (print_lines) std::fputs(line.c_str(), stdout);
        maps.push_back(std::move(entry));
      }
    images += n;
    batch_files.clear();
  };

  for (const auto& file : files) {
    std::string err;
    if (!load_grey_square(file, S, pixels.data() + batch_files.size() * size_t(S * S), &err)) {
      std::fprintf(stderr, "cxr gradcam: skipping %s: %s\n", file.c_str(), err.c_str());
      progress.update(++done);
      continue;
    }
    batch_files.push_back(file);
    if (int64_t(batch_files.size()) == N) flush();
    progress.update(++done);
  }
  flush();
  progress.finish();
  CXR_CHECK(images > 0, "none of the ", files.size(), " images could be decoded");

  json result = {{"images", images},    {"image_size", S},        {"gradient", "logit"},
                 {"colormap", "turbo"}, {"weights", opt.weights}, {"device", net.backend().name()},
                 {"maps", maps}};
  if (!opt.boxes.empty()) {
    json per = json::object(), per_tp = json::object(), counts = json::object();
    for (const auto& [k, t] : tally) {
      per[names[size_t(k)]] = rate(t.hits, t.pairs);
      per_tp[names[size_t(k)]] = rate(t.tp_hits, t.tp_pairs);
      counts[names[size_t(k)]] = {
          {"pairs", t.pairs}, {"hits", t.hits}, {"tp_pairs", t.tp_pairs}, {"tp_hits", t.tp_hits}};
    }
    result["boxes"] = opt.boxes;
    result["pointing_game"] = rate(total.hits, total.pairs);
    result["pointing_game_per_class"] = per;
    result["pointing_game_true_positive"] = rate(total.tp_hits, total.tp_pairs);
    result["pointing_game_true_positive_per_class"] = per_tp;
    result["pointing_game_counts"] = counts;
    result["pointing_game_pairs"] = total.pairs;
    result["threshold"] = opt.threshold;
    result["tolerance"] = opt.tolerance;
  }
  io::write_text_file((fs::path(opt.out) / "gradcam.json").string(), result.dump(2) + "\n");
  return result;
}

std::string pointing_game_table(const json& r) {
  if (!r.contains("pointing_game")) return "";
  std::ostringstream os;
  char line[160];
  auto fmt = [](const json& v) {
    char b[16];
    if (v.is_null()) return std::string("   -");
    std::snprintf(b, sizeof b, "%.3f", v.get<double>());
    return std::string(b);
  };
  os << "pointing game (map maximum inside a box of the class), per (image, class) with boxes:\n";
  std::snprintf(line, sizeof line, "%-20s %6s %6s %7s %9s %8s\n", "class", "pairs", "hits", "rate",
                "tp pairs", "tp rate");
  os << line;
  for (const auto& [name, c] : r["pointing_game_counts"].items()) {
    std::snprintf(line, sizeof line, "%-20s %6ld %6ld %7s %9ld %8s\n", name.c_str(),
                  long(c["pairs"].get<int64_t>()), long(c["hits"].get<int64_t>()),
                  fmt(r["pointing_game_per_class"][name]).c_str(), long(c["tp_pairs"].get<int64_t>()),
                  fmt(r["pointing_game_true_positive_per_class"][name]).c_str());
    os << line;
  }
  std::snprintf(line, sizeof line, "%-20s %6ld %6s %7s %9s %8s\n", "overall",
                long(r["pointing_game_pairs"].get<int64_t>()), "", fmt(r["pointing_game"]).c_str(), "",
                fmt(r["pointing_game_true_positive"]).c_str());
  os << line;
  return os.str();
}

}  // namespace cxr::app
