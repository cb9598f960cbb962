// cxr gradcam: maps, overlays, localisation scores and faithfulness (tools/gradcam_command.h).
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
#include "io/synth.h"
#include "tools/cam_faithfulness.h"
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

void check_options(const GradcamOptions& opt) {
  const int modes = int(!opt.classes.empty()) + int(opt.top_k > 0) + int(opt.all);
  CXR_CHECK(modes == 1, "choose exactly one of --class NAME, --top-k K or --all");
  CXR_CHECK(opt.batch >= 1, "--batch must be at least 1, got ", opt.batch);
  CXR_CHECK(opt.alpha >= 0 && opt.alpha <= 1, "--alpha must be in [0, 1], got ", opt.alpha);
  CXR_CHECK(opt.box_frame > 0, "--box-frame must be positive, got ", opt.box_frame);
  CXR_CHECK(opt.cam_threshold > 0 && opt.cam_threshold <= 1, "--cam-threshold must be in (0, 1], got ",
            opt.cam_threshold);
  CXR_CHECK(opt.delete_percent >= 0 && opt.delete_percent < 100, "--faithfulness must be in [0, 100), got ",
            opt.delete_percent);
  parse_cam_method(opt.method);  // throws naming the choices
}

std::vector<std::string> class_names_of(const io::ModelMeta& meta, int64_t K) {
  if (int64_t(meta.class_names.size()) == K) return meta.class_names;
  std::vector<std::string> names;
  for (int64_t k = 0; k < K; ++k)
    names.push_back(k < io::kNumClasses ? std::string(io::kClassNames[size_t(k)])
                                        : "class" + std::to_string(k));
  return names;
}

// --class NAME[,NAME...] (repeatable) -> model class indices, each once, in the order given.
std::vector<int> selected_classes(const std::vector<std::string>& args,
                                  const std::vector<std::string>& names) {
  std::vector<int> selected;
  for (const auto& arg : args) {
    std::stringstream ss(arg);
    std::string name;
    while (std::getline(ss, name, ',')) {
      if (name.empty()) continue;
      const int k = model_class(names, name);
      CXR_CHECK(k >= 0, "--class ", name, ": not a class of this model (", io::join_list(names), ")");
      if (std::find(selected.begin(), selected.end(), k) == selected.end()) selected.push_back(k);
    }
  }
  return selected;
}

// The maps of one batch: for image i, the classes to explain and the boxes of each class.
struct BatchPlan {
  std::vector<std::vector<int>> classes_of;  // per image: the classes to explain, in order
  std::vector<std::map<int, std::vector<PixelBox>>> boxes;
  size_t rounds = 0;  // backward passes: the longest class list
};

// A map kept for the faithfulness test after the batch's maps are done.
struct Pending {
  int64_t image = 0;
  int cls = 0;
  double probability = 0;
  std::vector<float> map;
};

class GradcamJob {
 public:
  GradcamJob(const GradcamOptions& opt, bool print_lines)
      : opt_(opt),
        print_(print_lines),
        model_(load_model(opt.weights, opt.device, opt.batch, opt.size, opt.normalize)),
        net_(*model_.net),
        S_(model_.meta.image_size),
        K_(net_.config().classes),
        N_(net_.batch()),
        names_(class_names_of(model_.meta, K_)),
        selected_(selected_classes(opt.classes, names_)),
        norm_(norm_params(model_.meta)),
        levels_(parse_cam_layer(opt.layer, net_)),
        cam_(net_, parse_cam_method(opt.method), levels_, S_, S_),
        tally_(opt.threshold, opt.cam_threshold),
        pixels_(size_t(N_ * S_ * S_)),
        input_(size_t(N_ * 3 * S_ * S_)) {
    if (!opt.boxes.empty())
      for (const io::BBox& b : io::read_bbox_csv(opt.boxes)) boxes_of_[b.image].push_back(b);
  }

