// cxr evaluate and cxr predict.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace cxr::app {

struct EvaluateOptions {
  std::string weights, data, out;
  std::string split = "test";
  std::string device = "auto";
  int64_t batch = 32;
  int bootstrap = 0;  // resamples for 95% intervals (0: none)
  uint64_t seed = 0;
  bool quiet = false;
  double comm_timeout = 300;  // under mpirun/srun: seconds a collective may wait for the other ranks
};

// Under mpirun or srun the set is sharded over the ranks and gathered (each image inferred once by
// one rank; --batch is the global batch); only rank 0 writes files.
// Per-class ROC AUC (+ bootstrap intervals), ROC curves, the published comparison, thresholds chosen
// on the validation set and the metrics they give on `split`. Writes metrics.json, per_class.csv and
// roc_curves.{svg,png} into `out`; returns what metrics.json holds.
nlohmann::json evaluate(const EvaluateOptions& opt);
// The printed table of an evaluate result.
std::string evaluation_table(const nlohmann::json& result);

struct PredictOptions {
  std::string weights, out;
  std::vector<std::string> inputs;  // image files, folders (searched recursively) or .txt lists
  std::string device = "auto", normalize;
  int64_t size = 0, batch = 16;
  std::string thresholds;           // metrics.json of cxr evaluate: adds 0/1 columns
  std::string threshold_rule = "youden";
  bool quiet = false;
};
// Writes the CSV (image, one probability column per class[, one 0/1 column per class]); returns the
// number of images written. Unreadable images are reported on stderr and skipped.
struct PredictResult {
  int64_t written = 0;  // rows in the CSV
  std::vector<std::string> failed;  // images that could not be read (each named on stderr)
};
// Writes the CSV of every readable image (one column per class of the model, named as the model
// names them). As cp and grep do, the caller reports failure when `failed` is not empty.
PredictResult predict(const PredictOptions& opt);

}  // namespace cxr::app
