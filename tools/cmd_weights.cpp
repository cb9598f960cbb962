// cxr weights inspect / convert: what a weight file holds (format, layers and shapes, the DenseNet
// and head it matches), and conversion of any readable file into a cxr model file.
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "io/checkpoint.h"
#include "io/weights.h"
#include "tools/commands.h"

namespace cxr::cli {

namespace {

struct Counts {
  int64_t trainable = 0, statistics = 0;
};
Counts count(const io::WeightFile& wf) {
  Counts c;
  for (const auto& t : wf.tensors) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    (t.weight == "moving_mean" || t.weight == "moving_variance" ? c.statistics : c.trainable) += n;
  }
  return c;
}

void run_inspect(const std::string& path, bool json) {
  const io::WeightFile wf = io::scan_weight_file(path);
  const io::ModelMatch m = io::identify_model(wf);
  const auto meta = (wf.format == io::WeightFormat::CxrModel || wf.format == io::WeightFormat::CxrCheckpoint)
                        ? io::read_model_meta(path)
                        : std::nullopt;
  const Counts c = count(wf);
  if (json) {
    nlohmann::json j;
    j["file"] = path;
    j["format"] = io::format_name(wf.format);
    j["format_description"] = io::format_description(wf.format);
    if (!wf.keras_version.empty()) j["keras_version"] = wf.keras_version;
    j["writer"] = wf.writer;
    j["model"] = m.arch;
    j["matches"] = bool(m.config);
    if (m.config)
      j["config"] = {{"blocks", m.config->blocks}, {"growth", m.config->growth},
                     {"bottleneck", m.config->bottleneck}, {"stem", m.config->stem}};
    j["problems"] = m.problems;
    j["head"] = m.head ? nlohmann::json{{"layer", m.head->layer}, {"classes", m.head->classes}, {"in", m.head->in}}
                       : nlohmann::json(nullptr);
    j["trainable_parameters"] = c.trainable;
    j["bn_statistics"] = c.statistics;
    if (meta)
      j["meta"] = {{"arch", meta->arch}, {"classes", meta->classes}, {"class_names", meta->class_names},
                   {"image_size", meta->image_size}, {"normalization", meta->normalization},
                   {"norm_mean", meta->norm_mean}, {"norm_std", meta->norm_std}};
    j["checkpoint"] = wf.format == io::WeightFormat::CxrCheckpoint;
    for (const auto& t : wf.tensors)
      j["tensors"].push_back({{"layer", t.layer}, {"weight", t.weight}, {"shape", t.shape}, {"dtype", t.dtype},
                              {"path", t.path}});
    std::cout << j.dump(2) << "\n";
    return;
  }
  std::printf("%-30s %-16s %-18s %-8s %s\n", "layer", "weight", "shape", "dtype", "dataset");
  for (const auto& t : wf.tensors)
    std::printf("%-30s %-16s %-18s %-8s %s\n", t.layer.c_str(), t.weight.c_str(), io::shape_str(t.shape).c_str(),
                t.dtype.c_str(), t.path.c_str());
  std::printf("\nfile      %s\n", path.c_str());
  std::printf("format    %s (%s)%s%s\n", io::format_name(wf.format), io::format_description(wf.format),
              wf.keras_version.empty() ? "" : ", keras_version ", wf.keras_version.c_str());
  std::printf("writer    %s\n", wf.writer.c_str());
  std::printf("model     %s\n", m.arch.c_str());
  for (const auto& p : m.problems) std::printf("          does not match a DenseNet: %s\n", p.c_str());
  if (m.head)
    std::printf("head      %ld classes, layer '%s' (%ld features in)\n", long(m.head->classes), m.head->layer.c_str(),
                long(m.head->in));
  else
    std::printf("head      none (backbone only)\n");
  std::printf("tensors   %zu: %ld trainable parameters, %ld BN statistics\n", wf.tensors.size(), long(c.trainable),
              long(c.statistics));
  if (meta) {
    std::string names;
    for (const auto& n : meta->class_names) names += (names.empty() ? "" : ",") + n;
    std::printf("meta      %s, %ld classes (%s), image %ld, normalisation %s (mean %g, std %g)\n", meta->arch.c_str(),
                long(meta->classes), names.c_str(), long(meta->image_size), meta->normalization.c_str(),
                double(meta->norm_mean), double(meta->norm_std));
  }
}

struct ConvertOptions {
  std::string in, out;
  int64_t classes = 0;
  bool drop_head = false;
  uint64_t seed = 1;
};

void run_convert(const ConvertOptions& o) {
  const io::WeightFile wf = io::scan_weight_file(o.in);
  const io::ModelMatch m = io::identify_model(wf);
  if (!m.config) {
    std::string why;
    for (const auto& p : m.problems) why += "; " + p;
    CXR_FAIL(o.in, ": does not hold a DenseNet this build can make", why);
  }
  DenseNetConfig cfg = *m.config;
  cfg.classes = o.classes > 0 ? o.classes : cfg.classes;
  if (cfg.classes < 1) CXR_FAIL(o.in, ": the file has no head: pass --classes K to initialise one");
  const ParamTable table = io::densenet_param_table(cfg);
  std::vector<float> params, state;
  std::optional<io::ModelMeta> meta;
  const auto policy = o.drop_head ? io::HeadPolicy::Drop : io::HeadPolicy::LoadOrInit;
  const std::string what = io::load_weights(o.in, table, params, state, policy, o.seed, &meta);
  io::ModelMeta out = meta.value_or(io::ModelMeta{});
  out.arch = cfg.arch;
  if (out.classes != cfg.classes) out.classes = cfg.classes, out.class_names.clear();
  io::save_checkpoint(o.out, table, params, state, out);
  std::fprintf(stderr, "cxr weights convert: %s: %s\n", o.in.c_str(), what.c_str());
  std::printf("wrote %s (%s, %ld classes)\n", o.out.c_str(), m.arch.c_str(), long(cfg.classes));
}

}  // namespace

void add_weights_commands(CLI::App& app) {
  CLI::App* w = app.add_subcommand("weights", "Inspect and convert weight files (Keras 2/3 HDF5, cxr)");
  w->require_subcommand(1);

  auto path = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  CLI::App* inspect = w->add_subcommand("inspect", "List a weight file's layers and shapes; say which model and head it matches");
  inspect->add_option("FILE", *path, "weight file (.h5, .weights.h5)")->required();
  inspect->add_flag("--json", *json, "Machine-readable output on stdout");
  inspect->callback([path, json] { run_inspect(*path, *json); });

  auto co = std::make_shared<ConvertOptions>();
  CLI::App* convert = w->add_subcommand("convert", "Convert a Keras weight file into a cxr model file");
  convert->add_option("IN", co->in, "input weight file")->required();
  convert->add_option("OUT", co->out, "output cxr model file (.h5)")->required();
  convert->add_option("--classes", co->classes, "classes of the head (default: the file's)");
  convert->add_flag("--drop-head", co->drop_head, "ignore the file's head and initialise a new one");
  convert->add_option("--seed", co->seed, "seed of a newly initialised head")->capture_default_str();
  convert->callback([co] { run_convert(*co); });
}

}  // namespace cxr::cli
