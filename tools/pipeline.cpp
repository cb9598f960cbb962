#include "tools/pipeline.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "engine/data_parallel.h"
#include "io/classes.h"
#include "io/dicom.h"
#include "io/image.h"
#include "io/prepare.h"
#include "io/progress.h"

namespace cxr::app {

bool stderr_is_tty() { return isatty(STDERR_FILENO) == 1; }

void upload_batch(DenseNet& net, const io::Batch& batch) {
  Backend& be = net.backend();
  const Tensor x = net.input();
  const int64_t per_image = x.c() * x.h() * x.w(), K = net.config().classes;
  CXR_CHECK(batch.input != nullptr, "the loader was set up without normalisation");
  CXR_CHECK(batch.size <= net.batch(), "batch of ", batch.size, " for a model planned for ", net.batch());
  be.copy_to_device(x.data, batch.input, sizeof(float) * size_t(batch.size * per_image));
  be.copy_to_device(net.labels(), batch.labels, sizeof(float) * size_t(batch.size * K));
  if (batch.size < net.batch()) {
    be.fill(x.data + batch.size * per_image, 0.0f, (net.batch() - batch.size) * per_image);
    be.fill(net.labels() + batch.size * K, 0.0f, (net.batch() - batch.size) * K);
  }
}

std::vector<float> infer_logits_sharded(DenseNet& net, const io::PackedDataset& data, io::Split split,
                                        const io::NormParams& norm, std::vector<int64_t>* indices, bool quiet,
                                        Comm& comm);

std::vector<float> infer_logits(DenseNet& net, const io::PackedDataset& data, io::Split split,
                                const io::NormParams& norm, std::vector<int64_t>* indices, bool quiet, Comm* comm) {
  if (comm && comm->size() > 1) return infer_logits_sharded(net, data, split, norm, indices, quiet, *comm);
  io::LoaderOptions opt = io::LoaderOptions::eval(split, int(net.batch()));
  opt.norm = norm;
  io::Loader loader(data, opt);
  const int64_t K = net.config().classes;
  std::vector<float> logits;
  logits.reserve(size_t(loader.images() * K));
  if (indices) indices->clear();
  io::Progress progress(loader.images(), std::string("inference (") + io::kSplitNames[int(split)] + ")", "images", quiet);
  loader.start_epoch(0);
  int64_t done = 0;
  while (const io::Batch* b = loader.next()) {
    upload_batch(net, *b);
    net.forward(false);
    const auto all = net.get_logits();
    logits.insert(logits.end(), all.begin(), all.begin() + b->size * K);
    if (indices) indices->insert(indices->end(), b->indices, b->indices + b->size);
    progress.update(done += b->size);
  }
  progress.finish();
  return logits;
}

// Each rank its share of every global batch; then every rank's (index, logits) gathered and put in
// the set's order (ascending dataset index).
std::vector<float> infer_logits_sharded(DenseNet& net, const io::PackedDataset& data, io::Split split,
                                        const io::NormParams& norm, std::vector<int64_t>* indices, bool quiet,
                                        Comm& comm) {
  io::LoaderOptions opt = io::LoaderOptions::eval(split, int(net.batch() * comm.size()));
  opt.norm = norm;
  opt.shard_rank = comm.rank(), opt.shard_count = comm.size();
  io::Loader loader(data, opt);
  const int64_t K = net.config().classes;
  std::vector<float> mine;
  std::vector<int64_t> mine_idx;
  io::Progress progress(loader.images(), std::string("inference (") + io::kSplitNames[int(split)] + ", " +
                                             std::to_string(comm.size()) + " ranks)",
                        "images", quiet || !comm.root());
  loader.start_epoch(0);
  int64_t done = 0;
  while (const io::Batch* b = loader.next()) {
    if (b->size > 0) {
      upload_batch(net, *b);
      net.forward(false);
      const auto all = net.get_logits();
      mine.insert(mine.end(), all.begin(), all.begin() + b->size * K);
      mine_idx.insert(mine_idx.end(), b->indices, b->indices + b->size);
    }
    progress.update(done += b->size * comm.size());
  }
  progress.finish();
  const std::vector<int64_t> idx = comm.allgather(mine_idx, "inference indices");
  const std::vector<float> logits = comm.allgather(mine, "inference logits");
  CXR_CHECK(int64_t(idx.size()) == loader.images() && logits.size() == idx.size() * size_t(K), "gathered ",
            idx.size(), " images of ", loader.images());
  std::vector<size_t> order(idx.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return idx[a] < idx[b]; });
  std::vector<float> out(logits.size());
  if (indices) indices->clear();
  for (size_t i = 0; i < order.size(); ++i) {
    std::copy(logits.begin() + long(order[i] * size_t(K)), logits.begin() + long((order[i] + 1) * size_t(K)),
              out.begin() + long(i * size_t(K)));
    if (indices) indices->push_back(idx[order[i]]);
  }
  for (size_t i = 1; i < order.size(); ++i)
    CXR_CHECK(idx[order[i]] != idx[order[i - 1]], "image ", idx[order[i]], " was inferred twice");
  return out;
}

