// cxr predict and evaluate from the command line with a model that is not ChestX-ray14's 14 classes,
// and with inputs that cannot be read (issue 14's findings): each row holds its own image's
// probabilities, one column per class of the model; unreadable files are named and make the exit
// status non-zero (as cp and grep do) while the readable ones are still written.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>

#include "engine/init.h"
#include "engine/model.h"
#include "io/checkpoint.h"
#include "io/image.h"
#include "io/weights.h"
#include "test_data_util.h"
#include "test_util.h"

namespace cxr {
namespace {

namespace fs = std::filesystem;

class PredictCli : public ::testing::Test {
 protected:
  void SetUp() override {
    if (test::cxr_binary().empty()) GTEST_SKIP() << "no cxr binary (set CXR_BINARY)";
    // A DenseNet121 with a 2-class head at 32x32, random weights.
    test::save_random_densenet121(dir_ / "two.h5", {"Effusion", "Mass"}, 32, 11);
    for (int i = 0; i < 3; ++i) {  // three different images
      std::vector<uint8_t> px(48 * 48);
      for (size_t j = 0; j < px.size(); ++j) px[j] = uint8_t((j * (7 + 13 * i) + 31 * i) % 251);
      io::write_png(image(i), px.data(), 48, 48, 1);
    }
    test::write_file(dir_ / "bad.png", "not a picture\n");
  }
  std::string image(int i) const { return dir_ / ("img" + std::to_string(i) + ".png"); }
  // CSV rows: image name -> values.
  static std::vector<std::vector<std::string>> rows(const std::string& csv) {
    std::vector<std::vector<std::string>> out;
    std::istringstream in(csv);
    for (std::string line; std::getline(in, line);) {
      std::vector<std::string> cells;
      std::istringstream ls(line);
      for (std::string c; std::getline(ls, c, ',');) cells.push_back(c);
      out.push_back(cells);
    }
    return out;
  }
  test::ScratchDir dir_{"predict_cli"};
};

TEST_F(PredictCli, OtherClassCountGivesEachImageItsOwnRow) {
  const auto batch = test::run_cxr(dir_, "predict --weights '" + (dir_ / "two.h5") +
                                             "' --batch 3 --device cpu --out '" + (dir_ / "all.csv") + "' '" +
                                             image(0) + "' '" + image(1) + "' '" + image(2) + "'");
  ASSERT_EQ(batch.status, 0) << batch.err;
  const auto all = rows(test::read_all(dir_ / "all.csv"));
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all[0], (std::vector<std::string>{"image", "Effusion", "Mass"}));
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(all[size_t(i) + 1].size(), 3u) << "one column per class of the model";
    const auto one =
        test::run_cxr(dir_, "predict --weights '" + (dir_ / "two.h5") + "' --batch 1 --device cpu --out '" +
                                (dir_ / "one.csv") + "' '" + image(i) + "'");
    ASSERT_EQ(one.status, 0) << one.err;
    const auto single = rows(test::read_all(dir_ / "one.csv"));
    ASSERT_EQ(single.size(), 2u);
    EXPECT_EQ(single[1][0], all[size_t(i) + 1][0]);
    for (size_t k = 1; k < 3; ++k)  // printed with 6 decimals; batching may reorder float sums (~1e-7)
      EXPECT_NEAR(std::stod(single[1][k]), std::stod(all[size_t(i) + 1][k]), 2e-6)
          << image(i) << " class " << k;
  }
  EXPECT_NE(all[1][1], all[2][1]) << "different images, different probabilities";
}

