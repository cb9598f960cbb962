#include "engine/profiler.h"

#include <cstdio>

namespace cxr {

std::string shape_text(const Shape& s) {
  char b[96];
  std::snprintf(b, sizeof b, "%ldx%ldx%ldx%ld", long(s.n), long(s.c), long(s.h), long(s.w));
  return b;
}

namespace {
std::string shapes2(const char* a, const Shape& sa, const char* b, const Shape& sb) {
  return std::string(a) + " " + shape_text(sa) + " " + b + " " + shape_text(sb);
}
std::string shapes3(const char* a, const Shape& sa, const char* b, const Shape& sb, const char* c, const Shape& sc) {
  return shapes2(a, sa, b, sb) + " " + c + " " + shape_text(sc);
}
std::string count_text(const char* what, int64_t n) { return std::string(what) + " " + std::to_string(n); }
}  // namespace

ProfilingBackend::ProfilingBackend(Backend& inner) : be_(inner), origin_(std::chrono::steady_clock::now()) {}

double ProfilingBackend::now_us() const {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - origin_).count();
}

ProfilingBackend::Stamp ProfilingBackend::stamp() {
  Stamp s;
  s.mark = be_.timer_mark();
  if (s.mark < 0) s.host_us = now_us();
  return s;
}

void ProfilingBackend::clear() {
  ops_.clear();
  ranges_.clear();
}

void ProfilingBackend::begin_step(int64_t step) {
  be_.synchronize();
  be_.timer_reset();
  step_ = step;
  step_first_op_ = ops_.size();
  step_first_range_ = ranges_.size();
  op_stamps_.clear();
  range_stamps_.clear();
  step_start_.host_us = now_us();
  step_start_.mark = be_.timer_mark();
  device_timed_ = step_start_.mark >= 0;
  recording_ = true;
}

void ProfilingBackend::end_step() {
  if (!recording_) return;
  be_.synchronize();
  recording_ = false;
  // Ranges still open (a step ended inside one) end here.
  for (Open& o : stack_)
    if (o.range >= 0) {
      range_stamps_[size_t(o.range) - step_first_range_].second = stamp();
      o.range = -1;
    }
  auto resolve = [&](const Stamp& s) {
    return s.mark < 0 ? s.host_us : step_start_.host_us + 1000.0 * be_.timer_elapsed_ms(step_start_.mark, s.mark);
  };
  for (size_t i = 0; i < op_stamps_.size(); ++i) {
    ProfiledOp& o = ops_[step_first_op_ + i];
    o.start_us = resolve(op_stamps_[i].first);
    o.dur_us = resolve(op_stamps_[i].second) - o.start_us;
  }
  for (size_t i = 0; i < range_stamps_.size(); ++i) {
    ProfiledRange& r = ranges_[step_first_range_ + i];
    r.start_us = resolve(range_stamps_[i].first);
    r.dur_us = resolve(range_stamps_[i].second) - r.start_us;
  }
}

template <typename F>
void ProfilingBackend::timed(const char* op, const cost::OpCost& c, std::string shapes, F&& run) {
  if (!recording_) {
    run();
    return;
  }
  ProfiledOp o;
  o.op = op;
  o.depth = static_cast<int>(stack_.size());
  if (!stack_.empty()) {
    o.phase = stack_.front().name;
    o.block = stack_.size() > 1 ? stack_[1].name : stack_.front().name;
    o.layer = stack_.back().name;
  }
  o.shapes = std::move(shapes);
  o.flops = c.flops;
  o.bytes = c.bytes;
  o.step = step_;
  const Stamp a = stamp();
  run();
  const Stamp b = stamp();
  ops_.push_back(std::move(o));
  op_stamps_.emplace_back(a, b);
}

