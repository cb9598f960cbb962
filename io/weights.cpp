#include "io/weights.h"

#include <algorithm>
#include <map>
#include <regex>
#include <sstream>

#include "engine/backend.h"
#include "engine/error.h"
#include "io/fileutil.h"
#include "io/hdf5.h"
#include "io/isolated_read.h"

namespace cxr::io {

const char* format_name(WeightFormat f) {
  switch (f) {
    case WeightFormat::Keras2Weights: return "keras2-weights";
    case WeightFormat::Keras2Model: return "keras2-model";
    case WeightFormat::Keras3Weights: return "keras3-weights";
    case WeightFormat::CxrModel: return "cxr-model";
    case WeightFormat::CxrCheckpoint: return "cxr-checkpoint";
  }
  return "?";
}

const char* format_description(WeightFormat f) {
  switch (f) {
    case WeightFormat::Keras2Weights: return "legacy Keras 2 / tf.keras weights (save_weights .h5)";
    case WeightFormat::Keras2Model: return "legacy Keras 2 / tf.keras full model (.h5, weights under /model_weights)";
    case WeightFormat::Keras3Weights: return "Keras 3 weights (.weights.h5)";
    case WeightFormat::CxrModel: return "cxr model (legacy Keras layout + /cxr)";
    case WeightFormat::CxrCheckpoint: return "cxr checkpoint (legacy Keras layout + /cxr + /cxr/training_state)";
  }
  return "?";
}

std::string canonical_layer(const std::string& layer) {
  std::string s = layer;
  std::replace(s.begin(), s.end(), '/', '_');
  return s;
}

bool is_head_name(const std::string& layer) {
  static const std::regex re("fc1000|predictions|dense(_[0-9]+)?");
  return std::regex_match(layer, re);
}

ParamTable densenet_param_table(const DenseNetConfig& cfg) {
  auto be = make_cpu_backend();
  const int64_t size = std::max<int64_t>(32, int64_t(1) << (cfg.blocks.size() + 1));
  DenseNet net(*be, cfg, 1, size, size, /*trainable=*/false, /*allocate=*/false);
  return net.table();
}

int head_kernel_index(const ParamTable& table) {
  for (int i = table.size() - 1; i >= 0; --i)
    if (table[i].role == ParamRole::DenseKernel) return i;
  return -1;
}

namespace {

std::string join(const std::string& a, const std::string& b) { return a == "/" ? "/" + b : a + "/" + b; }

// A string-list attribute, or its chunks name0, name1, ... (Keras splits attributes over 64 KiB).
std::vector<std::string> read_chunked(hid_t obj, const std::string& name) {
  if (h5::has_attr(obj, name)) return h5::read_strings_attr(obj, name);
  std::vector<std::string> all;
  for (int k = 0; h5::has_attr(obj, name + std::to_string(k)); ++k) {
    const auto part = h5::read_strings_attr(obj, name + std::to_string(k));
    all.insert(all.end(), part.begin(), part.end());
  }
  return all;
}

bool has_chunked(hid_t obj, const std::string& name) {
  return h5::has_attr(obj, name) || h5::has_attr(obj, name + "0");
}

std::string optional_string_attr(hid_t obj, const std::string& name) {
  if (!h5::has_attr(obj, name)) return "";
  try {
    return h5::read_string_attr(obj, name);
  } catch (const Error&) {
    return "";
  }
}

// What the deepest existing group on the way to `path` holds, for an error about a missing dataset.
std::string nearest_members(hid_t f, const std::string& path) {
  std::string dir = path.substr(0, path.rfind('/'));
  while (!dir.empty() && !h5::is_group(f, dir)) dir = dir.substr(0, dir.rfind('/'));
  if (dir.empty()) return "";
  std::string s;
  const auto names = h5::members(f, dir);
  for (size_t i = 0; i < names.size() && i < 8; ++i) s += (i ? ", " : "") + quoted(names[i]);
  return "; group " + dir + " holds " + (s.empty() ? "nothing" : s);
}

void scan_legacy_layer(hid_t f, const std::string& root, const std::string& layer, WeightFile& wf) {
  const std::string lp = join(root, layer);
  if (!h5::is_group(f, lp))
    CXR_FAIL(wf.path, ": layer ", quoted(layer), " is listed in ", root, " layer_names but its group ", quoted(lp),
             " is missing", nearest_members(f, lp));
  h5::Handle lg = h5::open_group(f, lp);
  if (!has_chunked(lg, "weight_names"))
    CXR_FAIL(wf.path, ": group ", lp, " has no 'weight_names' attribute (expected one for every layer)");
  for (const auto& w : read_chunked(lg, "weight_names")) {
    FileTensor t;
    t.path = lp + "/" + w;
    if (!h5::is_dataset(f, t.path))
      CXR_FAIL(wf.path, ": dataset ", quoted(t.path), " is missing (listed as ", quoted(w),
               " in weight_names of layer ", quoted(layer), ")", nearest_members(f, t.path));
    const auto info = h5::dataset_info(f, t.path);
    t.shape = info.shape;
    t.dtype = info.dtype;
    const std::string name = w.substr(0, w.rfind(':'));  // "conv1/conv/kernel:0" -> "conv1/conv/kernel"
    t.layer = legacy_weight_layer(layer, w);
    t.weight = name.substr(name.rfind('/') + 1);  // npos + 1 == 0: the whole name
    wf.tensors.push_back(std::move(t));
  }
}

std::string legacy_writer(hid_t root_group) {
  const std::string attr = h5::has_attr(root_group, "layer_names") ? "layer_names" : "layer_names0";
  const auto layout = h5::string_layout_attr(root_group, attr);
  std::string who = !layout            ? "a legacy Keras writer"
                    : layout->variable ? "tf.keras / Keras 2 with h5py 3"
                                       : "Keras 2 with h5py 2.x (numpy S arrays)";
  if (layout) who += " (" + attr + ": " + layout->describe() + " strings)";
  return who;
}

void scan_legacy(hid_t f, const std::string& root, WeightFile& wf) {
  h5::Handle g = h5::open_group(f, root);
  wf.keras_version = optional_string_attr(g, "keras_version");
  wf.backend = optional_string_attr(g, "backend");
  wf.writer = legacy_writer(g);
  for (const auto& layer : read_chunked(g, "layer_names")) scan_legacy_layer(f, root, layer, wf);
}

std::vector<std::string> keras3_weight_names(const std::string& cls, size_t n) {
  std::vector<std::string> names;
  if (cls == "conv2d") names = {"kernel", "bias"};
  else if (cls == "batch_normalization") names = {"gamma", "beta", "moving_mean", "moving_variance"};
  else if (cls == "dense") names = {"kernel", "bias"};
  for (size_t i = names.size(); i < n; ++i) names.push_back("var" + std::to_string(i));
  names.resize(n);
  return names;
}

void scan_keras3(hid_t f, const std::string& layers, WeightFile& wf) {
  static const std::regex counter_re("(.*)_([0-9]+)");
  for (const auto& m : h5::members(f, layers)) {
    const std::string lp = layers + "/" + m, vars = lp + "/vars";
    if (h5::is_group(f, vars)) {
      std::vector<std::pair<int, std::string>> idx;
      for (const auto& v : h5::members(f, vars))
        if (h5::is_dataset(f, vars + "/" + v) && !v.empty() && std::all_of(v.begin(), v.end(), ::isdigit))
          idx.emplace_back(std::stoi(v), v);
      std::sort(idx.begin(), idx.end());
      std::string name;
      {
        h5::Handle vg = h5::open_group(f, vars);
        name = optional_string_attr(vg, "name");
      }
      std::smatch sm;
      std::string cls = m;
      int64_t counter = 0;
      if (std::regex_match(m, sm, counter_re)) cls = sm[1], counter = std::stoll(sm[2]);
      const auto wnames = keras3_weight_names(cls, idx.size());
      for (size_t i = 0; i < idx.size(); ++i) {
        if (idx[i].first != int(i))
          CXR_FAIL(wf.path, ": dataset ", vars, "/", i, " is missing (found ", vars, "/", idx[i].second, ")");
        FileTensor t;
        t.path = vars + "/" + idx[i].second;
        const auto info = h5::dataset_info(f, t.path);
        t.shape = info.shape;
        t.dtype = info.dtype;
        t.layer = name;
        t.weight = wnames[i];
        t.keras3_class = cls;
        t.keras3_counter = counter;
        if (name.empty()) wf.keras3_unnamed = true;
        wf.tensors.push_back(std::move(t));
      }
    }
    if (h5::is_group(f, lp + "/layers")) scan_keras3(f, lp + "/layers", wf);  // a nested model
  }
}

}  // namespace

std::string quoted(const std::string& name) { return quote_for_message(name, 200, /*with_length=*/true); }

std::string legacy_weight_layer(const std::string& group_layer, const std::string& weight_name) {
  const std::string name = weight_name.substr(0, weight_name.rfind(':'));
  const size_t slash = name.rfind('/');
  if (slash == std::string::npos) return group_layer;
  const std::string scope = name.substr(0, slash);
  if (scope == group_layer) return group_layer;
  const std::string suffix = scope.size() > group_layer.size() + 1 && scope.compare(0, group_layer.size(), group_layer) == 0
                                 ? scope.substr(group_layer.size())
                                 : "";
  const bool uniquified = suffix.size() >= 2 && suffix[0] == '_' &&
                          std::all_of(suffix.begin() + 1, suffix.end(), [](char c) { return c >= '0' && c <= '9'; });
  return uniquified ? group_layer : scope;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

namespace {

WeightFile scan_weight_file_here(const std::string& path) {
  std::string why;
  if (!h5::is_hdf5(path, &why)) CXR_FAIL(path, ": ", why, " (expected a Keras or cxr HDF5 weight file)");
  h5::Silence quiet;
  h5::Handle f = h5::open_file(path);
  WeightFile wf;
  wf.path = path;
  try {
    if (has_chunked(f, "layer_names")) {
      wf.format = !h5::is_group(f, "/cxr")                    ? WeightFormat::Keras2Weights
                  : h5::is_group(f, "/cxr/training_state") ? WeightFormat::CxrCheckpoint
                                                           : WeightFormat::CxrModel;
      scan_legacy(f, "/", wf);
      if (wf.format != WeightFormat::Keras2Weights) {
        const std::string cxr = optional_string_attr(f, "cxr_writer");
        wf.writer = (cxr.empty() ? std::string("cxr") : cxr) + " (legacy Keras layout)";
      }
    } else if (h5::is_group(f, "/model_weights")) {
      wf.format = WeightFormat::Keras2Model;
      h5::Handle g = h5::open_group(f, "/model_weights");
      if (!has_chunked(g, "layer_names"))
        CXR_FAIL(path, ": group /model_weights has no 'layer_names' attribute (expected a tf.keras full-model file)");
      scan_legacy(f, "/model_weights", wf);
    } else if (h5::is_group(f, "/layers")) {
      wf.format = WeightFormat::Keras3Weights;
      scan_keras3(f, "/layers", wf);
      wf.writer = wf.keras3_unnamed ? "Keras 3 before 3.6 (no layer names stored)" : "Keras 3 (layer names stored: 3.6 or later)";
    } else {
      CXR_FAIL(path, ": not a Keras weight file: expected a root attribute 'layer_names' (legacy Keras 2 / "
               "tf.keras weights), a group /model_weights (full-model .h5) or a group /layers (Keras 3 "
               ".weights.h5), found none");
    }
  } catch (const Error& e) {
    const std::string what = e.what();
    if (what.find(path) != std::string::npos) throw;
    CXR_FAIL(path, ": ", what);
  }
  return wf;
}

}  // namespace

// In a child process first (Note [untrusted files]).
WeightFile scan_weight_file(const std::string& path) {
  return guarded_hdf5_read(path, [&] { return scan_weight_file_here(path); });
}

void name_keras3_by_order(WeightFile& file, const ParamTable& table) {
  // Group the file's tensors into layers by (class, counter), in creation order per class.
  std::map<std::string, std::map<int64_t, std::vector<FileTensor*>>> by_class;
  for (auto& t : file.tensors) by_class[t.keras3_class][t.keras3_counter].push_back(&t);
  std::vector<std::string> conv_layers, bn_layers;
  for (const auto& e : table.entries()) {
    if (e.role == ParamRole::ConvKernel) conv_layers.push_back(e.layer);
    if (e.role == ParamRole::BnGamma) bn_layers.push_back(e.layer);
  }
  auto assign = [&](const std::string& cls, const std::vector<std::string>& names, const char* what) {
    const auto& layers = by_class[cls];
    if (layers.size() != names.size())
      CXR_FAIL(file.path, ": Keras 3 file without layer names: mapping by order needs ", names.size(), " ", what,
               " layers (/layers/", cls, "*), found ", layers.size());
    size_t i = 0;
    for (const auto& [counter, tensors] : layers) {
      for (auto* t : tensors) t->layer = names[i];
      ++i;
    }
  };
  assign("conv2d", conv_layers, "convolution");
  assign("batch_normalization", bn_layers, "batch normalization");
  for (auto& [counter, tensors] : by_class["dense"])
    for (auto* t : tensors) t->layer = counter ? "dense_" + std::to_string(counter) : "dense";
  for (auto& t : file.tensors)
    if (t.layer.empty())
      CXR_FAIL(file.path, ": Keras 3 layer ", t.path, " (class ", t.keras3_class,
               ") has no name and no counterpart in a DenseNet");
  file.keras3_unnamed = false;
}

namespace {

std::optional<HeadInfo> find_head(const WeightFile& file, std::vector<std::string>* problems) {
  std::map<std::string, HeadInfo> heads;
  for (const auto& t : file.tensors) {
    const std::string l = canonical_layer(t.layer);
    if (!is_head_name(l) || t.weight != "kernel" || t.shape.size() != 2) continue;
    heads[t.layer] = HeadInfo{t.layer, t.shape[0], t.shape[1]};
  }
  if (heads.size() > 1) {
    std::string names;
    for (const auto& [n, h] : heads) names += (names.empty() ? "" : ", ") + n;
    problems->push_back("several dense layers (" + names + "): expected one head");
    return std::nullopt;
  }
  if (heads.empty()) return std::nullopt;
  return heads.begin()->second;
}

ModelMatch match_names(const WeightFile& file) {
  ModelMatch m;
  m.head = find_head(file, &m.problems);
  std::map<std::string, std::vector<int64_t>> shapes;  // canonical layer + "/" + weight -> shape
  for (const auto& t : file.tensors) {
    if (m.head && t.layer == m.head->layer) continue;
    shapes[canonical_layer(t.layer) + "/" + t.weight] = t.shape;
  }
  auto shape_of = [&](const std::string& key) -> const std::vector<int64_t>* {
    const auto it = shapes.find(key);
    return it == shapes.end() ? nullptr : &it->second;
  };
  const auto* stem = shape_of("conv1_conv/kernel");
  const auto* bottleneck = shape_of("conv2_block1_1_conv/kernel");
  const auto* growth = shape_of("conv2_block1_2_conv/kernel");
  if (!stem || !bottleneck || !growth || stem->size() != 4 || bottleneck->size() != 4 || growth->size() != 4) {
    m.problems.push_back("no DenseNet stem and first dense layer (conv1/conv, conv2_block1_1_conv, conv2_block1_2_conv kernels)");
    return m;
  }
  DenseNetConfig cfg;
  cfg.stem = (*stem)[3];
  cfg.bottleneck = (*bottleneck)[3];
  cfg.growth = (*growth)[3];
  cfg.blocks.clear();
  for (int b = 2; shapes.count("conv" + std::to_string(b) + "_block1_1_conv/kernel"); ++b) {
    int l = 1;
    while (shapes.count("conv" + std::to_string(b) + "_block" + std::to_string(l + 1) + "_1_conv/kernel")) ++l;
    cfg.blocks.push_back(l);
  }
  cfg.classes = m.head ? m.head->classes : 1;
  // The widths come from the file's kernel shapes: one declaring 1.5e18 channels made the parameter
  // count overflow int64 while the table was built (UBSan; found by fuzz_weights). DenseNets use tens
  // to hundreds of channels; 65536 keeps every product of widths and depths a file can name far
  // inside int64.
  constexpr int64_t kMaxWidth = int64_t(1) << 16;
  for (const auto& [what, v] : {std::pair{"stem", cfg.stem}, std::pair{"bottleneck", cfg.bottleneck},
                                std::pair{"growth", cfg.growth}, std::pair{"classes", cfg.classes}})
    if (v < 1 || v > kMaxWidth) {
      m.problems.push_back(std::string("the kernels' shapes give ") + what + " " + std::to_string(v) +
                           ", outside 1.." + std::to_string(kMaxWidth));
      return m;
    }
  const bool standard = cfg.growth == 32 && cfg.bottleneck == 128 && cfg.stem == 64;
  cfg.arch = "densenet";
  for (const char* a : {"densenet121", "densenet169", "densenet201"})
    if (standard && DenseNetConfig::from_arch(a).blocks == cfg.blocks) cfg.arch = a;
  ParamTable table;
  try {
    table = densenet_param_table(cfg);
  } catch (const Error& e) {
    m.problems.push_back(std::string("cannot build the DenseNet its names suggest: ") + e.what());
    return m;
  }
  const int head = head_kernel_index(table);
  size_t matched = 0;
  for (const auto& e : table.entries()) {
    if (e.index == head || e.index == head + 1) continue;
    const auto* s = shape_of(canonical_layer(e.layer) + "/" + e.weight());
    if (!s) m.problems.push_back("missing " + e.layer + "/" + e.weight());
    else if (*s != e.keras_shape)
      m.problems.push_back(e.layer + "/" + e.weight() + " has shape " + shape_str(*s) + ", expected " + shape_str(e.keras_shape));
    else ++matched;
  }
  if (matched != shapes.size())
    m.problems.push_back(std::to_string(shapes.size() - matched) + " tensors that no DenseNet layer has");
  if (m.head && m.head->in != table[head].keras_shape[0])
    m.problems.push_back("head " + m.head->layer + " takes " + std::to_string(m.head->in) + " features, the backbone gives " +
                         std::to_string(table[head].keras_shape[0]));
  if (!m.problems.empty()) return m;
  if (!m.head) cfg.classes = 0;
  m.config = cfg;
  if (cfg.arch == "densenet") {
    std::ostringstream os;
    os << "densenet (blocks";
    for (size_t i = 0; i < cfg.blocks.size(); ++i) os << (i ? "," : " ") << cfg.blocks[i];
    os << "; growth " << cfg.growth << ", bottleneck " << cfg.bottleneck << ", stem " << cfg.stem << ")";
    m.arch = os.str();
  } else {
    m.arch = cfg.arch;
  }
  return m;
}

}  // namespace

ModelMatch identify_model(const WeightFile& file) {
  if (!file.keras3_unnamed) return match_names(file);
  // Unnamed Keras 3 layers: try the standard architectures' creation order.
  ModelMatch last;
  for (const char* a : {"densenet121", "densenet169", "densenet201"}) {
    WeightFile named = file;
    try {
      name_keras3_by_order(named, densenet_param_table(DenseNetConfig::from_arch(a)));
    } catch (const Error& e) {
      last.problems = {e.what()};
      continue;
    }
    ModelMatch m = match_names(named);
    if (m.config) return m;
    last = m;
  }
  return last;
}

}  // namespace cxr::io
