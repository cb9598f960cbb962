// Localisation scores (tools/cam_scores.h) on hand-made maps whose answers are worked out by hand in
// the comments, and against an independent implementation: scipy.ndimage.label and numpy on random
// smooth maps (tests/fixtures/cam_scores_scipy.json, written by make_cam_box_fixture.py).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/error.h"
#include "test_util.h"
#include "tools/cam_scores.h"

namespace cxr::test {
namespace {

using app::PixelBox;
using nlohmann::json;

void expect_box(const PixelBox& got, const PixelBox& want) {
  EXPECT_EQ(got.x, want.x);
  EXPECT_EQ(got.y, want.y);
  EXPECT_EQ(got.w, want.w);
  EXPECT_EQ(got.h, want.h);
}

// 4 x 3 map, total mass 1+2+3+4 = 10:
//   1 2 0 0
//   0 3 0 4
//   0 0 0 0
const std::vector<float> kSmall = {1, 2, 0, 0, 0, 3, 0, 4, 0, 0, 0, 0};

TEST(CamScores, EnergyInsideSharesOfTheMass) {
  const float* m = kSmall.data();
  // {0,0,2,1} holds the centres (0.5,0.5) and (1.5,0.5): 1 + 2 = 3 of 10.
  EXPECT_DOUBLE_EQ(app::energy_inside(m, 4, 3, {{0, 0, 2, 1}}), 0.3);
  // Adding {1,0,1,2} (centres with x = 1.5: values 2 and 3): the union is {1, 2, 3} = 6, not 8 (the
  // pixel of value 2 lies in both boxes and counts once).
  EXPECT_DOUBLE_EQ(app::energy_inside(m, 4, 3, {{0, 0, 2, 1}, {1, 0, 1, 2}}), 0.6);
  // A box mostly outside the map: {3,-5,10,10} holds the column x = 3 (0, 4, 0): 4 of 10.
  EXPECT_DOUBLE_EQ(app::energy_inside(m, 4, 3, {{3, -5, 10, 10}}), 0.4);
  // Closed box: {0,0,0.5,0.5} has the centre (0.5,0.5) on its corner: 1 of 10.
  EXPECT_DOUBLE_EQ(app::energy_inside(m, 4, 3, {{0, 0, 0.5, 0.5}}), 0.1);
  EXPECT_EQ(app::energy_inside(m, 4, 3, {}), 0.0) << "no boxes: nothing inside";
  const std::vector<float> zero(12, 0.0f);
  EXPECT_EQ(app::energy_inside(zero.data(), 4, 3, {{0, 0, 4, 3}}), 0.0) << "an all-zero map gives 0";
}

TEST(CamScores, CamBoxTakesTheLargestComponentNotTheMaximum) {
  // 6 x 5: a 5-pixel blob of 0.5 at the top left and a 2-pixel blob holding the maximum (1.0, 0.9).
  std::vector<float> m(30, 0.0f);
  for (int i : {0, 1, 6, 7, 12}) m[size_t(i)] = 0.5f;  // (0,0) (1,0) (0,1) (1,1) (0,2)
  m[3 * 6 + 4] = 1.0f, m[3 * 6 + 5] = 0.9f;            // (4,3) (5,3)
  PixelBox b;
  // Cut 0.4 * 1.0: both blobs pass; the larger (5 > 2 pixels) wins: x 0..1, y 0..2.
  ASSERT_TRUE(app::cam_box(m.data(), 6, 5, 0.4, &b));
  expect_box(b, {0, 0, 2, 3});
  // Cut 0.6: only the small blob passes: x 4..5, y 3.
  ASSERT_TRUE(app::cam_box(m.data(), 6, 5, 0.6, &b));
  expect_box(b, {4, 3, 2, 1});
  // Cut 1.0 * max: the maximum's pixel alone (pixels >= the cut, so the maximum always passes).
  ASSERT_TRUE(app::cam_box(m.data(), 6, 5, 1.0, &b));
  expect_box(b, {4, 3, 1, 1});
}

TEST(CamScores, CamBoxJoinsDiagonalNeighbours) {
  // 6 x 3: a diagonal chain (0,0) (1,1) (2,2) and a horizontal pair (4,0) (5,0), all 1.0. With
  // 8-connectivity the chain is one component of 3 > 2: box {0,0,3,3}. With 4-connectivity it would
  // be three singletons and the pair would win ({4,0,2,1}).
  std::vector<float> m(18, 0.0f);
  for (int i : {0, 7, 14, 4, 5}) m[size_t(i)] = 1.0f;
  PixelBox b;
  ASSERT_TRUE(app::cam_box(m.data(), 6, 3, 0.5, &b));
  expect_box(b, {0, 0, 3, 3});
}

TEST(CamScores, CamBoxTieGoesToTheComponentOfTheFirstPixel) {
  // 4 x 3: a vertical pair (3,0) (3,1) and a horizontal pair (0,2) (1,2), both of size 2. Row-major,
  // the first lit pixel is (3,0) (index 3 < 8): its component wins, though the other has smaller x.
  std::vector<float> m(12, 0.0f);
  for (int i : {3, 7, 8, 9}) m[size_t(i)] = 1.0f;
  PixelBox b;
  ASSERT_TRUE(app::cam_box(m.data(), 4, 3, 0.5, &b));
  expect_box(b, {3, 0, 1, 2});
}

TEST(CamScores, CamBoxOnAnEmptyMapAndBadFractions) {
  const std::vector<float> zero(12, 0.0f);
  PixelBox b{7, 7, 7, 7};
  EXPECT_FALSE(app::cam_box(zero.data(), 4, 3, 0.15, &b));
  expect_box(b, {7, 7, 7, 7});  // untouched
  EXPECT_THROW(app::cam_box(kSmall.data(), 4, 3, 0.0, &b), Error);
  EXPECT_THROW(app::cam_box(kSmall.data(), 4, 3, 1.5, &b), Error);
}

TEST(CamScores, IouAndIobbByHand) {
  const PixelBox a{0, 0, 4, 4}, b{2, 2, 4, 4}, inner{1, 1, 2, 2};
  // a & b = [2,4] x [2,4] = 4; union 16 + 16 - 4 = 28.
  EXPECT_DOUBLE_EQ(app::box_iou(a, b), 4.0 / 28.0);
  EXPECT_DOUBLE_EQ(app::box_iobb(a, b), 4.0 / 16.0);  // over the predicted box's area
  // A predicted box inside the truth: IoBB 1, IoU 4 / 16; swapped, IoBB = 4 / 16.
  EXPECT_DOUBLE_EQ(app::box_iobb(a, inner), 1.0);
  EXPECT_DOUBLE_EQ(app::box_iou(a, inner), 0.25);
  EXPECT_DOUBLE_EQ(app::box_iobb(inner, a), 0.25);
  EXPECT_EQ(app::box_iou(a, {4, 0, 2, 2}), 0.0) << "touching edges share no area";
  EXPECT_EQ(app::box_iou(a, {9, 9, 1, 1}), 0.0);
  EXPECT_EQ(app::box_iobb(a, {1, 1, 0, 2}), 0.0) << "a predicted box without area";
  EXPECT_EQ(app::box_iobb({1, 1, 2, -1}, a), 0.0) << "a truth box without area";
  EXPECT_EQ(app::box_iou({1, 1, 0, 0}, {1, 1, 0, 0}), 0.0);
}

TEST(CamScores, ScorePairByHand) {
  // 8 x 8: a 2x2 block of 1.0 at x, y = 2..3 and one pixel 0.2 at (6,6); mass 4.2.
  std::vector<float> m(64, 0.0f);
  for (int i : {18, 19, 26, 27}) m[size_t(i)] = 1.0f;
  m[6 * 8 + 6] = 0.2f;
  // Truth {1,1,2,2} holds the centres x, y in {1.5, 2.5}: of the block only (2,2). Truth {5,5,3,3}
  // holds (6,6). Cut 0.5: the block, predicted box {2,2,2,2}.
  const std::vector<PixelBox> truth = {{1, 1, 2, 2}, {5, 5, 3, 3}};
  const app::PairScore s = app::score_pair(m.data(), 8, 8, truth, 0.0, 0.5);
  EXPECT_TRUE(s.hit) << "(2,2) holds the maximum and its centre (2.5,2.5) is in the first box";
  EXPECT_NEAR(s.energy, 1.2 / 4.2, 1e-7) << "(1.0 + 0.2) / 4.2; 0.2f differs from 0.2 by ~1e-9";
  EXPECT_TRUE(s.has_box);
  // First box & {2,2,2,2} = [2,3] x [2,3] = 1: IoU 1 / (4 + 4 - 1), IoBB 1 / 4; the second: 0.
  EXPECT_DOUBLE_EQ(s.iou, 1.0 / 7.0);
  EXPECT_DOUBLE_EQ(s.iobb, 0.25);

  const std::vector<float> zero(64, 0.0f);
  const app::PairScore z = app::score_pair(zero.data(), 8, 8, truth, 0.0, 0.5);
  EXPECT_FALSE(z.hit || z.has_box);
  EXPECT_EQ(z.energy + z.iou + z.iobb, 0.0);
}

app::PairScore pair(bool hit, double energy, double iou, double iobb, bool has_box = true) {
  app::PairScore s;
  s.hit = hit, s.energy = energy, s.iou = iou, s.iobb = iobb, s.has_box = has_box;
  return s;
}

TEST(CamScores, TallyJsonSchemaSubsetsAndNulls) {
  app::LocalisationTally t(0.5, 0.15);
  t.add("Mass", pair(true, 0.6, 0.3, 0.8), true);
  t.add("Mass", pair(false, 0.2, 0.05, 0.25), false);  // IoBB exactly 0.25: found at 0.25 (>=)
  t.add("Nodule", pair(false, 0.1, 0.0, 0.0, false), false);
  const json j = t.to_json();
  EXPECT_EQ(j["pairs"], 3);
  EXPECT_EQ(j["tp_pairs"], 1);
  EXPECT_EQ(j["threshold"], 0.5);
  EXPECT_EQ(j["cam_threshold"], 0.15);
  EXPECT_EQ(j["iobb_thresholds"], json({0.1, 0.25, 0.5, 0.75, 0.9}));
  const json& all = j["overall"]["all"];
  EXPECT_EQ(all["pairs"], 3);
  EXPECT_DOUBLE_EQ(all["pointing_game"].get<double>(), 1.0 / 3);
  EXPECT_DOUBLE_EQ(all["energy_pointing_game"].get<double>(), 0.3);  // (0.6 + 0.2 + 0.1) / 3
  EXPECT_DOUBLE_EQ(all["iou_mean"].get<double>(), 0.35 / 3);
  EXPECT_DOUBLE_EQ(all["iobb_mean"].get<double>(), 1.05 / 3);
  // IoBB 0.8, 0.25, 0: found at 0.1 and 0.25 by two, at 0.5 and 0.75 by one, at 0.9 by none.
  EXPECT_EQ(all["iobb_found"],
            json({{"0.1", 2.0 / 3}, {"0.25", 2.0 / 3}, {"0.5", 1.0 / 3}, {"0.75", 1.0 / 3}, {"0.9", 0.0}}));
  // IoU 0.3, 0.05, 0: found at 0.1 and 0.25 by one.
  EXPECT_EQ(all["iou_found"],
            json({{"0.1", 1.0 / 3}, {"0.25", 1.0 / 3}, {"0.5", 0.0}, {"0.75", 0.0}, {"0.9", 0.0}}));
  const json& tp = j["overall"]["true_positive"];  // the first Mass pair alone
  EXPECT_EQ(tp["pairs"], 1);
  EXPECT_EQ(tp["pointing_game"], 1.0);
  EXPECT_EQ(tp["energy_pointing_game"], 0.6);
  EXPECT_EQ(tp["iobb_found"]["0.9"], 0.0);
  EXPECT_EQ(tp["iobb_found"]["0.75"], 1.0);
  EXPECT_EQ(j["per_class"]["Mass"]["all"]["pairs"], 2);
  EXPECT_EQ(j["per_class"]["Mass"]["all"]["pointing_game"], 0.5);
  const json& nod_tp = j["per_class"]["Nodule"]["true_positive"];  // no true positive: nulls
  EXPECT_EQ(nod_tp["pairs"], 0);
  for (const char* key : {"pointing_game", "energy_pointing_game", "iou_mean", "iobb_mean"})
    EXPECT_TRUE(nod_tp[key].is_null()) << key;
  for (const auto& [k, v] : nod_tp["iobb_found"].items()) EXPECT_TRUE(v.is_null()) << k;
  EXPECT_EQ(j["per_class"]["Nodule"]["all"]["pointing_game"], 0.0);
  EXPECT_EQ(j["per_class"].size(), 2u);
  EXPECT_THROW(app::LocalisationTally(0.5, 0.0), Error);
}

TEST(CamScores, TableRowsAndDashes) {
  app::LocalisationTally t(0.5, 0.15);
  t.add("Mass", pair(true, 0.6, 0.3, 0.8), true);
  t.add("Nodule", pair(false, 0.1, 0.0, 0.0, false), false);
  const std::string s = app::localisation_table(t.to_json());
  // Mass: 1 pair, PG 1, energy 0.6, found at 0.1/0.25/0.5 (IoBB 0.8), 1 tp pair, tp PG 1.
  EXPECT_NE(s.find("Mass                      1  1.000   0.600   1.000   1.000   1.000        1  1.000"),
            std::string::npos)
      << s;
  // Nodule: no true positive, so its tp PG is a dash.
  EXPECT_NE(s.find("Nodule                    1  0.000   0.100   0.000   0.000   0.000        0      -"),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("overall                   2  0.500   0.350   0.500   0.500   0.500        1  1.000"),
            std::string::npos)
      << s;
}

// ---- against scipy.ndimage.label and numpy ----------------------------------------------------

TEST(CamScores, AgreesWithScipyOnRandomSmoothMaps) {
  const std::string path = source_path("tests/fixtures/cam_scores_scipy.json");
  std::ifstream f(path);
  ASSERT_TRUE(f) << "cannot open " << path;
  const json fx = json::parse(f);
  ASSERT_EQ(fx["cases"].size(), 20u);
  for (const json& c : fx["cases"]) {
    const int64_t w = c["w"], h = c["h"];
    SCOPED_TRACE(std::to_string(w) + "x" + std::to_string(h) + " fraction " + c["fraction"].dump());
    std::vector<float> m;
    for (const json& q : c["map_q16"]) m.push_back(float(q.get<int64_t>()) / 65536.0f);  // exact
    ASSERT_EQ(int64_t(m.size()), w * h);
    PixelBox b;
    ASSERT_TRUE(app::cam_box(m.data(), w, h, c["fraction"].get<double>(), &b));
    const auto want = c["cam_box"].get<std::vector<double>>();
    expect_box(b, {want[0], want[1], want[2], want[3]});
    std::vector<PixelBox> truths;
    for (const json& t : c["boxes"]) truths.push_back({t[0], t[1], t[2], t[3]});
    // Exact equality: map values are multiples of 2^-16 and box corners of 1/8, so every sum and
    // area is exact in double on both sides and each ratio is one correctly rounded division.
    for (size_t i = 0; i < truths.size(); ++i) {
      EXPECT_EQ(app::energy_inside(m.data(), w, h, {truths[i]}), c["energy_each"][i].get<double>()) << i;
      EXPECT_EQ(app::box_iou(truths[i], b), c["iou"][i].get<double>()) << i;
      EXPECT_EQ(app::box_iobb(truths[i], b), c["iobb"][i].get<double>()) << i;
    }
    EXPECT_EQ(app::energy_inside(m.data(), w, h, truths), c["energy_union"].get<double>());
  }
}

}  // namespace
}  // namespace cxr::test
