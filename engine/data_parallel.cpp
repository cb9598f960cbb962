#include "engine/data_parallel.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include <unistd.h>

#include "engine/error.h"

namespace cxr {

#if defined(CXR_HAVE_NCCL)
// kernels/cuda/nccl_reducer.cu
std::unique_ptr<GradientReducer> make_nccl_gradient_reducer(Backend& be, Comm& comm, float* grads,
                                                            std::vector<GradientBucket> buckets);
#endif

std::vector<GradientBucket> plan_gradient_buckets(const ParamTable& table, double bucket_mb, double first_mb) {
  CXR_CHECK(bucket_mb > 0 && first_mb > 0, "bucket sizes must be positive: ", first_mb, " MB, ", bucket_mb, " MB");
  std::vector<GradientBucket> out;
  int64_t end = table.trainable_count(), begin = end;
  double cap = first_mb;
  for (int i = table.size(); i-- > 0;) {
    const ParamEntry& e = table[i];
    if (!e.trainable) continue;
    // Close the bucket before this tensor when it would pass the cap (never leave one empty).
    if (begin < end && double(end - e.offset) * sizeof(float) > cap * 1e6) {
      out.push_back({begin, end});
      end = begin;
      cap = bucket_mb;
    }
    begin = e.offset;
  }
  if (begin < end) out.push_back({begin, end});
  return out;
}

namespace {

// MPI_Iallreduce on host floats; each bucket started once its last gradient is final.
class HostGradientReducer final : public GradientReducer {
 public:
  HostGradientReducer(Comm& comm, float* grads, std::vector<GradientBucket> buckets)
      : comm_(comm), grads_(grads), buckets_(std::move(buckets)) {
    for (size_t i = 0; i < buckets_.size(); ++i) names_.push_back("gradient bucket " + std::to_string(i));
  }
  std::string name() const override { return comm_.name(); }
  void begin() override { started_ = 0; }
  void gradients_final_from(int64_t first_final) override {
    while (started_ < buckets_.size() && buckets_[started_].begin >= first_final) start(started_++);
    comm_.progress();
  }
  double finish() override {
    while (started_ < buckets_.size()) start(started_++);
    const double waited = comm_.wait_all();
    if (comm_.size() > 1) {
      const float scale = 1.0f / float(comm_.size());
      const int64_t n = buckets_.empty() ? 0 : buckets_.front().end;
      for (int64_t i = 0; i < n; ++i) grads_[i] *= scale;
    }
    return waited;
  }

 private:
  void start(size_t i) {
    if (comm_.size() == 1) return;
    comm_.start_allreduce_sum(grads_ + buckets_[i].begin, buckets_[i].floats(), names_[i].c_str());
  }
  Comm& comm_;
  float* grads_;
  std::vector<GradientBucket> buckets_;
  std::vector<std::string> names_;
  size_t started_ = 0;
};

class StagedBatchNormSync final : public BatchNormSync {
 public:
  StagedBatchNormSync(Backend& be, Comm& comm) : be_(be), comm_(comm) {}
  ~StagedBatchNormSync() override {
    if (device_) be_.release(device_);
  }
  int ranks() const override { return comm_.size(); }

  // Every rank has the same count per channel: the global mean is the mean of the ranks' means,
  // the global biased variance the mean of their variances plus the variance of their means
  // (summed in double: the statistics of the global batch to float precision).
  void batch_statistics(float* mean, float* invstd, int64_t channels, double eps) override {
    host_.resize(size_t(2 * channels));
    be_.copy_to_host(host_.data(), mean, sizeof(float) * size_t(channels));
    be_.copy_to_host(host_.data() + channels, invstd, sizeof(float) * size_t(channels));
    be_.synchronize();
    sums_.assign(size_t(3 * channels), 0.0);
    for (int64_t c = 0; c < channels; ++c) {
      const double m = host_[size_t(c)], is = host_[size_t(channels + c)];
      sums_[size_t(c)] = m;
      sums_[size_t(channels + c)] = std::max(0.0, 1.0 / (is * is) - eps);
      sums_[size_t(2 * channels + c)] = m * m;
    }
    comm_.allreduce_sum(sums_.data(), int64_t(sums_.size()), "sync-bn statistics");
    const double n = double(comm_.size());
    for (int64_t c = 0; c < channels; ++c) {
      const double m = sums_[size_t(c)] / n;
      const double var = std::max(0.0, sums_[size_t(channels + c)] / n + sums_[size_t(2 * channels + c)] / n - m * m);
      host_[size_t(c)] = float(m);
      host_[size_t(channels + c)] = float(1.0 / std::sqrt(var + eps));
    }
    be_.copy_to_device(mean, host_.data(), sizeof(float) * size_t(channels));
    be_.copy_to_device(invstd, host_.data() + channels, sizeof(float) * size_t(channels));
    be_.synchronize();  // host_ is reused by the next call
  }

