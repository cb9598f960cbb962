// Data-parallel training (Note [Data parallel]): one process per GPU or CPU share, the gradients
// averaged over the ranks in buckets overlapped with backward, batch normalisation per rank or
// synchronised (--sync-bn).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/comm.h"
#include "engine/model.h"

namespace cxr {

// Note [Data parallel]
// ~~~~~~~~~~~~~~~~~~~~
// PyTorch DDP's semantics, in this engine's terms:
//  - Every rank holds a whole model. At start (and after --resume) rank 0's parameters, running
//    statistics and Adam moments are broadcast, so every rank starts from the same bits.
//  - `--batch` is the global batch B; each rank's model is planned for B/N images and takes its
//    share of each global batch (io/loader.h shards). Each rank's loss is the mean over its share,
//    so the mean of the ranks' gradients is the gradient of the global batch's mean loss.
//  - Backward runs the parameter table in reverse (DenseNet::set_gradient_hook says when the
//    gradients from an offset to the end are final). The flat gradient buffer is cut into buckets at
//    tensor boundaries from its end: a small first bucket (the head: its all-reduce starts after the
//    first microseconds of backward), then about --bucket-mb each. A bucket's all-reduce starts as
//    soon as its last gradient is final, while backward goes on; every rank starts the buckets in
//    the same order. Buckets are ranges of the gradient buffer itself (no copies). The sums are
//    divided by N: every rank then holds the same averaged gradient and takes the same Adam step.
//  - Batch normalisation: by default each rank normalises over its own share (what PyTorch DDP
//    does), and the running statistics of rank 0 are broadcast after each step (DDP's
//    broadcast_buffers), so every rank holds rank 0's. With --sync-bn (BatchNormSync) the batch
//    statistics and backward's two per-channel sums are summed over the ranks: an N-rank step is
//    then the step of one process with the global batch, and the running statistics agree on every
//    rank without a broadcast. The per-block shared statistics of a dense block (Note [BN
//    statistics once per channel]) stay shared: only the fresh channels are synchronised.
//  - Transports: MPI on host memory (CPU ranks: the gradients are host memory already; and the
//    small BN synchronisation of any backend, staged through the host); NCCL on device memory for
//    CUDA gradients (kernels/cuda/nccl_reducer.cu), on its own stream ordered by events.

// The backend of this rank for --device (cpu, cuda, auto): on GPUs, node-local rank r takes GPU r
// (each its only GPU when every rank sees one); two ranks on one GPU are refused with a message.
// One rank: make_backend(which).
std::unique_ptr<Backend> make_backend_for_rank(const std::string& which, Comm& comm);
// Its pieces (tested without GPUs): the GPU index of a node-local rank when the node shows `gpus`
// (r when there are enough; 0 when each rank sees one; otherwise an error naming the counts); a key
// that two ranks on one GPU share (host and PCI bus id; host, CUDA_VISIBLE_DEVICES and index when
// the bus id is unknown); and, from every rank's key, the error for this rank ("" when no other
// rank has its key).
int gpu_for_local_rank(int rank, int local_rank, int local_size, int gpus);
int64_t gpu_key(const std::string& host, const std::string& bus_id, const char* visible_devices, int index);
std::string gpu_sharing_error(const std::vector<int64_t>& keys, int rank, const std::string& host, int index);

// A range [begin, end) of floats of the flat gradient buffer.
struct GradientBucket {
  int64_t begin = 0, end = 0;
  int64_t floats() const { return end - begin; }
};
// Buckets in the order backward completes them (from the buffer's end): the first holds at least the
// last tensor and at most about first_mb, then about bucket_mb each, cut at tensor boundaries (a
// tensor larger than the cap is a bucket alone). Together they cover [0, trainable_count) once.
std::vector<GradientBucket> plan_gradient_buckets(const ParamTable& table, double bucket_mb, double first_mb = 1.0);

// Averages the gradient buffer over the ranks during backward.
class GradientReducer {
 public:
  virtual ~GradientReducer() = default;
  // Before backward: no bucket is started.
  virtual void begin() = 0;
  // From the gradient hook: gradients [first_final, end) are final; starts every bucket now complete.
  virtual void gradients_final_from(int64_t first_final) = 0;
  // After backward: every bucket reduced and divided by N, visible to the next op on the backend's
  // stream. Returns the seconds the host spent waiting for communication here.
  virtual double finish() = 0;
  virtual std::string name() const = 0;
};

// The reducer for this backend: MPI on host memory for the CPU backend, NCCL for CUDA (throws when
// the build has no NCCL). grads: the model's gradient buffer.
std::unique_ptr<GradientReducer> make_gradient_reducer(Backend& be, Comm& comm, float* grads,
                                                       std::vector<GradientBucket> buckets);
// MPI on host memory (grads must be host memory).
std::unique_ptr<GradientReducer> make_host_gradient_reducer(Comm& comm, float* grads,
                                                            std::vector<GradientBucket> buckets);

// --sync-bn over a Comm: the statistics and sums are staged through the host (a few KB per BN).
std::unique_ptr<BatchNormSync> make_batchnorm_sync(Backend& be, Comm& comm);

// Rank 0's buffers to every rank: parameters, running statistics and, for a trainable model, the
// Adam moments.
void broadcast_model(DenseNet& net, Comm& comm);
// Rank 0's running statistics to every rank (per-rank BN: DDP's broadcast_buffers).
void broadcast_running_statistics(DenseNet& net, Comm& comm);
// A hash of this rank's parameters and running statistics (host copies; XXH3-like 64-bit).
uint64_t replica_hash(const DenseNet& net);
// --check-replicas: every rank's replica_hash against rank 0's; on a mismatch every rank throws
// an error naming the step and the ranks that differ.
void check_replicas(const DenseNet& net, Comm& comm, int64_t step);

}  // namespace cxr
