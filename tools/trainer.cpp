#include "tools/trainer.h"

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/init.h"
#include "io/checkpoint.h"
#include "io/classes.h"
#include "io/metrics.h"
#include "io/plot.h"
#include "tools/pipeline.h"

namespace cxr::app {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

volatile std::sig_atomic_t g_interrupted = 0;
extern "C" void on_sigint(int) { g_interrupted = 1; }

// Installs the Ctrl-C handler for the duration of a run.
class InterruptGuard {
 public:
  InterruptGuard() {
    g_interrupted = 0;
    previous_ = std::signal(SIGINT, on_sigint);
  }
  ~InterruptGuard() { std::signal(SIGINT, previous_); }

 private:
  void (*previous_)(int);
};

// One line per epoch of progress: a bar redrawn in place on a terminal, a line every 5 s otherwise.
class StepProgress {
 public:
  StepProgress(std::string label, int64_t total, bool quiet)
      : label_(std::move(label)), total_(total), quiet_(quiet), tty_(stderr_is_tty()), start_(Clock::now()),
        last_(start_) {}
  void update(int64_t done, double loss, double images_per_second) {
    if (quiet_) return;
    const auto now = Clock::now();
    const bool final = done == total_;
    if (!final && now - last_ < (tty_ ? std::chrono::milliseconds(200) : std::chrono::seconds(5))) return;
    last_ = now;
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    const double left = done > 0 ? elapsed * double(total_ - done) / double(done) : 0;
    char bar[32] = {0};
    const int width = 24, filled = int(width * done / std::max<int64_t>(total_, 1));
    for (int i = 0; i < width; ++i) bar[i] = i < filled ? '#' : '.';
    std::fprintf(stderr, "%s%s [%s] %ld/%ld loss %.4f %.1f img/s %ld:%02ld left%s", tty_ ? "\r" : "", label_.c_str(),
                 bar, long(done), long(total_), loss, images_per_second, long(left) / 60, long(left) % 60,
                 tty_ && !final ? "" : "\n");
    std::fflush(stderr);
  }

 private:
  std::string label_;
  int64_t total_;
  bool quiet_, tty_;
  Clock::time_point start_, last_;
};

void log_line(std::ofstream& log, const json& j) {
  log << j.dump() << "\n";
  log.flush();
}

struct Scheduler {
  double best = 0;
  bool has_best = false;
  int64_t bad_epochs = 0;
  int64_t resume_batch = 0;  // first batch of the current epoch still to train (after Ctrl-C)
  json to_json() const { return {{"best", best}, {"has_best", has_best}, {"bad_epochs", bad_epochs}, {"resume_batch", resume_batch}}; }
  static Scheduler from_json(const std::string& s) {
    Scheduler r;
    if (s.empty()) return r;
    const json j = json::parse(s);
    r.best = j.at("best"), r.has_best = j.at("has_best"), r.bad_epochs = j.at("bad_epochs");
    r.resume_batch = j.value("resume_batch", int64_t(0));
    return r;
  }
};

json options_json(const TrainOptions& o) {
  return {{"data", o.data}, {"out", o.out}, {"weights", o.weights}, {"arch", o.arch}, {"device", o.device},
          {"normalize", o.normalize}, {"loss", o.loss}, {"monitor", o.monitor}, {"epochs", o.epochs},
          {"batch", o.batch}, {"size", o.size}, {"lr", o.lr}, {"weight_decay", o.weight_decay},
          {"bn_momentum", o.bn_momentum}, {"plateau_factor", o.plateau_factor}, {"plateau_patience", o.plateau_patience},
          {"freeze_epochs", o.freeze_epochs}, {"seed", o.seed}, {"flip", o.flip},
          {"max_steps_per_epoch", o.max_steps_per_epoch}, {"recompute", o.memory.recompute},
          {"memory_budget", o.memory.budget}};
}

// Training curves (loss and mean AUC per epoch) from the run's metrics log.
void write_training_curves(const fs::path& out) {
  std::ifstream f((out / "metrics.jsonl").string());
  std::vector<io::EpochPoint> points;
  std::string line;
  while (std::getline(f, line)) {
    const json j = json::parse(line);
    if (j.value("type", "") != "epoch") continue;
    io::EpochPoint p;
    p.epoch = j["epoch"];
    p.train_loss = j["train_loss"];
    if (j.contains("val_loss")) p.val_loss = j["val_loss"];
    if (j.contains("val_mean_auc") && !j["val_mean_auc"].is_null()) p.val_auc = j["val_mean_auc"];
    points.push_back(p);
  }
  if (!points.empty()) io::write_figure(io::training_figure(points), (out / "training_curves").string());
}

}  // namespace