  void run(const std::vector<std::string>& files) {
    io::Progress progress(int64_t(files.size()), "gradcam", "images", opt_.quiet);
    int64_t done = 0;
    for (const auto& file : files) {
      std::string err;
      if (!load_grey_square(file, S_, pixels_.data() + batch_files_.size() * size_t(S_ * S_), &err)) {
        std::fprintf(stderr, "cxr gradcam: skipping %s: %s\n", file.c_str(), err.c_str());
      } else {
        batch_files_.push_back(file);
        if (int64_t(batch_files_.size()) == N_) flush();
      }
      progress.update(++done);
    }
    flush();
    progress.finish();
    CXR_CHECK(images_ > 0, "none of the ", files.size(), " images could be decoded");
  }

  json result() const;

 private:
  std::vector<float> forward(const uint8_t* pixels, int64_t n);
  BatchPlan plan(const std::vector<float>& logits, int64_t n) const;
  std::pair<json, std::string> render(int64_t i, int k, const float* map, double p,
                                      const std::vector<PixelBox>* boxes);
  void faithfulness(const std::vector<Pending>& pending);
  double prob(const std::vector<float>& logits, int64_t i, int k) const {
    return 1.0 / (1.0 + std::exp(-double(logits[size_t(i * K_ + k)])));
  }
  void flush();

  const GradcamOptions& opt_;
  bool print_;
  LoadedModel model_;
  DenseNet& net_;
  int64_t S_, K_, N_;
  std::vector<std::string> names_;
  std::vector<int> selected_;
  io::NormParams norm_;
  std::vector<int> levels_;
  CamMaps cam_;
  LocalisationTally tally_;
  std::map<std::string, std::vector<io::BBox>> boxes_of_;  // image file name -> its boxes
  std::vector<uint8_t> pixels_;
  std::vector<float> input_;
  std::vector<std::string> batch_files_;
  std::set<std::string> used_names_;
  json maps_ = json::array();
  int64_t images_ = 0;
  int64_t faith_pairs_ = 0, faith_beats_ = 0;
  double faith_drop_map_ = 0, faith_drop_random_ = 0;
};

// Normalises n S x S grey images into the model's input (the rest of the batch zero), runs the
// inference forward and returns the logits (N, K).
std::vector<float> GradcamJob::forward(const uint8_t* pixels, int64_t n) {
  io::normalize_cpu(input_.data(), pixels, n, S_ * S_, norm_);
  Backend& be = net_.backend();
  be.copy_to_device(net_.input().data, input_.data(), sizeof(float) * size_t(n * 3 * S_ * S_));
  if (n < N_) be.fill(net_.input().data + n * 3 * S_ * S_, 0.0f, (N_ - n) * 3 * S_ * S_);
  net_.forward(false);
  return net_.get_logits();
}

// The classes of each image: the selection (--class, --top-k or --all), then any class with boxes.
BatchPlan GradcamJob::plan(const std::vector<float>& logits, int64_t n) const {
  BatchPlan p;
  p.classes_of.resize(size_t(n));
  p.boxes.resize(size_t(n));
  const double box_scale = double(S_) / opt_.box_frame;
  for (int64_t i = 0; i < n; ++i) {
    auto& list = p.classes_of[size_t(i)];
    if (opt_.all) {
      for (int k = 0; k < int(K_); ++k) list.push_back(k);
    } else if (opt_.top_k > 0) {
      std::vector<int> order(static_cast<size_t>(K_));
      for (int k = 0; k < int(K_); ++k) order[size_t(k)] = k;
      std::stable_sort(order.begin(), order.end(),
                       [&](int a, int b) { return logits[size_t(i * K_ + a)] > logits[size_t(i * K_ + b)]; });
      list.assign(order.begin(), order.begin() + std::min<int64_t>(opt_.top_k, K_));
    } else {
      list = selected_;
    }
    const auto it = boxes_of_.find(fs::path(batch_files_[size_t(i)]).filename().string());
    if (it != boxes_of_.end())
      for (const io::BBox& b : it->second) {
        const int k = model_class(names_, std::string(io::kClassNames[size_t(b.cls)]));
        if (k < 0) continue;
        p.boxes[size_t(i)][k].push_back(
            PixelBox{b.x * box_scale, b.y * box_scale, b.w * box_scale, b.h * box_scale});
        if (std::find(list.begin(), list.end(), k) == list.end()) list.push_back(k);
      }
    p.rounds = std::max(p.rounds, list.size());
  }
  return p;
}

