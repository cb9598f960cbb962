// NCCL gradient all-reduce for CUDA ranks (Note [Data parallel] in engine/data_parallel.h).
// libnccl.so.2 is opened on first use (dlopen), not linked: the binaries start on machines without
// NCCL (one GPU never needs it) and the GPU bundle (scripts/gpu_bundle.sh) does not carry its
// 200 MB. nccl.h is needed to build (the CUDA toolkit's).
//
// Note [NCCL buckets and deadlines]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// One communicator per run, non-blocking (ncclConfig_t.blocking = 0: no NCCL call blocks the host),
// its own stream. When backward makes a bucket final, an event recorded on the compute stream
// orders an ncclAllReduce(ncclAvg) of the bucket, in place, on the NCCL stream: the reduction runs
// while backward's kernels continue. finish() records an event after the last bucket and makes the
// compute stream wait for it (the optimizer reads the averaged gradients), then polls that event
// and ncclCommGetAsyncError with the deadline (--comm-timeout): a rank that died or hangs leaves
// the collective unfinished; past the deadline, or on an asynchronous NCCL error, the rank names the
// step and ends the job through MPI (Comm::abort: MPI_Abort ends every process, the GPUs' work
// with them; ncclCommAbort is not called first, as it may itself wait for the other ranks).
#include <dlfcn.h>
#include <nccl.h>

#include <chrono>
#include <exception>
#include <thread>

#include "engine/data_parallel.h"
#include "engine/error.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_check.h"

namespace cxr {

namespace {

// The few NCCL entry points used, from libnccl.so.2.
struct NcclApi {
  ncclResult_t (*GetUniqueId)(ncclUniqueId*) = nullptr;
  ncclResult_t (*CommInitRankConfig)(ncclComm_t*, int, ncclUniqueId, int, ncclConfig_t*) = nullptr;
  ncclResult_t (*CommGetAsyncError)(ncclComm_t, ncclResult_t*) = nullptr;
  ncclResult_t (*CommFinalize)(ncclComm_t) = nullptr;
  ncclResult_t (*CommDestroy)(ncclComm_t) = nullptr;
  ncclResult_t (*AllReduce)(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t,
                            cudaStream_t) = nullptr;
  const char* (*GetErrorString)(ncclResult_t) = nullptr;
  ncclResult_t (*GetVersion)(int*) = nullptr;

  static const NcclApi& get() {
    static const NcclApi api = load();
    return api;
  }

 private:
  static NcclApi load() {
    void* lib = dlopen("libnccl.so.2", RTLD_NOW | RTLD_GLOBAL);
    if (!lib)
      CXR_FAIL("data-parallel training on GPUs needs NCCL: libnccl.so.2 could not be opened (", dlerror(),
               "); install NCCL or add its folder to LD_LIBRARY_PATH");
    NcclApi a;
    auto sym = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, name));
      if (!fn) CXR_FAIL("libnccl.so.2 has no ", name, " (NCCL 2.14 or later is needed: non-blocking communicators)");
    };
    sym(a.GetUniqueId, "ncclGetUniqueId");
    sym(a.CommInitRankConfig, "ncclCommInitRankConfig");
    sym(a.CommGetAsyncError, "ncclCommGetAsyncError");
    sym(a.CommFinalize, "ncclCommFinalize");
    sym(a.CommDestroy, "ncclCommDestroy");
    sym(a.AllReduce, "ncclAllReduce");
    sym(a.GetErrorString, "ncclGetErrorString");
    sym(a.GetVersion, "ncclGetVersion");
    return a;
  }
};

