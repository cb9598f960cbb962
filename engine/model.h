// Model assembly: DenseNet121/169/201 with a global-average-pool + dense head, built once from the
// device-agnostic layers in layers/, planned into one arena for a given batch and image size, and
// run on any backend. Training mode keeps what backward needs; inference mode plans no gradients.
#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/arena.h"
#include "layers/densenet.h"

namespace cxr {

struct DenseNetConfig {
  std::string arch = "densenet121";
  std::vector<int> blocks{6, 12, 24, 16};
  int64_t growth = 32, bottleneck = 128, stem = 64;
  int64_t classes = 14;
  // BN running statistics: running = m * running + (1 - m) * batch. Keras's 0.99 needs a few hundred
  // steps to forget its initial values; PyTorch's default is the equivalent of 0.9.
  double bn_momentum = 0.99;
  // Training memory (Note [DenseNet memory]): every BN-ReLU output is recomputed in backward; with
  // this set, each dense layer's bottleneck (its 1x1 convolution's output) is too, from the block
  // buffer, at the cost of one more 1x1 convolution per layer. At batch 32 and 320x320 that is
  // 1.05 GiB of activations less (cxr plan). See fit_to_budget().
  bool recompute_bottleneck = false;
  // densenet121, densenet169 ([6, 12, 32, 32]) or densenet201 ([6, 12, 48, 32]).
  static DenseNetConfig from_arch(const std::string& arch, int64_t classes = 14);
};

struct LayerInfo {
  std::string name, kind;
  Shape out;       // per image: (1, C, H, W)
  int64_t params;  // trainable parameters
};

class DenseNet {
 public:
  // allocate = false builds the plan only (for `cxr plan`): nothing may run on such a model.
  DenseNet(Backend& be, DenseNetConfig cfg, int64_t batch, int64_t height, int64_t width,
           bool trainable = true, bool allocate = true);
  ~DenseNet();

  const DenseNetConfig& config() const { return cfg_; }
  const ParamTable& table() const { return table_; }
  const MemoryPlan& plan() const { return plan_; }
  const std::vector<LayerInfo>& layers() const { return info_; }
  Backend& backend() const { return be_; }
  int64_t batch() const { return n_; }
  bool trainable() const { return trainable_; }  // planned with gradients and optimizer state

  // Device buffers of the step's inputs: images (N, 3, H, W); labels (N, K) as 0/1 floats;
  // per-class loss weights w_pos, w_neg (K).
  Tensor input() const;
  float* labels() const;
  float* w_pos() const;
  float* w_neg() const;
  float* logits() const;        // (N, K)
  Tensor features() const;      // (N, C, h, w): the last BN-ReLU output (Grad-CAM's map)
  float* params() const;        // trainable weights, laid out by table()
  float* grads() const;         // their gradients (training models only)
  float* state() const;         // BN running statistics
  float* adam_m() const;        // Adam moments, laid out like params() (training models only;
  float* adam_v() const;        // zero after construction)

  // Forward pass. training: batch statistics and the running update; otherwise running statistics.
  void forward(bool training);
  // Weighted BCE of the last logits against labels(); writes d loss / d logits; returns the loss.
  float loss();
  // Backward of the last forward(true) and loss(): every trainable gradient is overwritten.
  void backward();
  // Data parallel (engine/data_parallel.h). The hook is called during backward() each time the
  // gradients from a float offset of grads() to its end are final (backward runs the parameter
  // table in reverse; the offsets only decrease, the last call is 0): a bucket's all-reduce can start.
  void set_gradient_hook(std::function<void(int64_t first_final)> hook) { gradient_hook_ = std::move(hook); }
  // --sync-bn: training forwards and backwards normalise over the global batch (null: this rank's).
  void set_bn_sync(BatchNormSync* sync) { bn_sync_ = sync; }

  // Gradient of sum(dlogits * logits) with respect to features() after a forward pass, through the
  // head only (dense layer, global average pool): what Grad-CAM needs. dlogits: device (N, K).
  // Returns a view of scratch that the next forward/backward overwrites. Works for inference plans.
  Tensor feature_gradients(const float* dlogits);

  // ---- explanations (Note [Explaining backward]) ------------------------------------------------
  // Levels a class activation map can be read at, after forward(false): level b < blocks (4 for
  // DenseNet121) is the output of dense block b + 1 (its whole buffer, the concatenation the next
  // transition reads); level `blocks` is features(), the final BN-ReLU map.
  int explain_levels() const { return int(blocks_.size()) + 1; }
  Tensor level_activations(int level) const;
  // Floats in each of the two device buffers explain_backward needs to reach level `deepest`.
  int64_t explain_buffer_floats(int deepest) const;
  // Backward of sum(dlogits * logits) through the last inference forward, from the head down to
  // level `deepest`: calls visit(level, gradient) for each level from the top down as soon as the
  // gradient with respect to level_activations(level) is complete (the view is valid only inside the
  // call). dlogits: device (N, K); ping, pong: device buffers of explain_buffer_floats(deepest).
  void explain_backward(const float* dlogits, int deepest, float* ping, float* pong,
                        const std::function<void(int, const Tensor&)>& visit);
  // Inference forward from level_activations(level) as it is now (the layers after it only): the
  // finite-difference oracle of explain_backward.
  void forward_from_level(int level);

