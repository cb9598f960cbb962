// cxr synth, prepare, split-check and stats: the data pipeline's commands (issue 4).
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/classes.h"
#include "io/csv.h"
#include "io/packed.h"
#include "io/prepare.h"
#include "io/split.h"
#include "io/stats.h"
#include "io/synth.h"
#include "engine/error.h"
#include "tools/commands.h"

namespace cxr::cli {

namespace {

// Split flags shared by prepare and split-check.
struct SplitFlags {
  std::string ratios = "0.7,0.1,0.2";
  std::vector<std::string> lists;
  uint64_t seed = 0;
  void add(CLI::App* c) {
    c->add_option("--split", ratios, "TRAIN,VAL,TEST fractions by patient (0 allowed)")->capture_default_str();
    c->add_option("--split-lists", lists,
                  "split from image lists instead: train_val_list.txt/test_list.txt or CheXNet-style "
                  "train/val/test lists (`<image> <14 ints>`)");
    c->add_option("--seed", seed, "seed of the random split")->capture_default_str()->check(CLI::NonNegativeNumber);
  }
  std::vector<io::Split> make(const std::vector<io::LabelRow>& rows, int64_t* unlisted) const {
    const io::SplitRatios r = io::parse_ratios(ratios);
    if (lists.empty()) return io::random_split(rows, r, seed);
    return io::split_from_lists(rows, lists, r, seed, unlisted);
  }
};

nlohmann::json check_json(const io::SplitCheck& c) {
  nlohmann::json j;
  j["shared_patients"] = c.shared_patients;
  j["shared_pairs"] = {{"train_val", c.shared_pairs[0]}, {"train_test", c.shared_pairs[1]}, {"val_test", c.shared_pairs[2]}};
  j["shared_examples"] = c.shared_examples;
  j["excluded"] = c.excluded;
  for (int s = 0; s < io::kNumSplits; ++s) {
    nlohmann::json sj;
    sj["images"] = c.images[s];
    sj["patients"] = c.patients[s];
    for (int k = 0; k < io::kNumClasses; ++k) sj["positives"][std::string(io::kClassNames[k])] = c.positives[s][k];
    j["sets"][io::kSplitNames[s]] = sj;
  }
  return j;
}

void print_check(const io::SplitCheck& c) {
  std::printf("%-20s %10s %10s %10s\n", "", "train", "val", "test");
  std::printf("%-20s %10lld %10lld %10lld\n", "images", (long long)c.images[0], (long long)c.images[1], (long long)c.images[2]);
  std::printf("%-20s %10lld %10lld %10lld\n", "patients", (long long)c.patients[0], (long long)c.patients[1],
              (long long)c.patients[2]);
  for (int k = 0; k < io::kNumClasses; ++k)
    std::printf("%-20s %10lld %10lld %10lld\n", std::string(io::kClassNames[k]).c_str(), (long long)c.positives[0][k],
                (long long)c.positives[1][k], (long long)c.positives[2][k]);
  std::printf("\nshared patients: %lld (train-val %lld, train-test %lld, val-test %lld)%s\n", (long long)c.shared_patients,
              (long long)c.shared_pairs[0], (long long)c.shared_pairs[1], (long long)c.shared_pairs[2],
              c.shared_patients ? "  LEAK" : "");
  if (c.excluded) std::printf("excluded images (in no set): %lld\n", (long long)c.excluded);
}

std::string quote(const std::string& s) { return s.find(' ') == std::string::npos ? s : "'" + s + "'"; }

void add_synth(CLI::App& app) {
  auto opt = std::make_shared<io::SynthOptions>();
  auto json = std::make_shared<bool>(false);
  CLI::App* c = app.add_subcommand("synth", "write the built-in synthetic ChestX-ray14-shaped dataset");
  c->add_option("--out", opt->out, "output folder (images/, Data_Entry_2017_v2020.csv, BBox_List_2017.csv)")->required();
  c->add_option("--patients", opt->patients, "number of patients (several images each)")->capture_default_str()->check(kAtLeastOne);
  c->add_option("--size", opt->size, "image side in pixels")->capture_default_str()->check(kImageSide);
  c->add_option("--seed", opt->seed, "seed")->capture_default_str()->check(CLI::NonNegativeNumber);
  c->add_option("--threads", opt->threads, "threads (0: all cores)")->capture_default_str()->check(kThreads);
  c->add_flag("--json", *json, "print the summary as JSON");
  c->callback([opt, json] {
    const io::SynthResult r = io::synth_dataset(*opt);
    std::array<int64_t, io::kNumClasses> pos{};
    for (auto& row : r.rows)
      for (int k = 0; k < io::kNumClasses; ++k) pos[k] += row.labels[k];
    if (*json) {
      nlohmann::json j = {{"images", r.rows.size()}, {"patients", opt->patients}, {"boxes", r.boxes.size()},
                          {"csv", r.csv}, {"bbox_csv", r.bbox_csv}, {"images_dir", r.images_dir}};
      for (int k = 0; k < io::kNumClasses; ++k) j["positives"][std::string(io::kClassNames[k])] = pos[k];
      std::cout << j.dump(2) << "\n";
      return;
    }
    std::printf("%zu images of %d patients, %zu boxes\nlabels: %s\nboxes:  %s\nimages: %s\n", r.rows.size(), opt->patients,
                r.boxes.size(), r.csv.c_str(), r.bbox_csv.c_str(), r.images_dir.c_str());
    for (int k = 0; k < io::kNumClasses; ++k)
      std::printf("  %-20s %6lld (%.1f%%)\n", std::string(io::kClassNames[k]).c_str(), (long long)pos[k],
                  100.0 * pos[k] / std::max<size_t>(1, r.rows.size()));
  });
}

void add_prepare(CLI::App& app) {
  auto opt = std::make_shared<io::PrepareOptions>();
  auto split = std::make_shared<SplitFlags>();
  auto json = std::make_shared<bool>(false);
  CLI::App* c = app.add_subcommand("prepare", "label CSV + images -> packed HDF5 dataset with a patient-wise split");
  add_max_image_pixels(c);
  add_dicom_window(c);
  c->add_option("--csv", opt->csv, "Data_Entry_2017(_v2020).csv, or labels for DICOM images (keyed by file name or "
                                   "SOP Instance UID; Patient ID optional)")->required();
  c->add_option("--images", opt->images_dir, "image folder, searched recursively")->required();
  c->add_option("--out", opt->out, "packed HDF5 file to write")->required();
  c->add_option("--size", opt->size, "image side after resizing")->capture_default_str()->check(kImageSide);
  split->add(c);
  c->add_option("--threads", opt->threads, "decoding threads (0: all cores)")->capture_default_str()->check(kThreads);
  c->add_option("--reducing-gap", opt->reducing_gap,
                "0: resample each full image with the antialiasing filter; G > 0: first average r x r "
                "blocks exactly, r = floor(scale / G) (as Pillow; a few grey levels different)")
      ->capture_default_str();
  c->add_option("--views", opt->views, "keep only images whose View Position is one of these, e.g. PA,AP")
      ->delimiter(',');
  c->add_option("--hash-patient-ids", opt->patient_key_file,
                "DICOM: store text Patient IDs as HMAC-SHA256 under the key in this file (at least 16 bytes)")
      ->check(CLI::ExistingFile);
  c->add_flag("--quiet", opt->quiet, "no progress output");
  c->add_flag("--json", *json, "print the summary as JSON");
  c->callback([opt, split, json] {
    opt->ratios = io::parse_ratios(split->ratios);
    opt->split_lists = split->lists;
    opt->seed = split->seed;
    std::ostringstream cmd;
    cmd << "cxr prepare --csv " << quote(opt->csv) << " --images " << quote(opt->images_dir) << " --out "
        << quote(opt->out) << " --size " << opt->size << " --seed " << opt->seed;
    if (opt->reducing_gap > 0) cmd << " --reducing-gap " << opt->reducing_gap;
    if (io::dicom_options().window != 1) cmd << " --dicom-window " << io::dicom_options().window;
    if (!opt->views.empty()) {
      cmd << " --views ";
      for (size_t i = 0; i < opt->views.size(); ++i) cmd << (i ? "," : "") << opt->views[i];
    }
    if (!opt->patient_key_file.empty()) cmd << " --hash-patient-ids " << quote(opt->patient_key_file);
    if (split->lists.empty()) cmd << " --split " << split->ratios;
    else {
      cmd << " --split-lists";
      for (auto& f : split->lists) cmd << " " << quote(f);
    }
    opt->command = cmd.str();
    const io::PrepareResult r = io::prepare_dataset(*opt);
    if (r.missing || r.unreadable)
      std::fprintf(stderr, "prepare: %lld images missing, %lld unreadable: see %s\n", (long long)r.missing,
                   (long long)r.unreadable, r.report.c_str());
    if (r.other_view)
      std::fprintf(stderr, "prepare: %lld images left out by --views: see %s\n", (long long)r.other_view,
                   r.report.c_str());
    if (r.burned_in)
      std::fprintf(stderr,
                   "cxr: warning: %lld DICOM images have Burned In Annotation (0028,0301) YES: text in the pixels "
                   "may identify patients and can sway the model; listed in %s\n",
                   (long long)r.burned_in, r.report.c_str());
    if (*json) {
      std::cout << nlohmann::json{{"out", opt->out}, {"rows", r.rows}, {"images", r.images}, {"written", r.written},
                                  {"already_done", r.already_done}, {"unreadable", r.unreadable}, {"missing", r.missing},
                                  {"unlisted", r.unlisted}, {"dicom", r.dicom}, {"burned_in", r.burned_in},
                                  {"other_view", r.other_view}, {"report", r.report}, {"seconds", r.seconds},
                                  {"images_per_second", r.seconds > 0 ? r.written / r.seconds : 0.0}}
                       .dump(2)
                << "\n";
      return;
    }
    std::printf("%s: %lld images (%lld written now, %lld from an earlier run), %lld unreadable, %lld missing, "
                "%.1f s (%.0f images/s)\nreport: %s\n",
                opt->out.c_str(), (long long)r.images, (long long)r.written, (long long)r.already_done,
                (long long)r.unreadable, (long long)r.missing, r.seconds, r.seconds > 0 ? r.written / r.seconds : 0.0,
                r.report.c_str());
  });
}

void add_split_check(CLI::App& app) {
  auto data = std::make_shared<std::string>();
  auto csv = std::make_shared<std::string>();
  auto split = std::make_shared<SplitFlags>();
  auto json = std::make_shared<bool>(false);
  CLI::App* c = app.add_subcommand("split-check", "patients shared between sets (leakage) and per-class positives per set");
  auto* od = c->add_option("--data", *data, "packed HDF5 dataset");
  auto* oc = c->add_option("--csv", *csv, "label CSV, split with the flags below");
  od->excludes(oc);
  split->add(c);
  c->add_flag("--json", *json, "JSON on stdout (key shared_patients)");
  auto list = std::make_shared<std::string>();
  c->add_option("--list", *list, "instead of the check, print the image names of one set (train, val, test), one a line")
      ->needs(od);
  c->callback([data, csv, split, json, list] {
    io::SplitCheck chk;
    if (!list->empty()) {
      io::PackedDataset d(*data);
      for (int64_t i : d.indices(io::parse_split_name(*list))) std::cout << d.names()[size_t(i)] << "\n";
      return;
    }
    if (!data->empty()) {
      io::PackedDataset d(*data);
      chk = io::check_split(d.patient_ids(), d.labels(), d.split());
    } else if (!csv->empty()) {
      auto rows = io::read_label_csv(*csv);
      int64_t unlisted = 0;
      chk = io::check_split(rows, split->make(rows, &unlisted));
    } else {
      throw CLI::RequiredError("--data or --csv");
    }
    if (*json) std::cout << check_json(chk).dump(2) << "\n";
    else print_check(chk);
    if (chk.shared_patients > 0)  // a leak is a failed check, as a script running it needs to see
      throw cxr::Error(cxr::detail::concat(chk.shared_patients, " patients have images in more than one set (leak)"));
  });
}

void add_stats(CLI::App& app) {
  auto data = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  auto chart_split = std::make_shared<std::string>("train");
  auto json = std::make_shared<bool>(false);
  CLI::App* c = app.add_subcommand("stats", "class frequencies per split and the positive/negative bar chart");
  c->add_option("--data", *data, "packed HDF5 dataset")->required();
  c->add_option("--out", *out, "folder for class_balance.svg and class_balance.png")->required();
  c->add_option("--chart-split", *chart_split, "set drawn in the chart (train, val, test)")->capture_default_str();
  c->add_flag("--json", *json, "JSON on stdout");
  c->callback([data, out, chart_split, json] {
    io::PackedDataset d(*data);
    const io::ClassStats st = io::class_stats(d);
    io::write_balance_charts(st, io::parse_split_name(*chart_split), *out);
    if (*json) {
      nlohmann::json j;
      for (int s = 0; s < io::kNumSplits; ++s) {
        j[io::kSplitNames[s]]["images"] = st.images[s];
        for (int k = 0; k < io::kNumClasses; ++k) {
          const int64_t p = st.positives[s][k];
          j[io::kSplitNames[s]]["classes"][std::string(io::kClassNames[k])] = {
              {"positive", p}, {"negative", st.images[s] - p}, {"positive_frequency", st.pos_freq(s, k)},
              {"negative_frequency", st.images[s] ? 1.0 - st.pos_freq(s, k) : 0.0}};
        }
      }
      j["excluded"] = st.excluded;
      j["charts"] = {*out + "/class_balance.svg", *out + "/class_balance.png"};
      std::cout << j.dump(2) << "\n";
      return;
    }
    for (int s = 0; s < io::kNumSplits; ++s) {
      std::printf("%s (%lld images)\n%-20s %9s %9s %9s %9s\n", io::kSplitNames[s], (long long)st.images[s], "class",
                  "positive", "negative", "pos freq", "neg freq");
      for (int k = 0; k < io::kNumClasses; ++k) {
        const int64_t p = st.positives[s][k];
        std::printf("%-20s %9lld %9lld %9.4f %9.4f\n", std::string(io::kClassNames[k]).c_str(), (long long)p,
                    (long long)(st.images[s] - p), st.pos_freq(s, k), st.images[s] ? 1.0 - st.pos_freq(s, k) : 0.0);
      }
      std::printf("\n");
    }
    std::printf("charts: %s/class_balance.svg, %s/class_balance.png\n", out->c_str(), out->c_str());
  });
}

}  // namespace

void add_data_commands(CLI::App& app) {
  add_synth(app);
  add_prepare(app);
  add_split_check(app);
  add_stats(app);
}

}  // namespace cxr::cli
