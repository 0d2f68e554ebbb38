// Segmentation Dice and detection mAP: hand-built cases, and random cases
// against torchmetrics, pycocotools and MGCA's own Dice code
// (localization_reference.py, run with the venv's Python).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <numeric>
#include <random>

#include "mgca/eval/localization_metrics.h"
#include "mgca/util/error.h"
#include "support/test_support.h"

namespace mgca::eval {
namespace {
using io::Box;

TEST(Dice, HandBuiltCasesIncludingEmptyMasks) {
  const std::vector<uint8_t> empty(16, 0);
  std::vector<uint8_t> four(16, 0), two(16, 0), other(16, 0);
  four[0] = four[1] = four[4] = four[5] = 1;
  two[0] = two[1] = 1;
  other[15] = 1;
  EXPECT_EQ(image_dice(empty.data(), empty.data(), 16), 1.0);  // nothing there, nothing found
  EXPECT_EQ(image_dice(two.data(), empty.data(), 16), 0.0);    // a false alarm on a healthy image
  EXPECT_EQ(image_dice(empty.data(), four.data(), 16), 0.0);   // a miss
  EXPECT_DOUBLE_EQ(image_dice(two.data(), four.data(), 16), 2.0 * 2 / 6);
  EXPECT_EQ(image_dice(other.data(), four.data(), 16), 0.0);
  EXPECT_EQ(image_dice(four.data(), four.data(), 16), 1.0);
  DiceMean mean;
  EXPECT_THROW(mean.mean(), Error);
  mean.add(empty.data(), empty.data(), 16);
  mean.add(two.data(), four.data(), 16);
  EXPECT_DOUBLE_EQ(mean.mean(), (1.0 + 2.0 / 3) / 2);
}

TEST(BoxIou, CocoAreasAndMgcaNmsPixelConvention) {
  EXPECT_DOUBLE_EQ(box_iou({0, 0, 10, 10}, {0, 0, 10, 5}), 0.5);
  EXPECT_DOUBLE_EQ(box_iou({0, 0, 10, 10}, {10, 0, 20, 10}), 0.0);
  EXPECT_DOUBLE_EQ(box_iou({0, 0, 2, 2}, {1, 1, 3, 3}), 1.0 / 7);
  // +1 pixel extents: 3x3 boxes sharing a 2x2 corner.
  EXPECT_NEAR(nms_iou({0, 0, 2, 2}, {1, 1, 3, 3}), 4.0 / 14, 1e-12);
}

TEST(DetectionMap, HandBuiltCases) {
  // One target, one detection at IoU exactly 0.5: a hit at 0.4, 0.45, 0.5 of the 8 thresholds.
  MapOptions options;
  auto r = mean_average_precision({{{{0, 0, 10, 5}, 0.9}}}, {{{0, 0, 10, 10}}}, options);
  EXPECT_DOUBLE_EQ(r.map, 3.0 / 8);
  EXPECT_EQ(r.images, 1);
  // A perfect detection, then a false positive with a lower score: AP 1.
  r = mean_average_precision({{{{0, 0, 10, 10}, 0.9}, {{20, 20, 30, 30}, 0.1}}}, {{{0, 0, 10, 10}}}, options);
  EXPECT_DOUBLE_EQ(r.map, 1.0);
  // The false positive first: precision 1/2 at recall 1 → AP 0.5.
  r = mean_average_precision({{{{0, 0, 10, 10}, 0.1}, {{20, 20, 30, 30}, 0.9}}}, {{{0, 0, 10, 10}}}, options);
  EXPECT_DOUBLE_EQ(r.map, 0.5);
  // MGCA's subset: an image without detections leaves its targets out; the
  // COCO definition counts them as misses (recall 1/2 → 51 of 101 points).
  const std::vector<std::vector<ScoredBox>> preds = {{{{0, 0, 10, 10}, 0.9}}, {}};
  const std::vector<std::vector<Box>> targets = {{{0, 0, 10, 10}}, {{0, 0, 10, 10}}};
  EXPECT_DOUBLE_EQ(mean_average_precision(preds, targets, options).map, 1.0);
  options.mgca_image_subset = false;
  EXPECT_DOUBLE_EQ(mean_average_precision(preds, targets, options).map, 51.0 / 101);
  // No target anywhere: −1, COCO's "undefined".
  EXPECT_EQ(mean_average_precision({{{{0, 0, 1, 1}, 0.5}}}, {{}}, options).map, -1.0);
  EXPECT_THROW(mean_average_precision({{}}, {}, options), Error);
}

struct DetectionCase {
  std::vector<std::vector<ScoredBox>> predictions;
  std::vector<std::vector<Box>> targets;
};

// Random images with 0–3 targets and 0–6 detections, some near a target,
// some anywhere, scores with ties. Total target counts (of all images and of
// MGCA's subset) are kept coprime with 10 so that no recall lands exactly on
// one of the 101 recall points: there torchmetrics' float32 points and
// pycocotools' float64 points may disagree by one step.
DetectionCase random_case(std::mt19937& gen) {
  std::uniform_real_distribution<float> pos(0.f, 50.f), size(4.f, 14.f), jitter(-3.f, 3.f);
  std::uniform_int_distribution<int> images(4, 10), num_targets(0, 3), num_dets(0, 6), score(1, 12);
  const auto coprime = [](int64_t n) { return n % 2 != 0 && n % 5 != 0; };
  while (true) {
    DetectionCase c;
    const int n = images(gen);
    int64_t all = 0, subset = 0;
    for (int i = 0; i < n; ++i) {
      std::vector<Box> targets;
      for (int t = num_targets(gen); t > 0; --t) {
        const float x = pos(gen), y = pos(gen);
        targets.push_back({x, y, x + size(gen), y + size(gen)});
      }
      std::vector<ScoredBox> dets;
      for (int d = num_dets(gen); d > 0; --d) {
        Box box;
        if (!targets.empty() && gen() % 3 != 0) {
          const Box& t = targets[gen() % targets.size()];
          box = {t.x0 + jitter(gen), t.y0 + jitter(gen), t.x1 + jitter(gen), t.y1 + jitter(gen)};
          if (box.x1 <= box.x0) box.x1 = box.x0 + 1;
          if (box.y1 <= box.y0) box.y1 = box.y0 + 1;
        } else {
          const float x = pos(gen), y = pos(gen);
          box = {x, y, x + size(gen), y + size(gen)};
        }
        dets.push_back({box, score(gen) / 12.0});
      }
      all += static_cast<int64_t>(targets.size());
      if (!targets.empty() && !dets.empty()) subset += static_cast<int64_t>(targets.size());
      c.targets.push_back(targets);
      c.predictions.push_back(dets);
    }
    if (coprime(all) && coprime(subset)) return c;
  }
}

nlohmann::json boxes_json(const std::vector<Box>& boxes) {
  auto out = nlohmann::json::array();
  for (const auto& b : boxes) out.push_back({b.x0, b.y0, b.x1, b.y1});
  return out;
}

TEST(LocalizationMetrics, MatchTorchmetricsPycocotoolsAndMgcaDice) {
  std::mt19937 gen(19);
  std::vector<DetectionCase> cases;
  nlohmann::json doc = {{"detection", nlohmann::json::array()}, {"dice", nlohmann::json::array()}};
  for (int k = 0; k < 30; ++k) {
    cases.push_back(random_case(gen));
    nlohmann::json preds = nlohmann::json::array(), targets = nlohmann::json::array();
    for (size_t i = 0; i < cases.back().targets.size(); ++i) {
      auto ds = nlohmann::json::array();
      for (const auto& d : cases.back().predictions[i]) {
        // Scores are k/12 as float32 on both sides.
        ds.push_back({d.box.x0, d.box.y0, d.box.x1, d.box.y1, static_cast<float>(d.score)});
      }
      preds.push_back(ds);
      targets.push_back(boxes_json(cases.back().targets[i]));
    }
    doc["detection"].push_back({{"predictions", preds}, {"targets", targets},
                                {"thresholds", mgca_map_iou_thresholds()}});
  }
  // Dice: 24 images of 8x8 (a third with empty truth), batches of 8 (all full).
  const int64_t pixels = 64, images = 24;
  std::vector<float> probability(static_cast<size_t>(pixels * images));
  std::vector<uint8_t> truth(probability.size()), predicted(probability.size());
  std::uniform_real_distribution<float> unit(0.f, 1.f);
  for (int64_t i = 0; i < images; ++i) {
    const bool healthy = i % 3 == 0;
    const bool quiet = i % 6 == 0;  // half the healthy images get an empty prediction
    for (int64_t j = 0; j < pixels; ++j) {
      const size_t at = static_cast<size_t>(i * pixels + j);
      truth[at] = !healthy && (j % 8) < 4 && (j / 8) < 3 + i % 4;
      probability[at] = quiet ? 0.2f * unit(gen) : truth[at] ? 0.3f + 0.7f * unit(gen) : 0.6f * unit(gen);
      predicted[at] = probability[at] > 0.5f;
    }
  }
  doc["dice"].push_back({{"pixels", pixels}, {"batch_size", 8}, {"probability", probability},
                         {"truth", std::vector<int>(truth.begin(), truth.end())}});

  test::TempDir dir;
  test::write_text_file(dir / "cases.json", doc.dump());
  const auto script = test::source_dir() / "tests/unit/eval/localization_reference.py";
  const auto result = test::run_command(test::python() + " " + script.string() + " " + (dir / "cases.json").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto reference = nlohmann::json::parse(result.output);

  for (size_t k = 0; k < cases.size(); ++k) {
    const auto& ref = reference["detection"][k];
    MapOptions coco;
    coco.mgca_image_subset = false;
    const double ours_all = mean_average_precision(cases[k].predictions, cases[k].targets, coco).map;
    EXPECT_NEAR(ours_all, ref["torchmetrics"].get<double>(), 1e-6) << "case " << k;
    if (!ref["pycocotools"].is_null()) {
      EXPECT_NEAR(ours_all, ref["pycocotools"].get<double>(), 1e-6) << "case " << k;
    }
    if (!ref["mgca"].is_null()) {
      EXPECT_NEAR(mean_average_precision(cases[k].predictions, cases[k].targets).map, ref["mgca"].get<double>(),
                  1e-6)
          << "case " << k;
    }
  }
  DiceMean dice;
  for (int64_t i = 0; i < images; ++i) {
    dice.add(predicted.data() + i * pixels, truth.data() + i * pixels, pixels);
  }
  EXPECT_NEAR(dice.mean(), reference["dice"][0].get<double>(), 1e-6);
  EXPECT_GT(dice.mean(), 0.2);
  EXPECT_LT(dice.mean(), 0.95);
}

}  // namespace
}  // namespace mgca::eval
