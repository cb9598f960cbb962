// Op-level profiling: a Backend that forwards every op to another and records, per op, its time,
// the ranges it ran in (phase > block > layer, pushed by the model: engine/model.cpp), its shapes
// and its work (engine/op_cost.h). Build the model on a ProfilingBackend to profile it; with
// recording off it only forwards (one branch per op).
//
// Timing: on a synchronous backend (CPU) each op is timed with the steady clock around the call; on
// an asynchronous one (CUDA) by device markers (Backend::timer_mark: event pairs recorded on the
// stream, never synchronising inside the step) read in end_step(), after the step's synchronize.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/op_cost.h"

namespace cxr {

struct ProfiledOp {
  std::string op;                   // "conv2d_forward", ...
  std::string phase, block, layer;  // the enclosing ranges: outermost, second, innermost ("" if none)
  std::string shapes;               // "y 8x128x32x32 x 8x256x32x32 w 128x256x1x1"
  double start_us = 0, dur_us = 0;  // from the profiler's origin
  double flops = 0, bytes = 0;
  int64_t step = 0;
  int depth = 0;  // number of enclosing ranges
};

struct ProfiledRange {
  std::string name;
  int depth = 0;  // 0: a phase
  double start_us = 0, dur_us = 0;
  int64_t step = 0;
};

class ProfilingBackend final : public Backend {
 public:
  explicit ProfilingBackend(Backend& inner);

  // Records the ops and ranges between begin_step and end_step (end_step synchronises the inner
  // backend and resolves device timings). Outside a step nothing is recorded.
  void begin_step(int64_t step);
  void end_step();
  bool recording() const { return recording_; }
  bool device_timed() const { return device_timed_; }  // markers (CUDA) rather than the host clock
  const std::vector<ProfiledOp>& ops() const { return ops_; }
  const std::vector<ProfiledRange>& ranges() const { return ranges_; }
  void clear();
  Backend& inner() const { return be_; }
  // Host microseconds since the profiler was made: the trace's clock.
  double now_us() const;

