#include "io/checkpoint.h"

#include "io/fault.h"
#include "io/fileutil.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <sstream>

#include "engine/error.h"
#include "engine/init.h"
#include "io/hdf5.h"
#include "io/isolated_read.h"
#include "io/weights.h"

namespace cxr::io {

namespace {

constexpr int64_t kFormatVersion = 1;
// The layout written is tf.keras 2's save_weights; tf_keras 2.21 and Keras 3.15 load it (checked by
// tests/fixtures/make_keras_weight_fixtures.py).
constexpr const char* kKerasVersion = "2.21.0";
constexpr const char* kWriter = "cxr 0.1.0";

SaveFaultHook& fault_hook() {
  static SaveFaultHook hook;
  return hook;
}

std::string name_list(const std::vector<std::string>& names, size_t limit = 24) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < limit; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > limit) s += ", ... (" + std::to_string(names.size() - limit) + " more)";
  return s;
}

// ---- loading ---------------------------------------------------------------------------------------

// Where the loader looked for a tensor the file lacks, in the file's own naming.
std::string expected_name(const ParamEntry& e, WeightFormat f) {
  if (f == WeightFormat::Keras3Weights) return "layer " + quoted(canonical_layer(e.layer)) + " " + e.weight();
  return quoted((f == WeightFormat::Keras2Model ? "/model_weights" : "") + e.keras_path());
}

struct HeadSource {
  const FileTensor* kernel = nullptr;
  const FileTensor* bias = nullptr;
  std::string layer;
};

// Maps every table entry except the head to a file tensor; collects the file's head. Throws listing
// the missing and unexpected names when the two sets differ.
std::vector<const FileTensor*> map_backbone(const WeightFile& wf, const ParamTable& table, int hk, HeadSource* head) {
  std::map<std::string, const FileTensor*> by_key;
  for (const auto& t : wf.tensors) {
    const std::string key = canonical_layer(t.layer) + "/" + t.weight;
    const auto [it, fresh] = by_key.emplace(key, &t);
    if (!fresh) CXR_FAIL(wf.path, ": datasets ", it->second->path, " and ", t.path, " both hold ", t.layer, " ", t.weight);
  }
  std::vector<const FileTensor*> src(size_t(table.size()), nullptr);
  std::set<const FileTensor*> used;
  std::vector<std::string> missing, unexpected;
  for (const auto& e : table.entries()) {
    if (hk >= 0 && (e.index == hk || e.index == hk + 1)) continue;
    const auto it = by_key.find(canonical_layer(e.layer) + "/" + e.weight());
    if (it == by_key.end()) {
      missing.push_back(expected_name(e, wf.format));
      continue;
    }
    src[size_t(e.index)] = it->second;
    used.insert(it->second);
  }
  for (const auto& t : wf.tensors) {
    if (used.count(&t)) continue;
    const bool head_layer = is_head_name(canonical_layer(t.layer)) && (head->layer.empty() || head->layer == t.layer);
    if (head_layer && t.weight == "kernel" && !head->kernel) head->kernel = &t, head->layer = t.layer;
    else if (head_layer && t.weight == "bias" && !head->bias) head->bias = &t, head->layer = t.layer;
    else unexpected.push_back(quoted(t.path) + (wf.format == WeightFormat::Keras3Weights ? " (layer " + quoted(t.layer) + " " + t.weight + ")" : ""));
  }
  if (head->kernel && !head->bias) missing.push_back("the bias of head '" + head->layer + "'");
  if (head->bias && !head->kernel) missing.push_back("the kernel of head '" + head->layer + "'");
  if (!missing.empty() || !unexpected.empty()) {
    std::ostringstream os;
    os << wf.path << " (" << format_name(wf.format) << "): its tensors do not match the model's " << table.size()
       << " (a DenseNet whose head is '" << (hk >= 0 ? table[hk].layer : std::string("none")) << "')";
    if (!missing.empty()) os << "; missing " << missing.size() << " (expected, not in the file): " << name_list(missing);
    if (!unexpected.empty())
      os << "; unexpected " << unexpected.size() << " (in the file, unknown layer or weight): " << name_list(unexpected);
    CXR_FAIL(os.str());
  }
  return src;
}