class NcclGradientReducer final : public GradientReducer {
 public:
  NcclGradientReducer(CudaBackend& be, Comm& comm, float* grads, std::vector<GradientBucket> buckets)
      : be_(be), comm_(comm), grads_(grads), buckets_(std::move(buckets)), api_(NcclApi::get()) {
    ncclUniqueId id{};
    if (comm_.root()) check(api_.GetUniqueId(&id), "ncclGetUniqueId");
    comm_.broadcast(&id, sizeof id, "the NCCL unique id from rank 0");
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    const ncclResult_t r = api_.CommInitRankConfig(&nccl_, comm_.size(), id, comm_.rank(), &config);
    if (r != ncclSuccess && r != ncclInProgress) check(r, "ncclCommInitRankConfig");
    wait_for_nccl("NCCL communicator set-up");
    CXR_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    events_.resize(buckets_.size() + 1);
    for (auto& e : events_) CXR_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    int version = 0;
    api_.GetVersion(&version);
    name_ = "nccl " + std::to_string(version / 10000) + "." + std::to_string(version / 100 % 100) + "." +
            std::to_string(version % 100);
  }
  // ncclCommFinalize/ncclCommDestroy are collectives of the node's ranks (NCCL blocks in them
  // whatever the communicator's blocking setting): called while an exception unwinds one rank
  // alone, they would hang it before main() could report the error and end the job (Comm::abort).
  // So an unwinding reducer leaves the communicator to the process's end; a normal one finalizes
  // it (polled with the deadline) and destroys it.
  ~NcclGradientReducer() override {
    if (nccl_ && std::uncaught_exceptions() == 0) {
      const ncclResult_t r = api_.CommFinalize(nccl_);
      if (r == ncclSuccess || r == ncclInProgress) wait_for_nccl("NCCL communicator finalize");
      api_.CommDestroy(nccl_);
    }
    for (auto& e : events_) CXR_CUDA_LOG(cudaEventDestroy(e));
    if (stream_) CXR_CUDA_LOG(cudaStreamDestroy(stream_));
  }
  std::string name() const override { return name_; }
  void begin() override { started_ = 0; }
  void gradients_final_from(int64_t first_final) override {
    while (started_ < buckets_.size() && buckets_[started_].begin >= first_final) start(started_++);
  }
  double finish() override {
    while (started_ < buckets_.size()) start(started_++);
    cudaEvent_t done = events_.back();
    CXR_CUDA_CHECK(cudaEventRecord(done, stream_));
    CXR_CUDA_CHECK(cudaStreamWaitEvent(be_.stream(), done, 0));
    const auto t0 = std::chrono::steady_clock::now();
    int sleep_us = 1;
    for (;;) {
      const cudaError_t q = cudaEventQuery(done);
      if (q == cudaSuccess) break;
      if (q != cudaErrorNotReady) CXR_CUDA_CHECK(q);
      poll_async_error("gradient all-reduce");
      if (seconds_since(t0) > comm_.timeout()) timeout("gradient all-reduce");
      std::this_thread::sleep_for(std::chrono::microseconds(sleep_us));
      sleep_us = std::min(sleep_us * 2, 1000);
    }
    return seconds_since(t0);
  }

 private:
  static double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  void check(ncclResult_t r, const char* what) const {
    if (r != ncclSuccess) CXR_FAIL(what, " failed on rank ", comm_.rank(), ": ", api_.GetErrorString(r));
  }
  void poll_async_error(const char* what) {
    ncclResult_t state = ncclSuccess;
    api_.CommGetAsyncError(nccl_, &state);
    if (state != ncclSuccess && state != ncclInProgress) {
      // MPI_Abort (Comm::abort) ends every process; ncclCommAbort first could itself block.
      comm_.abort("step " + std::to_string(comm_.step()) + ": " + what + ": NCCL error: " + api_.GetErrorString(state));
    }
  }
  [[noreturn]] void timeout(const char* what) {
    comm_.abort("step " + std::to_string(comm_.step()) + ": " + what + " did not complete within " +
                std::to_string(int(comm_.timeout())) +
                " s (--comm-timeout): another rank has died or hangs; ending every rank of the job", 4);
    __builtin_unreachable();
  }
  // Non-blocking communicators return ncclInProgress until an operation is enqueued.
  void wait_for_nccl(const char* what) {
    const auto t0 = std::chrono::steady_clock::now();
    for (;;) {
      ncclResult_t state = ncclInProgress;
      api_.CommGetAsyncError(nccl_, &state);
      if (state == ncclSuccess) return;
      if (state != ncclInProgress) check(state, what);
      if (seconds_since(t0) > comm_.timeout()) timeout(what);
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }
  void start(size_t i) {
    const GradientBucket& b = buckets_[i];
    CXR_CUDA_CHECK(cudaEventRecord(events_[i], be_.stream()));
    CXR_CUDA_CHECK(cudaStreamWaitEvent(stream_, events_[i], 0));
    const ncclResult_t r = api_.AllReduce(grads_ + b.begin, grads_ + b.begin, size_t(b.floats()), ncclFloat32, ncclAvg,
                                          nccl_, stream_);
    if (r != ncclSuccess && r != ncclInProgress) check(r, "ncclAllReduce");
    if (r == ncclInProgress) wait_for_nccl("enqueueing a gradient bucket");
  }

  CudaBackend& be_;
  Comm& comm_;
  float* grads_;
  std::vector<GradientBucket> buckets_;
  const NcclApi& api_;
  ncclComm_t nccl_ = nullptr;
  cudaStream_t stream_ = nullptr;
  std::vector<cudaEvent_t> events_;
  size_t started_ = 0;
  std::string name_;
};

}  // namespace

std::unique_ptr<GradientReducer> make_nccl_gradient_reducer(Backend& be, Comm& comm, float* grads,
                                                            std::vector<GradientBucket> buckets) {
  auto* cuda = dynamic_cast<CudaBackend*>(&be);
  CXR_CHECK(cuda != nullptr, "NCCL gradient reduction needs the CUDA backend, got ", be.name());
  return std::make_unique<NcclGradientReducer>(*cuda, comm, grads, std::move(buckets));
}

}  // namespace cxr