  void backward_sums(const float* sum_dy_xhat, const float* sum_dy, int64_t channels, const float** global_dy_xhat,
                     const float** global_dy) override {
    host_.resize(size_t(2 * channels));
    be_.copy_to_host(host_.data(), sum_dy_xhat, sizeof(float) * size_t(channels));
    be_.copy_to_host(host_.data() + channels, sum_dy, sizeof(float) * size_t(channels));
    be_.synchronize();
    sums_.assign(host_.begin(), host_.end());
    comm_.allreduce_sum(sums_.data(), int64_t(sums_.size()), "sync-bn backward sums");
    for (size_t i = 0; i < sums_.size(); ++i) host_[i] = float(sums_[i]);
    if (capacity_ < 2 * channels) {
      if (device_) be_.release(device_);
      device_ = static_cast<float*>(be_.allocate(sizeof(float) * size_t(2 * channels)));
      capacity_ = 2 * channels;
    }
    be_.copy_to_device(device_, host_.data(), sizeof(float) * size_t(2 * channels));
    be_.synchronize();
    *global_dy_xhat = device_;
    *global_dy = device_ + channels;
  }

 private:
  Backend& be_;
  Comm& comm_;
  std::vector<float> host_;
  std::vector<double> sums_;
  float* device_ = nullptr;
  int64_t capacity_ = 0;
};

void broadcast_device(Backend& be, Comm& comm, float* data, int64_t count, const char* what) {
  if (comm.size() == 1 || count == 0) return;
  if (be.device() == Device::CPU) {  // host memory already: no staging copy (per-rank BN does this every step)
    comm.broadcast(data, int64_t(sizeof(float)) * count, what);
    return;
  }
  std::vector<float> host(static_cast<size_t>(count));
  be.copy_to_host(host.data(), data, sizeof(float) * size_t(count));
  be.synchronize();
  comm.broadcast(host.data(), int64_t(sizeof(float)) * count, what);
  be.copy_to_device(data, host.data(), sizeof(float) * size_t(count));
  be.synchronize();
}

uint64_t hash_words(uint64_t h, const std::vector<float>& v) {
  // FNV-1a over 8-byte words (an equality check between replicas, not a checksum of a file).
  const auto* bytes = reinterpret_cast<const unsigned char*>(v.data());
  const size_t n = v.size() * sizeof(float);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, bytes + i, 8);
    h = (h ^ w) * 0x100000001b3ull;
    h ^= h >> 29;
  }
  for (; i < n; ++i) h = (h ^ bytes[i]) * 0x100000001b3ull;
  return h;
}

}  // namespace

std::unique_ptr<GradientReducer> make_host_gradient_reducer(Comm& comm, float* grads,
                                                            std::vector<GradientBucket> buckets) {
  return std::make_unique<HostGradientReducer>(comm, grads, std::move(buckets));
}

std::unique_ptr<GradientReducer> make_gradient_reducer(Backend& be, Comm& comm, float* grads,
                                                       std::vector<GradientBucket> buckets) {
  if (be.device() == Device::CPU) return make_host_gradient_reducer(comm, grads, std::move(buckets));
#if defined(CXR_HAVE_NCCL)
  return make_nccl_gradient_reducer(be, comm, grads, std::move(buckets));
#else
  CXR_FAIL("data-parallel training on ", be.name(), " needs NCCL, and this build has none (the CUDA "
           "toolkit's libnccl and nccl.h were not found when it was configured)");
#endif
}

std::unique_ptr<BatchNormSync> make_batchnorm_sync(Backend& be, Comm& comm) {
  return std::make_unique<StagedBatchNormSync>(be, comm);
}

void broadcast_model(DenseNet& net, Comm& comm) {
  Backend& be = net.backend();
  const int64_t p = net.table().trainable_count(), s = net.table().state_count();
  broadcast_device(be, comm, net.params(), p, "parameters from rank 0");
  broadcast_device(be, comm, net.state(), s, "running statistics from rank 0");
  if (net.trainable()) {
    broadcast_device(be, comm, net.adam_m(), p, "Adam moments from rank 0");
    broadcast_device(be, comm, net.adam_v(), p, "Adam moments from rank 0");
  }
}

