#include "io/loader.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "engine/error.h"

namespace cxr::io {

HostAllocator default_host_allocator() {
  return {[](size_t bytes) -> void* {
            void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
            if (!p) throw Error("loader: cannot allocate " + std::to_string(bytes) + " bytes");
            return p;
          },
          [](void* p) { std::free(p); }};
}

// One batch's memory, from the allocator hook.
struct Loader::Buffer {
  HostAllocator alloc;
  int64_t* indices = nullptr;
  uint8_t* pixels = nullptr;
  float* input = nullptr;
  float* labels = nullptr;
  uint8_t* flipped = nullptr;
  Batch batch;
  template <typename T>
  T* get(size_t n) {
    return static_cast<T*>(alloc.allocate(std::max<size_t>(n, 1) * sizeof(T)));
  }
  Buffer(const HostAllocator& a, int64_t b, int64_t hw, bool normalize) : alloc(a) {
    indices = get<int64_t>(b);
    pixels = get<uint8_t>(b * hw);
    if (normalize) input = get<float>(b * 3 * hw);
    labels = get<float>(b * kNumClasses);
    flipped = get<uint8_t>(b);
  }
  ~Buffer() {
    for (void* p : {static_cast<void*>(indices), static_cast<void*>(pixels), static_cast<void*>(input),
                    static_cast<void*>(labels), static_cast<void*>(flipped)})
      if (p) alloc.release(p);
  }
};

Loader::Loader(const PackedDataset& data, const LoaderOptions& opt) : data_(data), opt_(opt) {
  CXR_CHECK(opt_.batch > 0, "batch size ", opt_.batch);
  CXR_CHECK(opt_.threads >= 0, "loader threads ", opt_.threads);
  CXR_CHECK(opt_.shard_count >= 1 && opt_.shard_rank >= 0 && opt_.shard_rank < opt_.shard_count, "loader shard ",
            opt_.shard_rank, " of ", opt_.shard_count);
  if (!opt_.allocator.allocate) opt_.allocator = default_host_allocator();
  const int threads = opt_.threads > 0 ? opt_.threads : static_cast<int>(std::thread::hardware_concurrency());
  set_ = data_.indices(opt_.split);
  for (int k = 0; k < 2; ++k)
    bufs_.push_back(
        std::make_unique<Buffer>(opt_.allocator, int(opt_.local_capacity()), data_.image_bytes(), opt_.normalize));
  // The system may refuse a thread (EAGAIN): stop and join those already started before the
  // exception leaves, or unwinding would destroy the condition variable they sleep on (a hang) and
  // their joinable std::threads (std::terminate). LoaderShutdown.ARefusedHelperThread* tests this.
  try {
    for (int t = 1; t < std::min(threads, int(opt_.local_capacity())); ++t) helpers_.emplace_back([this] { helper(); });
  } catch (...) {
    stop_helpers();
    throw;
  }
}

Loader::~Loader() {
  stop_worker();
  stop_helpers();
}

void Loader::stop_helpers() {
  {
    std::lock_guard<std::mutex> lock(pool_mu_);
    pool_stop_ = true;
  }
  pool_cv_.notify_all();
  for (auto& t : helpers_) t.join();
  helpers_.clear();
}

int64_t Loader::batches_per_epoch() const {
  const int64_t n = images(), b = opt_.batch;
  return opt_.drop_last ? n / b : (n + b - 1) / b;
}

std::vector<int64_t> Loader::epoch_order(int64_t epoch) const {
  std::vector<int64_t> order = set_;
  if (opt_.shuffle) {
    Rng rng(mix64(opt_.seed ^ 0x10ADE5ull) ^ mix64(static_cast<uint64_t>(epoch) + 1));
    shuffle(order, rng);
  }
  return order;
}

void Loader::stop_worker() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Loader::start_epoch(int64_t epoch) {
  stop_worker();
  std::vector<int64_t> order = epoch_order(epoch);
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = false;
    epoch_ = epoch;
    order_ = std::move(order);
    produced_ = consumed_ = 0;
    total_ = batches_per_epoch();
    error_ = nullptr;
  }
  thread_ = std::thread([this] { worker(); });
}