// A NaN or Inf weight poisons every output and every checkpoint after it: refused where it is read.
void check_finite(const FileTensor& t, const std::vector<float>& values) {
  const auto bad = std::find_if(values.begin(), values.end(), [](float v) { return !std::isfinite(v); });
  if (bad != values.end())
    CXR_FAIL("dataset ", t.path, ": element ", bad - values.begin(), " of ", values.size(), " is ", *bad,
             " (weights must be finite)");
}

void check_tensor(const WeightFile& wf, const ParamEntry& e, const FileTensor& t) {
  if (t.shape != e.keras_shape)
    CXR_FAIL(wf.path, ": dataset ", t.path, " (", e.layer, " ", e.weight(), "): expected shape ", shape_str(e.keras_shape),
             ", found ", shape_str(t.shape));
  if (t.dtype != "float32")
    CXR_FAIL(wf.path, ": dataset ", t.path, " (", e.layer, " ", e.weight(), "): expected float32, found ", t.dtype);
}

// Applies the head policy: either points src at the file's head (after checking it) or returns
// true to ask for a fresh head. *note says what happened.
bool resolve_head(const WeightFile& wf, const ParamTable& table, int hk, HeadPolicy policy, const HeadSource& head,
                  std::vector<const FileTensor*>& src, std::string* note) {
  if (hk < 0) {
    *note = head.kernel ? "head '" + head.layer + "' ignored (the model has none)" : "no head";
    return false;
  }
  const ParamEntry& ek = table[hk];
  const int64_t C = ek.keras_shape[0], K = ek.keras_shape[1];
  const std::string fresh = "initialised a new " + std::to_string(K) + "-class head (Glorot-uniform kernel, zero bias)";
  if (policy == HeadPolicy::Drop) {
    *note = head.kernel ? "dropped the file's head '" + head.layer + "' (" + std::to_string(head.kernel->shape.back()) +
                              " classes); " + fresh
                        : "no head in the file; " + fresh;
    return true;
  }
  if (!head.kernel) {
    if (policy == HeadPolicy::Require)
      CXR_FAIL(wf.path, ": no classification head: expected a dense layer named fc1000, predictions, dense or dense_<n> "
               "with kernel ", shape_str({C, K}), ", found the backbone only");
    *note = "no head in the file (backbone only); " + fresh;
    return true;
  }
  const auto& ks = head.kernel->shape;
  if (ks.size() == 2 && ks[0] == C && ks[1] != K)
    CXR_FAIL(wf.path, ": dataset ", head.kernel->path, " (head '", head.layer, "'): it has ", ks[1],
             " classes, the model ", K, ": expected shape ", shape_str({C, K}), ", found ", shape_str(ks),
             "; to start a new head on its backbone, drop the file's head (cxr train --drop-head, cxr weights convert "
             "--drop-head)");
  check_tensor(wf, ek, *head.kernel);
  check_tensor(wf, table[hk + 1], *head.bias);
  src[size_t(hk)] = head.kernel;
  src[size_t(hk) + 1] = head.bias;
  *note = "loaded the head '" + head.layer + "' (" + std::to_string(K) + " classes)";
  return false;
}

ModelMeta read_meta(hid_t f) {
  h5::Handle g = h5::open_group(f, "/cxr");
  ModelMeta m;
  const int64_t version = h5::read_int_attr(g, "format_version");
  if (version > kFormatVersion)
    CXR_FAIL("group /cxr: format_version ", version, " is newer than this build reads (", kFormatVersion, ")");
  m.arch = h5::read_string_attr(g, "arch");
  m.classes = h5::read_int_attr(g, "classes");
  m.class_names = h5::read_strings_attr(g, "class_names");
  m.image_size = h5::read_int_attr(g, "image_size");
  m.normalization = h5::read_string_attr(g, "normalization");
  m.norm_mean = float(h5::read_double_attr(g, "norm_mean"));
  m.norm_std = float(h5::read_double_attr(g, "norm_std"));
  return m;
}