void broadcast_running_statistics(DenseNet& net, Comm& comm) {
  broadcast_device(net.backend(), comm, net.state(), net.table().state_count(), "running statistics from rank 0");
}

uint64_t replica_hash(const DenseNet& net) {
  std::vector<float> p, s;
  net.get_weights(&p, &s);
  return hash_words(hash_words(0xcbf29ce484222325ull, p), s);
}

void check_replicas(const DenseNet& net, Comm& comm, int64_t step) {
  const uint64_t mine = replica_hash(net);
  const std::vector<int64_t> all = comm.allgather(std::vector<int64_t>{int64_t(mine)}, "replica hashes");
  std::string differ;
  for (size_t r = 1; r < all.size(); ++r)
    if (all[r] != all[0]) differ += (differ.empty() ? "" : ", ") + std::to_string(r);
  if (!differ.empty())
    CXR_FAIL("--check-replicas: after step ", step, " the parameters or running statistics of rank(s) ", differ,
             " differ from rank 0's (a non-deterministic reduction or a corrupted replica): stopping");
}

}  // namespace cxr

namespace cxr {

namespace {
int64_t text_hash(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return int64_t(h >> 1);
}
}  // namespace

int gpu_for_local_rank(int rank, int local_rank, int local_size, int gpus) {
  if (gpus >= local_size) return local_rank;
  if (gpus == 1) return 0;  // one visible GPU per rank (or two ranks on one: gpu_sharing_error says)
  CXR_FAIL("rank ", rank, ": ", local_size, " ranks on this node but ", gpus,
           " GPUs: each rank needs a GPU of its own; start at most ", gpus, " ranks per node");
}

int64_t gpu_key(const std::string& host, const std::string& bus_id, const char* visible_devices, int index) {
  // The PCI bus id names the physical GPU however CUDA_VISIBLE_DEVICES renames it; without one,
  // the visible-devices text and the index stand in for it.
  if (!bus_id.empty()) return text_hash(host + "|pci " + bus_id);
  return text_hash(host + "|" + (visible_devices ? visible_devices : "*") + "|" + std::to_string(index));
}

std::string gpu_sharing_error(const std::vector<int64_t>& keys, int rank, const std::string& host, int index) {
  for (size_t r = 0; r < keys.size(); ++r)
    if (int(r) != rank && keys[r] == keys[size_t(rank)])
      return detail::concat("ranks ", std::min<size_t>(r, size_t(rank)), " and ", std::max<size_t>(r, size_t(rank)),
                            " would share GPU ", index, " of ", host,
                            ": two ranks on one GPU are refused; start one rank per GPU (mpirun -np <GPUs per "
                            "node> per node, or Slurm's --gpus-per-task=1)");
  return "";
}

std::unique_ptr<Backend> make_backend_for_rank(const std::string& which, Comm& comm) {
  if (comm.size() == 1) return make_backend(which);
  const int gpus = cuda_device_count();
  const bool gpu = which == "cuda" || (which == "auto" && gpus > 0);
  // Every rank must take the same kind of device (they run the same collectives): under --device
  // auto a rank without a GPU among ranks with one is refused by name, not left to mismatch.
  double on_gpu[1] = {gpu ? 1.0 : 0.0};
  comm.allreduce_sum(on_gpu, 1, "the device of every rank");
  if (on_gpu[0] != 0 && on_gpu[0] != comm.size())
    CXR_FAIL("--device ", which, ": ", int(on_gpu[0]), " of ", comm.size(), " ranks found a GPU and rank ", comm.rank(),
             gpu ? " is one of them" : " did not", " (", gpus == 0 ? cuda_unavailable_reason() : "", "): every rank "
             "must train on the same kind of device; pass --device cuda or --device cpu");
  if (!gpu) return make_backend("cpu");
  if (gpus == 0) CXR_FAIL("--device cuda: rank ", comm.rank(), " has no usable GPU: ", cuda_unavailable_reason());
  const int index = gpu_for_local_rank(comm.rank(), comm.local_rank(), comm.local_size(), gpus);
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  const std::vector<int64_t> keys = comm.allgather(
      std::vector<int64_t>{gpu_key(host, cuda_device_bus_id(index), std::getenv("CUDA_VISIBLE_DEVICES"), index)},
      "GPU assignment");
  const std::string error = gpu_sharing_error(keys, comm.rank(), host, index);
  if (!error.empty()) CXR_FAIL(error);
  return make_cuda_backend(index);
}

}  // namespace cxr
