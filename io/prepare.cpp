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
#include "io/dicom.h"
#include "io/fileutil.h"
#include "io/image.h"
#include "io/packed.h"
#include "io/patient_key.h"
#include "io/progress.h"
#include "io/synth.h"

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

// The images under --images: name -> path, and for DICOM files their headers.
struct FoundImages {
  std::unordered_map<std::string, std::string> where;
  std::unordered_map<std::string, DicomInfo> dicom;         // by file name
  std::unordered_map<std::string, std::string> by_uid;      // SOP Instance UID -> file name
};

FoundImages find_images(const PrepareOptions& opt, int threads, PrepareResult* res) {
  FoundImages found;
  const auto files = scan_images(opt.images_dir);
  for (auto& [name, path] : files) found.where.emplace(name, path);
  std::vector<size_t> dicom;
  for (size_t i = 0; i < files.size(); ++i)
    if (found.where.at(files[i].first) == files[i].second && is_dicom_path(files[i].second)) dicom.push_back(i);
  res->dicom = static_cast<int64_t>(dicom.size());
  std::vector<DicomInfo> info(dicom.size());
  std::vector<uint8_t> ok(dicom.size(), 0);
#pragma omp parallel for num_threads(threads) schedule(dynamic, 16)
  for (size_t k = 0; k < dicom.size(); ++k) {
    std::string error;  // a file whose header cannot be read is reported when its pixels are decoded
    ok[k] = read_dicom_info(files[dicom[k]].second, &info[k], &error);
  }
  for (size_t k = 0; k < dicom.size(); ++k) {
    if (!ok[k]) continue;
    const std::string& name = files[dicom[k]].first;
    if (!info[k].sop_instance_uid.empty()) found.by_uid.emplace(info[k].sop_instance_uid, name);
    found.dicom.emplace(name, std::move(info[k]));
  }
  return found;
}

// DICOM rows: the file by name or SOP Instance UID, the Patient ID from the file when the CSV has none,
// the file's View Position; then each text ID as stored (hashed under the key file if one is given)
// and the integer the split groups by.
void resolve_dicom_rows(std::vector<LabelRow>* rows, const FoundImages& found, const PrepareOptions& opt) {
  const std::string key = opt.patient_key_file.empty() ? "" : read_patient_key_file(opt.patient_key_file);
  std::unordered_map<std::string, int64_t> matched;  // file name -> CSV line
  for (LabelRow& r : *rows) {
    if (!found.where.count(r.image)) {
      auto u = found.by_uid.find(r.image);
      if (u != found.by_uid.end()) r.image = u->second;  // keyed by SOP Instance UID
    }
    auto d = found.dicom.find(r.image);
    if (d != found.dicom.end()) {
      auto [m, fresh] = matched.emplace(r.image, r.line);
      if (!fresh)
        throw Error(opt.csv + ":" + std::to_string(r.line) + ": " + r.image + " is also the image of line " +
                    std::to_string(m->second) + " (by file name or SOP Instance UID)");
      if (r.patient_key.empty()) r.patient_key = d->second.patient_id;
      if (!d->second.view_position.empty()) r.view_position = d->second.view_position;
      if (r.patient_key.empty())
        throw Error(opt.csv + ":" + std::to_string(r.line) + ": " + r.image +
                    ": no Patient ID in the CSV or in the file's (0010,0020): a patient-wise split needs one");
    }
    if (r.patient_key.empty()) r.patient_key = "(no image) " + r.image;  // missing: dropped below, split alone
    if (!key.empty()) r.patient_key = hash_patient_id(r.patient_key, key);
    r.patient_id = patient_number(r.patient_key);
  }
}

std::vector<Split> split_rows(const std::vector<LabelRow>& rows, const PrepareOptions& opt, PrepareResult* res) {
  if (opt.split_lists.empty()) return random_split(rows, opt.ratios, opt.seed);
  int64_t missing_listed = 0;
  return split_from_lists(rows, opt.split_lists, opt.ratios, opt.seed, &res->unlisted, &missing_listed);
}

PackedMeta packed_meta(const PrepareOptions& opt, bool text_ids) {
  PackedMeta meta;
  meta.image_size = opt.size;
  meta.command = opt.command;
  meta.source_csv = opt.csv;
  meta.synthetic = synth_marker_of(opt.csv);  // data that cxr synth drew say so (io/synth.h)
  meta.seed = opt.seed;
  meta.ratios = opt.ratios;
  meta.split_method = opt.split_lists.empty() ? "random" : "lists";
  meta.resize = "mitchell antialiased (B = C = 1/3, widened to the output pixel), from 8-bit grey";
  if (opt.reducing_gap > 0)
    meta.resize += ", after exact r x r block means, r = floor(scale / " + std::to_string(opt.reducing_gap) + ")";
  for (auto& f : opt.split_lists) meta.split_lists += (meta.split_lists.empty() ? "" : " ") + f;
  if (text_ids) meta.patient_key_hash = opt.patient_key_file.empty() ? "none" : "hmac-sha256";
  return meta;
}

