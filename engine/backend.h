// The op interface: every layer of the network is written once against this class, and each
// backend (kernels/cpu: the oracle; kernels/cuda: cuDNN, cuBLAS and custom kernels) implements it.
//
// Conventions (all ops):
//   - arguments read outputs first, then inputs, then parameters, then workspace;
//   - tensors are NCHW views whose planes are contiguous (see engine/tensor.h); batch strides may
//     be larger than C*H*W (channel slices of a dense block buffer);
//   - per-channel vectors (gamma, beta, statistics) and parameter blobs are plain device pointers;
//   - backward ops say per gradient whether they overwrite (=) or accumulate (+=): "GradMode" where
//     the caller chooses, otherwise the comment says which;
//   - work is enqueued in order on the backend's stream; results are visible to the host after
//     synchronize() (the CPU backend is synchronous).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "engine/tensor.h"

namespace cxr {

// 2-D convolution without bias, square kernel/stride/padding as DenseNet needs, zero padding.
struct ConvGeom {
  int64_t kernel = 1, stride = 1, pad = 0;
  // 0 when the window does not fit (C++ division truncates toward zero, so test first).
  int64_t out_size(int64_t in) const { return in + 2 * pad < kernel ? 0 : (in + 2 * pad - kernel) / stride + 1; }
};

// Pooling window; padded positions never win a max (equal to Keras's zero padding when the input is
// non-negative, which it is after ReLU) and average pooling here never pads.
struct PoolGeom {
  int64_t kernel = 2, stride = 2, pad = 0;
  int64_t out_size(int64_t in) const { return in + 2 * pad < kernel ? 0 : (in + 2 * pad - kernel) / stride + 1; }
};

struct MeasuredMemory {
  size_t bytes = 0;
  std::string how;  // e.g. "process peak RSS"
};

struct MemoryBudget {
  size_t bytes = 0;
  std::string source;  // e.g. "free device memory (of 139.8 GiB)", "host RAM", "--memory-budget"
};

// Adam hyper-parameters for one update (PyTorch's formulation; see Backend::adam_update).
struct AdamParams {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  int64_t step = 1;  // t, counted from 1
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  virtual std::string name() const = 0;  // e.g. "cpu (OpenBLAS, 2 threads)" or "cuda:0 NVIDIA H100"

  // ---- memory --------------------------------------------------------------------------------
  virtual void* allocate(size_t bytes) = 0;  // aligned to at least 256 bytes; throws on failure
  virtual void release(void* p) = 0;
  virtual void copy_to_device(void* dst, const void* host_src, size_t bytes) = 0;
  virtual void copy_to_host(void* host_dst, const void* src, size_t bytes) = 0;
  virtual void fill(float* dst, float value, int64_t count) = 0;
  virtual void synchronize() = 0;
  // Peak bytes handed out by allocate() since construction (the arena makes this the plan's total).
  virtual size_t peak_allocated_bytes() const = 0;
  // What the device really gave this process at its peak, measured outside allocate(): CUDA, the
  // device's memory in use with the context and cuDNN/cuBLAS's own memory (Note [measured device
  // memory] in kernels/cuda/device_memory.h); CPU, the process's peak RSS. `how` says which.
  virtual MeasuredMemory measured_peak() = 0;
  // What a budget may plan when none is given: CUDA, the device's free memory now (after the
  // context, the libraries and any other process); CPU, host RAM. 0 bytes when unknown.
  virtual MemoryBudget default_memory_budget() const = 0;