TrainingState read_training(hid_t f, int64_t trainable) {
  const std::string p = "/cxr/training_state";
  h5::Handle g = h5::open_group(f, p);
  TrainingState t;
  t.step = h5::read_int_attr(g, "step");
  t.epoch = h5::read_int_attr(g, "epoch");
  t.learning_rate = h5::read_double_attr(g, "learning_rate");
  // Both Adam moments, one value per parameter: a training state without one of them (a damaged link,
  // found by fuzz_checkpoint) was read as an empty moment, and a resume went on with that moment
  // never restored. Every writer stores both (validate_save).
  for (auto [name, v] : {std::pair{"adam_m", &t.adam_m}, std::pair{"adam_v", &t.adam_v}}) {
    const std::string d = p + "/" + name;
    if (!h5::is_dataset(f, d))
      CXR_FAIL("dataset ", d, ": expected the Adam moment of shape ", shape_str({trainable}), ", found none");
    const auto info = h5::dataset_info(f, d);
    if (info.shape != std::vector<int64_t>{trainable})
      CXR_FAIL("dataset ", d, ": expected shape ", shape_str({trainable}), ", found ", shape_str(info.shape));
    v->resize(size_t(trainable));
    h5::read_floats(f, d, v->data(), trainable);
  }
  t.rng_state = h5::read_string_dataset(f, p + "/rng_state");
  t.config_json = h5::read_string_dataset(f, p + "/config_json");
  t.scheduler_json = h5::read_string_dataset(f, p + "/scheduler_json");
  return t;
}

// Prefixes an error that does not name the file yet with the file's name.
template <typename F>
auto naming_file(const std::string& path, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error& e) {
    const std::string what = e.what();
    if (what.find(path) != std::string::npos) throw;
    CXR_FAIL(path, ": ", what);
  }
}

// ---- saving ----------------------------------------------------------------------------------------

void write_weights(hid_t f, const ParamTable& table, const std::vector<float>& params, const std::vector<float>& state) {
  std::vector<std::string> layers;
  std::map<std::string, std::vector<std::string>> weight_names;
  for (const auto& e : table.entries()) {
    if (!weight_names.count(e.layer)) layers.push_back(e.layer);
    weight_names[e.layer].push_back(e.layer + "/" + e.weight() + ":0");
  }
  h5::write_string_attr(f, "backend", "tensorflow");
  h5::write_string_attr(f, "keras_version", kKerasVersion);
  h5::write_string_attr(f, "cxr_writer", kWriter);
  h5::write_strings_attr(f, "layer_names", layers);
  for (const auto& l : layers) {
    h5::Handle g = h5::create_group(f, "/" + l);
    h5::write_strings_attr(g, "weight_names", weight_names[l]);
  }
  std::vector<float> keras;
  for (const auto& e : table.entries()) {
    keras.resize(size_t(e.numel));
    ours_to_keras(e, (e.trainable ? params : state).data() + e.offset, keras.data());
    h5::write_floats(f, e.keras_path(), e.keras_shape, keras.data());
  }
}

void write_meta(hid_t f, const ModelMeta& m) {
  h5::Handle g = h5::create_group(f, "/cxr");
  h5::write_int_attr(g, "format_version", kFormatVersion);
  h5::write_string_attr(g, "writer", kWriter);
  h5::write_string_attr(g, "arch", m.arch);
  h5::write_int_attr(g, "classes", m.classes);
  h5::write_strings_attr(g, "class_names", m.class_names);
  h5::write_int_attr(g, "image_size", m.image_size);
  h5::write_string_attr(g, "normalization", m.normalization);
  h5::write_double_attr(g, "norm_mean", double(m.norm_mean));
  h5::write_double_attr(g, "norm_std", double(m.norm_std));
}

