// cxr verify FILE: checks one of our files completely, checksums included (io/digest.h): a packed
// dataset image by image, a checkpoint or model file dataset by dataset (and every float finite).
// Exit 0 when intact, 1 when anything is wrong (each finding on stdout), 2 when the file cannot be read.
#include <hdf5.h>

#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "io/digest.h"
#include "io/hdf5.h"
#include "io/isolated_read.h"
#include "io/packed.h"
#include "tools/commands.h"

namespace cxr::cli {
namespace {

struct Findings {
  std::string kind;
  int64_t items = 0, with_checksum = 0, values = 0;
  std::vector<std::string> problems;
  void add(const std::string& p) { problems.push_back(p); }
};

void verify_packed(const std::string& path, Findings* f) {
  f->kind = "packed dataset";
  std::unique_ptr<io::PackedDataset> d;
  try {
    d = std::make_unique<io::PackedDataset>(path);  // checks dtype, labels, split codes, small datasets' checksums
  } catch (const Error& e) {
    f->add(e.what());
    return;
  }
  const int64_t N = d->size(), bytes = d->image_bytes();
  f->items = N;
  f->values = N * bytes;
  f->with_checksum = d->has_checksums() ? N : 0;
  if (!d->has_checksums()) f->add(path + ": no image checksums (/image_xxh3): made before they were added; "
                                  "only its structure was checked");
  std::vector<uint8_t> img(static_cast<size_t>(bytes));
  for (int64_t i = 0; i < N; ++i) {
    try {
      d->read_image(i, img.data());
    } catch (const Error& e) {
      f->add(e.what());
      if (f->problems.size() >= 20) {
        f->add("(stopped after 20 findings)");
        return;
      }
    }
  }
}

// Every float dataset of a weight file or checkpoint: its checksum when it has one, finiteness.
void verify_weights(hid_t file, const std::string& path, Findings* f) {
  f->kind = H5Lexists(file, "cxr", H5P_DEFAULT) > 0 ? "cxr model or checkpoint" : "weight file";
  struct Ctx {
    Findings* f;
    const std::string* path;
  } ctx{f, &path};
  auto visit = [](hid_t obj, const char* name, const H5O_info_t* info, void* data) -> herr_t {
    auto* c = static_cast<Ctx*>(data);
    if (info->type != H5O_TYPE_DATASET || std::string(name) == ".") return 0;
    io::h5::Handle d(H5Dopen2(obj, name, H5P_DEFAULT), H5Dclose);
    io::h5::Handle type(H5Dget_type(d), H5Tclose), space(H5Dget_space(d), H5Sclose);
    if (H5Tget_class(type) != H5T_FLOAT) return 0;
    const hssize_t n = H5Sget_simple_extent_npoints(space);
    const std::string where = *c->path + ": dataset /" + name;
    ++c->f->items;
    c->f->values += n;
    if (H5Tget_size(type) == 4) {
      std::vector<float> v(static_cast<size_t>(n));
      if (n > 0 && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()) < 0) {
        c->f->add(where + ": cannot be read");
        return 0;
      }
      if (io::h5::stored_digest(d)) {
        ++c->f->with_checksum;
        try {
          io::h5::check_digest(d, std::string("/") + name, v.data(), v.size() * sizeof(float));
        } catch (const Error& e) {
          c->f->add(*c->path + ": " + e.what());
        }
      }
      int64_t bad = 0, first = -1;
      for (size_t i = 0; i < v.size(); ++i)
        if (!std::isfinite(v[i])) bad += 1, first = first < 0 ? int64_t(i) : first;
      if (bad) c->f->add(where + ": " + std::to_string(bad) + " values are NaN or infinite (the first at element " +
                         std::to_string(first) + ")");
    }
    return 0;
  };
  if (H5Ovisit2(file, H5_INDEX_NAME, H5_ITER_NATIVE, visit, &ctx, H5O_INFO_BASIC) < 0)
    f->add(path + ": its datasets could not all be visited");
  if (f->items == 0) f->add(path + ": no float datasets: not a weight file, checkpoint or packed dataset of ours");
  else if (f->with_checksum == 0)
    f->add(path + ": no checksums (a file of another writer, or of cxr before they were added): values checked "
                  "for finiteness only");
}

// Through libhdf5 in a child process first (Note [untrusted files]): which kind of file, and for a
// weight file everything verify reads. A packed file's structure is checked by PackedDataset's own
// isolated open; its images are read once, with pread, outside the library.
io::h5::Handle open_for_verify(const std::string& path) {
  hid_t f = -1;
  H5E_BEGIN_TRY { f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT); }
  H5E_END_TRY;
  if (f < 0) throw Error(path + ": not an HDF5 file, or it cannot be read");
  return io::h5::Handle(f, H5Fclose);
}

bool is_packed(const std::string& path) {
  io::h5::Handle file = open_for_verify(path);
  return H5Aexists(file, "format") > 0 && io::h5::read_string_attr(file, "format") == io::kPackedFormat;
}

int run_verify(const std::string& path, bool json) {
  Findings found;
  if (io::guarded_hdf5_read(path, [&] { return is_packed(path); })) {
    verify_packed(path, &found);
  } else {
    found = io::guarded_hdf5_read(path, [&] {
      Findings f;
      io::h5::Handle file = open_for_verify(path);
      verify_weights(file, path, &f);
      return f;
    });
  }
  // "No checksums" is a note, not a fault, unless something else is wrong.
  int faults = 0;
  for (const auto& p : found.problems)
    if (p.find("no checksums") == std::string::npos && p.find("no image checksums") == std::string::npos) ++faults;
  if (json) {
    std::cout << nlohmann::json{{"file", path}, {"kind", found.kind}, {"items", found.items},
                                {"with_checksum", found.with_checksum}, {"values", found.values},
                                {"intact", faults == 0}, {"findings", found.problems}}
                     .dump(2)
              << "\n";
  } else {
    for (const auto& p : found.problems) std::printf("%s\n", p.c_str());
    std::printf("%s: %s, %ld %s (%ld with checksums), %s\n", path.c_str(), found.kind.c_str(), long(found.items),
                found.kind == "packed dataset" ? "images" : "datasets", long(found.with_checksum),
                faults == 0 ? "intact" : (std::to_string(faults) + " problem" + (faults == 1 ? "" : "s")).c_str());
  }
  return faults == 0 ? 0 : 1;
}

}  // namespace

void add_verify_commands(CLI::App& app) {
  auto file = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  CLI::App* v = app.add_subcommand("verify", "Check one of our files completely (checksums, values, structure)");
  v->add_option("FILE", *file, "A packed dataset, checkpoint or model file")->required();
  v->add_flag("--json", *json, "Machine-readable output on stdout");
  v->callback([file, json] {
    const int rc = run_verify(*file, *json);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace cxr::cli
