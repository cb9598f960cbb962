// Batches from a packed file. Training pipelines reshuffle every epoch (order = f(seed, epoch):
// same seed, same orders; different epochs, different orders) and may flip images horizontally;
// evaluation pipelines never shuffle or augment and yield every image of the set exactly once, the
// last partial batch included. Batches are assembled on a background thread, double-buffered, into
// memory from an allocator hook (the CUDA side passes pinned host memory: see
// kernels/cuda/normalize_cuda.h for the pinned allocator and the asynchronous upload); the
// background thread shares each batch's images with `threads - 1` helper threads.
#pragma once
#include <atomic>
#include <condition_variable>
#include <exception>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "io/normalize.h"
#include "io/packed.h"

namespace cxr::io {

// Host memory for batch buffers; default: aligned new/delete.
struct HostAllocator {
  std::function<void*(size_t bytes)> allocate;
  std::function<void(void* p)> release;
};
HostAllocator default_host_allocator();

struct LoaderOptions {
  Split split = Split::Train;
  int batch = 32;
  bool shuffle = false;          // training: new order every epoch
  bool flip = false;             // training: random horizontal flip, p = 0.5 per image
  bool drop_last = false;        // training may drop the last partial batch; eval never should
  uint64_t seed = 0;
  bool normalize = true;         // fill Batch::input on the host; false: only Batch::pixels (GPU normalises)
  NormParams norm;
  HostAllocator allocator;       // empty: default_host_allocator()
  int threads = 0;               // threads assembling a batch (read, flip, normalise); 0: all cores
  bool verify_checksums = true;  // each image against /image_xxh3 (false: the benchmark's comparison)
  // Data parallel: `batch` is the global batch, and this loader yields rank shard_rank's share of
  // each global batch of the same order (images [n r / R, n (r + 1) / R) of a batch of n, R =
  // shard_count): which images (and flips) a global batch holds does not depend on R.
  int shard_rank = 0, shard_count = 1;
  int64_t local_capacity() const { return (batch + shard_count - 1) / shard_count; }
  static LoaderOptions train(int batch, uint64_t seed) {
    LoaderOptions o;
    o.split = Split::Train, o.batch = batch, o.shuffle = true, o.flip = true, o.seed = seed;
    return o;
  }
  static LoaderOptions eval(Split s, int batch) {
    LoaderOptions o;
    o.split = s, o.batch = batch;
    return o;
  }
};

// One batch; valid until the next call to Loader::next() or start_epoch().
struct Batch {
  int64_t size = 0;               // images in this batch (<= options.local_capacity())
  int64_t epoch = 0, index = 0;   // batch index within the epoch
  const int64_t* indices = nullptr;  // (size) dataset indices
  const uint8_t* pixels = nullptr;   // (size, S, S) uint8, flipped when flip is on
  const float* input = nullptr;      // (size, 3, S, S) normalised (when options.normalize)
  const float* labels = nullptr;     // (size, 14) 0/1
  const uint8_t* flipped = nullptr;  // (size) 1 when image k was flipped
};

class Loader {
 public:
  Loader(const PackedDataset& data, const LoaderOptions& opt);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  int64_t images() const { return static_cast<int64_t>(set_.size()); }  // in the set
  int64_t batches_per_epoch() const;
  // The image order of an epoch (a pure function of seed and epoch for shuffling loaders).
  std::vector<int64_t> epoch_order(int64_t epoch) const;

  // Starts (or restarts) an epoch: the background thread begins assembling its batches.
  void start_epoch(int64_t epoch);
  // The next batch of the current epoch, or nullptr at its end. Throws what the background thread threw.
  const Batch* next();

 private:
  struct Buffer;
  // The images of one batch, shared by the batch thread and the helpers (Note [loader threads]).
  struct Job {
    Buffer* buf = nullptr;
    int64_t epoch = 0, n = 0;
    std::atomic<int64_t> next{0};
    std::exception_ptr error;
  };
  void worker();
  void fill(Buffer& b, int64_t epoch, int64_t index, const std::vector<int64_t>& order);
  void fill_image(Buffer& b, int64_t epoch, int64_t k);
  void run_job(Job& job);
  void helper();
  void stop_worker();
  void stop_helpers();  // stops and joins the helper threads

  const PackedDataset& data_;
  LoaderOptions opt_;
  std::vector<int64_t> set_;
  std::vector<std::unique_ptr<Buffer>> bufs_;  // two
  Batch out_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::thread thread_;
  bool stop_ = false;
  int64_t epoch_ = 0;
  std::vector<int64_t> order_;
  int64_t produced_ = 0, consumed_ = 0, total_ = 0;  // batches in this epoch
  std::exception_ptr error_;

  // Helper threads for the images of a batch (Note [loader threads] in loader.cpp).
  std::vector<std::thread> helpers_;
  std::mutex pool_mu_;
  std::condition_variable pool_cv_, pool_done_cv_;
  Job job_;
  uint64_t job_gen_ = 0;
  int job_active_ = 0;
  bool pool_stop_ = false;
};

}  // namespace cxr::io
