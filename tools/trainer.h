// cxr train: fine-tunes a DenseNet on a packed dataset with weighted BCE and Adam, validates after
// every epoch, keeps the last and the best checkpoint, logs metrics, and resumes exactly.
#pragma once
#include <cstdint>
#include <string>

#include "engine/comm.h"
#include "tools/memory_policy.h"

namespace cxr::app {

struct TrainOptions {
  std::string data, out, weights;
  std::string arch = "densenet121";
  std::string device = "auto";
  MemoryPolicyOptions memory;        // --recompute, --memory-budget
  std::string normalize = "sample";  // sample | dataset | imagenet
  std::string loss = "weighted";     // weighted | plain
  std::string monitor = "loss";      // best checkpoint and plateau by validation loss or mean AUC
  int64_t epochs = 5, batch = 32, size = 0;  // size 0: the dataset's
  double lr = 1e-3, weight_decay = 0.0;
  double bn_momentum = 0.99;          // Keras's; 0.9 suits short runs (PyTorch's default)
  double plateau_factor = 0.1;
  int64_t plateau_patience = 1;      // epochs without improvement before the rate is reduced
  int64_t freeze_epochs = 0;         // epochs that train the head only
  int64_t log_every = 20;            // steps between metrics-log lines
  int64_t max_steps_per_epoch = 0;   // 0: the whole training set each epoch
  uint64_t seed = 0;
  bool flip = true, resume = false, quiet = false;
  bool reset_lr = false;  // with resume: start from `lr` instead of the checkpoint's current rate
  bool drop_head = false;  // with weights: ignore the file's head (the 1000-class ImageNet top)
  // For side-by-side checks against another framework (scripts/validate_nih.sh): save the initial
  // weights as initial.h5, and log every step's dataset indices and flips to batches.jsonl.
  bool save_initial = false, log_batches = false;
  // --trace-steps A:B: profile global steps A to B (1-based, inclusive) into <out>/trace.json (0:0 off).
  int64_t trace_first = 0, trace_last = 0;
  // Data parallel (under mpirun or srun; Note [Data parallel] in engine/data_parallel.h): `batch` is
  // the global batch.
  bool sync_bn = false;        // BN statistics over the global batch
  double bucket_mb = 25;       // gradient all-reduce buckets (the first is 1 MB)
  double comm_timeout = 300;   // seconds a collective may wait for the other ranks
  int64_t check_replicas = 0;  // compare every rank's parameters every N steps (0: never)
};

struct TrainResult {
  int64_t epochs_done = 0;
  double best_metric = 0;
  bool interrupted = false;  // Ctrl-C: a checkpoint was saved and the run can be resumed
};

// Runs training; throws cxr::Error with a one-line reason on bad input or a non-finite loss (the
// last good checkpoint is kept).
TrainResult train(const TrainOptions& opt);
// The same as one rank of `comm` (train(opt) uses process_comm(): MPI's world under a launcher).
TrainResult train(const TrainOptions& opt, Comm& comm);

}  // namespace cxr::app