void ProfilingBackend::range_push(const char* name) {
  be_.range_push(name);
  stack_.push_back({name, -1});
  if (!recording_) return;
  ProfiledRange r;
  r.name = name;
  r.depth = static_cast<int>(stack_.size()) - 1;
  r.step = step_;
  stack_.back().range = static_cast<int64_t>(ranges_.size());
  ranges_.push_back(std::move(r));
  range_stamps_.emplace_back(stamp(), Stamp{});
}

void ProfilingBackend::range_pop() {
  if (!stack_.empty()) {
    if (recording_ && stack_.back().range >= 0) range_stamps_[size_t(stack_.back().range) - step_first_range_].second = stamp();
    stack_.pop_back();
  }
  be_.range_pop();
}

void ProfilingBackend::copy_to_device(void* dst, const void* src, size_t bytes) {
  timed("copy_to_device", {0, double(bytes)}, count_text("bytes", int64_t(bytes)),
        [&] { be_.copy_to_device(dst, src, bytes); });
}
void ProfilingBackend::copy_to_host(void* dst, const void* src, size_t bytes) {
  timed("copy_to_host", {0, double(bytes)}, count_text("bytes", int64_t(bytes)),
        [&] { be_.copy_to_host(dst, src, bytes); });
}
void ProfilingBackend::fill(float* dst, float value, int64_t count) {
  timed("fill", cost::elementwise(count, 0, 1), count_text("floats", count), [&] { be_.fill(dst, value, count); });
}

