#include "tools/trainer.h"

#include <array>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/data_parallel.h"
#include "engine/init.h"
#include "io/checkpoint.h"
#include "io/classes.h"
#include "io/metrics.h"
#include "io/plot.h"
#include "engine/profiler.h"
#include "io/fault.h"
#include "io/fileutil.h"
#include "tools/pipeline.h"
#include "tools/profile_report.h"

namespace cxr::app {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

volatile std::sig_atomic_t g_interrupted = 0;
extern "C" void on_sigint(int) { g_interrupted = 1; }

// Installs the handler of Ctrl-C, SIGTERM and SIGUSR1 for the duration of a run: each stops the run
// after the current step with a checkpoint. Under a launcher the ranks agree on it at the end of the
// step (Run::agree_on_step). Slurm sends SIGTERM to every task at once; OpenMPI's mpirun forwards
// SIGUSR1 at once but answers its own SIGINT/SIGTERM with SIGCONT, then SIGTERM after
// odls_base_sigkill_timeout seconds, then SIGKILL after as many again (README.md).
class InterruptGuard {
 public:
  InterruptGuard() {
    g_interrupted = 0;
    for (int s : kSignals) previous_.push_back(std::signal(s, on_sigint));
  }
  ~InterruptGuard() {
    for (size_t i = 0; i < kSignals.size(); ++i) std::signal(kSignals[i], previous_[i]);
  }

 private:
  static constexpr std::array<int, 3> kSignals{SIGINT, SIGTERM, SIGUSR1};
  std::vector<void (*)(int)> previous_;
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
  io::fault_point("train: metrics line written");
}

// The run folder before a run starts: temporary files that killed saves left (".last.h5.tmp-PID-N")
// are removed, and metrics.jsonl keeps only what the checkpoint the run continues from had logged
// (steps up to its step, epochs up to its epoch; all of it goes for a fresh run), so that a run
// killed and resumed logs each step and epoch once.
void tidy_run_folder(const fs::path& out, int64_t kept_step, int64_t kept_epoch) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(out, ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() > 1 && name[0] == '.' && name.find(".h5.tmp-") != std::string::npos) fs::remove(e.path(), ec);
    if (name.find(".tmp.") != std::string::npos) fs::remove(e.path(), ec);  // io::write_atomically's
  }
  const fs::path log = out / "metrics.jsonl";
  if (!fs::exists(log)) return;
  std::string kept;
  bool dropped = false;
  for (const std::string& line : io::split_lines(io::read_text_file(log.string()))) {
    if (line.empty()) continue;
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception&) {
      dropped = true;  // a line cut by a kill
      continue;
    }
    const bool keep = j.value("type", "") == "epoch" ? j.value("epoch", int64_t(0)) <= kept_epoch
                                                     : j.value("step", int64_t(0)) <= kept_step;
    if (keep) kept += line + "\n";
    else dropped = true;
  }
  if (dropped) io::write_text_file(log.string(), kept);
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
          {"memory_budget", o.memory.budget}, {"sync_bn", o.sync_bn}};
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

namespace {

void check_options(const TrainOptions& opt, const Comm& comm) {
  CXR_CHECK(opt.epochs >= 1, "--epochs must be at least 1, got ", opt.epochs);
  CXR_CHECK(opt.batch >= 2, "--batch must be at least 2 (batch normalisation needs it), got ", opt.batch);
  CXR_CHECK(opt.monitor == "loss" || opt.monitor == "auc", "--monitor must be loss or auc, got ", opt.monitor);
  CXR_CHECK(opt.loss == "weighted" || opt.loss == "plain", "--loss must be weighted or plain, got ", opt.loss);
  CXR_CHECK(opt.lr > 0 && std::isfinite(opt.lr), "--lr must be a positive number, got ", opt.lr);
  CXR_CHECK(opt.bn_momentum >= 0 && opt.bn_momentum < 1, "--bn-momentum must be in [0, 1), got ", opt.bn_momentum);
  CXR_CHECK(opt.trace_first <= opt.trace_last, "--trace-steps ", opt.trace_first, ":", opt.trace_last,
            ": the first step is after the last");
  CXR_CHECK(opt.bucket_mb > 0, "--bucket-mb must be positive, got ", opt.bucket_mb);
  CXR_CHECK(opt.comm_timeout > 0, "--comm-timeout must be positive, got ", opt.comm_timeout);
  CXR_CHECK(opt.check_replicas >= 0, "--check-replicas must be 0 (off) or a number of steps, got ", opt.check_replicas);
  if (opt.batch % comm.size() != 0)
    CXR_FAIL("--batch ", opt.batch, " (the global batch) does not divide by the ", comm.size(),
             " ranks: choose a multiple of ", comm.size());
  if (opt.batch / comm.size() < 2)
    CXR_FAIL("--batch ", opt.batch, " over ", comm.size(), " ranks leaves ", opt.batch / comm.size(),
             " image per rank: batch normalisation needs at least 2 per rank");
}

// One training run: the dataset, the model and its optimizer state, the schedule, the run folder.
// train() below is its sequence: construct (checks, model, weights, normalisation, loss weights,
// optimizer state), then per epoch train_epoch() and finish_epoch() (validation, schedule, checkpoints).
class Run {
 public:
  Run(const TrainOptions& opt, Comm& comm);
  TrainResult run();