void write_training(hid_t f, const TrainingState& t) {
  const std::string p = "/cxr/training_state";
  h5::Handle g = h5::create_group(f, p);
  h5::write_int_attr(g, "step", t.step);
  h5::write_int_attr(g, "epoch", t.epoch);
  h5::write_double_attr(g, "learning_rate", t.learning_rate);
  h5::write_floats(f, p + "/adam_m", {int64_t(t.adam_m.size())}, t.adam_m.data());
  h5::write_floats(f, p + "/adam_v", {int64_t(t.adam_v.size())}, t.adam_v.data());
  h5::write_string_dataset(f, p + "/rng_state", t.rng_state);
  h5::write_string_dataset(f, p + "/config_json", t.config_json);
  h5::write_string_dataset(f, p + "/scheduler_json", t.scheduler_json);
}

void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), O_RDONLY | (directory ? O_DIRECTORY : 0));
  if (fd < 0) CXR_FAIL("cannot open ", path, " to sync it: ", std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  // Some file systems cannot sync a directory (EINVAL): the rename is then as durable as they allow.
  if (rc != 0 && !(directory && (err == EINVAL || err == ENOTSUP)))
    CXR_FAIL("fsync of ", path, " failed: ", std::strerror(err));
}

std::string checkpoint_temp_path(const std::string& path) {
  static std::atomic<int> counter{0};
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "" : path.substr(0, slash + 1);
  const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  return dir + "." + base + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

std::string dir_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

void validate_save(const ParamTable& table, const std::vector<float>& params, const std::vector<float>& state,
                   const ModelMeta& meta, const TrainingState* training) {
  CXR_CHECK(int64_t(params.size()) == table.trainable_count(), "parameter buffer holds ", params.size(),
            " floats, the table ", table.trainable_count());
  CXR_CHECK(int64_t(state.size()) == table.state_count(), "state buffer holds ", state.size(), " floats, the table ",
            table.state_count());
  const int hk = head_kernel_index(table);
  if (hk >= 0)
    CXR_CHECK(meta.classes == table[hk].keras_shape[1], "meta says ", meta.classes, " classes, the head has ",
              table[hk].keras_shape[1]);
  CXR_CHECK(meta.class_names.empty() || int64_t(meta.class_names.size()) == meta.classes, "meta has ",
            meta.class_names.size(), " class names for ", meta.classes, " classes");
  if (training)
    for (const auto* v : {&training->adam_m, &training->adam_v})
      CXR_CHECK(int64_t(v->size()) == table.trainable_count(), "Adam moments hold ", v->size(),
                " floats, the parameters ", table.trainable_count());
}

}  // namespace

void set_save_fault_hook(SaveFaultHook hook) { fault_hook() = std::move(hook); }

void save_checkpoint(const std::string& path, const ParamTable& table, const std::vector<float>& params,
                     const std::vector<float>& state, const ModelMeta& meta, const TrainingState* training) {
  naming_file(path, [&] { validate_save(table, params, state, meta, training); });
  h5::Silence quiet;
  remove_stale_temps(path);  // of earlier saves that were killed
  const std::string tmp = checkpoint_temp_path(path);
  try {
    h5::Handle f = h5::create_file(tmp);
    fault_point("checkpoint: temporary file created");
    write_weights(f, table, params, state);
    fault_point("checkpoint: weights written");
    if (fault_hook()) fault_hook()("weights-written", tmp);
    write_meta(f, meta);
    if (training) write_training(f, *training);
    if (H5Fflush(f, H5F_SCOPE_GLOBAL) < 0) CXR_FAIL("flushing ", tmp, " failed: ", h5::last_error());
    if (!f.close()) CXR_FAIL("closing ", tmp, " failed: ", h5::last_error());
    fsync_path(tmp, false);
    fault_point("checkpoint: closed, before the rename");
    if (fault_hook()) fault_hook()("before-rename", tmp);
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
      CXR_FAIL("cannot rename ", tmp, " to ", path, ": ", std::strerror(errno));
    fault_point("checkpoint: renamed");
  } catch (const std::exception& e) {
    std::remove(tmp.c_str());
    CXR_FAIL(path, ": saving failed, the previous file (if any) is unchanged: ", e.what());
  }
  fsync_path(dir_of(path), true);
}