  // ---- convolution: y (N, K, P, Q), x (N, C, H, W), w (K, C, R, R) packed OIHW ------------------
  // Bytes of workspace the three convolution calls below need for views of these shapes and batch
  // strides (a channel slice of a dense block has a batch stride above C*H*W; backward's dy and dx
  // are laid out as y and x). cuDNN ranks its algorithms per layout, so the strides matter.
  virtual size_t conv2d_workspace_bytes(const Shape& y, int64_t y_batch_stride, const Shape& x,
                                        int64_t x_batch_stride, const Shape& w, const ConvGeom& g) = 0;
  // y = conv(x, w)  (overwrite)
  virtual void conv2d_forward(const Tensor& y, const Tensor& x, const float* w, const Shape& wshape,
                              const ConvGeom& g, Workspace ws) = 0;
  // dx (=|+=) conv_transpose(dy, w)
  virtual void conv2d_backward_data(const Tensor& dx, GradMode mode, const Tensor& dy, const float* w,
                                    const Shape& wshape, const ConvGeom& g, Workspace ws) = 0;
  // dw (=|+=) sum over the batch of dy (x) x
  virtual void conv2d_backward_filter(float* dw, GradMode mode, const Shape& wshape, const Tensor& dy,
                                      const Tensor& x, const ConvGeom& g, Workspace ws) = 0;

  // ---- batch normalisation (per channel over N, H, W), optional fused ReLU -----------------------
  // Batch statistics: mean[c] and invstd[c] = 1/sqrt(var_biased[c] + eps), and updates the running
  // statistics the Keras way: running = momentum * running + (1 - momentum) * batch, where the
  // variance folded into running_var is the biased batch variance times `var_correction`
  // (1 for biased; n/(n-1) for Bessel's correction; see Note [BN running variance] in
  // layers/batchnorm.h for which one Keras uses). running_* may be null to skip the update.
  virtual void batchnorm_stats(float* mean, float* invstd, float* running_mean, float* running_var,
                               const Tensor& x, double eps, double momentum,
                               double var_correction) = 0;
  // The running update alone, from batch statistics computed earlier (by batchnorm_stats, possibly
  // for another layer over the same channels: Note [BN statistics once per channel]):
  //   var = 1/invstd^2 - eps (in double), then the update batchnorm_stats makes.
  virtual void batchnorm_running_update(float* running_mean, float* running_var, const float* mean,
                                        const float* invstd, int64_t channels, double eps, double momentum,
                                        double var_correction) = 0;
  // Running statistics -> (mean, invstd) for inference: invstd = 1/sqrt(running_var + eps).
  virtual void batchnorm_inference_stats(float* mean, float* invstd, const float* running_mean,
                                         const float* running_var, int64_t channels, double eps) = 0;
  // y = gamma * (x - mean) * invstd + beta, then max(0, .) when relu. y may alias x.
  virtual void batchnorm_apply(const Tensor& y, const Tensor& x, const float* gamma, const float* beta,
                               const float* mean, const float* invstd, bool relu) = 0;
  // Backward of batchnorm_apply in training mode (mean/invstd are batch statistics of x):
  //   dgamma = sum dy * xhat  (=),  dbeta = sum dy  (=),
  //   dx (=|+=) gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)),  xhat = (x - mean) * invstd.
  // dy is the gradient w.r.t. the BN output (batchnorm_relu_backward for a fused ReLU).
  virtual void batchnorm_backward(const Tensor& dx, GradMode mode, float* dgamma, float* dbeta,
                                  const Tensor& dy, const Tensor& x, const float* gamma,
                                  const float* mean, const float* invstd) = 0;
  // The same for BN followed by ReLU, in one op: dy is the gradient w.r.t. the ReLU output; it counts
  // only where batchnorm_apply(relu) gave a positive output, which is recomputed from x, gamma and
  // beta with the apply's arithmetic (no ReLU output is read). dx may alias dy.
  virtual void batchnorm_relu_backward(const Tensor& dx, GradMode mode, float* dgamma, float* dbeta,
                                       const Tensor& dy, const Tensor& x, const float* gamma, const float* beta,
                                       const float* mean, const float* invstd) = 0;
  // Synchronised BN backward, in two halves (PyTorch's SyncBatchNorm): the per-channel sums of this
  // process's share of the batch, then dx from sums over the whole (global) batch of `count` values
  // per channel, so that the sums can be all-reduced across processes in between.
  //   dy' = dy, or dy where batchnorm_apply(relu) gave a positive output when relu (the mask
  //         recomputed from x exactly as batchnorm_relu_backward does; beta is read only for it and
  //         may be null when relu is false),
  //   sum_dy_xhat[c] = sum dy' * xhat  (=),  sum_dy[c] = sum dy'  (=),  xhat = (x - mean) * invstd;
  //   an empty share (N*H*W = 0) gives zero sums.
  // With count = N*H*W of this batch alone, reduce then apply is batchnorm_backward (relu false) or
  // batchnorm_relu_backward (relu true): dgamma = sum_dy_xhat, dbeta = sum_dy, the same dx up to the
  // float rounding of the two sums (the fused ops keep them in double).
  virtual void batchnorm_backward_reduce(float* sum_dy_xhat, float* sum_dy, const Tensor& dy, const Tensor& x,
                                         const float* gamma, const float* beta, const float* mean,
                                         const float* invstd, bool relu) = 0;
  //   dx (=|+=) gamma * invstd * (dy' - sum_dy / count - xhat * sum_dy_xhat / count), count > 0.
  // dx may alias dy.
  virtual void batchnorm_backward_apply(const Tensor& dx, GradMode mode, const Tensor& dy, const Tensor& x,
                                        const float* gamma, const float* beta, const float* mean,
                                        const float* invstd, const float* sum_dy_xhat, const float* sum_dy,
                                        double count, bool relu) = 0;
  // Backward of batchnorm_apply(relu) with frozen statistics (inference: mean/invstd from the running
  // statistics, constants of x), the data gradient only:
  //   dx (=|+=) dy * gamma * invstd  where the apply's output was positive, else 0,
  // the mask recomputed from x with the apply's float arithmetic, scale = gamma * invstd in float as
  // the apply has it. What an explanation's backward through an inference forward needs (Grad-CAM at
  // inner layers). dx may alias dy.
  virtual void batchnorm_relu_backward_frozen(const Tensor& dx, GradMode mode, const Tensor& dy, const Tensor& x,
                                              const float* gamma, const float* beta, const float* mean,
                                              const float* invstd) = 0;