TrainResult train(const TrainOptions& opt) {
  CXR_CHECK(opt.epochs >= 1, "--epochs must be at least 1, got ", opt.epochs);
  CXR_CHECK(opt.batch >= 2, "--batch must be at least 2 (batch normalisation needs it), got ", opt.batch);
  CXR_CHECK(opt.monitor == "loss" || opt.monitor == "auc", "--monitor must be loss or auc, got ", opt.monitor);
  CXR_CHECK(opt.loss == "weighted" || opt.loss == "plain", "--loss must be weighted or plain, got ", opt.loss);
  CXR_CHECK(opt.lr > 0 && std::isfinite(opt.lr), "--lr must be a positive number, got ", opt.lr);

  io::PackedDataset data(opt.data);
  const auto train_idx = data.indices(io::Split::Train), val_idx = data.indices(io::Split::Val);
  if (train_idx.empty())
    CXR_FAIL(opt.data, ": no training images (every image is in val or test): prepare it again with a --split "
             "that gives the training set a share, e.g. 0.7,0.1,0.2");
  const int64_t S = data.image_size();
  if (opt.size != 0 && opt.size != S)
    CXR_FAIL("--size ", opt.size, " differs from the packed images (", S, "x", S, " in ", opt.data,
             "): run cxr prepare --size ", opt.size, " to make a dataset at that size");
  if (int64_t(train_idx.size()) < opt.batch)
    CXR_FAIL("the training set of ", opt.data, " has ", train_idx.size(), " images, fewer than --batch ", opt.batch);

  const fs::path out(opt.out);
  const std::string last_path = (out / "last.h5").string(), best_path = (out / "best.h5").string();
  if (opt.resume && !fs::exists(last_path))
    CXR_FAIL("--resume: no checkpoint ", last_path, " to continue from");
  if (!opt.resume && fs::exists(last_path))
    CXR_FAIL(opt.out, " already holds a run (", last_path, "): pass --resume to continue it or choose another --out");
  fs::create_directories(out);

  auto be = make_backend(opt.device);
  CXR_CHECK(opt.bn_momentum >= 0 && opt.bn_momentum < 1, "--bn-momentum must be in [0, 1), got ", opt.bn_momentum);
  DenseNetConfig arch = DenseNetConfig::from_arch(opt.arch, io::kNumClasses);
  arch.bn_momentum = opt.bn_momentum;
  arch = apply_memory_policy(*be, arch, opt.batch, S, S, opt.memory);
  DenseNet net(*be, arch, opt.batch, S, S, /*trainable=*/true);
  if (!opt.quiet)
    std::fprintf(stderr, "model: %s on %s, batch %ld at %ldx%ld, memory plan %s, recomputing %s in backward\n",
                 arch.arch.c_str(), be->name().c_str(), long(opt.batch), long(S), long(S),
                 format_bytes(double(net.plan().total_bytes())).c_str(), recompute_name(arch));
  const ParamTable& table = net.table();

  // Weights: a resumed run, a given file (backbone-only files get a fresh head), or Keras's defaults.
  std::vector<float> params, state;
  std::optional<io::TrainingState> resumed;
  io::ModelMeta meta;
  meta.arch = opt.arch;
  meta.classes = io::kNumClasses;
  meta.class_names.assign(io::kClassNames.begin(), io::kClassNames.end());
  meta.image_size = S;
  if (opt.resume) {
    net.get_weights(&params, &state);
    std::optional<io::ModelMeta> m;
    const std::string what = io::load_weights(last_path, table, params, state, io::HeadPolicy::Require, 0, &m, &resumed);
    if (!opt.quiet) std::fprintf(stderr, "resuming %s: %s\n", last_path.c_str(), what.c_str());
    CXR_CHECK(resumed.has_value(), last_path, " has no training state to resume from");
    meta = *m;
  } else if (!opt.weights.empty()) {
    net.get_weights(&params, &state);
    const auto policy = opt.drop_head ? io::HeadPolicy::Drop : io::HeadPolicy::LoadOrInit;
    const std::string what = io::load_weights(opt.weights, table, params, state, policy, opt.seed);
    if (!opt.quiet) std::fprintf(stderr, "weights %s: %s\n", opt.weights.c_str(), what.c_str());
  } else {
    init_keras_default(table, params, state, opt.seed);
  }
  net.set_weights(params, state);

  io::NormParams norm;
  if (opt.resume) {
    norm = norm_params(meta);
  } else {
    norm = norm_params(opt.normalize, data);
    meta.normalization = opt.normalize;
    meta.norm_mean = norm.mean;
    meta.norm_std = norm.std;
  }

  // Loss weights from the training set, printed as the run starts.
  const ClassWeights w = class_weights(data, io::Split::Train, opt.loss == "plain");
  be->copy_to_device(net.w_pos(), w.pos.data(), sizeof(float) * w.pos.size());
  be->copy_to_device(net.w_neg(), w.neg.data(), sizeof(float) * w.neg.size());
  if (!opt.quiet) {
    std::fprintf(stderr, "cxr train: %s on %s, batch %ld, %ldx%ld, %zu training and %zu validation images\n",
                 opt.arch.c_str(), be->name().c_str(), long(opt.batch), long(S), long(S), train_idx.size(),
                 val_idx.size());
    std::fprintf(stderr, "loss: %s BCE; per-class weights (w_pos = frequency of negatives, w_neg = of positives):\n",
                 opt.loss.c_str());
    for (int k = 0; k < io::kNumClasses; ++k)
      std::fprintf(stderr, "  %-20s w_pos %.4f  w_neg %.4f\n", std::string(io::kClassNames[size_t(k)]).c_str(),
                   w.pos[size_t(k)], w.neg[size_t(k)]);
  }

  // Optimizer state and schedule.
  int64_t step = 0, first_epoch = 0;
  double lr = opt.lr;
  Scheduler sched;
  if (resumed) {
    CXR_CHECK(int64_t(resumed->adam_m.size()) == table.trainable_count(), last_path, ": Adam state of ",
              resumed->adam_m.size(), " values for ", table.trainable_count(), " parameters");
    be->copy_to_device(net.adam_m(), resumed->adam_m.data(), sizeof(float) * resumed->adam_m.size());
    be->copy_to_device(net.adam_v(), resumed->adam_v.data(), sizeof(float) * resumed->adam_v.size());
    step = resumed->step, first_epoch = resumed->epoch;
    lr = opt.reset_lr ? opt.lr : resumed->learning_rate;
    sched = Scheduler::from_json(resumed->scheduler_json);
  }
  const TrainOptions& cfg = opt;  // flags of this invocation (epochs may be raised on resume)

  io::LoaderOptions lo = io::LoaderOptions::train(int(opt.batch), opt.seed);
  lo.flip = opt.flip;
  lo.drop_last = true;  // a last batch of one image would make batch statistics degenerate
  lo.norm = norm;
  io::Loader loader(data, lo);
  int64_t steps_per_epoch = loader.batches_per_epoch();
  if (opt.max_steps_per_epoch > 0) steps_per_epoch = std::min(steps_per_epoch, opt.max_steps_per_epoch);

  std::ofstream log((out / "metrics.jsonl").string(), std::ios::app);
  CXR_CHECK(log.good(), "cannot write ", (out / "metrics.jsonl").string());

  auto save = [&](const std::string& path, int64_t epochs_done) {
    std::vector<float> p, s;
    net.get_weights(&p, &s);
    io::TrainingState ts;
    ts.adam_m.resize(p.size());
    ts.adam_v.resize(p.size());
    be->copy_to_host(ts.adam_m.data(), net.adam_m(), sizeof(float) * p.size());
    be->copy_to_host(ts.adam_v.data(), net.adam_v(), sizeof(float) * p.size());
    be->synchronize();
    ts.step = step, ts.epoch = epochs_done, ts.learning_rate = lr;
    ts.rng_state = std::to_string(opt.seed);  // every random choice is a function of (seed, epoch, image)
    ts.config_json = options_json(cfg).dump();
    ts.scheduler_json = sched.to_json().dump();
    io::save_checkpoint(path, table, p, s, meta, &ts);
  };

  if (opt.save_initial && !opt.resume) save((out / "initial.h5").string(), 0);
  std::ofstream batch_log;
  if (opt.log_batches) batch_log.open((out / "batches.jsonl").string(), std::ios::app);

  // The head is the last two table rows (kernel, bias): a frozen backbone updates only them.
  const ParamEntry& head = table[table.size() - 2];
  InterruptGuard guard;
  TrainResult result;
  for (int64_t epoch = first_epoch; epoch < opt.epochs; ++epoch) {
    const bool frozen = epoch < opt.freeze_epochs;
    const auto t0 = Clock::now();
    loader.start_epoch(epoch);
    StepProgress progress("epoch " + std::to_string(epoch + 1) + "/" + std::to_string(opt.epochs), steps_per_epoch,
                          opt.quiet);
    double loss_sum = 0;
    int64_t counted = 0;
    for (int64_t b = 0; b < steps_per_epoch; ++b) {
      const io::Batch* batch = loader.next();
      CXR_CHECK(batch != nullptr, "the loader ended the epoch early at batch ", b);
      if (b < sched.resume_batch) continue;  // trained before the interruption
      upload_batch(net, *batch);
      if (batch_log.is_open())
        log_line(batch_log, {{"epoch", epoch + 1}, {"step", step + 1},
                             {"indices", std::vector<int64_t>(batch->indices, batch->indices + batch->size)},
                             {"flipped", std::vector<int>(batch->flipped, batch->flipped + batch->size)}});
      net.forward(true);
      const float loss = net.loss();
      if (!std::isfinite(loss))
        CXR_FAIL("the loss became ", loss, " at epoch ", epoch + 1, ", step ", b + 1,
                 ": training stopped; the last good checkpoint is ",
                 fs::exists(last_path) ? last_path : std::string("(none yet)"), " (try a lower --lr)");
      net.backward();
      ++step;
      AdamParams a;
      a.lr = lr, a.weight_decay = opt.weight_decay, a.step = step;
      if (frozen)
        be->adam_update(net.params() + head.offset, net.adam_m() + head.offset, net.adam_v() + head.offset,
                        net.grads() + head.offset, table.trainable_count() - head.offset, a);
      else
        be->adam_update(net.params(), net.adam_m(), net.adam_v(), net.grads(), table.trainable_count(), a);
      loss_sum += loss;
      ++counted;
      const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
      const double ips = double(counted * opt.batch) / std::max(elapsed, 1e-9);
      progress.update(b + 1, loss_sum / double(counted), ips);
      if ((b + 1) % opt.log_every == 0)
        log_line(log, {{"type", "step"}, {"epoch", epoch + 1}, {"step", step}, {"loss", loss}, {"lr", lr},
                       {"images_per_second", ips}});
      if (g_interrupted) {
        sched.resume_batch = b + 1;
        save(last_path, epoch);
        std::fprintf(stderr, "\ninterrupted: saved %s (epoch %ld, step %ld); continue with --resume\n",
                     last_path.c_str(), long(epoch + 1), long(b + 1));
        result.interrupted = true;
        result.epochs_done = epoch;
        return result;
      }
    }
    sched.resume_batch = 0;
    const double train_loss = counted ? loss_sum / double(counted) : 0.0;
    const double train_seconds = std::chrono::duration<double>(Clock::now() - t0).count();

    // Validation: loss with the training weights, per-class AUC.
    json epoch_log = {{"type", "epoch"}, {"epoch", epoch + 1}, {"step", step}, {"train_loss", train_loss},
                      {"lr", lr}, {"train_seconds", train_seconds}, {"frozen_backbone", frozen}};
    double monitored = train_loss;
    if (!val_idx.empty()) {
      std::vector<int64_t> idx;
      const auto logits = infer_logits(net, data, io::Split::Val, norm, &idx, true);
      const auto labels = gather_labels(data, idx);
      const double val_loss = weighted_bce_host(logits, labels, w, io::kNumClasses);
      const auto auc = io::per_class_auc(logits, labels, io::kNumClasses);
      const double mean_auc = io::mean_auc(auc);
      json per_class;
      for (int k = 0; k < io::kNumClasses; ++k)
        if (std::isfinite(auc[size_t(k)])) per_class[std::string(io::kClassNames[size_t(k)])] = auc[size_t(k)];
      epoch_log["val_loss"] = val_loss;
      epoch_log["val_mean_auc"] = mean_auc;
      epoch_log["val_auc"] = per_class;
      monitored = opt.monitor == "auc" ? -mean_auc : val_loss;  // lower is better
      if (!opt.quiet)
        std::fprintf(stderr, "epoch %ld: train loss %.4f, val loss %.4f, val mean AUC %.4f, lr %.2g\n",
                     long(epoch + 1), train_loss, val_loss, mean_auc, lr);
    } else if (!opt.quiet) {
      std::fprintf(stderr, "epoch %ld: train loss %.4f (no validation set), lr %.2g\n", long(epoch + 1), train_loss, lr);
    }
    const bool improved = !sched.has_best || monitored < sched.best;
    if (improved) {
      sched.best = monitored, sched.has_best = true, sched.bad_epochs = 0;
    } else if (++sched.bad_epochs >= opt.plateau_patience) {
      lr *= opt.plateau_factor;  // Keras's ReduceLROnPlateau: after `patience` epochs without improvement
      sched.bad_epochs = 0;
      if (!opt.quiet) std::fprintf(stderr, "no improvement for %ld epochs: learning rate now %.3g\n",
                                   long(opt.plateau_patience), lr);
    }
    epoch_log["lr_next"] = lr;
    log_line(log, epoch_log);
    save(last_path, epoch + 1);
    if (improved) {
      save(best_path, epoch + 1);
      if (!opt.quiet) std::fprintf(stderr, "saved %s (best so far)\n", best_path.c_str());
    }
    result.epochs_done = epoch + 1;
  }
  result.best_metric = opt.monitor == "auc" ? -sched.best : sched.best;
  write_training_curves(out);
  return result;
}

}  // namespace cxr::app