  // Host transfers of whole buffers.
  void set_weights(const std::vector<float>& params, const std::vector<float>& state);
  void get_weights(std::vector<float>* params, std::vector<float>* state) const;
  std::vector<float> get_grads() const;
  std::vector<float> get_logits() const;

 private:
  struct Block {
    std::string name, transition_name;  // "conv3", "pool3": the profiler's ranges (engine/profiler.h)
    std::vector<std::string> layer_names;  // "conv3_block1", ...
    std::vector<DenseLayer> layers;
    MemoryPlan::Id buffer{}, grad{}, stats{};  // stats: the BN statistics its BNs share
    Shape shape;  // (N, C_final, H, W)
    bool has_transition = false;
    Transition transition;
  };
  StepContext context(bool training) const;
  const Arena& arena() const {
    CXR_CHECK(arena_ != nullptr, "this model was built as a plan only: it has no memory");
    return *arena_;
  }
  Tensor buffer(MemoryPlan::Id id, const Shape& s) const { return Tensor(arena().floats(id), s, be_.device()); }
  void build();
  void forward_block(const StepContext& s, size_t b);
  void forward_transition(const StepContext& s, size_t b);  // block b -> the first channels of block b + 1
  void forward_head(const StepContext& s);
  void gradients_final_from(int row) const;

  Backend& be_;
  DenseNetConfig cfg_;
  int64_t n_, h_, w_;
  bool trainable_;
  ParamTable table_;
  MemoryPlan plan_;
  std::unique_ptr<Arena> arena_;
  std::vector<LayerInfo> info_;

  Conv2d conv0_;
  BatchNorm bn0_;
  PoolGeom maxpool_{3, 2, 1};
  std::vector<Block> blocks_;
  BatchNorm bn_final_;
  Scratch scratch_;
  int dense_ = -1;
  int64_t features_c_ = 0;
  Shape stem_shape_, feat_shape_;
  MemoryPlan::Id params_{}, grads_{}, state_{}, input_{}, labels_{}, wpos_{}, wneg_{}, loss_{},
      logits_{}, dlogits_{}, pooled_{}, dpooled_{}, dhead_{}, adam_m_{}, adam_v_{}, stem_out_{}, features_{}, workspace_{};
  bool forward_training_done_ = false, loss_done_ = false;
  std::function<void(int64_t)> gradient_hook_;
  BatchNormSync* bn_sync_ = nullptr;
};

// Note [Explaining backward]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~
// A class activation map at an inner layer needs d logit_k / d A for that layer's output A, through
// the network as it ran for the map: the inference forward, whose batch normalisations use the
// running statistics. Those are constants, so each BN-ReLU is an element-wise affine map behind a
// mask, and its backward is dy * gamma * invstd where the forward let the value through
// (Backend::batchnorm_relu_backward_frozen); the training backward's batch-statistics terms do not
// appear. explain_backward runs that backward with data gradients only (no parameter gradient),
// recomputing what the inference forward did not keep (each BN-ReLU output, each bottleneck) in the
// shared scratch, and two caller-owned gradient buffers in turn. The gradient of a block's output is
// the one through the layers after it (the next transition, or the final BN-ReLU): what a hook on
// the block's output (torchvision's `denseblockN`) sees; the block's own layers then add their
// paths to its earlier channels before the backward moves on to the block before.

// The training plan's total bytes for cfg at this batch and size on be (nothing is allocated).
size_t training_plan_bytes(Backend& be, const DenseNetConfig& cfg, int64_t batch, int64_t height, int64_t width);

// The memory policies of a training step, fastest first: keep each layer's bottleneck output, or
// recompute it in backward as well. Returns cfg with the fastest policy whose plan fits `budget`
// bytes (cfg's own policy if it already recomputes the bottleneck and fits), or nullopt when none
// does.
std::optional<DenseNetConfig> fit_to_budget(Backend& be, DenseNetConfig cfg, int64_t batch, int64_t height,
                                            int64_t width, size_t budget);

// "bn-relu" or "bn-relu+bottleneck": what backward recomputes under cfg.
const char* recompute_name(const DenseNetConfig& cfg);

}  // namespace cxr