  // ---- element-wise -------------------------------------------------------------------------
  virtual void relu_forward(const Tensor& y, const Tensor& x) = 0;  // y may alias x
  // dx = dy * (y > 0)  (=); dx may alias dy.
  virtual void relu_backward(const Tensor& dx, const Tensor& dy, const Tensor& y) = 0;

  // ---- pooling --------------------------------------------------------------------------------
  virtual void maxpool_forward(const Tensor& y, const Tensor& x, const PoolGeom& g) = 0;
  // dx (=) routes each dy to the first maximum of its window in x (row-major window order).
  virtual void maxpool_backward(const Tensor& dx, const Tensor& dy, const Tensor& x,
                                const PoolGeom& g) = 0;
  virtual void avgpool_forward(const Tensor& y, const Tensor& x, const PoolGeom& g) = 0;
  // dx (=) dy / (k*k) spread over each window; positions no window covers get 0.
  virtual void avgpool_backward(const Tensor& dx, const Tensor& dy, const PoolGeom& g) = 0;
  // y (N, C, 1, 1) = mean over H, W of x.
  virtual void global_avgpool_forward(const Tensor& y, const Tensor& x) = 0;
  // dx (=) dy / (H*W) broadcast.
  virtual void global_avgpool_backward(const Tensor& dx, const Tensor& dy) = 0;

  // ---- dense layer: y (N, out) = x (N, in) . kernel (in, out) + bias (out), Keras layout -------
  virtual void dense_forward(float* y, const float* x, const float* kernel, const float* bias,
                             int64_t n, int64_t in, int64_t out) = 0;
  // dx (=) dy . kernel^T (skipped when dx is null); dkernel (=) x^T . dy; dbias (=) sum_n dy.
  virtual void dense_backward(float* dx, float* dkernel, float* dbias, const float* dy, const float* x,
                              const float* kernel, int64_t n, int64_t in, int64_t out) = 0;

