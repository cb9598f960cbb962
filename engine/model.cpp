#include "engine/model.h"

#include <algorithm>
#include <optional>

namespace cxr {

DenseNetConfig DenseNetConfig::from_arch(const std::string& arch, int64_t classes) {
  DenseNetConfig c;
  c.arch = arch;
  c.classes = classes;
  if (arch == "densenet121") c.blocks = {6, 12, 24, 16};
  else if (arch == "densenet169") c.blocks = {6, 12, 32, 32};
  else if (arch == "densenet201") c.blocks = {6, 12, 48, 32};
  else CXR_FAIL("unknown architecture '", arch, "': expected densenet121, densenet169 or densenet201");
  CXR_CHECK(classes >= 1, "class count must be at least 1, got ", classes);
  return c;
}

DenseNet::DenseNet(Backend& be, DenseNetConfig cfg, int64_t batch, int64_t height, int64_t width,
                   bool trainable, bool allocate)
    : be_(be), cfg_(std::move(cfg)), n_(batch), h_(height), w_(width), trainable_(trainable) {
  CXR_CHECK(batch >= 1, "batch size must be at least 1, got ", batch);
  build();
  if (!allocate) return;
  try {
    arena_ = std::make_unique<Arena>(be_, plan_);
  } catch (const Error& e) {
    CXR_FAIL("cannot allocate the ", format_bytes(double(plan_.total_bytes())), " that ", cfg_.arch, " needs for ",
             trainable_ ? "training" : "inference", " at batch ", n_, " and ", h_, "x", w_, " on ", be_.name(),
             " (lower the batch size or the image size): ", e.what());
  }
  if (trainable_) {
    be_.fill(adam_m(), 0.0f, table_.trainable_count());
    be_.fill(adam_v(), 0.0f, table_.trainable_count());
  }
}

DenseNet::~DenseNet() = default;

void DenseNet::build() {
  auto add = [&](const std::string& name, MemCategory c, const Shape& s) {
    return plan_.add_floats(name, c, s.numel());
  };
  auto fits = [&](int64_t size, const char* where) {
    if (size < 1)
      CXR_FAIL("image size ", h_, "x", w_, " is too small for ", cfg_.arch, ": the feature map ",
               where, " would be empty (use at least 32x32)");
  };
  size_t workspace = 0;
  // The workspace the convolution needs for the views it runs on: a packed input, and an output
  // (and gradient) of batch stride y_bstride, packed unless given.
  auto note_ws = [&](const Conv2d& c, const Shape& x, int64_t y_bstride = 0) {
    const Shape y = c.out_shape(x);
    workspace = std::max(workspace, c.workspace_bytes(be_, x, y_bstride ? y_bstride : y.c * y.h * y.w));
  };
  auto grow = [&](MemoryPlan::Id id, const Shape& s) { plan_.grow(id, sizeof(float) * size_t(s.numel())); };
  const int64_t N = n_;
  std::optional<MemoryPlan::Id> shared_bottleneck;

  // Scratch first so that growing it relayouts nothing later (order is irrelevant for correctness).
  scratch_.wide1 = plan_.add("scratch wide 1", MemCategory::Recompute, 0);
  scratch_.wide2 = plan_.add("scratch wide 2", MemCategory::Recompute, 0);
  scratch_.narrow1 = plan_.add("scratch narrow 1", MemCategory::Recompute, 0);
  scratch_.narrow2 = plan_.add("scratch narrow 2", MemCategory::Recompute, 0);

  // Stem: zero-pad 3, conv 7x7/2, BN, ReLU, (zero-pad 1) max-pool 3x3/2.
  input_ = add("input images", MemCategory::Input, Shape{N, 3, h_, w_});
  conv0_.init(table_, "conv1/conv", cfg_.stem, 3, 7, 2, 3);
  const Shape in{N, 3, h_, w_};
  stem_shape_ = conv0_.out_shape(in);
  fits(stem_shape_.h, "after the stem convolution");
  note_ws(conv0_, in);
  info_.push_back({"conv1/conv", "conv 7x7/2", {1, cfg_.stem, stem_shape_.h, stem_shape_.w}, table_[conv0_.param].numel});
  bn0_.init(table_, plan_, "conv1/bn", cfg_.stem);
  info_.push_back({"conv1/bn", "bn + relu", {1, cfg_.stem, stem_shape_.h, stem_shape_.w}, 2 * cfg_.stem});
  stem_out_ = add("conv1/conv output", MemCategory::Activations, stem_shape_);
  grow(scratch_.wide1, stem_shape_);
  grow(scratch_.wide2, stem_shape_);
  int64_t H = maxpool_.out_size(stem_shape_.h), W = maxpool_.out_size(stem_shape_.w);
  fits(H, "after the max pool");
  info_.push_back({"pool1", "max pool 3x3/2", {1, cfg_.stem, H, W}, 0});

  int64_t C = cfg_.stem;
  for (size_t b = 0; b < cfg_.blocks.size(); ++b) {
    Block blk;
    const std::string stage = "conv" + std::to_string(b + 2);
    blk.name = stage;
    const int64_t c_final = C + cfg_.blocks[b] * cfg_.growth;
    blk.shape = Shape{N, c_final, H, W};
    blk.buffer = add(stage + " block buffer", MemCategory::Activations, blk.shape);
    // Every BN of the block reads a prefix of its buffer: one statistics buffer for all of them
    // (Note [BN statistics once per channel] in layers/batchnorm.h).
    blk.stats = plan_.add_floats(stage + " batch statistics (shared)", MemCategory::BnState, 2 * c_final);
    for (int l = 0; l < cfg_.blocks[b]; ++l) {
      DenseLayer L;
      const std::string p = stage + "_block" + std::to_string(l + 1);
      L.c_in = C + l * cfg_.growth;
      L.growth = cfg_.growth;
      L.fresh_from = l == 0 ? 0 : L.c_in - cfg_.growth;
      L.bn0.init_shared(table_, p + "_0_bn", L.c_in, blk.stats, c_final);
      L.conv1.init(table_, p + "_1_conv", cfg_.bottleneck, L.c_in, 1, 1, 0);
      L.bn1.init(table_, plan_, p + "_1_bn", cfg_.bottleneck);
      L.conv2.init(table_, p + "_2_conv", cfg_.growth, cfg_.bottleneck, 3, 1, 1);
      const Shape wide{N, L.c_in, H, W}, narrow{N, cfg_.bottleneck, H, W};
      note_ws(L.conv1, wide);
      note_ws(L.conv2, narrow, c_final * H * W);  // writes channels [c_in, c_in + growth) of the block
      grow(scratch_.wide1, wide);
      grow(scratch_.wide2, wide);
      grow(scratch_.narrow1, narrow);
      grow(scratch_.narrow2, narrow);
      // Inference keeps no bottleneck per layer: all share one (Note [DenseNet memory]); so does
      // training that recomputes them in backward.
      L.recompute_bottleneck = trainable_ && cfg_.recompute_bottleneck;
      if (trainable_ && !cfg_.recompute_bottleneck) {
        L.bottleneck = add(p + " bottleneck", MemCategory::Activations, narrow);
      } else {
        if (!shared_bottleneck) shared_bottleneck = plan_.add("bottleneck (shared)", MemCategory::Recompute, 0);
        L.bottleneck = *shared_bottleneck;
        grow(L.bottleneck, narrow);
      }
      info_.push_back({p, "dense layer", {1, L.c_in + cfg_.growth, H, W},
                       2 * L.c_in + table_[L.conv1.param].numel + 2 * cfg_.bottleneck + table_[L.conv2.param].numel});
      blk.layers.push_back(std::move(L));
      blk.layer_names.push_back(p);
    }
    C = c_final;
    if (trainable_ && b < 2) blk.grad = add(stage + " block gradient", MemCategory::Recompute, blk.shape);
    if (b + 1 < cfg_.blocks.size()) {
      blk.has_transition = true;
      const std::string p = "pool" + std::to_string(b + 2);
      blk.transition_name = p;
      blk.transition.bn.init_shared(table_, p + "_bn", C, blk.stats, C);
      blk.transition.fresh_from = C - cfg_.growth;
      blk.transition.conv.init(table_, p + "_conv", C / 2, C, 1, 1, 0);
      const Shape pooled = blk.transition.pooled_shape(blk.shape);  // the conv runs after the pool
      grow(scratch_.wide1, blk.shape);
      grow(scratch_.wide2, blk.shape);
      grow(scratch_.narrow1, pooled);
      grow(scratch_.narrow2, pooled);
      C = C / 2;
      H = blk.transition.pool.out_size(H);
      W = blk.transition.pool.out_size(W);
      fits(H, ("after transition " + p).c_str());
      // Writes channels [0, C) of the next block's buffer.
      note_ws(blk.transition.conv, pooled, (C + cfg_.blocks[b + 1] * cfg_.growth) * H * W);
      info_.push_back({p, "transition", {1, C, H, W}, 2 * (C * 2) + table_[blk.transition.conv.param].numel});
    }
    blocks_.push_back(std::move(blk));
  }
  // Gradient buffers: blocks alternate between two (Note [DenseNet memory]); block b's gradient is
  // live while block b+1's is finished, never with b+2's.
  if (trainable_)
    for (size_t b = 2; b < blocks_.size(); ++b) {
      grow(blocks_[b % 2].grad, blocks_[b].shape);
      blocks_[b].grad = blocks_[b % 2].grad;
    }

  // Head: BN-ReLU (kept: the Grad-CAM feature map), global average pool, dense.
  features_c_ = C;
  feat_shape_ = Shape{N, C, H, W};
  bn_final_.init_shared(table_, "bn", C, blocks_.back().stats, C);
  features_ = add("features (final BN-ReLU)", MemCategory::Activations, feat_shape_);
  grow(scratch_.wide2, feat_shape_);
  info_.push_back({"bn", "bn + relu", {1, C, H, W}, 2 * C});
  info_.push_back({"avg_pool", "global avg pool", {1, C, 1, 1}, 0});
  dense_ = table_.add_dense("predictions", C, cfg_.classes);
  info_.push_back({"predictions", "dense", {1, cfg_.classes, 1, 1}, C * cfg_.classes + cfg_.classes});

  pooled_ = add("pooled features", MemCategory::Activations, Shape{N, C, 1, 1});
  logits_ = add("logits", MemCategory::Activations, Shape{N, cfg_.classes, 1, 1});
  labels_ = add("labels", MemCategory::Input, Shape{N, cfg_.classes, 1, 1});
  wpos_ = add("w_pos", MemCategory::Input, Shape{1, cfg_.classes, 1, 1});
  wneg_ = add("w_neg", MemCategory::Input, Shape{1, cfg_.classes, 1, 1});
  loss_ = add("loss", MemCategory::Input, Shape{1, 1, 1, 1});
  dlogits_ = add("d logits", MemCategory::Recompute, Shape{N, cfg_.classes, 1, 1});
  dpooled_ = add("d pooled", MemCategory::Recompute, Shape{N, C, 1, 1});
  dhead_ = plan_.add_floats("head gradient scratch", MemCategory::Recompute, C * cfg_.classes + cfg_.classes);

  params_ = plan_.add_floats("parameters", MemCategory::Parameters, table_.trainable_count());
  if (trainable_) {
    grads_ = plan_.add_floats("gradients", MemCategory::Gradients, table_.trainable_count());
    adam_m_ = plan_.add_floats("Adam first moments", MemCategory::OptimizerState, table_.trainable_count());
    adam_v_ = plan_.add_floats("Adam second moments", MemCategory::OptimizerState, table_.trainable_count());
  }
  state_ = plan_.add_floats("running statistics", MemCategory::BnState, table_.state_count());
  workspace_ = plan_.add("convolution workspace", MemCategory::Workspace, workspace);
}

StepContext DenseNet::context(bool training) const {
  const auto& ws = plan_.entry(workspace_);
  return StepContext{be_, arena(), table_, arena().floats(params_),
                     trainable_ ? arena().floats(grads_) : nullptr, arena().floats(state_),
                     Workspace{arena().ptr(workspace_), ws.bytes}, training, cfg_.bn_momentum,
                     training ? bn_sync_ : nullptr};
}

void DenseNet::gradients_final_from(int row) const {
  if (gradient_hook_) gradient_hook_(table_[row].offset);
}

Tensor DenseNet::input() const { return buffer(input_, Shape{n_, 3, h_, w_}); }
float* DenseNet::labels() const { return arena().floats(labels_); }
float* DenseNet::w_pos() const { return arena().floats(wpos_); }
float* DenseNet::w_neg() const { return arena().floats(wneg_); }
float* DenseNet::logits() const { return arena().floats(logits_); }
Tensor DenseNet::features() const { return buffer(features_, feat_shape_); }
float* DenseNet::params() const { return arena().floats(params_); }
float* DenseNet::grads() const {
  CXR_CHECK(trainable_, "this model was planned for inference: it has no gradients");
  return arena().floats(grads_);
}
float* DenseNet::state() const { return arena().floats(state_); }
float* DenseNet::adam_m() const {
  CXR_CHECK(trainable_, "this model was planned for inference: it has no optimizer state");
  return arena().floats(adam_m_);
}
float* DenseNet::adam_v() const {
  CXR_CHECK(trainable_, "this model was planned for inference: it has no optimizer state");
  return arena().floats(adam_v_);
}

// Ranges (engine/backend.h: NVTX on CUDA, the profiler's layers and blocks): phase > block > layer.
void DenseNet::forward(bool training) {
  CXR_CHECK(!training || trainable_, "training-mode forward on a model planned for inference");
  const StepContext s = context(training);
  BackendRange phase(be_, "forward");
  {
    BackendRange block(be_, "stem");
    const Tensor c1 = buffer(stem_out_, stem_shape_);
    const Tensor z = scratch_.view(s, scratch_.wide1, stem_shape_);
    {
      BackendRange layer(be_, "conv1");
      conv0_.forward(s, c1, input());
      bn0_.forward(s, z, c1, true);
    }
    BackendRange layer(be_, "pool1");
    const Tensor first = buffer(blocks_[0].buffer, blocks_[0].shape).channels(0, cfg_.stem);
    be_.maxpool_forward(first, z, maxpool_);
  }
  for (size_t b = 0; b < blocks_.size(); ++b) {
    forward_block(s, b);
    if (blocks_[b].has_transition) forward_transition(s, b);
  }
  forward_head(s);
  forward_training_done_ = training;
  loss_done_ = false;
}

void DenseNet::forward_block(const StepContext& s, size_t b) {
  const Tensor block = buffer(blocks_[b].buffer, blocks_[b].shape);
  BackendRange range(be_, blocks_[b].name);
  for (size_t l = 0; l < blocks_[b].layers.size(); ++l) {
    BackendRange layer(be_, blocks_[b].layer_names[l]);
    blocks_[b].layers[l].forward(s, scratch_, block);
  }
}

void DenseNet::forward_transition(const StepContext& s, size_t b) {
  BackendRange range(be_, blocks_[b].transition_name), layer(be_, blocks_[b].transition_name);
  const auto& next = blocks_[b + 1];
  const Tensor out = buffer(next.buffer, next.shape).channels(0, blocks_[b].shape.c / 2);
  blocks_[b].transition.forward(s, scratch_, buffer(blocks_[b].buffer, blocks_[b].shape), out);
}

void DenseNet::forward_head(const StepContext& s) {
  BackendRange head(be_, "head");
  const Tensor last = buffer(blocks_.back().buffer, blocks_.back().shape);
  {
    BackendRange layer(be_, "bn");
    bn_final_.forward(s, features(), last, true, /*fresh_from=*/features_c_ - cfg_.growth);
  }
  const Tensor pooled = buffer(pooled_, Shape{n_, features_c_, 1, 1});
  {
    BackendRange layer(be_, "avg_pool");
    be_.global_avgpool_forward(pooled, features());
  }
  BackendRange layer(be_, "predictions");
  be_.dense_forward(logits(), pooled.data, s.param(dense_), s.param(dense_ + 1), n_, features_c_, cfg_.classes);
}

float DenseNet::loss() {
  {
    BackendRange phase(be_, "loss"), block(be_, "head"), layer(be_, "loss");
    be_.weighted_bce(arena().floats(loss_), arena().floats(dlogits_), logits(), labels(), w_pos(), w_neg(),
                     n_, cfg_.classes);
  }
  float host = 0;
  be_.copy_to_host(&host, arena().floats(loss_), sizeof(float));
  be_.synchronize();
  loss_done_ = true;
  return host;
}

void DenseNet::backward() {
  CXR_CHECK(forward_training_done_ && loss_done_, "backward() needs forward(true) and loss() first");
  const StepContext s = context(true);
  BackendRange phase(be_, "backward");
  const Tensor pooled = buffer(pooled_, Shape{n_, features_c_, 1, 1});
  const Tensor dpooled = buffer(dpooled_, pooled.shape);
  const Tensor dfeat = scratch_.view(s, scratch_.wide2, feat_shape_);
  {
    BackendRange head(be_, "head");
    {
      BackendRange layer(be_, "predictions");
      be_.dense_backward(dpooled.data, s.grad(dense_), s.grad(dense_ + 1), arena().floats(dlogits_), pooled.data,
                         s.param(dense_), n_, features_c_, cfg_.classes);
    }
    gradients_final_from(dense_);
    {
      // wide2 <- d features
      BackendRange layer(be_, "avg_pool");
      be_.global_avgpool_backward(dfeat, dpooled);
    }
    // The last block's gradient (=) from the final BN-ReLU (one fused op).
    BackendRange layer(be_, "bn");
    const Block& last = blocks_.back();
    bn_final_.backward_relu(s, buffer(last.grad, last.shape), GradMode::Overwrite, dfeat,
                            buffer(last.buffer, last.shape));
  }
  gradients_final_from(bn_final_.gamma);
  for (size_t b = blocks_.size(); b-- > 0;) {
    const Block& blk = blocks_[b];
    const Tensor block = buffer(blk.buffer, blk.shape), dblock = buffer(blk.grad, blk.shape);
    {
      BackendRange range(be_, blk.name);
      for (size_t l = blk.layers.size(); l-- > 0;) {
        BackendRange layer(be_, blk.layer_names[l]);
        blk.layers[l].backward(s, scratch_, block, dblock);
        gradients_final_from(blk.layers[l].bn0.gamma);
      }
    }
    if (b > 0) {
      const Block& prev = blocks_[b - 1];
      BackendRange range(be_, prev.transition_name), layer(be_, prev.transition_name);
      prev.transition.backward(s, scratch_, buffer(prev.buffer, prev.shape), buffer(prev.grad, prev.shape),
                               dblock.channels(0, prev.shape.c / 2));
      gradients_final_from(prev.transition.bn.gamma);
    }
  }
  // Stem: wide1 <- z = relu(bn(c1)); wide2 <- dz from the max pool; wide1 <- d c1.
  BackendRange block(be_, "stem");
  const Tensor c1 = buffer(stem_out_, stem_shape_);
  const Tensor z = scratch_.view(s, scratch_.wide1, stem_shape_), dz = scratch_.view(s, scratch_.wide2, stem_shape_);
  {
    BackendRange layer(be_, "pool1");
    bn0_.recompute(s, z, c1, true);
    const Tensor dfirst = buffer(blocks_[0].grad, blocks_[0].shape).channels(0, cfg_.stem);
    be_.maxpool_backward(dz, dfirst, z, maxpool_);
  }
  BackendRange layer(be_, "conv1");
  const Tensor dc1 = z;  // z is dead once the max pool has routed the gradient
  bn0_.backward_relu(s, dc1, GradMode::Overwrite, dz, c1);
  conv0_.backward_filter(s, dc1, input());
  gradients_final_from(conv0_.param);
}

Tensor DenseNet::feature_gradients(const float* dlogits) {
  const StepContext s = context(false);
  const Tensor pooled = buffer(pooled_, Shape{n_, features_c_, 1, 1});
  const Tensor dpooled = buffer(dpooled_, pooled.shape);
  // Only dx is wanted; the dense layer's own gradients go to a scratch buffer of the head's size.
  float* dkernel = arena().floats(dhead_);
  be_.dense_backward(dpooled.data, dkernel, dkernel + features_c_ * cfg_.classes, dlogits, pooled.data,
                     s.param(dense_), n_, features_c_, cfg_.classes);
  const Tensor dfeat = scratch_.view(s, scratch_.wide1, feat_shape_);
  be_.global_avgpool_backward(dfeat, dpooled);
  return dfeat;
}

Tensor DenseNet::level_activations(int level) const {
  CXR_CHECK(level >= 0 && level < explain_levels(), "explanation level ", level, " of ", explain_levels());
  if (level == int(blocks_.size())) return features();
  return buffer(blocks_[size_t(level)].buffer, blocks_[size_t(level)].shape);
}

int64_t DenseNet::explain_buffer_floats(int deepest) const {
  CXR_CHECK(deepest >= 0 && deepest < explain_levels(), "explanation level ", deepest, " of ", explain_levels());
  int64_t most = 0;
  for (size_t b = size_t(deepest); b < blocks_.size(); ++b) most = std::max(most, blocks_[b].shape.numel());
  return most;
}

void DenseNet::explain_backward(const float* dlogits, int deepest, float* ping, float* pong,
                                const std::function<void(int, const Tensor&)>& visit) {
  const int top = int(blocks_.size());
  CXR_CHECK(deepest >= 0 && deepest <= top, "explanation level ", deepest, " of ", explain_levels());
  const StepContext s = context(false);
  BackendRange phase(be_, "explain");
  const Tensor dfeat = feature_gradients(dlogits);  // in scratch wide1, dead once the final BN has it
  visit(top, dfeat);
  if (deepest == top) return;
  float* buf[2] = {ping, pong};
  int cur = 0;
  const Block& last = blocks_.back();
  bn_final_.backward_relu_frozen(s, Tensor(buf[cur], last.shape, be_.device()), GradMode::Overwrite, dfeat,
                                 buffer(last.buffer, last.shape));
  for (int b = top - 1;; --b) {
    const Block& blk = blocks_[size_t(b)];
    const Tensor block = buffer(blk.buffer, blk.shape), dblock(buf[cur], blk.shape, be_.device());
    visit(b, dblock);  // complete through the layers after the block
    if (b == deepest) return;
    for (size_t l = blk.layers.size(); l-- > 0;) blk.layers[l].backward_data_frozen(s, scratch_, block, dblock);
    const Block& prev = blocks_[size_t(b - 1)];
    cur = 1 - cur;
    prev.transition.backward_data_frozen(s, scratch_, buffer(prev.buffer, prev.shape),
                                         Tensor(buf[cur], prev.shape, be_.device()),
                                         dblock.channels(0, prev.shape.c / 2));
  }
}

void DenseNet::forward_from_level(int level) {
  CXR_CHECK(level >= 0 && level < explain_levels(), "explanation level ", level, " of ", explain_levels());
  const StepContext s = context(false);
  const int top = int(blocks_.size());
  if (level == top) {  // the head after the final BN-ReLU: pool and dense
    const Tensor pooled = buffer(pooled_, Shape{n_, features_c_, 1, 1});
    be_.global_avgpool_forward(pooled, features());
    be_.dense_forward(logits(), pooled.data, s.param(dense_), s.param(dense_ + 1), n_, features_c_, cfg_.classes);
  } else {
    for (size_t b = size_t(level);; ++b) {
      if (b > size_t(level)) forward_block(s, b);
      if (!blocks_[b].has_transition) break;
      forward_transition(s, b);
    }
    forward_head(s);
  }
  forward_training_done_ = false;
  loss_done_ = false;
}

void DenseNet::set_weights(const std::vector<float>& params, const std::vector<float>& state) {
  CXR_CHECK(int64_t(params.size()) == table_.trainable_count(), "expected ", table_.trainable_count(),
            " trainable values, got ", params.size());
  CXR_CHECK(int64_t(state.size()) == table_.state_count(), "expected ", table_.state_count(),
            " state values, got ", state.size());
  be_.copy_to_device(this->params(), params.data(), sizeof(float) * params.size());
  be_.copy_to_device(this->state(), state.data(), sizeof(float) * state.size());
  be_.synchronize();
}

void DenseNet::get_weights(std::vector<float>* params, std::vector<float>* state) const {
  if (params) {
    params->resize(size_t(table_.trainable_count()));
    be_.copy_to_host(params->data(), this->params(), sizeof(float) * params->size());
  }
  if (state) {
    state->resize(size_t(table_.state_count()));
    be_.copy_to_host(state->data(), this->state(), sizeof(float) * state->size());
  }
  be_.synchronize();
}

std::vector<float> DenseNet::get_grads() const {
  std::vector<float> g(size_t(table_.trainable_count()));
  be_.copy_to_host(g.data(), grads(), sizeof(float) * g.size());
  be_.synchronize();
  return g;
}

std::vector<float> DenseNet::get_logits() const {
  std::vector<float> v(size_t(n_ * cfg_.classes));
  be_.copy_to_host(v.data(), logits(), sizeof(float) * v.size());
  be_.synchronize();
  return v;
}

size_t training_plan_bytes(Backend& be, const DenseNetConfig& cfg, int64_t batch, int64_t height, int64_t width) {
  return DenseNet(be, cfg, batch, height, width, /*trainable=*/true, /*allocate=*/false).plan().total_bytes();
}

std::optional<DenseNetConfig> fit_to_budget(Backend& be, DenseNetConfig cfg, int64_t batch, int64_t height,
                                            int64_t width, size_t budget) {
  for (bool recompute : {false, true}) {
    if (cfg.recompute_bottleneck && !recompute) continue;  // asked for the frugal policy: keep it
    DenseNetConfig c = cfg;
    c.recompute_bottleneck = recompute;
    if (training_plan_bytes(be, c, batch, height, width) <= budget) return c;
  }
  return std::nullopt;
}

const char* recompute_name(const DenseNetConfig& cfg) {
  return cfg.recompute_bottleneck ? "bn-relu+bottleneck" : "bn-relu";
}

}  // namespace cxr
