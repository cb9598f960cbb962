// cxr gradcam and cxr report.
#include <cstdio>
#include <iostream>

#include "tools/commands.h"
#include "tools/gradcam_command.h"
#include "tools/report.h"

namespace cxr::cli {

void add_gradcam_commands(CLI::App& app) {
  auto o = std::make_shared<app::GradcamOptions>();
  auto as_json = std::make_shared<bool>(false);
  CLI::App* g = app.add_subcommand(
      "gradcam",
      "Grad-CAM overlays: where the model looks for a class; with --boxes, the pointing game against them");
  add_max_image_pixels(g);
  add_dicom_window(g);
  g->footer(
      "Maps use the gradient of the class's logit (before the sigmoid). --method gradcam weights each channel by "
      "its mean gradient (Selvaraju et al. 2017), gradcam++ by its positive gradients' alpha-weighted sum "
      "(Chattopadhay et al. 2018), hirescam multiplies gradient and activation element-wise (Draelos & Carin "
      "2020), layercam does so with the positive gradients only (Jiang et al. 2021). --layer takes the map from "
      "the final BN-ReLU map (S/32 x S/32), the output of dense block 3 (S/16) or 2 (S/8), or fuses the three "
      "as pytorch-grad-cam does (each min-max scaled, upsampled, averaged). One backward pass per class gives "
      "every level. The map is the ReLU of the weighted sum, scaled to [0, 1], upsampled bilinearly (half-pixel "
      "centres) to S x S and blended over the grey image with the Turbo colour map. With --boxes each (image, "
      "class) with boxes is scored: the pointing game (the map's maximum inside a box), the energy-based "
      "pointing game (the share of the map's mass inside the boxes), and the box around the largest region "
      "above --cam-threshold of the maximum by IoU and IoBB (Wang et al. 2017), per class and overall, over all "
      "pairs and over true positives. --faithfulness P deletes the map's top P% of pixels (blurred in) and as "
      "many random ones, and reports how much each lowers the class probability.");
  g->add_option("--weights", o->weights, "Model file or checkpoint (carries image size and normalisation)")
      ->required();
  g->add_option("--out", o->out,
                "Folder for the overlays (<image>_<class>_p<probability>.png) and gradcam.json")
      ->required();
  auto* cls =
      g->add_option("--class", o->classes, "Class name(s) to explain (repeatable or comma-separated)");
  auto* topk = g->add_option("--top-k", o->top_k, "Explain each image's K most probable classes")->check(kAtLeastOne);
  auto* all = g->add_flag("--all", o->all, "Explain every class");
  cls->excludes(topk)->excludes(all);
  topk->excludes(all);
  g->add_option(
      "--boxes", o->boxes,
      "Bounding-box CSV (BBox_List_2017.csv format, 1024x1024 coordinates): draws the boxes, adds their "
      "classes and scores the pointing game");
  g->add_option("--size", o->size, "Image size (default: the model's)")->check(kImageSideOrDefault);
  g->add_option("--batch", o->batch, "Images per forward pass")->capture_default_str()->check(kAtLeastOne);
  g->add_option("--normalize", o->normalize, "Override the model's normalisation")
      ->check(CLI::IsMember({"sample", "dataset", "imagenet"}));
  g->add_option("--device", o->device, "cpu, cuda or auto")
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}))
      ->capture_default_str();
  g->add_option("--alpha", o->alpha, "Opacity of the colour map over the image")->capture_default_str();
  g->add_option("--threshold", o->threshold, "Probability from which a boxed class is a true positive")
      ->capture_default_str();
  g->add_option("--box-frame", o->box_frame, "Size of the frame the box coordinates refer to")
      ->capture_default_str();
  g->add_option("--tolerance", o->tolerance, "Pointing-game tolerance in box-frame pixels")
      ->capture_default_str();
  g->add_option("--method", o->method, "gradcam, gradcam++, hirescam or layercam")
      ->check(CLI::IsMember({"gradcam", "gradcam++", "hirescam", "layercam"}))
      ->capture_default_str();
  g->add_option("--layer", o->layer, "final, block3, block2 or fuse (the three)")
      ->check(CLI::IsMember({"final", "block3", "block2", "fuse"}))
      ->capture_default_str();
  g->add_option("--cam-threshold", o->cam_threshold,
                "Share of the map's maximum that bounds the map's box (largest region above it)")
      ->capture_default_str()
      ->check(CLI::Range(1e-6, 1.0));
  g->add_option("--faithfulness", o->delete_percent,
                "Delete the map's top P% of pixels and as many random ones; report the probability drops")
      ->check(CLI::Range(0.0, 99.0));
  g->add_option("--seed", o->seed, "Seed of the random pixels of --faithfulness")->capture_default_str();
  g->add_flag("--json", *as_json, "Print gradcam.json on stdout instead of one line per map");
  g->add_flag("--quiet", o->quiet, "No progress output");
  g->add_option("images", o->inputs, "Images, folders (searched recursively) or .txt lists")->required();
  g->callback([o, as_json] {
    const auto r = app::gradcam(*o, !*as_json);
    if (*as_json)
      std::cout << r.dump(2) << "\n";
    else
      std::cout << app::gradcam_tables(r);
  });

  auto ro = std::make_shared<app::ReportOptions>();
  CLI::App* rep =
      app.add_subcommand("report", "One self-contained report.html of a run folder (charts inlined)");
  rep->footer(
      "Reads RUN_DIR/stats/class_balance.{svg,png}, run/metrics.jsonl, run/training_curves.{svg,png}, "
      "eval/metrics.json, eval/roc_curves.{svg,png}, gradcam/gradcam.json and gradcam/*.png; parts that are "
      "missing "
      "are named in the report.");
  rep->add_option("RUN_DIR", ro->run_dir, "Run folder")->required()->check(CLI::ExistingDirectory);
  rep->add_option("--out", ro->out, "HTML file to write (default: RUN_DIR/report.html)");
  rep->add_option("--max-gallery", ro->max_gallery, "Grad-CAM overlays shown at most")->capture_default_str();
  rep->callback([ro] {
    const auto r = app::write_report(*ro);
    for (const auto& m : r.missing) std::fprintf(stderr, "cxr report: not in this run: %s\n", m.c_str());
    std::printf("wrote %s (%ld images inlined, %.1f MB)\n", r.path.c_str(), long(r.images),
                double(r.bytes) / 1e6);
  });
}

}  // namespace cxr::cli