 private:
  void check_data_and_folder();
  void build_model();
  void load_initial_weights();
  void set_normalisation_and_loss_weights();
  void restore_optimizer_state();
  void save(const std::string& path, int64_t epochs_done);
  // Trains one epoch; false when Ctrl-C interrupted it (a checkpoint was saved).
  bool train_epoch(int64_t epoch, double* mean_loss);
  void train_step(const io::Batch& batch, int64_t epoch, int64_t b, bool frozen);
  void set_up_data_parallel();
  void wait_for_rank0_checkpoints();
  void log_batch(const io::Batch& batch, int64_t epoch);
  // After backward: the ranks' mean loss and whether any rank was interrupted, agreed by all.
  float agree_on_step(float local_loss);
  bool writer() const { return comm_.root(); }  // only rank 0 writes files and progress
  void finish_epoch(int64_t epoch, double train_loss, double train_seconds, bool frozen);
  bool tracing(int64_t global_step) const {
    return prof_ && global_step >= opt_.trace_first && global_step <= opt_.trace_last;
  }
  void write_trace();

  const TrainOptions& opt_;
  Comm& comm_;
  bool quiet_;  // --quiet, or a rank other than 0
  io::PackedDataset data_;
  std::vector<int64_t> train_idx_, val_idx_;
  int64_t S_ = 0;
  fs::path out_;
  std::string last_path_, best_path_;
  std::unique_ptr<Backend> be_;
  std::unique_ptr<ProfilingBackend> prof_;  // --trace-steps: the model runs through it
  DenseNetConfig arch_;
  std::unique_ptr<DenseNet> net_;
  io::ModelMeta meta_;
  std::optional<io::TrainingState> resumed_;
  io::NormParams norm_;
  ClassWeights weights_;
  int64_t step_ = 0, first_epoch_ = 0;
  double lr_ = 0;
  Scheduler sched_;
  std::unique_ptr<io::Loader> loader_;
  int64_t steps_per_epoch_ = 0;
  std::ofstream log_, batch_log_;
  std::vector<TraceSpan> loader_waits_;  // traced steps' waits for the loader
  std::vector<std::pair<double, double>> traced_steps_;
  bool trace_written_ = false;
  TrainResult result_;
  float last_loss_ = 0;
  std::unique_ptr<GradientReducer> reducer_;
  std::unique_ptr<BatchNormSync> bn_sync_;
  bool agreed_interrupt_ = false;
  double comm_wait_s_ = 0;  // this epoch's host waits for the gradient all-reduce
};

Run::Run(const TrainOptions& opt, Comm& comm)
    : opt_(opt), comm_(comm), quiet_(opt.quiet || !comm.root()), data_(opt.data), lr_(opt.lr) {
  check_options(opt, comm);
  comm_.set_timeout(opt.comm_timeout);
  comm_.set_interrupt_flag(&g_interrupted);
  check_data_and_folder();
  build_model();
  load_initial_weights();
  set_normalisation_and_loss_weights();
  restore_optimizer_state();
  set_up_data_parallel();
  // Each rank its share of every global batch; the last partial batch is dropped by every rank
  // (a last batch of one image would make batch statistics degenerate).
  io::LoaderOptions lo = io::LoaderOptions::train(int(opt.batch), opt.seed);
  lo.flip = opt.flip;
  lo.drop_last = true;
  lo.norm = norm_;
  lo.shard_rank = comm_.rank(), lo.shard_count = comm_.size();
  loader_ = std::make_unique<io::Loader>(data_, lo);
  steps_per_epoch_ = loader_->batches_per_epoch();
  if (opt.max_steps_per_epoch > 0) steps_per_epoch_ = std::min(steps_per_epoch_, opt.max_steps_per_epoch);
  if (writer()) {
    tidy_run_folder(out_, step_, first_epoch_);
    log_.open((out_ / "metrics.jsonl").string(), std::ios::app);
    CXR_CHECK(log_.good(), "cannot write ", (out_ / "metrics.jsonl").string());
    if (opt.save_initial && !opt.resume) save((out_ / "initial.h5").string(), 0);
    if (opt.log_batches) batch_log_.open((out_ / "batches.jsonl").string(), std::ios::app);
  }
}

// Every rank starts from rank 0's parameters, statistics and Adam moments; the gradients are
// averaged in buckets during backward; --sync-bn synchronises batch normalisation.
void Run::set_up_data_parallel() {
  if (comm_.size() == 1) return;
  broadcast_model(*net_, comm_);
  reducer_ = make_gradient_reducer(*be_, comm_, net_->grads(), plan_gradient_buckets(net_->table(), opt_.bucket_mb));
  net_->set_gradient_hook([r = reducer_.get()](int64_t first_final) { r->gradients_final_from(first_final); });
  if (opt_.sync_bn) {
    bn_sync_ = make_batchnorm_sync(*be_, comm_);
    net_->set_bn_sync(bn_sync_.get());
  }
  if (!quiet_)
    std::fprintf(stderr, "data parallel: %d ranks over %s, gradients by %s, %ld images per rank, batch norm %s\n",
                 comm_.size(), comm_.name().c_str(), reducer_->name().c_str(), long(opt_.batch / comm_.size()),
                 opt_.sync_bn ? "over the global batch (--sync-bn)" : "per rank");
}

void Run::check_data_and_folder() {
  train_idx_ = data_.indices(io::Split::Train);
  val_idx_ = data_.indices(io::Split::Val);
  if (train_idx_.empty())
    CXR_FAIL(opt_.data, ": no training images (every image is in val or test): prepare it again with a --split "
             "that gives the training set a share, e.g. 0.7,0.1,0.2");
  S_ = data_.image_size();
  if (opt_.size != 0 && opt_.size != S_)
    CXR_FAIL("--size ", opt_.size, " differs from the packed images (", S_, "x", S_, " in ", opt_.data,
             "): run cxr prepare --size ", opt_.size, " to make a dataset at that size");
  if (int64_t(train_idx_.size()) < opt_.batch)
    CXR_FAIL("the training set of ", opt_.data, " has ", train_idx_.size(), " images, fewer than --batch ", opt_.batch);
  out_ = fs::path(opt_.out);
  last_path_ = (out_ / "last.h5").string(), best_path_ = (out_ / "best.h5").string();
  if (opt_.resume && !fs::exists(last_path_))
    CXR_FAIL("--resume: no checkpoint ", last_path_, " to continue from",
             comm_.size() > 1 ? " (every rank reads it: the run folder must be visible to all of them)" : "");
  if (!opt_.resume && fs::exists(last_path_))
    CXR_FAIL(opt_.out, " already holds a run (", last_path_, "): pass --resume to continue it or choose another --out");
  if (writer()) fs::create_directories(out_);
}

void Run::build_model() {
  be_ = make_backend_for_rank(opt_.device, comm_);
  arch_ = DenseNetConfig::from_arch(opt_.arch, io::kNumClasses);
  arch_.bn_momentum = opt_.bn_momentum;
  const int64_t local_batch = opt_.batch / comm_.size();  // this rank's share of the global batch
  arch_ = apply_memory_policy(*be_, arch_, local_batch, S_, S_, opt_.memory);
  if (opt_.trace_last > 0) prof_ = std::make_unique<ProfilingBackend>(*be_);
  Backend& runs_on = prof_ ? static_cast<Backend&>(*prof_) : *be_;
  net_ = std::make_unique<DenseNet>(runs_on, arch_, local_batch, S_, S_, /*trainable=*/true);
  if (!quiet_)
    std::fprintf(stderr, "model: %s on %s, batch %ld at %ldx%ld, memory plan %s, recomputing %s in backward\n",
                 arch_.arch.c_str(), be_->name().c_str(), long(local_batch), long(S_), long(S_),
                 format_bytes(double(net_->plan().total_bytes())).c_str(), recompute_name(arch_));
}

// Weights: a resumed run, a given file (backbone-only files get a fresh head), or Keras's defaults.
void Run::load_initial_weights() {
  const ParamTable& table = net_->table();
  std::vector<float> params, state;
  meta_.arch = opt_.arch;
  meta_.classes = io::kNumClasses;
  meta_.class_names.assign(io::kClassNames.begin(), io::kClassNames.end());
  meta_.image_size = S_;
  if (opt_.resume) {
    net_->get_weights(&params, &state);
    std::optional<io::ModelMeta> m;
    const std::string what =
        io::load_weights(last_path_, table, params, state, io::HeadPolicy::Require, 0, &m, &resumed_);
    if (!quiet_) std::fprintf(stderr, "resuming %s: %s\n", last_path_.c_str(), what.c_str());
    CXR_CHECK(resumed_.has_value(), last_path_, " has no training state to resume from");
    meta_ = *m;
  } else if (!opt_.weights.empty()) {
    net_->get_weights(&params, &state);
    const auto policy = opt_.drop_head ? io::HeadPolicy::Drop : io::HeadPolicy::LoadOrInit;
    const std::string what = io::load_weights(opt_.weights, table, params, state, policy, opt_.seed);
    if (!quiet_) std::fprintf(stderr, "weights %s: %s\n", opt_.weights.c_str(), what.c_str());
  } else {
    init_keras_default(table, params, state, opt_.seed);
  }
  net_->set_weights(params, state);
}

void Run::set_normalisation_and_loss_weights() {
  if (opt_.resume) {
    norm_ = norm_params(meta_);
  } else {
    norm_ = norm_params(opt_.normalize, data_);
    meta_.normalization = opt_.normalize;
    meta_.norm_mean = norm_.mean;
    meta_.norm_std = norm_.std;
  }
  // Loss weights from the training set, printed as the run starts.
  weights_ = class_weights(data_, io::Split::Train, opt_.loss == "plain");
  be_->copy_to_device(net_->w_pos(), weights_.pos.data(), sizeof(float) * weights_.pos.size());
  be_->copy_to_device(net_->w_neg(), weights_.neg.data(), sizeof(float) * weights_.neg.size());
  if (quiet_) return;
  std::fprintf(stderr, "cxr train: %s on %s, batch %ld, %ldx%ld, %zu training and %zu validation images\n",
               opt_.arch.c_str(), be_->name().c_str(), long(opt_.batch), long(S_), long(S_), train_idx_.size(),
               val_idx_.size());
  std::fprintf(stderr, "loss: %s BCE; per-class weights (w_pos = frequency of negatives, w_neg = of positives):\n",
               opt_.loss.c_str());
  for (int k = 0; k < io::kNumClasses; ++k)
    std::fprintf(stderr, "  %-20s w_pos %.4f  w_neg %.4f\n", std::string(io::kClassNames[size_t(k)]).c_str(),
                 weights_.pos[size_t(k)], weights_.neg[size_t(k)]);
}

void Run::restore_optimizer_state() {
  if (!resumed_) return;
  const int64_t count = net_->table().trainable_count();
  CXR_CHECK(int64_t(resumed_->adam_m.size()) == count, last_path_, ": Adam state of ", resumed_->adam_m.size(),
            " values for ", count, " parameters");
  be_->copy_to_device(net_->adam_m(), resumed_->adam_m.data(), sizeof(float) * resumed_->adam_m.size());
  be_->copy_to_device(net_->adam_v(), resumed_->adam_v.data(), sizeof(float) * resumed_->adam_v.size());
  step_ = resumed_->step, first_epoch_ = resumed_->epoch;
  lr_ = opt_.reset_lr ? opt_.lr : resumed_->learning_rate;
  sched_ = Scheduler::from_json(resumed_->scheduler_json);
}

// Rank 0 only (every rank holds the same model; the checkpoint holds nothing rank-dependent, so a
// run resumes with any number of ranks).
void Run::save(const std::string& path, int64_t epochs_done) {
  if (!writer()) return;
  std::vector<float> p, s;
  net_->get_weights(&p, &s);
  io::TrainingState ts;
  ts.adam_m.resize(p.size());
  ts.adam_v.resize(p.size());
  be_->copy_to_host(ts.adam_m.data(), net_->adam_m(), sizeof(float) * p.size());
  be_->copy_to_host(ts.adam_v.data(), net_->adam_v(), sizeof(float) * p.size());
  be_->synchronize();
  ts.step = step_, ts.epoch = epochs_done, ts.learning_rate = lr_;
  ts.rng_state = std::to_string(opt_.seed);  // every random choice is a function of (seed, epoch, image)
  json config = options_json(opt_);  // flags of this invocation (epochs may be raised on resume)
  config["synthetic_data"] = !data_.attribute("synthetic").empty();  // made by cxr synth (io/packed.h)
  ts.config_json = config.dump();
  ts.scheduler_json = sched_.to_json().dump();
  io::save_checkpoint(path, net_->table(), p, s, meta_, &ts);
}

void Run::train_step(const io::Batch& batch, int64_t epoch, int64_t b, bool frozen) {
  {
    BackendRange upload(net_->backend(), "upload");
    upload_batch(*net_, batch);
  }
  comm_.set_step(step_ + 1);
  log_batch(batch, epoch);
  DenseNet& net = *net_;
  io::step_fault(long(step_ + 1));  // CXR_FAULT_STEP (io/fault.h): the failure tests
  if (reducer_) reducer_->begin();
  net.forward(true);
  const float local_loss = net.loss();
  net.backward();
  if (reducer_) comm_wait_s_ += reducer_->finish();
  const float loss = agree_on_step(local_loss);
  if (!std::isfinite(loss))
    CXR_FAIL("the loss became ", loss, " at epoch ", epoch + 1, ", step ", b + 1,
             ": training stopped; the last good checkpoint is ",
             fs::exists(last_path_) ? last_path_ : std::string("(none yet)"), " (try a lower --lr)");
  ++step_;
  AdamParams a;
  a.lr = lr_, a.weight_decay = opt_.weight_decay, a.step = step_;
  // The head is the last two table rows (kernel, bias): a frozen backbone updates only them.
  const ParamTable& table = net.table();
  const ParamEntry& head = table[table.size() - 2];
  Backend& be = net.backend();
  BackendRange phase(be, "optimizer");
  if (frozen)
    be.adam_update(net.params() + head.offset, net.adam_m() + head.offset, net.adam_v() + head.offset,
                   net.grads() + head.offset, table.trainable_count() - head.offset, a);
  else
    be.adam_update(net.params(), net.adam_m(), net.adam_v(), net.grads(), table.trainable_count(), a);
  last_loss_ = loss;
  if (comm_.size() > 1 && !opt_.sync_bn) broadcast_running_statistics(net, comm_);  // Note [Data parallel]
  if (opt_.check_replicas > 0 && step_ % opt_.check_replicas == 0) check_replicas(net, comm_, step_);
}

// The other ranks wait here while rank 0 writes the epoch's checkpoints (three files with Adam's
// moments, on a shared filesystem perhaps), with a deadline of their own: at least 30 minutes, so
// that a slow filesystem is not taken for a dead rank by the next step's --comm-timeout.
void Run::wait_for_rank0_checkpoints() {
  if (comm_.size() == 1) return;
  comm_.set_timeout(std::max(opt_.comm_timeout, 1800.0));
  comm_.barrier("rank 0's checkpoints of the epoch");
  comm_.set_timeout(opt_.comm_timeout);
}

// One rank's batches.jsonl line holds the global batch: every rank's share, gathered.
void Run::log_batch(const io::Batch& batch, int64_t epoch) {
  if (!opt_.log_batches) return;
  std::vector<int64_t> mine(batch.indices, batch.indices + batch.size);
  for (int64_t k = 0; k < batch.size; ++k) mine.push_back(batch.flipped[k]);
  const std::vector<int64_t> all = comm_.allgather(mine, "batch log");  // rank order: the global batch's order
  if (!writer()) return;
  std::vector<int64_t> indices;
  std::vector<int> flipped;
  for (size_t at = 0; at < all.size();) {
    const size_t n = size_t(batch.size);  // every rank's share has the same size in training
    indices.insert(indices.end(), all.begin() + long(at), all.begin() + long(at + n));
    flipped.insert(flipped.end(), all.begin() + long(at + n), all.begin() + long(at + 2 * n));
    at += 2 * n;
  }
  log_line(batch_log_, {{"epoch", epoch + 1}, {"step", step_ + 1}, {"indices", indices}, {"flipped", flipped}});
}

// The loss logged is the mean over the global batch (the ranks' means, equal shares); an interrupt
// on any rank stops every rank after this step; a non-finite loss on any rank stops every rank.
float Run::agree_on_step(float local_loss) {
  if (comm_.size() == 1) {
    agreed_interrupt_ = g_interrupted != 0;
    return local_loss;
  }
  double v[2] = {double(local_loss), g_interrupted ? 1.0 : 0.0};
  comm_.allreduce_sum(v, 2, "the step's loss");
  agreed_interrupt_ = v[1] > 0;
  return float(v[0] / comm_.size());
}

bool Run::train_epoch(int64_t epoch, double* mean_loss) {
  const bool frozen = epoch < opt_.freeze_epochs;
  const auto t0 = Clock::now();
  loader_->start_epoch(epoch);
  comm_wait_s_ = 0;
  StepProgress progress("epoch " + std::to_string(epoch + 1) + "/" + std::to_string(opt_.epochs), steps_per_epoch_,
                        quiet_);
  double loss_sum = 0;
  int64_t counted = 0;
  for (int64_t b = 0; b < steps_per_epoch_; ++b) {
    const bool traced = tracing(step_ + 1);
    const double wait_from = prof_ ? prof_->now_us() : 0;
    const io::Batch* batch = loader_->next();
    CXR_CHECK(batch != nullptr, "the loader ended the epoch early at batch ", b);
    if (b < sched_.resume_batch) continue;  // trained before the interruption
    if (traced) {
      const double waited = prof_->now_us() - wait_from;
      loader_waits_.push_back({wait_from, waited, step_ + 1});
      prof_->begin_step(step_ + 1);
      const double from = prof_->now_us();
      train_step(*batch, epoch, b, frozen);
      prof_->end_step();
      traced_steps_.emplace_back(from, prof_->now_us() - from);
      if (step_ == opt_.trace_last) write_trace();
    } else {
      train_step(*batch, epoch, b, frozen);
    }
    loss_sum += last_loss_;
    ++counted;
    const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
    const double ips = double(counted * opt_.batch) / std::max(elapsed, 1e-9);
    progress.update(b + 1, loss_sum / double(counted), ips);
    if ((b + 1) % opt_.log_every == 0 && writer())
      log_line(log_, {{"type", "step"}, {"epoch", epoch + 1}, {"step", step_}, {"loss", last_loss_}, {"lr", lr_},
                      {"images_per_second", ips}});
    if (agreed_interrupt_) {
      sched_.resume_batch = b + 1;
      save(last_path_, epoch);
      comm_.barrier("the interrupted run's checkpoint");  // no rank exits before rank 0 has saved
      if (writer())
        std::fprintf(stderr, "\ninterrupted: saved %s (epoch %ld, step %ld); continue with --resume\n",
                     last_path_.c_str(), long(epoch + 1), long(b + 1));
      result_.interrupted = true;
      result_.epochs_done = epoch;
      return false;
    }
  }
  sched_.resume_batch = 0;
  *mean_loss = counted ? loss_sum / double(counted) : 0.0;
  return true;
}

// Validation (loss with the training weights, per-class AUC), the plateau schedule, the log line and
// the checkpoints.
void Run::finish_epoch(int64_t epoch, double train_loss, double train_seconds, bool frozen) {
  json epoch_log = {{"type", "epoch"}, {"epoch", epoch + 1}, {"step", step_}, {"train_loss", train_loss},
                    {"lr", lr_}, {"train_seconds", train_seconds}, {"frozen_backbone", frozen}};
  if (comm_.size() > 1) {
    epoch_log["ranks"] = comm_.size();
    epoch_log["comm_wait_seconds"] = comm_wait_s_;  // rank 0's host waits for the gradient all-reduce
  }
  double monitored = train_loss;
  if (!val_idx_.empty()) {
    std::vector<int64_t> idx;
    const auto logits = infer_logits(*net_, data_, io::Split::Val, norm_, &idx, true, &comm_);  // sharded
    const auto labels = gather_labels(data_, idx);
    const double val_loss = weighted_bce_host(logits, labels, weights_, io::kNumClasses);
    const auto auc = io::per_class_auc(logits, labels, io::kNumClasses);
    const double mean_auc = io::mean_auc(auc);
    json per_class;
    for (int k = 0; k < io::kNumClasses; ++k)
      if (std::isfinite(auc[size_t(k)])) per_class[std::string(io::kClassNames[size_t(k)])] = auc[size_t(k)];
    epoch_log["val_loss"] = val_loss;
    epoch_log["val_mean_auc"] = mean_auc;
    epoch_log["val_auc"] = per_class;
    monitored = opt_.monitor == "auc" ? -mean_auc : val_loss;  // lower is better
    if (!quiet_)
      std::fprintf(stderr, "epoch %ld: train loss %.4f, val loss %.4f, val mean AUC %.4f, lr %.2g\n",
                   long(epoch + 1), train_loss, val_loss, mean_auc, lr_);
  } else if (!quiet_) {
    std::fprintf(stderr, "epoch %ld: train loss %.4f (no validation set), lr %.2g\n", long(epoch + 1), train_loss, lr_);
  }
  const bool improved = !sched_.has_best || monitored < sched_.best;
  if (improved) {
    sched_.best = monitored, sched_.has_best = true, sched_.bad_epochs = 0;
  } else if (++sched_.bad_epochs >= opt_.plateau_patience) {
    lr_ *= opt_.plateau_factor;  // Keras's ReduceLROnPlateau: after `patience` epochs without improvement
    sched_.bad_epochs = 0;
    if (!quiet_)
      std::fprintf(stderr, "no improvement for %ld epochs: learning rate now %.3g\n", long(opt_.plateau_patience), lr_);
  }
  epoch_log["lr_next"] = lr_;
  // best.h5, the epoch's log line, then last.h5: a kill before last.h5 is renamed into place resumes
  // from the previous last.h5, whose epoch the log is trimmed back to, and does this epoch again
  // (saving its best again); the other order would resume past an epoch whose best.h5 or log line
  // was never written.
  if (improved) {
    save(best_path_, epoch + 1);
    if (!quiet_) std::fprintf(stderr, "saved %s (best so far)\n", best_path_.c_str());
  }
  if (writer()) log_line(log_, epoch_log);
  save(last_path_, epoch + 1);
  result_.epochs_done = epoch + 1;
}

// --trace-steps A:B: the traced steps' ops, ranges, loader waits and uploads as one Chrome trace.
void Run::write_trace() {
  if (!prof_ || trace_written_ || traced_steps_.empty() || !writer()) return;
  json trace = chrome_trace(*prof_, traced_steps_, "cxr train " + opt_.arch, loader_waits_);
  const std::string path = (out_ / "trace.json").string();
  io::write_text_file(path, trace.dump() + "\n");
  trace_written_ = true;
  if (!quiet_)
    std::fprintf(stderr, "\ntrace: %s (steps %ld to %ld; open in https://ui.perfetto.dev)\n", path.c_str(),
                 long(opt_.trace_first), long(std::min(step_, opt_.trace_last)));
}

TrainResult Run::run() {
  InterruptGuard guard;
  for (int64_t epoch = first_epoch_; epoch < opt_.epochs; ++epoch) {
    const auto t0 = Clock::now();
    double train_loss = 0;
    if (!train_epoch(epoch, &train_loss)) {
      write_trace();
      return result_;
    }
    const double train_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    finish_epoch(epoch, train_loss, train_seconds, epoch < opt_.freeze_epochs);
    wait_for_rank0_checkpoints();
  }
  write_trace();  // a run shorter than the traced slice
  result_.best_metric = opt_.monitor == "auc" ? -sched_.best : sched_.best;
  if (writer()) write_training_curves(out_);
  return result_;
}

}  // namespace

TrainResult train(const TrainOptions& opt) { return Run(opt, process_comm()).run(); }
TrainResult train(const TrainOptions& opt, Comm& comm) { return Run(opt, comm).run(); }

}  // namespace cxr::app