std::vector<float> gather_labels(const io::PackedDataset& data, const std::vector<int64_t>& indices) {
  const int64_t K = io::kNumClasses;
  std::vector<float> y(indices.size() * size_t(K));
  for (size_t i = 0; i < indices.size(); ++i)
    for (int64_t k = 0; k < K; ++k) y[i * size_t(K) + size_t(k)] = data.labels()[size_t(indices[i] * K + k)];
  return y;
}

ClassWeights class_weights(const io::PackedDataset& data, io::Split split, bool plain) {
  const int64_t K = io::kNumClasses;
  ClassWeights w{std::vector<float>(size_t(K), 1.0f), std::vector<float>(size_t(K), 1.0f)};
  if (plain) return w;
  const auto idx = data.indices(split);
  CXR_CHECK(!idx.empty(), data.path(), ": the ", io::kSplitNames[int(split)], " set is empty: no class weights");
  for (int64_t k = 0; k < K; ++k) {
    double pos = 0;
    for (int64_t i : idx) pos += data.labels()[size_t(i * K + k)];
    const double f = pos / double(idx.size());
    w.pos[size_t(k)] = float(1.0 - f);
    w.neg[size_t(k)] = float(f);
  }
  return w;
}

double weighted_bce_host(const std::vector<float>& logits, const std::vector<float>& labels, const ClassWeights& w,
                         int64_t k) {
  const int64_t n = int64_t(logits.size()) / k;
  if (n == 0) return 0;
  auto log_sigmoid = [](double z) { return z >= 0 ? -std::log1p(std::exp(-z)) : z - std::log1p(std::exp(z)); };
  double total = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < k; ++j) {
      const double z = logits[size_t(i * k + j)], y = labels[size_t(i * k + j)];
      total -= w.pos[size_t(j)] * y * log_sigmoid(z) + w.neg[size_t(j)] * (1 - y) * log_sigmoid(-z);
    }
  return total / double(n);
}

io::NormParams norm_params(const std::string& mode, const io::PackedDataset& data, int64_t max_images) {
  io::NormParams p;
  p.mode = io::parse_norm_mode(mode);
  if (p.mode == io::NormMode::Dataset) {
    auto idx = data.indices(io::Split::Train);
    CXR_CHECK(!idx.empty(), data.path(), ": --normalize dataset needs a training set");
    std::vector<int64_t> pick;
    const int64_t step = std::max<int64_t>(1, int64_t(idx.size()) / max_images);
    for (size_t i = 0; i < idx.size(); i += size_t(step)) pick.push_back(idx[i]);
    std::vector<uint8_t> pixels(pick.size() * size_t(data.image_bytes()));
    data.read_batch(pick.data(), int64_t(pick.size()), pixels.data());
    double mean = 0, sd = 1;
    io::pixel_mean_std(pixels.data(), int64_t(pick.size()), data.image_bytes(), &mean, &sd);
    p.mean = float(mean), p.std = float(sd);
  }
  return p;
}