void ProfilingBackend::conv2d_forward(const Tensor& y, const Tensor& x, const float* w, const Shape& ws,
                                      const ConvGeom& g, Workspace wsp) {
  timed("conv2d_forward", cost::conv2d(y.shape, x.shape, ws), shapes3("y", y.shape, "x", x.shape, "w", ws),
        [&] { be_.conv2d_forward(y, x, w, ws, g, wsp); });
}
void ProfilingBackend::conv2d_backward_data(const Tensor& dx, GradMode mode, const Tensor& dy, const float* w,
                                            const Shape& ws, const ConvGeom& g, Workspace wsp) {
  timed("conv2d_backward_data", cost::conv2d_backward_data(dx.shape, dy.shape, ws, mode == GradMode::Accumulate),
        shapes3("dx", dx.shape, "dy", dy.shape, "w", ws), [&] { be_.conv2d_backward_data(dx, mode, dy, w, ws, g, wsp); });
}
void ProfilingBackend::conv2d_backward_filter(float* dw, GradMode mode, const Shape& ws, const Tensor& dy,
                                              const Tensor& x, const ConvGeom& g, Workspace wsp) {
  timed("conv2d_backward_filter", cost::conv2d_backward_filter(dy.shape, x.shape, ws, mode == GradMode::Accumulate),
        shapes3("dw", ws, "dy", dy.shape, "x", x.shape),
        [&] { be_.conv2d_backward_filter(dw, mode, ws, dy, x, g, wsp); });
}
void ProfilingBackend::batchnorm_stats(float* mean, float* invstd, float* rm, float* rv, const Tensor& x, double eps,
                                       double momentum, double vc) {
  timed("batchnorm_stats", cost::batchnorm_stats(x.shape), "x " + shape_text(x.shape),
        [&] { be_.batchnorm_stats(mean, invstd, rm, rv, x, eps, momentum, vc); });
}
void ProfilingBackend::batchnorm_running_update(float* rm, float* rv, const float* mean, const float* invstd,
                                                int64_t channels, double eps, double momentum, double vc) {
  timed("batchnorm_running_update", cost::batchnorm_channels(channels), count_text("channels", channels),
        [&] { be_.batchnorm_running_update(rm, rv, mean, invstd, channels, eps, momentum, vc); });
}
void ProfilingBackend::batchnorm_inference_stats(float* mean, float* invstd, const float* rm, const float* rv,
                                                 int64_t channels, double eps) {
  timed("batchnorm_inference_stats", cost::batchnorm_channels(channels), count_text("channels", channels),
        [&] { be_.batchnorm_inference_stats(mean, invstd, rm, rv, channels, eps); });
}
void ProfilingBackend::batchnorm_apply(const Tensor& y, const Tensor& x, const float* gamma, const float* beta,
                                       const float* mean, const float* invstd, bool relu) {
  timed(relu ? "batchnorm_relu_apply" : "batchnorm_apply", cost::batchnorm_apply(x.shape, relu),
        "x " + shape_text(x.shape), [&] { be_.batchnorm_apply(y, x, gamma, beta, mean, invstd, relu); });
}
void ProfilingBackend::batchnorm_backward(const Tensor& dx, GradMode mode, float* dgamma, float* dbeta,
                                          const Tensor& dy, const Tensor& x, const float* gamma, const float* mean,
                                          const float* invstd) {
  timed("batchnorm_backward", cost::batchnorm_backward(x.shape, false, mode == GradMode::Accumulate),
        "x " + shape_text(x.shape),
        [&] { be_.batchnorm_backward(dx, mode, dgamma, dbeta, dy, x, gamma, mean, invstd); });
}
void ProfilingBackend::batchnorm_relu_backward(const Tensor& dx, GradMode mode, float* dgamma, float* dbeta,
                                               const Tensor& dy, const Tensor& x, const float* gamma,
                                               const float* beta, const float* mean, const float* invstd) {
  timed("batchnorm_relu_backward", cost::batchnorm_backward(x.shape, true, mode == GradMode::Accumulate),
        "x " + shape_text(x.shape),
        [&] { be_.batchnorm_relu_backward(dx, mode, dgamma, dbeta, dy, x, gamma, beta, mean, invstd); });
}
void ProfilingBackend::batchnorm_backward_reduce(float* sum_dy_xhat, float* sum_dy, const Tensor& dy,
                                                 const Tensor& x, const float* gamma, const float* beta,
                                                 const float* mean, const float* invstd, bool relu) {
  timed(relu ? "batchnorm_relu_backward_reduce" : "batchnorm_backward_reduce",
        cost::batchnorm_backward_reduce(x.shape, relu), "x " + shape_text(x.shape),
        [&] { be_.batchnorm_backward_reduce(sum_dy_xhat, sum_dy, dy, x, gamma, beta, mean, invstd, relu); });
}
void ProfilingBackend::batchnorm_backward_apply(const Tensor& dx, GradMode mode, const Tensor& dy, const Tensor& x,
                                                const float* gamma, const float* beta, const float* mean,
                                                const float* invstd, const float* sum_dy_xhat, const float* sum_dy,
                                                double count, bool relu) {
  timed(relu ? "batchnorm_relu_backward_apply" : "batchnorm_backward_apply",
        cost::batchnorm_backward_apply(x.shape, relu, mode == GradMode::Accumulate), "x " + shape_text(x.shape),
        [&] {
          be_.batchnorm_backward_apply(dx, mode, dy, x, gamma, beta, mean, invstd, sum_dy_xhat, sum_dy, count, relu);
        });
}
void ProfilingBackend::batchnorm_relu_backward_frozen(const Tensor& dx, GradMode mode, const Tensor& dy,
                                                      const Tensor& x, const float* gamma, const float* beta,
                                                      const float* mean, const float* invstd) {
  timed("batchnorm_relu_backward_frozen", cost::batchnorm_backward_frozen(x.shape, mode == GradMode::Accumulate),
        "x " + shape_text(x.shape),
        [&] { be_.batchnorm_relu_backward_frozen(dx, mode, dy, x, gamma, beta, mean, invstd); });
}
void ProfilingBackend::relu_forward(const Tensor& y, const Tensor& x) {
  timed("relu_forward", cost::relu_forward(x.shape), "x " + shape_text(x.shape), [&] { be_.relu_forward(y, x); });
}
void ProfilingBackend::relu_backward(const Tensor& dx, const Tensor& dy, const Tensor& y) {
  timed("relu_backward", cost::relu_backward(y.shape), "y " + shape_text(y.shape),
        [&] { be_.relu_backward(dx, dy, y); });
}
void ProfilingBackend::maxpool_forward(const Tensor& y, const Tensor& x, const PoolGeom& g) {
  timed("maxpool_forward", cost::pool_forward(y.shape, x.shape, g.kernel), shapes2("y", y.shape, "x", x.shape),
        [&] { be_.maxpool_forward(y, x, g); });
}
void ProfilingBackend::maxpool_backward(const Tensor& dx, const Tensor& dy, const Tensor& x, const PoolGeom& g) {
  timed("maxpool_backward", cost::maxpool_backward(dx.shape, dy.shape, g.kernel),
        shapes2("dx", dx.shape, "dy", dy.shape), [&] { be_.maxpool_backward(dx, dy, x, g); });
}
void ProfilingBackend::avgpool_forward(const Tensor& y, const Tensor& x, const PoolGeom& g) {
  timed("avgpool_forward", cost::pool_forward(y.shape, x.shape, g.kernel), shapes2("y", y.shape, "x", x.shape),
        [&] { be_.avgpool_forward(y, x, g); });
}
void ProfilingBackend::avgpool_backward(const Tensor& dx, const Tensor& dy, const PoolGeom& g) {
  timed("avgpool_backward", cost::avgpool_backward(dx.shape, dy.shape), shapes2("dx", dx.shape, "dy", dy.shape),
        [&] { be_.avgpool_backward(dx, dy, g); });
}
void ProfilingBackend::global_avgpool_forward(const Tensor& y, const Tensor& x) {
  timed("global_avgpool_forward", cost::global_avgpool(x.shape), "x " + shape_text(x.shape),
        [&] { be_.global_avgpool_forward(y, x); });
}
void ProfilingBackend::global_avgpool_backward(const Tensor& dx, const Tensor& dy) {
  timed("global_avgpool_backward", cost::global_avgpool(dx.shape), "dx " + shape_text(dx.shape),
        [&] { be_.global_avgpool_backward(dx, dy); });
}
void ProfilingBackend::dense_forward(float* y, const float* x, const float* k, const float* b, int64_t n,
                                     int64_t in, int64_t out) {
  timed("dense_forward", cost::dense_forward(n, in, out),
        "n " + std::to_string(n) + " in " + std::to_string(in) + " out " + std::to_string(out),
        [&] { be_.dense_forward(y, x, k, b, n, in, out); });
}
void ProfilingBackend::dense_backward(float* dx, float* dk, float* db, const float* dy, const float* x,
                                      const float* k, int64_t n, int64_t in, int64_t out) {
  timed("dense_backward", cost::dense_backward(n, in, out, dx != nullptr),
        "n " + std::to_string(n) + " in " + std::to_string(in) + " out " + std::to_string(out),
        [&] { be_.dense_backward(dx, dk, db, dy, x, k, n, in, out); });
}
void ProfilingBackend::sigmoid_forward(float* y, const float* x, int64_t count) {
  timed("sigmoid_forward", cost::elementwise(count, 4, 2), count_text("count", count),
        [&] { be_.sigmoid_forward(y, x, count); });
}
void ProfilingBackend::weighted_bce(float* loss, float* dz, const float* z, const float* labels, const float* w_pos,
                                    const float* w_neg, int64_t n, int64_t k) {
  timed("weighted_bce", cost::elementwise(n * k, 12, 3), "n " + std::to_string(n) + " k " + std::to_string(k),
        [&] { be_.weighted_bce(loss, dz, z, labels, w_pos, w_neg, n, k); });
}
void ProfilingBackend::adam_update(float* params, float* m, float* v, const float* grads, int64_t count,
                                   const AdamParams& a) {
  timed("adam_update", cost::adam(count), count_text("params", count),
        [&] { be_.adam_update(params, m, v, grads, count, a); });
}

}  // namespace cxr
