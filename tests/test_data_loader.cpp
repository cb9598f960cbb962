// Normalisation (CPU twin) against the formulas in double, and the loader's epoch properties on a
// small packed file written with PackedWriter.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <numeric>
#include <set>

#include "io/loader.h"
#include "io/normalize.h"
#include "io/packed.h"
#include "io/synth.h"
#include "tests/test_data_util.h"
#include "tests/test_util.h"

namespace cxr::io {
namespace {

// A packed file of n images (S x S) where pixel (y, x) of image i is (i * 31 + y * 7 + x * 3) & 255:
// every image differs from its mirror image and from every other image.
struct ToyPacked {
  cxr::test::ScratchDir dir{"loader"};
  std::string path;
  int S = 12;
  int64_t n;
  explicit ToyPacked(int64_t n_) : n(n_) {
    std::vector<LabelRow> rows(n);
    std::vector<Split> split(n);
    for (int64_t i = 0; i < n; ++i) {
      char name[32];
      std::snprintf(name, sizeof name, "%08d_%03d.png", static_cast<int>(i / 3 + 1), static_cast<int>(i % 3));
      rows[i].image = name, rows[i].patient_id = i / 3 + 1, rows[i].labels[i % kNumClasses] = 1;
      split[i] = (i / 3) % 5 == 4 ? Split::Val : ((i / 3) % 5 == 3 ? Split::Test : Split::Train);
    }
    path = dir / "toy.h5";
    PackedMeta meta;
    meta.image_size = S;
    PackedWriter w(path, rows, split, meta);
    std::vector<uint8_t> px(S * S);
    for (int64_t i = 0; i < n; ++i) {
      for (int y = 0; y < S; ++y)
        for (int x = 0; x < S; ++x) px[y * S + x] = pixel(i, y, x);
      w.write_image(i, px.data());
    }
    w.finish();
  }
  static uint8_t pixel(int64_t i, int y, int x) { return static_cast<uint8_t>((i * 31 + y * 7 + x * 3) & 255); }
};

TEST(DataNormalize, ModesMatchFormulas) {
  // hw = 50: the plain loop only; 4100 (a multiple of 4, not of 16): the vectorised path and its tail.
  for (const int64_t hw : {int64_t(50), int64_t(4100)}) {
    const int64_t n = 3;
    std::vector<uint8_t> in(n * hw);
    for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<uint8_t>((i * 37 + 11 + i / 97) % 256);
    std::vector<float> out(n * 3 * hw, std::nanf(""));  // poisoned
    for (NormMode mode : {NormMode::Sample, NormMode::Dataset, NormMode::ImageNet}) {
      NormParams p{mode, 100.f, 40.f};
      normalize_cpu(out.data(), in.data(), n, hw, p);
      for (int64_t i = 0; i < n; ++i) {
        double m = 0, v = 0;
        for (int64_t j = 0; j < hw; ++j) m += in[i * hw + j];
        m /= hw;
        for (int64_t j = 0; j < hw; ++j) v += (in[i * hw + j] - m) * (in[i * hw + j] - m);
        const double sd = std::sqrt(v / hw);
        for (int c = 0; c < 3; ++c)
          for (int64_t j = 0; j < hw; ++j) {
            const double x = in[i * hw + j];
            double ref = mode == NormMode::Sample    ? (x - m) / (sd + 1e-7)
                         : mode == NormMode::Dataset ? (x - 100.0) / (40.0 + 1e-7)
                                                     : (x / 255.0 - kImageNetMean[c]) / kImageNetStd[c];
            // 1e-5 relative to the value's scale: float arithmetic on values of magnitude <= ~3.
            ASSERT_NEAR(out[(i * 3 + c) * hw + j], ref, 1e-5 * std::max(1.0, std::fabs(ref)))
                << norm_mode_name(mode) << " hw " << hw << " j " << j;
          }
      }
    }
  }
  EXPECT_THROW(parse_norm_mode("minmax"), Error);
}

TEST(DataLoader, EvalYieldsEveryImageOnceInOrder) {
  ToyPacked t(61);
  PackedDataset d(t.path);
  for (Split s : {Split::Train, Split::Val, Split::Test}) {
    Loader l(d, LoaderOptions::eval(s, 8));
    const auto want = d.indices(s);
    for (int epoch = 0; epoch < 2; ++epoch) {
      l.start_epoch(epoch);
      std::vector<int64_t> got;
      int64_t last = 0;
      while (const Batch* b = l.next()) {
        for (int64_t k = 0; k < b->size; ++k) {
          got.push_back(b->indices[k]);
          EXPECT_EQ(b->flipped[k], 0);
          EXPECT_EQ(b->pixels[k * t.S * t.S + 5], ToyPacked::pixel(b->indices[k], 0, 5));
          EXPECT_EQ(b->labels[k * kNumClasses + b->indices[k] % kNumClasses], 1.f);
        }
        last = b->size;
      }
      EXPECT_EQ(got, want);  // never shuffled, every image once
      EXPECT_EQ(last, static_cast<int64_t>(want.size()) % 8 ? static_cast<int64_t>(want.size()) % 8 : 8);
      EXPECT_EQ(l.next(), nullptr);
    }
  }
}

TEST(DataLoader, TrainShufflesPerEpochSeeded) {
  ToyPacked t(90);
  PackedDataset d(t.path);
  auto run = [&](uint64_t seed, int64_t epoch) {
    Loader l(d, LoaderOptions::train(7, seed));
    l.start_epoch(epoch);
    std::vector<int64_t> order;
    std::vector<uint8_t> flips;
    while (const Batch* b = l.next())
      for (int64_t k = 0; k < b->size; ++k) order.push_back(b->indices[k]), flips.push_back(b->flipped[k]);
    return std::make_pair(order, flips);
  };
  auto a0 = run(1, 0), a1 = run(1, 1), b0 = run(1, 0), c0 = run(2, 0);
  EXPECT_EQ(a0, b0);                // same seed, same epoch: same order and flips
  EXPECT_NE(a0.first, a1.first);    // different epochs: different orders
  EXPECT_NE(a0.first, c0.first);    // different seeds: different orders
  auto sorted = a0.first;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, d.indices(Split::Train));  // a permutation of the training set
  const int nflip = std::accumulate(a0.second.begin(), a0.second.end(), 0);
  EXPECT_GT(nflip, 0);
  EXPECT_LT(nflip, static_cast<int>(a0.second.size()));
}

TEST(DataLoader, FlipAndNormaliseAndAllocatorHook) {
  ToyPacked t(30);
  PackedDataset d(t.path);
  std::atomic<int> allocs{0}, frees{0};
  LoaderOptions o = LoaderOptions::train(4, 3);
  o.norm = {NormMode::ImageNet, 0.f, 1.f};
  o.allocator = {[&](size_t bytes) { ++allocs; return std::malloc(bytes); }, [&](void* p) { ++frees; std::free(p); }};
  {
    Loader l(d, o);
    EXPECT_GT(allocs.load(), 0);
    l.start_epoch(0);
    const int S = t.S;
    while (const Batch* b = l.next()) {
      for (int64_t k = 0; k < b->size; ++k) {
        const int64_t i = b->indices[k];
        for (int y = 0; y < S; ++y)
          for (int x = 0; x < S; ++x) {
            const uint8_t want = ToyPacked::pixel(i, y, b->flipped[k] ? S - 1 - x : x);
            ASSERT_EQ(b->pixels[(k * S + y) * S + x], want);
            const float in1 = b->input[((k * 3 + 1) * S + y) * S + x];
            ASSERT_NEAR(in1, (want / 255.0 - 0.456) / 0.224, 1e-5);
          }
      }
    }
  }
  EXPECT_EQ(allocs.load(), frees.load());
}

TEST(DataLoader, DropLastAndRestartMidEpoch) {
  ToyPacked t(61);
  PackedDataset d(t.path);
  LoaderOptions o = LoaderOptions::train(8, 5);
  o.drop_last = true;
  Loader l(d, o);
  const int64_t n = l.images();
  EXPECT_EQ(l.batches_per_epoch(), n / 8);
  l.start_epoch(0);
  ASSERT_NE(l.next(), nullptr);
  l.start_epoch(1);  // restart before the end: a clean new epoch
  int64_t seen = 0, batches = 0;
  while (const Batch* b = l.next()) {
    seen += b->size, ++batches;
    EXPECT_EQ(b->epoch, 1);
  }
  EXPECT_EQ(batches, n / 8);
  EXPECT_EQ(seen, n / 8 * 8);
}

// The batch assembly is spread over threads; the batches must not depend on how many.
TEST(DataLoader, ThreadCountDoesNotChangeBatches) {
  ToyPacked t(50);
  PackedDataset d(t.path);
  auto collect = [&](int threads) {
    LoaderOptions o = LoaderOptions::train(8, 11);
    o.threads = threads;
    Loader l(d, o);
    std::vector<float> all;
    for (int64_t epoch = 0; epoch < 2; ++epoch) {
      l.start_epoch(epoch);
      while (const Batch* b = l.next()) {
        all.insert(all.end(), b->input, b->input + b->size * 3 * t.S * t.S);
        for (int64_t k = 0; k < b->size; ++k) all.push_back(static_cast<float>(b->indices[k] * 2 + b->flipped[k]));
      }
    }
    return all;
  };
  const std::vector<float> one = collect(1);
  EXPECT_EQ(collect(3), one);
  EXPECT_EQ(collect(0), one);
}

// Data parallel (io/loader.h shards): the R ranks' batches of a global batch, put side by side in
// rank order, are the unsharded loader's batch (indices, flips, pixels, labels), for training
// (shuffled, flipped, last partial batch dropped) and evaluation (the last partial batch split too),
// with R = 2 and 3 (a global batch of 12 images splits 6+6 and 4+4+4; eval's last batch of 5 images
// 2+3 and 1+2+2).
TEST(DataLoader, ShardsOfEveryRankMakeUpTheGlobalBatch) {
  ToyPacked t(50);
  PackedDataset d(t.path);
  for (const bool train : {true, false}) {
    auto options = [&] {
      LoaderOptions o = train ? LoaderOptions::train(12, 11) : LoaderOptions::eval(Split::Train, 12);
      o.drop_last = train;
      return o;
    };
    // (batch index) -> its images as "index*2+flip", pixels and labels, in order.
    auto collect = [&](const LoaderOptions& o, int64_t epoch) {
      Loader l(d, o);
      l.start_epoch(epoch);
      std::vector<std::vector<float>> batches;
      while (const Batch* b = l.next()) {
        std::vector<float> v;
        for (int64_t k = 0; k < b->size; ++k) v.push_back(static_cast<float>(b->indices[k] * 2 + b->flipped[k]));
        v.insert(v.end(), b->input, b->input + b->size * 3 * t.S * t.S);
        v.insert(v.end(), b->labels, b->labels + b->size * kNumClasses);
        batches.push_back(v);
      }
      return batches;
    };
    for (const int ranks : {2, 3}) {
      for (int64_t epoch = 0; epoch < 2; ++epoch) {
        const auto whole = collect(options(), epoch);
        std::vector<std::vector<std::vector<float>>> shards;
        for (int r = 0; r < ranks; ++r) {
          LoaderOptions o = options();
          o.shard_rank = r, o.shard_count = ranks;
          shards.push_back(collect(o, epoch));
          ASSERT_EQ(shards.back().size(), whole.size()) << "rank " << r;
        }
        for (size_t b = 0; b < whole.size(); ++b) {
          // Reassemble: each shard holds (ids, pixels, labels) of its images; split by image count.
          std::vector<float> ids, px, labels;
          for (int r = 0; r < ranks; ++r) {
            const auto& v = shards[size_t(r)][b];
            const size_t n = v.size() / size_t(1 + 3 * t.S * t.S + kNumClasses);
            ids.insert(ids.end(), v.begin(), v.begin() + long(n));
            px.insert(px.end(), v.begin() + long(n), v.begin() + long(n + n * 3 * t.S * t.S));
            labels.insert(labels.end(), v.begin() + long(n + n * 3 * t.S * t.S), v.end());
          }
          std::vector<float> joined = ids;
          joined.insert(joined.end(), px.begin(), px.end());
          joined.insert(joined.end(), labels.begin(), labels.end());
          EXPECT_EQ(joined, whole[b]) << (train ? "train" : "eval") << ", " << ranks << " ranks, epoch " << epoch
                                      << ", batch " << b;
        }
      }
    }
  }
}

// Direct chunk reads (pread at the chunk's file address, Note [direct chunk reads]) give what HDF5
// reads, from many threads at once; an image never written (unreadable) reads as zeros.
TEST(DataPacked, DirectReadsMatchHdf5) {
  cxr::test::ScratchDir dir("packed_direct");
  const int S = 24;
  const int64_t n = 40;
  std::vector<LabelRow> rows(n);
  for (int64_t i = 0; i < n; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "%08d_000.png", static_cast<int>(i + 1));
    rows[i].image = name, rows[i].patient_id = i + 1;
  }
  const std::string path = dir / "direct.h5";
  std::vector<uint8_t> px(static_cast<size_t>(n) * S * S);
  for (size_t j = 0; j < px.size(); ++j) px[j] = static_cast<uint8_t>(j * 2654435761u >> 13);
  {
    PackedMeta meta;
    meta.image_size = S;
    PackedWriter w(path, rows, std::vector<Split>(n, Split::Train), meta);
    for (int64_t i = 0; i < n; ++i)
      if (i == 7) w.mark_unreadable(i);
      else w.write_image(i, px.data() + i * S * S);
    w.finish();
  }
  PackedDataset d(path);
  std::vector<int64_t> idx(n * 3);
  for (size_t k = 0; k < idx.size(); ++k) idx[k] = static_cast<int64_t>((k * 17) % n);
  std::vector<uint8_t> got(idx.size() * S * S, 0xAB);
#pragma omp parallel for num_threads(4)
  for (int64_t k = 0; k < static_cast<int64_t>(idx.size()); ++k) d.read_image(idx[k], got.data() + k * S * S);
  for (size_t k = 0; k < idx.size(); ++k) {
    const int64_t i = idx[k];
    for (int j = 0; j < S * S; ++j) {
      const uint8_t want = i == 7 ? 0 : px[i * S * S + j];
      ASSERT_EQ(got[k * S * S + j], want) << "image " << i << " pixel " << j;
    }
  }
}