// The overlay PNG of one (image, class), its JSON entry and its printed line; scores it when the
// class has boxes on the image.
std::pair<json, std::string> GradcamJob::render(int64_t i, int k, const float* map, double p,
                                                const std::vector<PixelBox>* boxes) {
  const std::string& file = batch_files_[size_t(i)];
  std::vector<uint8_t> rgb = blend_overlay(pixels_.data() + i * S_ * S_, map, S_, S_, opt_.alpha);
  json entry = {{"image", file}, {"class", names_[size_t(k)]}, {"probability", p}};
  const auto peak = map_peak(map, S_, S_);
  entry["peak"] = {peak[0], peak[1]};
  if (boxes) {
    json jb = json::array();
    for (const PixelBox& b : *boxes) {
      draw_box(rgb.data(), S_, S_, b.x - 1, b.y - 1, b.w + 2, b.h + 2, {0, 0, 0},
               1);  // dark rim for contrast
      draw_box(rgb.data(), S_, S_, b.x, b.y, b.w, b.h, {255, 255, 255}, std::max<int>(1, int(S_ / 160)));
      jb.push_back({b.x, b.y, b.w, b.h});
    }
    const PairScore sc =
        score_pair(map, S_, S_, *boxes, opt_.tolerance * double(S_) / opt_.box_frame, opt_.cam_threshold);
    tally_.add(names_[size_t(k)], sc, p >= opt_.threshold);
    entry["boxes"] = jb;
    entry["hit"] = sc.hit;
    entry["energy"] = sc.energy;
    entry["iou"] = sc.iou;
    entry["iobb"] = sc.iobb;
    PixelBox mine;
    if (cam_box(map, S_, S_, opt_.cam_threshold, &mine)) entry["cam_box"] = {mine.x, mine.y, mine.w, mine.h};
  }
  draw_cross(rgb.data(), S_, S_, peak[0], peak[1], {255, 255, 255}, std::max<int>(2, int(S_ / 64)));
  char prob_text[32];
  std::snprintf(prob_text, sizeof prob_text, "%.3f", p);
  const std::string base = fs::path(file).stem().string() + "_" + names_[size_t(k)] + "_p" + prob_text;
  std::string name = base + ".png";
  for (int dup = 2; used_names_.count(name); ++dup) name = base + "_" + std::to_string(dup) + ".png";
  used_names_.insert(name);
  const std::string path = (fs::path(opt_.out) / name).string();
  io::write_png(path, rgb.data(), int(S_), int(S_), 3);
  entry["file"] = name;
  char line[1024];
  std::snprintf(line, sizeof line, "%s  %-18s p=%s  %s%s\n", file.c_str(), names_[size_t(k)].c_str(),
                prob_text, path.c_str(),
                boxes ? (entry["hit"].get<bool>() ? "  pointing: hit" : "  pointing: miss") : "");
  return {std::move(entry), line};
}

