// Class activation maps on the model's backend (tools/cam_maps.h).
#include "tools/cam_maps.h"

#include <algorithm>

#include "io/fileutil.h"
#include "kernels/cam_ops.h"

namespace cxr::app {

const std::vector<std::string>& cam_method_names() {
  static const std::vector<std::string> names = {"gradcam", "gradcam++", "hirescam", "layercam"};
  return names;
}

const char* cam_method_name(CamMethod m) { return cam_method_names()[size_t(m)].c_str(); }

CamMethod parse_cam_method(const std::string& name) {
  const auto& names = cam_method_names();
  const auto it = std::find(names.begin(), names.end(), name);
  CXR_CHECK(it != names.end(), "--method ", name, ": expected one of ", io::join_list(names));
  return CamMethod(it - names.begin());
}

const std::vector<std::string>& cam_layer_names() {
  static const std::vector<std::string> names = {"final", "block3", "block2", "fuse"};
  return names;
}

std::vector<int> parse_cam_layer(const std::string& name, const DenseNet& net) {
  const int top = net.explain_levels() - 1;  // the final BN-ReLU map; block b (1-based) is level b - 1
  CXR_CHECK(top >= 3, "this network has ", top, " dense blocks: --layer needs at least 3");
  if (name == "final") return {top};
  if (name == "block3") return {2};
  if (name == "block2") return {1};
  if (name == "fuse") return {top, 2, 1};
  CXR_FAIL("--layer ", name, ": expected one of ", io::join_list(cam_layer_names()));
}

CamMaps::CamMaps(DenseNet& net, CamMethod method, std::vector<int> levels, int64_t out_h, int64_t out_w)
    : net_(net),
      be_(net.backend()),
      method_(method),
      levels_(std::move(levels)),
      n_(net.batch()),
      k_(net.config().classes),
      out_h_(out_h),
      out_w_(out_w) {
  CXR_CHECK(out_h >= 1 && out_w >= 1, "class activation map output size ", out_h, "x", out_w);
  CXR_CHECK(!levels_.empty(), "class activation maps need at least one level");
  auto floats = [&](int64_t count) {
    return static_cast<float*>(be_.allocate(sizeof(float) * size_t(count)));
  };
  try {
    int64_t widest = 0;
    for (int level : levels_) {
      const Shape a = net.level_activations(level).shape;  // (N, C, h, w)
      Level l{level, a.c, a.h, a.w};
      maps_.push_back(l);  // owned from here on: the destructor frees what was allocated
      maps_.back().cam = floats(n_ * a.h * a.w);
      maps_.back().up = floats(n_ * out_h * out_w);
      widest = std::max(widest, a.c);
    }
    dlogits_ = floats(n_ * k_);
    weights_ = floats(n_ * widest);
    const int deepest = *std::min_element(levels_.begin(), levels_.end());
    if (deepest < net.explain_levels() - 1) {
      ping_ = floats(net.explain_buffer_floats(deepest));
      pong_ = floats(net.explain_buffer_floats(deepest));
    }
  } catch (...) {
    release_all();
    throw;
  }
}

CamMaps::~CamMaps() { release_all(); }

void CamMaps::release_all() {
  for (Level& l : maps_)
    for (float** p : {&l.cam, &l.up})
      if (*p) be_.release(*p), *p = nullptr;
  for (float** p : {&dlogits_, &weights_, &ping_, &pong_})
    if (*p) be_.release(*p), *p = nullptr;
}

void CamMaps::compute_level(const Level& l, const Tensor& grads) {
  const Tensor a = net_.level_activations(l.level);
  switch (method_) {
    case CamMethod::GradCam:
      gradcam_channel_weights(be_, weights_, grads);
      gradcam_weighted_sum_relu(be_, l.cam, weights_, a);
      break;
    case CamMethod::GradCamPlusPlus:
      gradcam_plusplus_weights(be_, weights_, grads, a);
      gradcam_weighted_sum_relu(be_, l.cam, weights_, a);
      break;
    case CamMethod::HiResCam:
      cam_elementwise_relu(be_, l.cam, grads, a, /*positive_grads=*/false);
      break;
    case CamMethod::LayerCam:
      cam_elementwise_relu(be_, l.cam, grads, a, /*positive_grads=*/true);
      break;
  }
}

std::vector<float> CamMaps::compute(const std::vector<int>& classes) {
  CXR_CHECK(int64_t(classes.size()) == n_, "class activation maps: ", classes.size(),
            " classes for a batch of ", n_);
  std::vector<float> onehot(size_t(n_ * k_), 0.0f);  // d(sum onehot * logits) = d logit_{class(i)}
  for (int64_t i = 0; i < n_; ++i) {
    const int c = classes[size_t(i)];
    CXR_CHECK(c < k_, "class activation maps: class ", c, " of a model with ", k_, " classes");
    if (c >= 0) onehot[size_t(i * k_ + c)] = 1.0f;
  }
  be_.copy_to_device(dlogits_, onehot.data(), sizeof(float) * onehot.size());
  const int deepest = *std::min_element(levels_.begin(), levels_.end());
  net_.explain_backward(dlogits_, deepest, ping_, pong_, [&](int level, const Tensor& grads) {
    for (const Level& l : maps_)
      if (l.level == level) compute_level(l, grads);
  });
  raw_.clear();
  for (const Level& l : maps_) {
    raw_.emplace_back(size_t(n_ * l.h * l.w));
    be_.copy_to_host(raw_.back().data(), l.cam, sizeof(float) * raw_.back().size());
  }
  be_.synchronize();
  if (maps_.size() > 1) return fuse();
  // One level (Note [CAM scaling and fusion]): divided by the maximum, in place, then upsampled.
  std::vector<float> maps(size_t(n_ * out_h_ * out_w_));
  {
    const Level& l = maps_[0];
    gradcam_normalize(be_, l.cam, n_, l.h * l.w);
    bilinear_resize(be_, l.up, out_h_, out_w_, l.cam, n_, l.h, l.w);
    be_.copy_to_host(maps.data(), l.up, sizeof(float) * maps.size());
    be_.synchronize();
  }
  return maps;
}

std::vector<float> CamMaps::raw(size_t i) const {
  CXR_CHECK(i < raw_.size(), "no raw map of level index ", i, " (compute() first)");
  return raw_[i];
}

// Note [CAM scaling and fusion], on the host in double: each level's raw map upsampled as it is,
// then scaled by its own low-resolution minimum and maximum (the same affine map before or after
// the upsampling), averaged, and the average min-max scaled.
std::vector<float> CamMaps::fuse() const {
  const int64_t plane = out_h_ * out_w_;
  std::vector<double> sum(size_t(n_ * plane), 0.0);
  std::vector<float> up(size_t(n_ * plane));
  for (size_t i = 0; i < maps_.size(); ++i) {
    const Level& l = maps_[i];
    bilinear_resize(be_, l.up, out_h_, out_w_, l.cam, n_, l.h, l.w);
    be_.copy_to_host(up.data(), l.up, sizeof(float) * up.size());
    be_.synchronize();
    const std::vector<float>& low = raw_[i];
    for (int64_t img = 0; img < n_; ++img) {
      const auto first = low.begin() + img * l.h * l.w, last = first + l.h * l.w;
      const double lo = *std::min_element(first, last), hi = *std::max_element(first, last);
      for (int64_t j = 0; j < plane; ++j)
        sum[size_t(img * plane + j)] += (double(up[size_t(img * plane + j)]) - lo) / (hi - lo + 1e-7);
    }
  }
  std::vector<float> maps(size_t(n_ * plane));
  for (int64_t img = 0; img < n_; ++img) {
    const auto first = sum.begin() + img * plane, last = first + plane;
    const double lo = *std::min_element(first, last), hi = *std::max_element(first, last);
    for (int64_t j = 0; j < plane; ++j) {
      const double mean = sum[size_t(img * plane + j)] / double(maps_.size());
      maps[size_t(img * plane + j)] =
          float((mean - lo / double(maps_.size())) / ((hi - lo) / double(maps_.size()) + 1e-7));
    }
  }
  return maps;
}

}  // namespace cxr::app