TEST(DataSynth, DeterministicAllClassesAndBoxes) {
  SynthOptions o;
  o.patients = 400, o.size = 64, o.seed = 7;
  SynthResult a = synth_labels(o), b = synth_labels(o);
  ASSERT_EQ(a.rows.size(), b.rows.size());
  EXPECT_GT(a.rows.size(), 800u);  // several images per patient
  std::array<int64_t, kNumClasses> pos{};
  for (size_t i = 0; i < a.rows.size(); ++i) {
    ASSERT_EQ(a.rows[i].labels, b.rows[i].labels);
    for (int k = 0; k < kNumClasses; ++k) pos[k] += a.rows[i].labels[k];
  }
  for (int k = 0; k < kNumClasses; ++k) EXPECT_GE(pos[k], 12) << kClassNames[k];
  EXPECT_GT(pos[3], pos[13] * 4);  // Infiltration far more common than Hernia
  // Images: deterministic, one box per finding, inside the image (1024 scale), and the finding changes the image.
  for (int k = 0; k < kNumClasses; ++k) {
    LabelRow r;
    r.image = "00000001_000.png";
    const std::vector<uint8_t> normal = synth_image(r, 64, 1, nullptr);
    r.labels[k] = 1;
    std::vector<BBox> boxes, boxes2;
    const std::vector<uint8_t> img = synth_image(r, 64, 1, &boxes), img2 = synth_image(r, 64, 1, &boxes2);
    EXPECT_EQ(img, img2);
    ASSERT_EQ(boxes.size(), 1u) << kClassNames[k];
    EXPECT_EQ(boxes[0].cls, k);
    EXPECT_GE(boxes[0].x, 0);
    EXPECT_LE(boxes[0].x + boxes[0].w, 1024.001);
    EXPECT_LE(boxes[0].y + boxes[0].h, 1024.001);
    double diff = 0;
    for (size_t j = 0; j < img.size(); ++j) diff += std::abs(int(img[j]) - int(normal[j]));
    EXPECT_GT(diff / img.size(), 0.5) << kClassNames[k] << " leaves the image almost unchanged";
  }
}

}  // namespace
}  // namespace cxr::io