// Each pending map's top delete_percent% pixels, then as many random ones, replaced by the blurred
// image (sigma S/32: a final-map cell's width at any size, which erases the detail a cell sees);
// the probability drop of each against the unperturbed one. Runs after the batch's maps, so the
// extra forward passes do not disturb the backward passes the maps need.
void GradcamJob::faithfulness(const std::vector<Pending>& pending) {
  const int64_t plane = S_ * S_, count = int64_t(std::llround(opt_.delete_percent / 100.0 * double(plane)));
  std::vector<std::vector<uint8_t>> blurred(static_cast<size_t>(N_));
  for (size_t start = 0; start < pending.size(); start += size_t(N_)) {
    const size_t end = std::min(pending.size(), start + size_t(N_));
    std::vector<uint8_t> by_map(size_t(N_ * plane)), by_random(size_t(N_ * plane));
    for (size_t j = start; j < end; ++j) {
      const Pending& q = pending[j];
      auto& blur = blurred[size_t(q.image)];
      const uint8_t* grey = pixels_.data() + q.image * plane;
      if (blur.empty()) blur = gaussian_blur(grey, S_, S_, double(S_) / 32.0);
      const auto a = delete_pixels(grey, blur.data(), plane, top_pixels(q.map.data(), plane, count));
      const uint64_t seed = opt_.seed * 1000003u + uint64_t(images_ + q.image) * 131u + uint64_t(q.cls);
      const auto b = delete_pixels(grey, blur.data(), plane, random_pixels(plane, count, seed));
      std::copy(a.begin(), a.end(), by_map.begin() + int64_t(j - start) * plane);
      std::copy(b.begin(), b.end(), by_random.begin() + int64_t(j - start) * plane);
    }
    const int64_t n = int64_t(end - start);
    const std::vector<float> za = forward(by_map.data(), n), zb = forward(by_random.data(), n);
    for (size_t j = start; j < end; ++j) {
      const Pending& q = pending[j];
      const double da = q.probability - prob(za, int64_t(j - start), q.cls);
      const double db = q.probability - prob(zb, int64_t(j - start), q.cls);
      faith_pairs_ += 1, faith_beats_ += da > db;
      faith_drop_map_ += da, faith_drop_random_ += db;
    }
  }
}

void GradcamJob::flush() {
  if (batch_files_.empty()) return;
  const int64_t n = int64_t(batch_files_.size());
  const std::vector<float> logits = forward(pixels_.data(), n);
  const BatchPlan p = plan(logits, n);
  std::vector<std::vector<std::pair<json, std::string>>> per_image(static_cast<size_t>(n));
  std::vector<Pending> pending;
  for (size_t r = 0; r < p.rounds; ++r) {
    std::vector<int> cls(size_t(N_), -1);
    for (int64_t i = 0; i < n; ++i)
      if (r < p.classes_of[size_t(i)].size()) cls[size_t(i)] = p.classes_of[size_t(i)][r];
    const std::vector<float> all = cam_.compute(cls);  // one backward pass for the round
    for (int64_t i = 0; i < n; ++i) {
      const int k = cls[size_t(i)];
      if (k < 0) continue;
      const float* map = all.data() + i * S_ * S_;
      const auto bit = p.boxes[size_t(i)].find(k);
      per_image[size_t(i)].push_back(
          render(i, k, map, prob(logits, i, k), bit == p.boxes[size_t(i)].end() ? nullptr : &bit->second));
      if (opt_.delete_percent > 0)
        pending.push_back({i, k, prob(logits, i, k), std::vector<float>(map, map + S_ * S_)});
    }
  }
  if (!pending.empty()) faithfulness(pending);
  // Maps and printed lines grouped by image, in input order (the rounds interleave them).
  for (auto& list : per_image)
    for (auto& [entry, line] : list) {
      if (print_) std::fputs(line.c_str(), stdout);
      maps_.push_back(std::move(entry));
    }
  images_ += n;
  batch_files_.clear();
}

// The per-class pointing-game keys of earlier versions, from the localisation object.
void add_pointing_game_keys(json& r, const json& loc) {
  json per = json::object(), per_tp = json::object(), counts = json::object();
  for (const auto& [name, c] : loc["per_class"].items()) {
    const json& all = c["all"];
    const json& tp = c["true_positive"];
    per[name] = all["pointing_game"];
    per_tp[name] = tp["pointing_game"];
    auto hits = [](const json& s) {
      return s["pointing_game"].is_null() ? int64_t(0)
                                          : int64_t(std::llround(s["pointing_game"].get<double>() *
                                                                 double(s["pairs"].get<int64_t>())));
    };
    counts[name] = {
        {"pairs", all["pairs"]}, {"hits", hits(all)}, {"tp_pairs", tp["pairs"]}, {"tp_hits", hits(tp)}};
  }
  r["pointing_game"] = loc["overall"]["all"]["pointing_game"];
  r["energy_pointing_game"] = loc["overall"]["all"]["energy_pointing_game"];
  r["iobb_found"] = loc["overall"]["all"]["iobb_found"];
  r["pointing_game_per_class"] = per;
  r["pointing_game_true_positive"] = loc["overall"]["true_positive"]["pointing_game"];
  r["pointing_game_true_positive_per_class"] = per_tp;
  r["pointing_game_counts"] = counts;
  r["pointing_game_pairs"] = loc["pairs"];
}

