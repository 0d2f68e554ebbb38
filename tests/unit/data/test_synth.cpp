// Synthetic data: deterministic, reports in cleaned form that name the
// findings with their side and zone, labels that match, and real signal: a
// linear classifier on the raw pixels beats chance on the labels and on the
// side of a finding.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <map>
#include <regex>

#include "mgca/data/synth.h"
#include "mgca/io/dataset_file.h"
#include "support/test_support.h"
#include "mgca/util/error.h"

namespace mgca::data {
namespace {

TEST(Synth, DeterministicPerSplitSeedAndIndex) {
  SynthOptions options;
  options.image_size = 64;
  SynthSample a, b, c;
  generate_synth_sample(options, 17, a);
  generate_synth_sample(options, 17, b);
  EXPECT_EQ(a.image, b.image);
  EXPECT_EQ(a.report, b.report);
  EXPECT_EQ(a.labels, b.labels);
  EXPECT_EQ(a.id, "synth-train-00000017");
  options.split = "val";
  generate_synth_sample(options, 17, c);
  EXPECT_NE(a.image, c.image);
  options.split = "train";
  options.seed = 1;
  generate_synth_sample(options, 17, c);
  EXPECT_NE(a.image, c.image);
  // Reusing the output object across sizes gives the same bytes as a fresh one.
  options.seed = 0;
  options.image_size = 128;
  generate_synth_sample(options, 17, a);
  SynthSample fresh;
  generate_synth_sample(options, 17, fresh);
  EXPECT_EQ(a.image, fresh.image);
  EXPECT_EQ(a.image.size(), 128u * 128u);
  EXPECT_EQ(synth_findings(options, 17).size(), fresh.findings.size());
}

// Every lesion gets a box around its own mask pixels, the mask is the union
// of them, and an image without lesions has an empty mask and no boxes.
TEST(Synth, LesionsHaveMasksAndBoxes) {
  SynthOptions options;
  options.image_size = 64;
  options.prevalence = 0.4;
  SynthSample sample;
  int64_t with_lesions = 0, boxed = 0;
  for (int64_t i = 0; i < 200; ++i) {
    generate_synth_sample(options, i, sample);
    const int64_t lesions = std::count_if(sample.findings.begin(), sample.findings.end(),
                                          [](const PlacedFinding& f) { return is_synth_lesion(f.kind); });
    const int64_t pixels = std::count(sample.mask.begin(), sample.mask.end(), uint8_t{1});
    ASSERT_EQ(sample.mask.size(), 64u * 64u);
    EXPECT_LE(static_cast<int64_t>(sample.boxes.size()), lesions) << i;
    if (lesions == 0) {
      EXPECT_EQ(pixels, 0) << i;
      EXPECT_TRUE(sample.boxes.empty()) << i;
      continue;
    }
    ++with_lesions;
    boxed += static_cast<int64_t>(sample.boxes.size());
    std::vector<uint8_t> covered(sample.mask.size(), 0);
    for (const auto& box : sample.boxes) {
      EXPECT_EQ(io::box_problem(box, 64), "") << i;
      for (int64_t y = static_cast<int64_t>(box.y0); y < static_cast<int64_t>(box.y1); ++y) {
        for (int64_t x = static_cast<int64_t>(box.x0); x < static_cast<int64_t>(box.x1); ++x) {
          covered[static_cast<size_t>(y * 64 + x)] = 1;
        }
      }
    }
    for (size_t j = 0; j < covered.size(); ++j) {
      if (sample.mask[j]) {
        ASSERT_TRUE(covered[j]) << "sample " << i << " pixel " << j << " outside every box";
      }
    }
    // Masks are lesion-sized: neither empty nor the whole image.
    EXPECT_GT(pixels, 0) << i;
    EXPECT_LT(pixels, 64 * 64 / 3) << i;
  }
  EXPECT_GT(with_lesions, 50);
  EXPECT_GE(boxed, with_lesions);
}

TEST(Synth, BadOptionsAreErrors) {
  SynthOptions options;
  SynthSample sample;
  options.image_size = 16;
  EXPECT_THROW(generate_synth_sample(options, 0, sample), Error);
  options.image_size = 64;
  options.prevalence = 1.5;
  EXPECT_THROW(generate_synth_sample(options, 0, sample), Error);
  options.prevalence = 0.25;
  options.lesion_scale = 0.0;
  EXPECT_THROW(generate_synth_sample(options, 0, sample), Error);
  options.lesion_scale = 4.5;
  EXPECT_THROW(generate_synth_sample(options, 0, sample), Error);
}

// --lesion-scale grows the focal lesions' masks and boxes and leaves the
// rest of the sample (findings, labels, report, lesion-free images) alone.
TEST(Synth, LesionScaleGrowsFocalLesionsOnly) {
  SynthOptions base, scaled;
  base.image_size = scaled.image_size = 72;
  base.prevalence = scaled.prevalence = 0.4;
  scaled.lesion_scale = 2.0;
  SynthSample a, b;
  int64_t focal = 0, base_pixels = 0, scaled_pixels = 0;
  for (int64_t i = 0; i < 100; ++i) {
    generate_synth_sample(base, i, a);
    generate_synth_sample(scaled, i, b);
    EXPECT_EQ(a.report, b.report) << i;
    EXPECT_EQ(a.labels, b.labels) << i;
    const auto is_focal = [](const PlacedFinding& f) {
      return f.kind == SynthFinding::Consolidation || f.kind == SynthFinding::LungNodule;
    };
    if (std::none_of(a.findings.begin(), a.findings.end(), is_focal)) {
      EXPECT_EQ(a.image, b.image) << i;
      EXPECT_EQ(a.mask, b.mask) << i;
      continue;
    }
    // Sizes compared where the focal lesions are the only lesions.
    const bool only_focal = std::all_of(a.findings.begin(), a.findings.end(), [&](const PlacedFinding& f) {
      return is_focal(f) || !is_synth_lesion(f.kind);
    });
    if (!only_focal) continue;
    ++focal;
    base_pixels += std::count(a.mask.begin(), a.mask.end(), uint8_t{1});
    scaled_pixels += std::count(b.mask.begin(), b.mask.end(), uint8_t{1});
  }
  ASSERT_GT(focal, 10);
  // Twice the radius: over twice the masked pixels (the lung field clips the largest).
  EXPECT_GT(scaled_pixels, 2 * base_pixels);
}

TEST(Synth, ReportsAreCleanAndNameFindingsWithSideAndZone) {
  SynthOptions options;
  options.image_size = 32;
  const std::regex clean("[a-z0-9]+( [a-z0-9]+)+");
  std::vector<double> positives(synth_label_names().size(), 0.0);
  const int n = 2000;
  SynthSample sample;
  for (int i = 0; i < n; ++i) {
    generate_synth_sample(options, i, sample);
    ASSERT_FALSE(sample.sentences.empty());
    std::string joined;
    for (const auto& sentence : sample.sentences) {
      ASSERT_TRUE(std::regex_match(sentence, clean)) << "'" << sentence << "'";
      joined += (joined.empty() ? "" : "\n") + sentence;
    }
    ASSERT_EQ(joined, sample.report);
    bool disease = false;
    for (const auto& f : sample.findings) {
      EXPECT_EQ(sample.labels[static_cast<size_t>(f.kind)], 1.f);
      disease |= f.kind != SynthFinding::SupportDevices;
      if (f.kind == SynthFinding::Cardiomegaly) continue;
      // Some sentence names the finding's side.
      const std::string side = f.side == Side::Left ? "left" : "right";
      EXPECT_NE(sample.report.find(side), std::string::npos) << sample.report;
    }
    EXPECT_EQ(sample.labels.back(), disease ? 0.f : 1.f);
    for (size_t l = 0; l < positives.size(); ++l) positives[l] += sample.labels[l];
  }
  // Each finding at its 25% prevalence (binomial sd ~1%), "No Finding" at 0.75^5.
  for (size_t l = 0; l + 1 < positives.size(); ++l) EXPECT_NEAR(positives[l] / n, 0.25, 0.04) << l;
  EXPECT_NEAR(positives.back() / n, 0.237, 0.04);
}

// Area under the ROC curve by the rank-sum formula (ties get half credit).
double auroc(const torch::Tensor& scores, const torch::Tensor& labels) {
  const auto s = scores.contiguous();
  const auto y = labels.contiguous();
  const float* sp = s.data_ptr<float>();
  const float* yp = y.data_ptr<float>();
  double pos = 0, neg = 0, wins = 0;
  for (int64_t i = 0; i < s.numel(); ++i) {
    if (yp[i] != 1.f) continue;
    ++pos;
    for (int64_t j = 0; j < s.numel(); ++j) {
      if (yp[j] != 0.f) continue;
      wins += sp[i] > sp[j] ? 1.0 : sp[i] == sp[j] ? 0.5 : 0.0;
    }
  }
  for (int64_t j = 0; j < y.numel(); ++j) neg += yp[j] == 0.f;
  return wins / (pos * neg);
}

// Logistic regression on raw pixels (full batch, Adam), scores on held-out samples.
torch::Tensor fit_and_score(const torch::Tensor& x_train, const torch::Tensor& y_train,
                            const torch::Tensor& x_test) {
  torch::manual_seed(0);
  auto mean = x_train.mean(0, true), std = x_train.std(0, true, true) + 1e-3;
  auto xs = (x_train - mean) / std, xt = (x_test - mean) / std;
  torch::nn::Linear linear(xs.size(1), y_train.size(1));
  torch::optim::Adam optimizer(linear->parameters(), torch::optim::AdamOptions(1e-3).weight_decay(1e-3));
  for (int step = 0; step < 150; ++step) {
    optimizer.zero_grad();
    auto loss = torch::binary_cross_entropy_with_logits(linear->forward(xs), y_train);
    loss.backward();
    optimizer.step();
  }
  torch::NoGradGuard no_grad;
  return linear->forward(xt);
}

TEST(Synth, LinearProbeOnPixelsBeatsChance) {
  torch::set_num_threads(2);
  SynthOptions options;
  options.image_size = 64;
  const int64_t n_train = 3000, n_test = 1000, n = n_train + n_test, S = 64;
  const int64_t L = static_cast<int64_t>(synth_label_names().size());
  auto pixels = torch::empty({n, S * S}, torch::kFloat32);
  auto labels = torch::empty({n, L}, torch::kFloat32);
  // Side of the effusion (+1 left, -1 right, 0 none) for the region-level probe.
  std::vector<int> effusion_side(static_cast<size_t>(n), 0);
  SynthSample sample;
  for (int64_t i = 0; i < n; ++i) {
    generate_synth_sample(options, i, sample);
    float* row = pixels.data_ptr<float>() + i * S * S;
    for (int64_t p = 0; p < S * S; ++p) row[p] = static_cast<float>(sample.image[static_cast<size_t>(p)]) / 255.f;
    std::copy(sample.labels.begin(), sample.labels.end(), labels.data_ptr<float>() + i * L);
    for (const auto& f : sample.findings) {
      if (f.kind == SynthFinding::PleuralEffusion) effusion_side[static_cast<size_t>(i)] = f.side == Side::Left ? 1 : -1;
    }
  }
  auto train_x = pixels.slice(0, 0, n_train), test_x = pixels.slice(0, n_train);
  auto scores = fit_and_score(train_x, labels.slice(0, 0, n_train), test_x);
  auto test_y = labels.slice(0, n_train);
  std::map<std::string, double> result;
  double mean = 0;
  for (int64_t l = 0; l < L; ++l) {
    const double a = auroc(scores.select(1, l), test_y.select(1, l));
    result[synth_label_names()[static_cast<size_t>(l)]] = a;
    mean += a / static_cast<double>(L);
    std::printf("  %-18s AUROC %.3f\n", synth_label_names()[static_cast<size_t>(l)].c_str(), a);
  }
  // Chance is 0.5. The large findings must be clearly learnable from pixels.
  EXPECT_GT(result["Cardiomegaly"], 0.8);
  EXPECT_GT(result["Pleural Effusion"], 0.8);
  EXPECT_GT(result["Support Devices"], 0.8);
  EXPECT_GT(mean, 0.75);
  // Every label, the small nodules included (measured 0.65), is above chance.
  for (const auto& [name, a] : result) EXPECT_GT(a, 0.6) << name;

  // Region level: among images with an effusion, which side is it on?
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < n; ++i) {
    if (effusion_side[static_cast<size_t>(i)] != 0) rows.push_back(i);
  }
  const auto index = torch::tensor(rows, torch::kInt64);
  auto side = torch::empty({static_cast<int64_t>(rows.size()), 1});
  for (size_t k = 0; k < rows.size(); ++k) {
    side.data_ptr<float>()[k] = effusion_side[static_cast<size_t>(rows[k])] > 0 ? 1.f : 0.f;
  }
  const int64_t split = static_cast<int64_t>(rows.size()) * 3 / 4;
  auto x = pixels.index_select(0, index);
  auto side_scores = fit_and_score(x.slice(0, 0, split), side.slice(0, 0, split), x.slice(0, split));
  const double side_auroc = auroc(side_scores.select(1, 0), side.slice(0, split).select(1, 0));
  std::printf("  effusion side      AUROC %.3f (%zu images)\n", side_auroc, rows.size());
  EXPECT_GT(side_auroc, 0.8);
}

}  // namespace
}  // namespace mgca::data

