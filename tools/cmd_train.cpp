// cxr train (and, with issue 5's evaluation, evaluate and predict).
#include <cstdio>

#include <iostream>

#include "engine/comm.h"
#include "engine/error.h"
#include "tools/commands.h"
#include "tools/evaluator.h"
#include "tools/trainer.h"

namespace cxr::cli {

void add_train_commands(CLI::App& app) {
  auto o = std::make_shared<app::TrainOptions>();
  CLI::App* t = app.add_subcommand("train", "Train DenseNet on a packed dataset; checkpoints, metrics log, plots in --out");
  t->add_option("--data", o->data, "Packed dataset (cxr prepare)")->required();
  t->add_option("--out", o->out, "Run folder: last.h5, best.h5, metrics.jsonl, training_curves.{svg,png}")->required();
  t->add_option("--weights", o->weights, "Initial weights (Keras .h5, cxr checkpoint); default: Keras's initialisers");
  t->add_option("--arch", o->arch, "densenet121, densenet169 or densenet201")
      ->check(CLI::IsMember({"densenet121", "densenet169", "densenet201"}))->capture_default_str();
  t->add_option("--epochs", o->epochs, "Epochs (in total, also when resuming)")->capture_default_str()->check(kAtLeastOne);
  t->add_option("--batch", o->batch, "Batch size")->capture_default_str()->check(kAtLeastOne);
  t->add_option("--size", o->size, "Image size (default: the dataset's)")->check(kImageSideOrDefault);
  t->add_option("--lr", o->lr, "Adam learning rate")->capture_default_str()->check(CLI::PositiveNumber);
  t->add_option("--weight-decay", o->weight_decay, "L2 weight decay added to the gradient")->capture_default_str();
  t->add_option("--normalize", o->normalize, "sample, dataset or imagenet")
      ->check(CLI::IsMember({"sample", "dataset", "imagenet"}))->capture_default_str();
  t->add_option("--loss", o->loss, "weighted (w_pos = negatives' frequency) or plain BCE")
      ->check(CLI::IsMember({"weighted", "plain"}))->capture_default_str();
  t->add_option("--monitor", o->monitor, "Best checkpoint and plateau by validation loss or mean AUC")
      ->check(CLI::IsMember({"loss", "auc"}))->capture_default_str();
  t->add_option("--bn-momentum", o->bn_momentum, "BN running-statistics momentum (Keras 0.99; 0.9 for short runs)")
      ->capture_default_str();
  t->add_option("--plateau-factor", o->plateau_factor, "Learning-rate factor on a plateau")->capture_default_str()->check(CLI::Range(1e-12, 1.0).description("(0, 1]"));
  t->add_option("--plateau-patience", o->plateau_patience, "Epochs without improvement before reducing")
      ->capture_default_str();
  t->add_option("--freeze-epochs", o->freeze_epochs, "Epochs that train only the head")->capture_default_str()->check(CLI::NonNegativeNumber);
  t->add_option("--log-every", o->log_every, "Steps between metrics-log lines")->capture_default_str()->check(kAtLeastOne);
  t->add_option("--max-steps-per-epoch", o->max_steps_per_epoch, "Cap on steps per epoch (0: all)")->capture_default_str()->check(CLI::NonNegativeNumber);
  t->add_option("--device", o->device, "cpu, cuda or auto")->check(CLI::IsMember({"cpu", "cuda", "auto"}))
      ->capture_default_str();
  t->add_option("--seed", o->seed, "Seed of initialisation, shuffling and flips")->capture_default_str()->check(CLI::NonNegativeNumber);
  t->add_flag("!--no-flip", o->flip, "No random horizontal flips");
  app::add_memory_policy_options(t, &o->memory);
  t->add_flag("--drop-head", o->drop_head, "Ignore the head of --weights (e.g. ImageNet's 1000 classes); start a new one");
  t->add_flag("--resume", o->resume, "Continue the run in --out from last.h5");
  t->add_flag("--reset-lr", o->reset_lr, "With --resume: use --lr instead of the saved learning rate");
  t->add_flag("--quiet", o->quiet, "No progress output");
  t->add_flag("--save-initial", o->save_initial, "Also save the initial weights as initial.h5");
  t->add_flag("--log-batches", o->log_batches, "Log each step's dataset indices and flips to batches.jsonl");
  t->add_flag("--sync-bn", o->sync_bn, "Under mpirun/srun: batch-norm statistics over the global batch, not each rank's");
  t->add_option("--bucket-mb", o->bucket_mb, "Under mpirun/srun: MB of gradients per all-reduce bucket")
      ->capture_default_str()->check(CLI::PositiveNumber);
  t->add_option("--comm-timeout", o->comm_timeout, "Under mpirun/srun: seconds a collective waits for the other ranks")
      ->capture_default_str()->check(CLI::PositiveNumber);
  t->add_option("--check-replicas", o->check_replicas,
                "Under mpirun/srun: compare every rank's parameters every N steps; stop on a mismatch (0: never)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  t->add_option_function<std::string>(
       "--trace-steps",
       [o](const std::string& v) {
         // A:B, 1-based global steps, inclusive; "A" alone is A:A.
         const size_t colon = v.find(':');
         try {
           size_t used = 0;
           o->trace_first = std::stoll(v.substr(0, colon), &used);
           if (used != (colon == std::string::npos ? v.size() : colon)) throw std::invalid_argument(v);
           o->trace_last = colon == std::string::npos ? o->trace_first : std::stoll(v.substr(colon + 1), &used);
           if (colon != std::string::npos && used != v.size() - colon - 1) throw std::invalid_argument(v);
         } catch (const std::exception&) {
           throw CLI::ValidationError("--trace-steps", "'" + v + "': expected A:B, two step numbers (from 1)");
         }
         if (o->trace_first < 1 || o->trace_last < o->trace_first)
           throw CLI::ValidationError("--trace-steps", "'" + v + "': expected 1 <= A <= B");
       },
       "Profile steps A to B (A:B, from 1) of this run into OUT/trace.json (Chrome/Perfetto trace: every op, "
       "the model's ranges, the loader's waits and the uploads)")
      ->type_name("A:B");
  t->callback([o] {
    const app::TrainResult r = app::train(*o);
    if (r.interrupted) throw CLI::RuntimeError(130);
    if (!process_comm().root()) return;
    std::printf("trained %ld epochs; best %s %.6g; checkpoints in %s\n", long(r.epochs_done),
                o->monitor == "auc" ? "validation mean AUC" : "validation loss", r.best_metric, o->out.c_str());
  });

  auto e = std::make_shared<app::EvaluateOptions>();
  auto e_json = std::make_shared<bool>(false);
  CLI::App* ev = app.add_subcommand("evaluate", "ROC AUC per class beside the published CheXNet table, curves, thresholds");
  ev->add_option("--weights", e->weights, "Model file or checkpoint (carries image size and normalisation)")->required();
  ev->add_option("--data", e->data, "Packed dataset")->required();
  ev->add_option("--split", e->split, "Set to score: train, val or test")->capture_default_str();
  ev->add_option("--out", e->out, "Folder for metrics.json, per_class.csv, roc_curves.{svg,png}");
  ev->add_option("--bootstrap", e->bootstrap, "Bootstrap resamples for 95% intervals (0: none)")->capture_default_str()->check(CLI::NonNegativeNumber);
  ev->add_option("--seed", e->seed, "Seed of the bootstrap")->capture_default_str()->check(CLI::NonNegativeNumber);
  ev->add_option("--batch", e->batch, "Inference batch size")->capture_default_str()->check(kAtLeastOne);
  ev->add_option("--device", e->device, "cpu, cuda or auto")->check(CLI::IsMember({"cpu", "cuda", "auto"}))
      ->capture_default_str();
  ev->add_flag("--json", *e_json, "Print metrics.json on stdout instead of the table");
  ev->add_flag("--quiet", e->quiet, "No progress output");
  ev->add_option("--comm-timeout", e->comm_timeout, "Under mpirun/srun: seconds a collective waits for the other ranks")
      ->capture_default_str()->check(CLI::PositiveNumber);
  // CLI.md gives train and evaluate the same data-parallel flags, so that one launch line serves
  // both; inference has no batch statistics, gradients or optimizer steps for these to act on.
  auto unused_flag = std::make_shared<bool>(false);
  auto unused_mb = std::make_shared<double>(25.0);
  auto unused_steps = std::make_shared<int64_t>(0);
  ev->add_flag("--sync-bn", *unused_flag, "Accepted as train takes it; inference uses running statistics (no effect)");
  ev->add_option("--bucket-mb", *unused_mb, "Accepted as train takes it; inference has no gradients (no effect)")
      ->check(CLI::PositiveNumber);
  ev->add_option("--check-replicas", *unused_steps, "Accepted as train takes it; inference takes no steps (no effect)")
      ->check(CLI::NonNegativeNumber);
  ev->callback([e, e_json] {
    const auto r = app::evaluate(*e);
    if (!process_comm().root()) return;  // rank 0 prints for the job
    if (*e_json)
      std::cout << r.dump(2) << "\n";
    else
      std::cout << app::evaluation_table(r);
  });

  auto p = std::make_shared<app::PredictOptions>();
  CLI::App* pr = app.add_subcommand("predict", "Probabilities of the 14 findings for images, as CSV");
  add_max_image_pixels(pr);
  add_dicom_window(pr);
  pr->add_option("--weights", p->weights, "Model file or checkpoint")->required();
  pr->add_option("--out", p->out, "CSV to write (image, one column per class)")->required();
  pr->add_option("--size", p->size, "Image size (default: the model's)")->check(kImageSideOrDefault);
  pr->add_option("--normalize", p->normalize, "Override the model's normalisation")
      ->check(CLI::IsMember({"sample", "dataset", "imagenet"}));
  pr->add_option("--thresholds", p->thresholds, "metrics.json of cxr evaluate: adds 0/1 label columns");
  pr->add_option("--threshold-rule", p->threshold_rule, "youden or f1")->check(CLI::IsMember({"youden", "f1"}))
      ->capture_default_str();
  pr->add_option("--batch", p->batch, "Inference batch size")->capture_default_str()->check(kAtLeastOne);
  pr->add_option("--device", p->device, "cpu, cuda or auto")->check(CLI::IsMember({"cpu", "cuda", "auto"}))
      ->capture_default_str();
  pr->add_option("images", p->inputs, "Image files, folders (recursive) or .txt lists")->required();
  pr->callback([p] {
    const auto r = app::predict(*p);
    if (r.written > 0) std::fprintf(stderr, "wrote %s (%ld images)\n", p->out.c_str(), long(r.written));
    if (!r.failed.empty())
      throw Error(detail::concat(r.failed.size(), " of ", r.failed.size() + size_t(r.written),
                                 " images could not be read (named above)",
                                 r.written > 0 ? "; the others are in " + p->out : "; nothing written"));
  });
}

}  // namespace cxr::cli