  // ---- head ---------------------------------------------------------------------------------
  virtual void sigmoid_forward(float* y, const float* x, int64_t count) = 0;
  // Weighted binary cross-entropy on logits z (N, K) with labels y in {0, 1} (as floats):
  //   loss = sum_k mean_n -(w_pos[k] y log s(z) + w_neg[k] (1 - y) log(1 - s(z))),
  //   dz   (=) d loss / d z = (w_pos y (s - 1) + w_neg (1 - y) s) / N,
  // in the stable log-sigmoid form; one pass. *loss is a device pointer to one float.
  virtual void weighted_bce(float* loss, float* dz, const float* z, const float* labels,
                            const float* w_pos, const float* w_neg, int64_t n, int64_t k) = 0;

  // ---- optimizer ----------------------------------------------------------------------------
  // Adam over `count` floats of the flat parameter buffer, PyTorch semantics (torch.optim.Adam,
  // weight decay as L2 added to the gradient; Keras differs only in where epsilon sits):
  //   g = grad + wd p;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
  //   p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).
  virtual void adam_update(float* params, float* m, float* v, const float* grads, int64_t count,
                           const AdamParams& a) = 0;

  // ---- profiling hooks (engine/profiler.h); no cost unless a tool or a profiler listens --------
  // Named ranges around phases, blocks and layers (the model pushes "forward" > "conv3" >
  // "conv3_block5"): NVTX ranges on the CUDA backend (seen by Nsight Systems), nothing on the CPU.
  virtual void range_push(const char* /*name*/) {}
  virtual void range_pop() {}
  // Device-side timing for backends whose ops run asynchronously: timer_mark() records a marker in
  // the op stream and returns its index (-1: not supported, the host clock is the op's time);
  // timer_elapsed_ms(a, b) reads the time between two markers after synchronize(); timer_reset()
  // forgets all markers. CUDA: cudaEvent pairs, no synchronisation inside a step.
  virtual int64_t timer_mark() { return -1; }
  virtual double timer_elapsed_ms(int64_t /*a*/, int64_t /*b*/) { return 0.0; }
  virtual void timer_reset() {}
  // The device's peak FP32 rate and memory bandwidth from its properties (0: unknown; the CPU's are
  // measured by the profiler instead).
  virtual double peak_gflops() const { return 0.0; }
  virtual double peak_gbytes_per_second() const { return 0.0; }
};

// A named range for the scope of a block: BackendRange r(be, "conv3_block5").
class BackendRange {
 public:
  BackendRange(Backend& be, const char* name) : be_(be) { be_.range_push(name); }
  BackendRange(Backend& be, const std::string& name) : be_(be) { be_.range_push(name.c_str()); }
  ~BackendRange() { be_.range_pop(); }
  BackendRange(const BackendRange&) = delete;
  BackendRange& operator=(const BackendRange&) = delete;

 private:
  Backend& be_;
};

// Backends present in this build and on this machine.
bool cuda_compiled();
// Number of usable CUDA devices; 0 on any error (no driver, no device, CUDA not compiled).
int cuda_device_count();
// Why cuda_device_count() is 0, for skip messages ("" when a device exists).
std::string cuda_unavailable_reason();
// The PCI bus id of CUDA device `index` ("0000:3b:00.0"): the same physical GPU gives the same id
// whatever CUDA_VISIBLE_DEVICES calls it. "" when unknown.
std::string cuda_device_bus_id(int index);

std::unique_ptr<Backend> make_cpu_backend();
std::unique_ptr<Backend> make_cuda_backend(int device_index = 0);  // throws when unavailable
// "cpu", "cuda" or "auto" (a GPU when present).
std::unique_ptr<Backend> make_backend(const std::string& which);

}  // namespace cxr