namespace mgca::data {
namespace {

// `mgca synth` writes a dataset whose samples are generate_synth_sample's.
TEST(SynthCommand, WritesTheGeneratedSamples) {
  test::TempDir dir;
  const auto out = dir / "synth";
  const auto run = test::run_command(fmt::format("OMP_NUM_THREADS=2 {} synth --out {} --num 50 --image-size 64 "
                                                 "--shard-size 16 --seed 7 --split val",
                                                 test::mgca_program().string(), out.string()));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  auto dataset = io::Dataset::open(out, {.verify_checksums = true});
  ASSERT_EQ(dataset->size(), 50);
  EXPECT_EQ(dataset->manifest().shards.size(), 4u);
  EXPECT_EQ(dataset->manifest().split, "val");
  EXPECT_EQ(dataset->manifest().source, "synth");
  EXPECT_EQ(dataset->manifest().label_names, synth_label_names());
  SynthOptions options;
  options.image_size = 64;
  options.seed = 7;
  options.split = "val";
  SynthSample expected;
  std::vector<uint8_t> image(64 * 64);
  for (int64_t i = 0; i < 50; ++i) {
    generate_synth_sample(options, i, expected);
    dataset->read_image(i, image.data());
    ASSERT_EQ(image, expected.image) << i;
    EXPECT_EQ(dataset->report(i), expected.report);
    EXPECT_EQ(dataset->id(i), expected.id);
    EXPECT_EQ(std::vector<float>(dataset->labels(i), dataset->labels(i) + 7), expected.labels);
    dataset->read_mask(i, image.data());
    EXPECT_EQ(image, expected.mask) << i;
    EXPECT_EQ(dataset->boxes(i).size(), expected.boxes.size()) << i;
  }
  // A second run into the same folder refuses without --overwrite, and works with it.
  const auto again = test::run_command(fmt::format("{} synth --out {} --num 5 --image-size 64",
                                                   test::mgca_program().string(), out.string()));
  EXPECT_EQ(again.exit_code, 1) << again.output;
  EXPECT_NE(again.output.find("already holds a dataset (pass --overwrite"), std::string::npos) << again.output;
  const auto replaced = test::run_command(fmt::format("{} synth --out {} --num 5 --image-size 64 --overwrite",
                                                      test::mgca_program().string(), out.string()));
  ASSERT_EQ(replaced.exit_code, 0) << replaced.output;
  EXPECT_EQ(io::Dataset::open(out)->size(), 5);
  // Bad arguments are usage errors.
  const auto bad = test::run_command(fmt::format("{} synth --out {} --num 5 --image-size 8",
                                                 test::mgca_program().string(), out.string()));
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
}

}  // namespace
}  // namespace mgca::data
