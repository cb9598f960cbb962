// Model files and checkpoints (HDF5).
//
// A model file is written in the legacy Keras 2 layout (what tf.keras `save_weights` writes, so a
// Keras DenseNet121 + GlobalAveragePooling2D + Dense(K) model loads it with `load_weights`), plus a
// `/cxr` group with what inference needs (ModelMeta). A checkpoint is a model file plus
// `/cxr/training_state` (TrainingState). Writes go to a temporary file in the same directory that is
// flushed and renamed, so a crash mid-write leaves the previous file intact.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "engine/params.h"

namespace cxr::io {

// What inference needs, carried by every model file we write.
struct ModelMeta {
  std::string arch = "densenet121";
  int64_t classes = 14;
  std::vector<std::string> class_names;  // size == classes
  int64_t image_size = 320;
  std::string normalization = "sample";  // sample | dataset | imagenet
  float norm_mean = 0.0f, norm_std = 1.0f;  // for `dataset` (in 0..255 pixel units)
};

// Everything needed to continue training exactly where it stopped.
struct TrainingState {
  std::vector<float> adam_m, adam_v;  // Adam moments, laid out like the parameter buffer (both required)
  int64_t step = 0;                   // optimizer steps taken
  int64_t epoch = 0;                  // completed epochs
  double learning_rate = 0;           // current (after any plateau reductions)
  std::string rng_state;              // the trainer's generator, serialised as text
  std::string config_json;            // the run's configuration (flags), JSON
  std::string scheduler_json;         // plateau scheduler and best-metric bookkeeping, JSON
};

// How a file's classification head is treated when loading into a table with K classes.
enum class HeadPolicy {
  Require,     // the file must hold a head of K classes
  LoadOrInit,  // load a matching head; a backbone-only file initialises it (Glorot-uniform, bias 0)
  Drop,        // ignore any head in the file; initialise ours
};

// Save a model (and, if given, the training state) atomically.
void save_checkpoint(const std::string& path, const ParamTable& table, const std::vector<float>& params,
                     const std::vector<float>& state, const ModelMeta& meta,
                     const TrainingState* training = nullptr);

// Load weights from a cxr model file/checkpoint or a Keras file (legacy Keras 2 / tf.keras weights or
// full-model .h5, Keras 3 .weights.h5) into params/state laid out by `table`. On any error it throws
// naming the file, the dataset path and what was expected and found, and leaves params/state as they
// were. `meta` and `training` are filled when the file has them (training: only cxr checkpoints).
// Returns a one-line description of what was loaded (format, head handling).
std::string load_weights(const std::string& path, const ParamTable& table, std::vector<float>& params,
                         std::vector<float>& state, HeadPolicy head, uint64_t head_seed,
                         std::optional<ModelMeta>* meta = nullptr,
                         std::optional<TrainingState>* training = nullptr);

// Reads only the ModelMeta of a cxr file (nullopt for a Keras file without one).
std::optional<ModelMeta> read_model_meta(const std::string& path);

// Testing only: save_checkpoint calls `hook(stage, temp_path)` at stage "weights-written" (model
// weights in the temporary file, /cxr not yet) and "before-rename" (temporary file complete, flushed
// and fsynced). A throw from the hook aborts the save as a failed write would (the temporary file is
// removed, the previous file is untouched); a hook that kills the process simulates a crash. Pass an
// empty function to clear it. Not thread-safe: set it only while no save runs.
using SaveFaultHook = std::function<void(const std::string& stage, const std::string& temp_path)>;
void set_save_fault_hook(SaveFaultHook hook);

}  // namespace cxr::io