json GradcamJob::result() const {
  json levels = json::array();
  for (size_t i = 0; i < levels_.size(); ++i) levels.push_back({cam_.level_h(i), cam_.level_w(i)});
  json r = {{"images", images_},   {"image_size", S_},        {"method", opt_.method},
            {"layer", opt_.layer}, {"levels", levels},        {"gradient", "logit"},
            {"colormap", "turbo"}, {"weights", opt_.weights}, {"device", net_.backend().name()},
            {"maps", maps_}};
  // Images or boxes that cxr synth wrote: the report then says the scores are on synthetic data.
  bool synthetic = !opt_.boxes.empty() && !io::synth_marker_of(opt_.boxes).empty();
  for (const std::string& in : opt_.inputs) synthetic = synthetic || !io::synth_marker_of(in).empty();
  r["synthetic_data"] = synthetic;
  if (!opt_.boxes.empty()) {
    const json loc = tally_.to_json();
    r["boxes"] = opt_.boxes;
    r["localisation"] = loc;
    add_pointing_game_keys(r, loc);
    r["threshold"] = opt_.threshold;
    r["tolerance"] = opt_.tolerance;
    r["cam_threshold"] = opt_.cam_threshold;
  }
  if (opt_.delete_percent > 0) {
    auto mean = [&](double s) { return faith_pairs_ > 0 ? json(s / double(faith_pairs_)) : json(nullptr); };
    r["faithfulness"] = {{"delete_percent", opt_.delete_percent},
                         {"blur_sigma", double(S_) / 32.0},
                         {"pairs", faith_pairs_},
                         {"mean_drop_map", mean(faith_drop_map_)},
                         {"mean_drop_random", mean(faith_drop_random_)},
                         {"map_beats_random", mean(double(faith_beats_))}};
  }
  return r;
}

}  // namespace

json gradcam(const GradcamOptions& opt, bool print_lines) {
  check_options(opt);
  const auto files = expand_image_inputs(opt.inputs);
  CXR_CHECK(!files.empty(), "no images given (files, folders or .txt lists)");
  fs::create_directories(opt.out);
  GradcamJob job(opt, print_lines);
  job.run(files);
  json result = job.result();
  io::write_text_file((fs::path(opt.out) / "gradcam.json").string(), result.dump(2) + "\n");
  return result;
}

std::string gradcam_tables(const json& r) {
  std::string out;
  if (r.contains("localisation")) out += localisation_table(r["localisation"]);
  if (r.contains("faithfulness")) {
    const json& f = r["faithfulness"];
    char line[400];
    auto num = [](const json& v) { return v.is_null() ? std::string("-") : std::to_string(v.get<double>()); };
    std::snprintf(line, sizeof line,
                  "faithfulness (%s, %s): deleting the map's top %g%% of pixels lowers p by %s on average, "
                  "as many random pixels by %s; the map's deletion drops more in %s of %ld maps\n",
                  r.value("method", "").c_str(), r.value("layer", "").c_str(),
                  f["delete_percent"].get<double>(), num(f["mean_drop_map"]).c_str(),
                  num(f["mean_drop_random"]).c_str(), num(f["map_beats_random"]).c_str(),
                  long(f["pairs"].get<int64_t>()));
    out += line;
  }
  return out;
}

}  // namespace cxr::app