// One image of a batch: read (pread, see packed.cpp), flip, normalise straight into the batch
// buffer; nothing is copied twice.
void Loader::fill_image(Buffer& b, int64_t epoch, int64_t k) {
  const int S = data_.image_size();
  const int64_t hw = data_.image_bytes();
  const int64_t i = b.indices[k];
  uint8_t* img = b.pixels + k * hw;
  if (opt_.verify_checksums) data_.read_batch(&i, 1, img);
  else data_.read_batch_unchecked(&i, 1, img);
  const std::vector<uint8_t>& labels = data_.labels();
  for (int c = 0; c < kNumClasses; ++c) b.labels[k * kNumClasses + c] = labels[i * kNumClasses + c];
  // The flip of an image is a function of (seed, epoch, image): reproducible whatever the batching.
  b.flipped[k] = opt_.flip && (mix64(opt_.seed ^ mix64(static_cast<uint64_t>(epoch) * 0x9E37ull + 7) ^
                                     mix64(static_cast<uint64_t>(i) + 0xF11Full)) & 1u);
  if (b.flipped[k])
    for (int y = 0; y < S; ++y) std::reverse(img + y * S, img + (y + 1) * S);
  if (opt_.normalize) normalize_cpu(b.input + k * 3 * hw, img, 1, hw, opt_.norm);
}

// Note [loader threads]
// ~~~~~~~~~~~~~~~~~~~~~
// The batch thread and threads_ - 1 helpers (started once, sleeping on a condition variable between
// batches) take the images of a batch from an atomic counter. OpenMP was tried first: its idle
// threads spin between batches, which on a busy machine cost more than the parallelism gained
// (a 7 ms test took 200 ms) and would steal cycles from a CPU training step.
void Loader::run_job(Job& job) {
  for (int64_t k; (k = job.next.fetch_add(1)) < job.n;) {
    try {
      fill_image(*job.buf, job.epoch, k);
    } catch (...) {
      std::lock_guard<std::mutex> lock(pool_mu_);
      if (!job.error) job.error = std::current_exception();
    }
  }
}

void Loader::helper() {
  uint64_t seen = 0;
  for (;;) {
    Job* job;
    {
      std::unique_lock<std::mutex> lock(pool_mu_);
      pool_cv_.wait(lock, [&] { return pool_stop_ || job_gen_ != seen; });
      if (pool_stop_) return;
      seen = job_gen_;
      job = &job_;
      ++job_active_;
    }
    run_job(*job);
    {
      std::lock_guard<std::mutex> lock(pool_mu_);
      --job_active_;
    }
    pool_done_cv_.notify_all();
  }
}

void Loader::fill(Buffer& b, int64_t epoch, int64_t index, const std::vector<int64_t>& order) {
  const int64_t B = opt_.batch;
  const int64_t global = std::min<int64_t>(B, static_cast<int64_t>(order.size()) - index * B);
  const int64_t R = opt_.shard_count, r = opt_.shard_rank;
  const int64_t first = index * B + global * r / R, n = global * (r + 1) / R - global * r / R;
  std::copy(order.begin() + first, order.begin() + first + n, b.indices);
  {
    std::lock_guard<std::mutex> lock(pool_mu_);
    job_.buf = &b, job_.epoch = epoch, job_.n = n, job_.error = nullptr;
    job_.next.store(0);
    ++job_gen_;
  }
  if (!helpers_.empty()) pool_cv_.notify_all();
  run_job(job_);
  {
    // Helpers that woke for this job finish their images; late ones join the next job instead.
    std::unique_lock<std::mutex> lock(pool_mu_);
    pool_done_cv_.wait(lock, [&] { return job_active_ == 0; });
    if (job_.error) std::rethrow_exception(job_.error);
  }
  b.batch.size = n;
  b.batch.epoch = epoch;
  b.batch.index = index;
  b.batch.indices = b.indices;
  b.batch.pixels = b.pixels;
  b.batch.input = opt_.normalize ? b.input : nullptr;
  b.batch.labels = b.labels;
  b.batch.flipped = b.flipped;
}

void Loader::worker() {
  for (;;) {
    int64_t k, epoch;
    {
      std::unique_lock<std::mutex> lock(mu_);
      // Batch k goes to buffer k % 2, free once the consumer has moved past batch k - 2.
      cv_.wait(lock, [&] { return stop_ || (produced_ < total_ && produced_ < consumed_ + 1); });
      if (stop_) return;
      k = produced_;
      epoch = epoch_;
    }
    try {
      fill(*bufs_[k % 2], epoch, k, order_);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      error_ = std::current_exception();
      cv_.notify_all();
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++produced_;
    }
    cv_.notify_all();
  }
}

const Batch* Loader::next() {
  std::unique_lock<std::mutex> lock(mu_);
  CXR_CHECK(thread_.joinable() || total_ == 0 || consumed_ >= total_, "Loader::next() before start_epoch()");
  // consumed_ counts batches handed out; handing out batch k releases batch k - 1's buffer, which
  // the worker may then fill with batch k + 1.
  if (consumed_ >= total_) return nullptr;
  cv_.notify_all();
  cv_.wait(lock, [&] { return produced_ > consumed_ || error_; });
  if (error_) std::rethrow_exception(error_);
  const int64_t k = consumed_++;
  cv_.notify_all();
  return &bufs_[k % 2]->batch;
}

}  // namespace cxr::io