io::NormParams norm_params(const io::ModelMeta& meta) {
  io::NormParams p;
  p.mode = io::parse_norm_mode(meta.normalization);
  p.mean = meta.norm_mean;
  p.std = meta.norm_std;
  return p;
}

LoadedModel load_model(const std::string& weights, const std::string& device, int64_t batch, int64_t size_override,
                       const std::string& normalize_override, const std::string& arch_default, Comm* comm) {
  LoadedModel m;
  if (auto meta = io::read_model_meta(weights)) {
    m.meta = *meta;
  } else {
    m.meta.arch = arch_default;
    m.meta.class_names.assign(io::kClassNames.begin(), io::kClassNames.end());
  }
  if (size_override > 0) m.meta.image_size = size_override;
  if (!normalize_override.empty()) m.meta.normalization = normalize_override;
  m.backend = comm ? make_backend_for_rank(device, *comm) : make_backend(device);
  m.net = std::make_unique<DenseNet>(*m.backend, DenseNetConfig::from_arch(m.meta.arch, m.meta.classes), batch,
                                     m.meta.image_size, m.meta.image_size, /*trainable=*/false);
  std::vector<float> params, state;
  m.net->get_weights(&params, &state);
  m.description = io::load_weights(weights, m.net->table(), params, state, io::HeadPolicy::Require, 0);
  m.net->set_weights(params, state);
  return m;
}

// ---- images named on a command line (shared by predict and gradcam) ---------------------------

std::vector<std::string> expand_image_inputs(const std::vector<std::string>& inputs) {
  namespace fs = std::filesystem;
  std::vector<std::string> files;
  auto is_image = [](const fs::path& p) {
    std::string e = p.extension().string();
    std::transform(e.begin(), e.end(), e.begin(), ::tolower);
    return e == ".png" || e == ".jpg" || e == ".jpeg" || e == ".bmp" || e == ".tga" || e == ".pgm" ||
           io::is_dicom_path(p.string());  // .dcm, .dicom, or no extension and the DICM preamble
  };
  for (const auto& in : inputs) {
    const fs::path p(in);
    if (fs::is_directory(p)) {
      std::vector<std::string> found;
      for (const auto& e : fs::recursive_directory_iterator(p))
        if (e.is_regular_file() && is_image(e.path())) found.push_back(e.path().string());
      std::sort(found.begin(), found.end());
      files.insert(files.end(), found.begin(), found.end());
    } else if (p.extension() == ".txt") {
      std::ifstream f(in);
      CXR_CHECK(f.good(), "cannot read the list ", in);
      std::string line;
      while (std::getline(f, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (!line.empty() && line[0] != '#') files.push_back(line);
      }
    } else {
      files.push_back(in);
    }
  }
  return files;
}

bool load_grey_square(const std::string& file, int64_t S, uint8_t* dst, std::string* error, int* width, int* height) {
  io::GreyImage img;
  if (io::is_dicom_path(file)) {
    io::DicomInfo info;
    if (!io::decode_dicom(file, io::dicom_options(), &img, &info, error)) return false;
    if (info.burned_in_annotation)
      std::fprintf(stderr,
                   "cxr: warning: %s: Burned In Annotation (0028,0301) is YES: text in the pixels may identify the "
                   "patient and can sway the model\n",
                   file.c_str());
  } else if (!io::decode_grey(file, &img, error)) {
    return false;
  }
  if (width) *width = img.width;
  if (height) *height = img.height;
  if (img.width == S && img.height == S)
    std::copy(img.pixels.begin(), img.pixels.end(), dst);
  else
    io::resize_grey(dst, int(S), int(S), img.pixels.data(), img.width, img.height, io::ResizeFilter::Mitchell,
                    io::PrepareOptions{}.reducing_gap);  // exactly as cxr prepare resizes
  return true;
}

}  // namespace cxr::app