  // ---- Backend ----
  Device device() const override { return be_.device(); }
  std::string name() const override { return be_.name(); }
  void* allocate(size_t bytes) override { return be_.allocate(bytes); }
  void release(void* p) override { be_.release(p); }
  void copy_to_device(void* dst, const void* src, size_t bytes) override;
  void copy_to_host(void* dst, const void* src, size_t bytes) override;
  void fill(float* dst, float value, int64_t count) override;
  void synchronize() override { be_.synchronize(); }
  size_t peak_allocated_bytes() const override { return be_.peak_allocated_bytes(); }
  MeasuredMemory measured_peak() override { return be_.measured_peak(); }
  MemoryBudget default_memory_budget() const override { return be_.default_memory_budget(); }
  size_t conv2d_workspace_bytes(const Shape& y, int64_t ys, const Shape& x, int64_t xs, const Shape& w,
                                const ConvGeom& g) override {
    return be_.conv2d_workspace_bytes(y, ys, x, xs, w, g);
  }
  void conv2d_forward(const Tensor& y, const Tensor& x, const float* w, const Shape& wshape, const ConvGeom& g,
                      Workspace ws) override;
  void conv2d_backward_data(const Tensor& dx, GradMode mode, const Tensor& dy, const float* w, const Shape& wshape,
                            const ConvGeom& g, Workspace ws) override;
  void conv2d_backward_filter(float* dw, GradMode mode, const Shape& wshape, const Tensor& dy, const Tensor& x,
                              const ConvGeom& g, Workspace ws) override;
  void batchnorm_stats(float* mean, float* invstd, float* rm, float* rv, const Tensor& x, double eps, double momentum,
                       double var_correction) override;
  void batchnorm_running_update(float* rm, float* rv, const float* mean, const float* invstd, int64_t channels,
                                double eps, double momentum, double var_correction) override;
  void batchnorm_inference_stats(float* mean, float* invstd, const float* rm, const float* rv, int64_t channels,
                                 double eps) override;
  void batchnorm_apply(const Tensor& y, const Tensor& x, const float* gamma, const float* beta, const float* mean,
                       const float* invstd, bool relu) override;
  void batchnorm_backward(const Tensor& dx, GradMode mode, float* dgamma, float* dbeta, const Tensor& dy,
                          const Tensor& x, const float* gamma, const float* mean, const float* invstd) override;
  void batchnorm_relu_backward(const Tensor& dx, GradMode mode, float* dgamma, float* dbeta, const Tensor& dy,
                               const Tensor& x, const float* gamma, const float* beta, const float* mean,
                               const float* invstd) override;
  void batchnorm_backward_reduce(float* sum_dy_xhat, float* sum_dy, const Tensor& dy, const Tensor& x,
                                 const float* gamma, const float* beta, const float* mean, const float* invstd,
                                 bool relu) override;
  void batchnorm_backward_apply(const Tensor& dx, GradMode mode, const Tensor& dy, const Tensor& x, const float* gamma,
                                const float* beta, const float* mean, const float* invstd, const float* sum_dy_xhat,
                                const float* sum_dy, double count, bool relu) override;
  void batchnorm_relu_backward_frozen(const Tensor& dx, GradMode mode, const Tensor& dy, const Tensor& x,
                                      const float* gamma, const float* beta, const float* mean,
                                      const float* invstd) override;
  void relu_forward(const Tensor& y, const Tensor& x) override;
  void relu_backward(const Tensor& dx, const Tensor& dy, const Tensor& y) override;
  void maxpool_forward(const Tensor& y, const Tensor& x, const PoolGeom& g) override;
  void maxpool_backward(const Tensor& dx, const Tensor& dy, const Tensor& x, const PoolGeom& g) override;
  void avgpool_forward(const Tensor& y, const Tensor& x, const PoolGeom& g) override;
  void avgpool_backward(const Tensor& dx, const Tensor& dy, const PoolGeom& g) override;
  void global_avgpool_forward(const Tensor& y, const Tensor& x) override;
  void global_avgpool_backward(const Tensor& dx, const Tensor& dy) override;
  void dense_forward(float* y, const float* x, const float* k, const float* b, int64_t n, int64_t in,
                     int64_t out) override;
  void dense_backward(float* dx, float* dk, float* db, const float* dy, const float* x, const float* k, int64_t n,
                      int64_t in, int64_t out) override;
  void sigmoid_forward(float* y, const float* x, int64_t count) override;
  void weighted_bce(float* loss, float* dz, const float* z, const float* labels, const float* w_pos,
                    const float* w_neg, int64_t n, int64_t k) override;
  void adam_update(float* params, float* m, float* v, const float* grads, int64_t count,
                   const AdamParams& a) override;
  void range_push(const char* name) override;
  void range_pop() override;
  int64_t timer_mark() override { return be_.timer_mark(); }
  double timer_elapsed_ms(int64_t a, int64_t b) override { return be_.timer_elapsed_ms(a, b); }
  void timer_reset() override { be_.timer_reset(); }
  double peak_gflops() const override { return be_.peak_gflops(); }
  double peak_gbytes_per_second() const override { return be_.peak_gbytes_per_second(); }

 private:
  // A point in time: host microseconds (CPU) or a device marker (CUDA), resolved in end_step().
  struct Stamp {
    double host_us = 0;
    int64_t mark = -1;
  };
  Stamp stamp();
  template <typename F>
  void timed(const char* op, const cost::OpCost& c, std::string shapes, F&& run);

  Backend& be_;
  std::chrono::steady_clock::time_point origin_;
  bool recording_ = false, device_timed_ = false;
  int64_t step_ = 0;
  Stamp step_start_;
  struct Open {
    std::string name;
    int64_t range = -1;  // index into ranges_ while it is recorded and open
  };
  std::vector<Open> stack_;
  std::vector<ProfiledOp> ops_;
  std::vector<ProfiledRange> ranges_;
  std::vector<std::pair<Stamp, Stamp>> op_stamps_, range_stamps_;  // of this step, resolved in end_step()
  size_t step_first_op_ = 0, step_first_range_ = 0;
};

// "8x128x32x32"
std::string shape_text(const Shape& s);

}  // namespace cxr