// Decodes and resizes the pending images a block at a time on `threads` threads, writing each block
// in order; unreadable files are marked and listed in the report.
void decode_pending(PackedWriter& writer, const std::vector<std::string>& paths, const std::vector<int64_t>& pending,
                    const PrepareOptions& opt, int threads, std::ostream& report, PrepareResult* res) {
  const int S = opt.size;
  const size_t block = static_cast<size_t>(std::max(16, threads * 16));
  std::vector<Slot> slots(block);
  Progress progress(writer.size(), "prepare", "images", opt.quiet);
  if (!opt.quiet && writer.resumed())
    std::fprintf(stderr, "prepare: resuming %s (%lld of %lld images already done)\n", writer.partial_path().c_str(),
                 static_cast<long long>(res->already_done), static_cast<long long>(writer.size()));
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
        ++res->written;
      } else {
        writer.mark_unreadable(i);
        ++res->unreadable;
        report << "unreadable " << paths[i] << ": " << slots[k].error << "\n";
      }
    }
    const auto now = std::chrono::steady_clock::now();
    if (std::chrono::duration<double>(now - last_flush).count() > 2.0) {
      writer.flush();  // a killed run loses at most the last two seconds
      last_flush = now;
    }
    progress.update(res->already_done + static_cast<int64_t>(b0 + nb));
  }
  if (std::all_of(writer.done().begin(), writer.done().end(), [](uint8_t d) { return d != 0; })) progress.finish();
}

}  // namespace

PrepareResult prepare_dataset(const PrepareOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  CXR_CHECK(opt.size > 0 && opt.size <= 4096, "--size ", opt.size, " must be in [1, 4096]");
  const int threads = opt.threads > 0 ? opt.threads : omp_get_num_procs();
  PrepareResult res;
  const FoundImages found = find_images(opt, threads, &res);
  const bool dicom = res.dicom > 0;
  std::vector<LabelRow> rows = read_label_csv(opt.csv, LabelCsvOptions{/*text_patient_ids=*/dicom});
  res.rows = static_cast<int64_t>(rows.size());
  if (dicom) resolve_dicom_rows(&rows, found, opt);

  // The split is a function of the CSV (and lists, seed, ratios; for DICOM, the files' Patient IDs)
  // only, not of which images exist or which views are kept.
  std::vector<Split> split = split_rows(rows, opt, &res);

  std::ostringstream report;
  report << "# cxr prepare report for " << opt.out << "\n# csv " << opt.csv << ", images " << opt.images_dir << "\n";
  std::vector<LabelRow> kept_rows;
  std::vector<Split> kept_split;
  std::vector<std::string> paths;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (split[i] == Split::Excluded) continue;  // in no split list
    auto it = found.where.find(rows[i].image);
    if (it == found.where.end()) {
      ++res.missing;
      report << "missing " << opt.csv << ":" << rows[i].line << " " << rows[i].image << "\n";
      continue;
    }
    if (!opt.views.empty() &&
        std::find(opt.views.begin(), opt.views.end(), rows[i].view_position) == opt.views.end()) {
      ++res.other_view;
      report << "view " << (rows[i].view_position.empty() ? "(none)" : rows[i].view_position) << " not in --views: "
             << it->second << "\n";
      continue;
    }
    auto d = found.dicom.find(rows[i].image);
    if (d != found.dicom.end() && d->second.burned_in_annotation) {
      ++res.burned_in;
      report << "burned-in annotation (0028,0301) YES: " << it->second << "\n";
    }
    kept_rows.push_back(rows[i]);
    kept_split.push_back(split[i]);
    paths.push_back(it->second);
  }
  if (res.unlisted > 0) report << "unlisted " << res.unlisted << " rows in none of the split lists\n";
  if (kept_rows.empty())
    throw Error(opt.images_dir + ": none of the " + std::to_string(rows.size()) + " images of " + opt.csv + " found" +
                (res.other_view > 0 ? " with a View Position in --views" : ""));
  res.images = static_cast<int64_t>(kept_rows.size());

  PackedWriter writer(opt.out, kept_rows, kept_split, packed_meta(opt, dicom));
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
  decode_pending(writer, paths, pending, opt, threads, report, &res);
  res.complete = std::all_of(writer.done().begin(), writer.done().end(), [](uint8_t d) { return d != 0; });
  if (res.complete) writer.finish();
  else writer.flush();
  res.report = opt.out + ".report.txt";
  report << "# " << res.images << " images, " << res.unreadable << " unreadable, " << res.missing << " missing\n";
  write_text_file(res.report, report.str());
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace cxr::io
