// Reading the layout of weight files: what tensors a Keras (legacy Keras 2 / tf.keras weights or
// full-model .h5, Keras 3 .weights.h5) or cxr file holds, under which Keras layer and weight names,
// and which DenseNet (and head) they make. load_weights (io/checkpoint.h) and `cxr weights inspect`
// are built on this.
//
// Note [Keras weight file layouts] (confirmed on files written by tf_keras 2.21 and Keras 3.15 in
// tests/fixtures/make_keras_weight_fixtures.py, and by Keras 2.2.4 with h5py 2.10 in
// tests/fixtures/make_legacy_weight_fixtures.py):
//  - legacy: root attribute `layer_names` (every layer, weightless ones too; variable- or
//    fixed-length strings, see Note [HDF5 strings as writers store them] in io/hdf5.h; split into
//    layer_names0, layer_names1, ... when over 64 KiB), each layer
//    group has `weight_names` ("conv1/conv/kernel:0"; an empty float64 array for weightless layers),
//    and the dataset is <group>/<weight name>: /conv1/conv/conv1/conv/kernel:0. A nested model (a
//    Sequential holding the DenseNet) is one layer whose weight_names are the inner weights'
//    names: /densenet121/conv1/conv/kernel:0. Full-model files hold the same under /model_weights.
//  - Keras 3: /layers/<snake_case class>[_<n>]/vars/<i> with i the variable's position (BN: gamma,
//    beta, moving_mean, moving_variance); the layer's name ("conv1_conv": Keras 3 names have no
//    '/') in the `name` attribute of the vars group (Keras >= 3.6). Nested models nest under
//    /layers/<model>/layers/. Without names, layers map by class and creation counter.
// We compare layer names with '/' replaced by '_', so "conv1/conv" and "conv1_conv" are one name.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/model.h"
#include "engine/params.h"

namespace cxr::io {

enum class WeightFormat { Keras2Weights, Keras2Model, Keras3Weights, CxrModel, CxrCheckpoint };
const char* format_name(WeightFormat f);  // "keras2-weights", ...
const char* format_description(WeightFormat f);

struct FileTensor {
  std::string layer;   // Keras layer name ("conv1/conv", Keras 3: "conv1_conv"); "" if unnamed
  std::string weight;  // kernel, bias, gamma, beta, moving_mean, moving_variance (or "var<i>")
  std::string path;    // the dataset's full path in the file
  std::vector<int64_t> shape;
  std::string dtype;   // "float32", ...
  std::string keras3_class;  // Keras 3 only: "conv2d", "batch_normalization", "dense", ...
  int64_t keras3_counter = 0;
};

struct WeightFile {
  std::string path;
  WeightFormat format = WeightFormat::Keras2Weights;
  std::string keras_version, backend;  // root attributes where present
  std::string writer;  // which program wrote it, judged from its layout (writer_of, below)
  std::vector<FileTensor> tensors;     // in file order (legacy: layer_names order)
  bool keras3_unnamed = false;         // some Keras 3 layer has no `name` attribute
};

// Lists the tensors of a weight file (no data is read). Throws naming the file and the object for
// anything that is not one of the formats above (not HDF5, truncated, a layer listed but absent...).
WeightFile scan_weight_file(const std::string& path);

// "conv1/conv" and "conv1_conv" -> "conv1_conv".
std::string canonical_layer(const std::string& layer);
// A head layer name the loader recognises: fc1000, predictions, dense, dense_<n>.
bool is_head_name(const std::string& layer);

// The parameter table of a DenseNet configuration (built without allocating the model).
ParamTable densenet_param_table(const DenseNetConfig& cfg);
// The head (dense) layer of a table: index of its kernel, or -1 if it has none.
int head_kernel_index(const ParamTable& table);

struct HeadInfo {
  std::string layer;
  int64_t in = 0, classes = 0;
};

// Which model a file holds: the DenseNet configuration its backbone matches exactly (names, order
// of roles, shapes), and its head. `arch` is densenet121/169/201, "densenet (blocks ...)" for
// another block list, or "unknown" (then `problems` says why).
struct ModelMatch {
  std::optional<DenseNetConfig> config;  // classes = the head's, or 0 without a head
  std::string arch = "unknown";
  std::optional<HeadInfo> head;
  std::vector<std::string> problems;
};
ModelMatch identify_model(const WeightFile& file);

// Keras 3 files without layer names: names them by class and creation order against `table`.
// Throws if the counts of convolutions, batch norms or dense layers differ.
void name_keras3_by_order(WeightFile& file, const ParamTable& table);

// "[3, 3, 128, 32]": a shape as error messages print it.
std::string shape_str(const std::vector<int64_t>& shape);
// "'conv1/conv/kernel:' (18 chars)": a name from a file as error messages print it, so that a
// truncated name or an encoding problem shows at a glance.
std::string quoted(const std::string& name);

// The layer a legacy Keras weight belongs to, from its group's layer name and its weight name
// "<scope>/<variable>:<k>". The scope is the layer's own name, TF 1's uniquified copy of it
// ("conv1/conv_1/kernel:0" when a second model was built in the same session), or, for a nested
// model (one layer holding a whole DenseNet), the inner layer's name. Keras's own loader goes by
// order and ignores these names; we go by name, so the group's layer wins unless the scope names
// another layer.
std::string legacy_weight_layer(const std::string& group_layer, const std::string& weight_name);

}  // namespace cxr::io
