#include "tools/evaluator.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "io/classes.h"
#include "io/fileutil.h"
#include "io/metrics.h"
#include "io/normalize.h"
#include "io/plot.h"
#include "io/published.h"
#include "tools/pipeline.h"

namespace cxr::app {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::vector<float> sigmoid(const std::vector<float>& z) {
  std::vector<float> p(z.size());
  for (size_t i = 0; i < z.size(); ++i) p[i] = float(1.0 / (1.0 + std::exp(-double(z[i]))));
  return p;
}

// JSON has no NaN: undefined values become null.
json number_or_null(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

std::string class_name(int k) { return std::string(io::kClassNames[size_t(k)]); }

}  // namespace

json evaluate(const EvaluateOptions& opt) {
  io::PackedDataset data(opt.data);
  const io::Split split = io::parse_split_name(opt.split);
  if (data.indices(split).empty())
    CXR_FAIL(opt.data, " has no images in the ", opt.split, " set (its split is ", data.attribute("split_method"),
             "): choose another --split or prepare the dataset with one");
  Comm& comm = process_comm();
  comm.set_timeout(opt.comm_timeout);
  const bool quiet = opt.quiet || !comm.root();
  if (opt.batch < comm.size())
    CXR_FAIL("--batch ", opt.batch, " (the global batch) is smaller than the ", comm.size(), " ranks");
  const int64_t local_batch = (opt.batch + comm.size() - 1) / comm.size();
  LoadedModel m = load_model(opt.weights, opt.device, local_batch, data.image_size(), "", "densenet121", &comm);
  const int K = io::kNumClasses;
  if (m.net->config().classes != K)
    CXR_FAIL(opt.weights, ": the model has ", m.net->config().classes, " classes, the dataset ", opt.data, " ", K,
             " (ChestX-ray14's): evaluate needs a model of the dataset's classes");
  const io::NormParams norm = norm_params(m.meta);
  if (!quiet) std::fprintf(stderr, "weights: %s\n", m.description.c_str());

  std::vector<int64_t> idx;
  const auto probs = sigmoid(infer_logits(*m.net, data, split, norm, &idx, quiet, &comm));
  const auto labels = gather_labels(data, idx);
  const auto auc = io::per_class_auc(probs, labels, K);
  const auto counts = io::class_counts(labels, K);

  json result;
  result["weights"] = opt.weights;
  result["data"] = opt.data;
  result["synthetic_data"] = !data.attribute("synthetic").empty();  // made by cxr synth (io/packed.h)
  result["split"] = opt.split;
  result["images"] = idx.size();
  result["image_size"] = data.image_size();
  result["normalization"] = m.meta.normalization;
  json auc_json = json::object(), counts_json = json::object();
  for (int k = 0; k < K; ++k) {
    if (std::isfinite(auc[size_t(k)])) auc_json[class_name(k)] = auc[size_t(k)];
    counts_json[class_name(k)] = {{"positives", counts[size_t(k)].positives}, {"negatives", counts[size_t(k)].negatives}};
  }
  result["auc"] = auc_json;  // classes without both labels are omitted (CLI.md)
  result["mean_auc"] = number_or_null(io::mean_auc(auc));
  result["counts"] = counts_json;

  std::optional<io::BootstrapResult> boot;
  if (opt.bootstrap > 0) {
    io::BootstrapOptions bo;
    bo.resamples = opt.bootstrap;
    bo.seed = opt.seed;
    boot = io::bootstrap_auc(probs, labels, K, bo);
    const auto& b = *boot;
    json ci = json::object();
    for (int k = 0; k < K; ++k)
      if (std::isfinite(b.per_class[size_t(k)].auc))
        ci[class_name(k)] = {number_or_null(b.per_class[size_t(k)].lo), number_or_null(b.per_class[size_t(k)].hi)};
    result["auc_ci95"] = ci;
    result["mean_auc_ci95"] = {number_or_null(b.mean.lo), number_or_null(b.mean.hi)};
    result["bootstrap"] = {{"resamples", b.resamples}, {"seed", b.seed}, {"level", b.level}};
  }

  // Thresholds from the validation set (never from the set being scored), applied here.
  if (split != io::Split::Val && !data.indices(io::Split::Val).empty()) {
    std::vector<int64_t> vidx;
    const auto vprobs = sigmoid(infer_logits(*m.net, data, io::Split::Val, norm, &vidx, quiet, &comm));
    const auto vlabels = gather_labels(data, vidx);
    json th = json::object();
    for (auto rule : {io::ThresholdRule::kYouden, io::ThresholdRule::kF1}) {
      const auto chosen = io::choose_thresholds(vprobs, vlabels, K, rule);
      const auto at = io::metrics_at_thresholds(probs, labels, K, io::threshold_values(chosen));
      json per = json::object();
      for (int k = 0; k < K; ++k) {
        const auto& b = at[size_t(k)];
        per[class_name(k)] = {{"threshold", number_or_null(b.threshold)}, {"sensitivity", number_or_null(b.sensitivity)},
                              {"specificity", number_or_null(b.specificity)}, {"ppv", number_or_null(b.ppv)},
                              {"npv", number_or_null(b.npv)}, {"f1", number_or_null(b.f1)},
                              {"tp", b.tp}, {"fp", b.fp}, {"tn", b.tn}, {"fn", b.fn}};
      }
      th[io::threshold_rule_name(rule)] = per;
    }
    result["thresholds"] = th;
    result["thresholds_from"] = "val";
  }
  result["published"] = io::auc_comparison_json(auc, boot ? &*boot : nullptr);

  if (!opt.out.empty() && comm.root()) {
    fs::create_directories(opt.out);
    io::write_text_file((fs::path(opt.out) / "metrics.json").string(), result.dump(2) + "\n");
    std::ostringstream csv;
    csv << "class,positives,negatives,auc";
    if (opt.bootstrap > 0) csv << ",auc_lo,auc_hi";
    csv << "\n";
    for (int k = 0; k < K; ++k) {
      csv << class_name(k) << "," << counts[size_t(k)].positives << "," << counts[size_t(k)].negatives << ",";
      if (std::isfinite(auc[size_t(k)])) csv << auc[size_t(k)];
      if (opt.bootstrap > 0 && result["auc_ci95"].contains(class_name(k)))
        csv << "," << result["auc_ci95"][class_name(k)][0] << "," << result["auc_ci95"][class_name(k)][1];
      csv << "\n";
    }
    io::write_text_file((fs::path(opt.out) / "per_class.csv").string(), csv.str());
    io::write_figure(io::roc_figure(io::per_class_roc_curves(probs, labels, K), auc,
                                    "ROC curves, " + opt.split + " set (" + std::to_string(idx.size()) + " images)"),
                     (fs::path(opt.out) / "roc_curves").string());
  }
  return result;
}

std::string evaluation_table(const json& r) {
  std::vector<double> auc(io::kNumClasses, io::kUndefined);
  for (int k = 0; k < io::kNumClasses; ++k)
    if (r["auc"].contains(class_name(k))) auc[size_t(k)] = r["auc"][class_name(k)];
  std::ostringstream os;
  os << r["split"].get<std::string>() << " set: " << r["images"] << " images at " << r["image_size"] << "x"
     << r["image_size"] << "\n";
  io::BootstrapResult intervals;  // the comparison table shows intervals when metrics.json has them
  const io::BootstrapResult* iv = nullptr;
  if (r.contains("auc_ci95")) {
    intervals.per_class.resize(size_t(io::kNumClasses));
    for (int k = 0; k < io::kNumClasses; ++k) {
      auto& c = intervals.per_class[size_t(k)];
      c.auc = auc[size_t(k)];
      if (r["auc_ci95"].contains(class_name(k)) && !r["auc_ci95"][class_name(k)][0].is_null()) {
        c.lo = r["auc_ci95"][class_name(k)][0];
        c.hi = r["auc_ci95"][class_name(k)][1];
      }
    }
    intervals.mean.auc = r["mean_auc"].is_null() ? io::kUndefined : r["mean_auc"].get<double>();
    if (!r["mean_auc_ci95"][0].is_null()) intervals.mean.lo = r["mean_auc_ci95"][0], intervals.mean.hi = r["mean_auc_ci95"][1];
    intervals.resamples = r["bootstrap"]["resamples"];
    iv = &intervals;
  }
  os << io::format_auc_comparison(auc, iv);
  if (r.contains("thresholds")) {
    char line[256];
    os << "\nat thresholds chosen on the validation set (Youden's J):\n";
    std::snprintf(line, sizeof line, "%-20s %9s %6s %6s %6s %6s %6s\n", "class", "threshold", "sens", "spec", "PPV",
                  "NPV", "F1");
    os << line;
    auto f = [](const json& v) { return v.is_null() ? std::string("   -  ") : [&] { char b[16]; std::snprintf(b, sizeof b, "%6.3f", v.get<double>()); return std::string(b); }(); };
    for (int k = 0; k < io::kNumClasses; ++k) {
      const json& m = r["thresholds"]["youden"][class_name(k)];
      std::snprintf(line, sizeof line, "%-20s %9s %s %s %s %s %s\n", class_name(k).c_str(), f(m["threshold"]).c_str(),
                    f(m["sensitivity"]).c_str(), f(m["specificity"]).c_str(), f(m["ppv"]).c_str(), f(m["npv"]).c_str(),
                    f(m["f1"]).c_str());
      os << line;
    }
  }
  return os.str();
}

namespace {

// The model's class names: those its file carries, else ChestX-ray14's for a 14-class model, else
// class_<k>.
std::vector<std::string> model_class_names(const LoadedModel& m) {
  const int64_t K = m.net->config().classes;
  if (int64_t(m.meta.class_names.size()) == K) return m.meta.class_names;
  std::vector<std::string> names;
  for (int64_t k = 0; k < K; ++k) names.push_back(K == io::kNumClasses ? class_name(int(k)) : "class_" + std::to_string(k));
  return names;
}

// Per-class thresholds from the metrics.json of cxr evaluate (kUndefined where it has none).
std::vector<double> read_thresholds(const PredictOptions& opt, const std::vector<std::string>& classes) {
  std::ifstream f(opt.thresholds);
  CXR_CHECK(f.good(), "cannot read --thresholds ", opt.thresholds);
  const json j = json::parse(f);
  CXR_CHECK(j.contains("thresholds") && j["thresholds"].contains(opt.threshold_rule), opt.thresholds,
            ": no thresholds.", opt.threshold_rule, " (expected the metrics.json of cxr evaluate)");
  const json& rule = j["thresholds"][opt.threshold_rule];
  std::vector<double> thresholds;
  for (const auto& name : classes) {
    CXR_CHECK(rule.contains(name), opt.thresholds, ": no threshold for the model's class '", name, "'");
    const json& t = rule[name]["threshold"];
    thresholds.push_back(t.is_null() ? io::kUndefined : t.get<double>());
  }
  return thresholds;
}

}  // namespace

PredictResult predict(const PredictOptions& opt) {
  const auto files = expand_image_inputs(opt.inputs);
  CXR_CHECK(!files.empty(), "no images given (files, folders or .txt lists)");
  LoadedModel m = load_model(opt.weights, opt.device, opt.batch, opt.size, opt.normalize);
  const io::NormParams norm = norm_params(m.meta);
  const std::vector<std::string> classes = model_class_names(m);
  const int64_t S = m.meta.image_size, K = int64_t(classes.size());
  const std::vector<double> thresholds = opt.thresholds.empty() ? std::vector<double>{} : read_thresholds(opt, classes);
  std::ostringstream csv;
  csv << "image";
  for (const auto& c : classes) csv << "," << c;
  if (!thresholds.empty())
    for (const auto& c : classes) csv << "," << c << "_label";
  csv << "\n";

  DenseNet& net = *m.net;
  std::vector<uint8_t> pixels(size_t(opt.batch * S * S));
  std::vector<float> input(size_t(opt.batch * 3 * S * S));
  std::vector<std::string> names;
  PredictResult result;
  auto flush = [&] {
    if (names.empty()) return;
    const int64_t n = int64_t(names.size());
    io::normalize_cpu(input.data(), pixels.data(), n, S * S, norm);
    Backend& be = net.backend();
    be.copy_to_device(net.input().data, input.data(), sizeof(float) * size_t(n * 3 * S * S));
    if (n < net.batch()) be.fill(net.input().data + n * 3 * S * S, 0.0f, (net.batch() - n) * 3 * S * S);
    net.forward(false);
    const auto p = sigmoid(net.get_logits());
    char buf[32];
    for (int64_t i = 0; i < n; ++i) {
      csv << names[size_t(i)];
      for (int64_t k = 0; k < K; ++k) {
        std::snprintf(buf, sizeof buf, ",%.6f", p[size_t(i * K + k)]);
        csv << buf;
      }
      for (size_t k = 0; k < thresholds.size(); ++k)
        csv << "," << (std::isfinite(thresholds[k]) ? (p[size_t(i * K) + k] >= thresholds[k] ? "1" : "0") : "");
      csv << "\n";
    }
    result.written += n;
    names.clear();
  };
  for (const auto& file : files) {
    std::string err;
    if (!load_grey_square(file, S, pixels.data() + names.size() * size_t(S * S), &err)) {
      std::fprintf(stderr, "cxr predict: skipping %s: %s\n", file.c_str(), err.c_str());
      result.failed.push_back(file);
      continue;
    }
    names.push_back(file);
    if (int64_t(names.size()) == opt.batch) flush();
  }
  flush();
  if (result.written > 0) io::write_text_file(opt.out, csv.str());
  return result;
}

}  // namespace cxr::app
