#include "io/prepare.h"

#include <sys/stat.h>

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <set>
#include <sstream>
#include <unordered_map>

#include "engine/error.h"
#include "io/csv.h"
#include "io/fileutil.h"
#include "io/image.h"
#include "io/packed.h"
#include "io/progress.h"

namespace cxr::io {

std::vector<std::pair<std::string, std::string>> scan_images(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw Error(dir + ": not a directory (--images)");
  std::vector<std::pair<std::string, std::string>> out;
  // Symbolic links to folders are followed, each real folder once: a link back up the tree (a loop)
  // would otherwise be walked for ever.
  std::set<std::pair<dev_t, ino_t>> seen;
  auto first_visit = [&](const fs::path& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 && seen.emplace(st.st_dev, st.st_ino).second;
  };
  first_visit(dir);
  for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::follow_directory_symlink, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    if (it->is_directory(ec) && !first_visit(it->path())) it.disable_recursion_pending();
    else if (it->is_regular_file(ec)) out.emplace_back(it->path().filename().string(), it->path().string());
  }
  std::sort(out.begin(), out.end());  // deterministic choice when a name occurs twice: the first path
  return out;
}

namespace {

struct Slot {
  std::vector<uint8_t> pixels;
  std::string error;
  bool ok = false;
};

}  // namespace

PrepareResult prepare_dataset(const PrepareOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  CXR_CHECK(opt.size > 0 && opt.size <= 4096, "--size ", opt.size, " must be in [1, 4096]");
  PrepareResult res;
  std::vector<LabelRow> rows = read_label_csv(opt.csv);
  res.rows = static_cast<int64_t>(rows.size());

  // The split is a function of the CSV (and lists, seed, ratios) only, not of which images exist.
  std::vector<Split> split;
  if (opt.split_lists.empty()) {
    split = random_split(rows, opt.ratios, opt.seed);
  } else {
    int64_t missing_listed = 0;
    split = split_from_lists(rows, opt.split_lists, opt.ratios, opt.seed, &res.unlisted, &missing_listed);
  }

  std::unordered_map<std::string, std::string> where;
  for (auto& [name, path] : scan_images(opt.images_dir)) where.emplace(name, path);

  std::ostringstream report;
  report << "# cxr prepare report for " << opt.out << "\n# csv " << opt.csv << ", images " << opt.images_dir << "\n";
  std::vector<LabelRow> kept_rows;
  std::vector<Split> kept_split;
  std::vector<std::string> paths;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (split[i] == Split::Excluded) continue;  // in no split list
    auto it = where.find(rows[i].image);
    if (it == where.end()) {
      ++res.missing;
      report << "missing " << opt.csv << ":" << rows[i].line << " " << rows[i].image << "\n";
      continue;
    }
    kept_rows.push_back(rows[i]);
    kept_split.push_back(split[i]);
    paths.push_back(it->second);
  }
  if (res.unlisted > 0) report << "unlisted " << res.unlisted << " rows in none of the split lists\n";
  if (kept_rows.empty()) throw Error(opt.images_dir + ": none of the " + std::to_string(rows.size()) +
                                     " images of " + opt.csv + " found");
  res.images = static_cast<int64_t>(kept_rows.size());

  PackedMeta meta;
  meta.image_size = opt.size;
  meta.command = opt.command;
  meta.source_csv = opt.csv;
  meta.seed = opt.seed;
  meta.ratios = opt.ratios;
  meta.split_method = opt.split_lists.empty() ? "random" : "lists";
  meta.resize = "mitchell antialiased (B = C = 1/3, widened to the output pixel), from 8-bit grey";
  if (opt.reducing_gap > 0)
    meta.resize += ", after exact r x r block means, r = floor(scale / " + std::to_string(opt.reducing_gap) + ")";
  for (auto& f : opt.split_lists) meta.split_lists += (meta.split_lists.empty() ? "" : " ") + f;
  PackedWriter writer(opt.out, kept_rows, kept_split, meta);

  std::vector<int64_t> pending;
  for (int64_t i = 0; i < writer.size(); ++i) {
    if (writer.done()[i] == 0) pending.push_back(i);
    else ++res.already_done;
    if (writer.done()[i] == 2) {
      ++res.unreadable;
      report << "unreadable " << paths[i] << ": (found in an earlier run)\n";
    }
  }
  if (opt.stop_after >= 0 && static_cast<int64_t>(pending.size()) > opt.stop_after) pending.resize(opt.stop_after);

  const int threads = opt.threads > 0 ? opt.threads : omp_get_num_procs();
  const int S = opt.size;
  const size_t block = static_cast<size_t>(std::max(16, threads * 16));
  std::vector<Slot> slots(block);
  Progress progress(writer.size(), "prepare", "images", opt.quiet);
  if (!opt.quiet && writer.resumed())
    std::fprintf(stderr, "prepare: resuming %s (%lld of %lld images already done)\n", writer.partial_path().c_str(),
                 static_cast<long long>(res.already_done), static_cast<long long>(writer.size()));
  auto last_flush = std::chrono::steady_clock::now();
  for (size_t b0 = 0; b0 < pending.size(); b0 += block) {
    const size_t nb = std::min(block, pending.size() - b0);
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (size_t k = 0; k < nb; ++k) {
      Slot& s = slots[k];
      GreyImage img;
      s.error.clear();
      s.ok = decode_grey(paths[pending[b0 + k]], &img, &s.error);
      if (!s.ok) continue;
      s.pixels.resize(static_cast<size_t>(S) * S);
      try {  // exceptions must not leave an OpenMP region
        resize_grey(s.pixels.data(), S, S, img.pixels.data(), img.width, img.height, ResizeFilter::Mitchell,
                    opt.reducing_gap);
      } catch (const std::exception& e) {
        s.ok = false;
        s.error = e.what();
      }
    }
    for (size_t k = 0; k < nb; ++k) {
      const int64_t i = pending[b0 + k];
      if (slots[k].ok) {
        writer.write_image(i, slots[k].pixels.data());
        ++res.written;
      } else {
        writer.mark_unreadable(i);
        ++res.unreadable;
        report << "unreadable " << paths[i] << ": " << slots[k].error << "\n";
      }
    }
    const auto now = std::chrono::steady_clock::now();
    if (std::chrono::duration<double>(now - last_flush).count() > 2.0) {
      writer.flush();  // a killed run loses at most the last two seconds
      last_flush = now;
    }
    progress.update(res.already_done + static_cast<int64_t>(b0 + nb));
  }
  res.complete = std::all_of(writer.done().begin(), writer.done().end(), [](uint8_t d) { return d != 0; });
  if (res.complete) {
    writer.finish();
    progress.finish();
  } else {
    writer.flush();
  }
  res.report = opt.out + ".report.txt";
  report << "# " << res.images << " images, " << res.unreadable << " unreadable, " << res.missing << " missing\n";
  write_text_file(res.report, report.str());
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace cxr::io