TEST_F(PredictCli, UnreadableInputsAreNamedAndFailTheCommand) {
  const std::string model = "predict --weights '" + (dir_ / "two.h5") + "' --device cpu ";
  const auto some = test::run_cxr(
      dir_, model + "--out '" + (dir_ / "some.csv") + "' '" + image(0) + "' '" + (dir_ / "bad.png") + "'");
  EXPECT_NE(some.status, 0);
  EXPECT_NE(some.err.find("bad.png"), std::string::npos) << some.err;
  EXPECT_NE(some.err.find("1 of 2 images could not be read"), std::string::npos) << some.err;
  EXPECT_EQ(rows(test::read_all(dir_ / "some.csv")).size(), 2u) << "the readable image is still written";
  const auto none =
      test::run_cxr(dir_, model + "--out '" + (dir_ / "none.csv") + "' '" + (dir_ / "bad.png") + "'");
  EXPECT_NE(none.status, 0);
  EXPECT_NE(none.err.find("nothing written"), std::string::npos) << none.err;
  EXPECT_FALSE(fs::exists(dir_ / "none.csv"));
}

TEST_F(PredictCli, EvaluateRefusesAModelOfOtherClasses) {
  // A packed dataset is needed only to get past its checks: 4 synthetic patients at 32x32.
  ASSERT_EQ(
      test::run_cxr(dir_, "synth --out '" + (dir_ / "synth") + "' --patients 4 --size 32 --seed 1").status,
      0);
  ASSERT_EQ(test::run_cxr(dir_, "prepare --csv '" + (dir_ / "synth/Data_Entry_2017_v2020.csv") +
                                    "' --images '" + (dir_ / "synth/images") + "' --out '" + (dir_ / "d.h5") +
                                    "' --size 32 --split 0,0,1")
                .status,
            0);
  const auto r = test::run_cxr(dir_, "evaluate --weights '" + (dir_ / "two.h5") + "' --data '" +
                                         (dir_ / "d.h5") + "' --device cpu --quiet");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("the model has 2 classes"), std::string::npos) << r.err;
}

// Values the engine cannot use are refused by the parser, naming the option (issue 14: --log-every 0
// died of SIGFPE, --threads 100000 segfaulted in libgomp, --seed -1 wrapped, --size 7 ran).
TEST(CliNumbers, UnusableValuesAreRefusedNamingTheOption) {
  if (test::cxr_binary().empty()) GTEST_SKIP() << "no cxr binary (set CXR_BINARY)";
  test::ScratchDir dir("cli_numbers");
  const std::string data = " --data '" + (dir / "absent.h5") + "' --out '" + (dir / "run") + "'";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"train" + data + " --log-every 0", "--log-every"},
      {"train" + data + " --batch 0", "--batch"},
      {"train" + data + " --seed -1", "--seed"},
      {"train" + data + " --size 7", "--size"},
      {"train" + data + " --plateau-factor 0", "--plateau-factor"},
      {"train" + data + " --max-steps-per-epoch -3", "--max-steps-per-epoch"},
      {"train" + data + " --lr -1", "--lr"},
      {"evaluate --weights w.h5 --data d.h5 --bootstrap -1", "--bootstrap"},
      {"prepare --csv c.csv --images i --out o.h5 --threads 100000", "--threads"},
      {"prepare --csv c.csv --images i --out o.h5 --threads -2", "--threads"},
      {"prepare --csv c.csv --images i --out o.h5 --size 0", "--size"},
      {"synth --out s --patients 0", "--patients"},
      {"predict --weights w.h5 --out p.csv --batch 0 x.png", "--batch"},
      {"gradcam --weights w.h5 --out g --top-k 0 x.png", "--top-k"},
      {"predict --weights w.h5 --out p.csv --max-image-pixels 0 x.png", "--max-image-pixels"},
  };
  for (const auto& [args, option] : cases) {
    const auto r = test::run_cxr(dir, args);
    EXPECT_NE(r.status, 0) << args;
    EXPECT_NE(r.err.find(option), std::string::npos) << args << "\n" << r.err;
    EXPECT_EQ(r.err.rfind("cxr: error: ", 0), 0u) << args << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one line: " << r.err;
    EXPECT_FALSE(fs::exists(dir / "run")) << args;
  }
}

}  // namespace
}  // namespace cxr
