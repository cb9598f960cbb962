// cxr gradcam: maps, overlays and the pointing game (tools/gradcam_command.h).
#include "tools/gradcam_command.h"

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
#include "tools/cam_maps.h"
#include "tools/cam_scores.h"
#include "tools/overlay.h"
#include "tools/pipeline.h"

namespace cxr::app {

namespace fs = std::filesystem;
using nlohmann::json;

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