namespace {

std::string load_weights_here(const std::string& path, const ParamTable& table, std::vector<float>& params,
                              std::vector<float>& state, HeadPolicy head, uint64_t head_seed,
                              std::optional<ModelMeta>* meta, std::optional<TrainingState>* training) {
  WeightFile wf = scan_weight_file(path);
  if (wf.keras3_unnamed) name_keras3_by_order(wf, table);
  const int hk = head_kernel_index(table);
  HeadSource head_src;
  auto src = map_backbone(wf, table, hk, &head_src);
  for (const auto& e : table.entries())
    if (src[size_t(e.index)]) check_tensor(wf, e, *src[size_t(e.index)]);
  std::string note;
  const bool fresh_head = resolve_head(wf, table, hk, head, head_src, src, &note);

  // Everything goes into temporaries; params/state change only once all of it has been read.
  std::vector<float> new_params(size_t(table.trainable_count())), new_state(size_t(table.state_count())), keras;
  std::optional<ModelMeta> new_meta;
  std::optional<TrainingState> new_training;
  naming_file(path, [&] {
    h5::Silence quiet;
    h5::Handle f = h5::open_file(path);
    for (const auto& e : table.entries()) {
      const FileTensor* t = src[size_t(e.index)];
      if (!t) continue;
      keras.resize(size_t(e.numel));
      h5::read_floats(f, t->path, keras.data(), e.numel);
      check_finite(*t, keras);
      keras_to_ours(e, keras.data(), (e.trainable ? new_params : new_state).data() + e.offset);
    }
    if (h5::is_group(f, "/cxr")) new_meta = read_meta(f);
    if (h5::is_group(f, "/cxr/training_state")) new_training = read_training(f, table.trainable_count());
  });
  if (fresh_head) {
    const ParamEntry& ek = table[hk];
    ParamTable head_table;
    head_table.add_dense(ek.layer, ek.keras_shape[0], ek.keras_shape[1]);
    std::vector<float> hp, hs;
    init_keras_default(head_table, hp, hs, head_seed);
    std::copy(hp.begin(), hp.begin() + ek.numel, new_params.begin() + ek.offset);
    std::copy(hp.begin() + ek.numel, hp.end(), new_params.begin() + table[hk + 1].offset);
  }
  params.swap(new_params);
  state.swap(new_state);
  if (meta) *meta = std::move(new_meta);
  if (training) *training = std::move(new_training);
  return std::string(format_description(wf.format)) + "; " + note;
}

}  // namespace

// Both readers run in a child process first (Note [untrusted files]).
std::string load_weights(const std::string& path, const ParamTable& table, std::vector<float>& params,
                         std::vector<float>& state, HeadPolicy head, uint64_t head_seed, std::optional<ModelMeta>* meta,
                         std::optional<TrainingState>* training) {
  return guarded_hdf5_read(path, [&] {
    return load_weights_here(path, table, params, state, head, head_seed, meta, training);
  });
}

std::optional<ModelMeta> read_model_meta(const std::string& path) {
  std::string why;
  if (!h5::is_hdf5(path, &why)) CXR_FAIL(path, ": ", why, " (expected a cxr or Keras HDF5 weight file)");
  return guarded_hdf5_read(path, [&] {
    return naming_file(path, [&]() -> std::optional<ModelMeta> {
      h5::Silence quiet;
      h5::Handle f = h5::open_file(path);
      if (!h5::is_group(f, "/cxr")) return std::nullopt;
      return read_meta(f);
    });
  });
}

}  // namespace cxr::io
