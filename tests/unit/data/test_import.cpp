// Importers on small trees built here from real data: Open-I XML reports
// from the NLM archive with the real sample images, plus bad inputs of every
// kind; and the table-based layouts (csv, chexpert, rsna, mimic-cxr,
// medmnist) on made-up tables around the real images.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "mgca/comm/communicator.h"
#include "mgca/data/image.h"
#include "mgca/data/import.h"
#include "mgca/io/dataset_file.h"
#include "mgca/util/error.h"
#include "support/test_support.h"

namespace mgca::data {
namespace {
namespace fs = std::filesystem;

fs::path samples() { return test::shared_data_dir() / "cxr-samples"; }

void run_ok(const std::string& command) {
  const auto result = test::run_command(command);
  ASSERT_EQ(result.exit_code, 0) << command << "\n" << result.output;
}

std::vector<uint8_t> preprocessed(const fs::path& image, int64_t S) {
  std::vector<uint8_t> out(static_cast<size_t>(S * S));
  resize_and_pad(read_image_file(image), S, out.data());
  return out;
}

std::vector<uint8_t> image_of(const io::Dataset& dataset, int64_t index) {
  std::vector<uint8_t> out(static_cast<size_t>(dataset.image_size() * dataset.image_size()));
  dataset.read_image(index, out.data());
  return out;
}

ImportResult import(const ImportOptions& options) {
  auto single = comm::Communicator::single();
  return run_import(*single, options);
}

// ---------------------------------------------------------------- Open-I

class OpenITree : public ::testing::Test {
 protected:
  void SetUp() override {
    in_ = dir_ / "NLMCXR";
    fs::create_directories(in_ / "images");
    const fs::path archive = test::shared_data_dir() / "openi/NLMCXR_reports.tgz";
    run_ok(fmt::format("tar xzf {} -C {} ecgen-radiology/1.xml ecgen-radiology/2.xml ecgen-radiology/3.xml "
                       "ecgen-radiology/4.xml ecgen-radiology/5.xml ecgen-radiology/16.xml ecgen-radiology/566.xml",
                       archive.string(), in_.string()));
    const fs::path images = in_ / "images";
    // Real images under the names the NLM archive uses.
    fs::copy_file(samples() / "nih-00000001_000.png", images / "CXR1_1_IM-0001-3001.png");  // 8-bit gray
    fs::copy_file(samples() / "tbx11k-tb0005.png", images / "CXR1_1_IM-0001-4001.png");     // RGB
    fs::copy_file(samples() / "16747_3_1.jpg", images / "CXR2_IM-0652-1001.jpg");           // JPEG
    // 16-bit gray: the 8-bit NIH image times 257, written by PIL.
    run_ok(mgca::test::python() + fmt::format(" -c \"import numpy as np; from PIL import Image; "
                       "a = np.asarray(Image.open('{}')).astype(np.uint16) * 257; "
                       "Image.fromarray(a).save('{}')\"",
                       (samples() / "nih-00027426_000.png").string(), (images / "CXR2_IM-0652-2001.png").string()));
    // Bad images: a truncated PNG, a missing one (CXR3_IM-1384-2001), a text file named .png.
    const std::string png = test::read_text_file(samples() / "nih-00000001_000.png");
    test::write_text_file(images / "CXR3_IM-1384-1001.png", png.substr(0, png.size() / 3));
    test::write_text_file(images / "CXR4_IM-2050-1001.png", "not an image\n");
    fs::copy_file(samples() / "nih-00027426_000.png", images / "CXR4_IM-2050-2001.png");
    // Report 5 edited down to one token; report 16 is empty in the archive; 566 has no images.
    const fs::path five = in_ / "ecgen-radiology/5.xml";
    std::string xml = test::read_text_file(five);
    const auto replace_section = [&](const std::string& label, const std::string& text) {
      const std::string open = "<AbstractText Label=\"" + label + "\">";
      const size_t begin = xml.find(open) + open.size();
      xml.replace(begin, xml.find("</AbstractText>", begin) - begin, text);
    };
    replace_section("FINDINGS", "");
    replace_section("IMPRESSION", "Normal.");
    test::write_text_file(five, xml);
    for (const std::string id : {"CXR5_IM-2117-1003002", "CXR5_IM-2117-1004003", "CXR16_IM-0389-1001",
                                 "CXR16_IM-0389-2001"}) {
      fs::copy_file(samples() / "nih-00027426_000.png", images / (id + ".png"));
    }
    test::write_text_file(in_ / "ecgen-radiology/9999.xml", "<eCitation><Abstract>unclosed");
  }

  test::TempDir dir_{"mgca-openi"};
  fs::path in_;
};

TEST_F(OpenITree, ImportsCleanedReportsLabelsAndSplitsAndCountsEverySkip) {
  ImportOptions options;
  options.format = "openi";
  options.in = in_;
  options.out = dir_ / "out";
  options.image_size = 128;
  options.threads = 2;
  options.labels_file = test::shared_data_dir() / "openi/file2label.json";
  options.splits_file = test::shared_data_dir() / "openi/r2gen_annotation.json";
  const ImportResult result = import(options);

  const ImportSummary& total = result.total;
  EXPECT_EQ(total.imported, 5);
  EXPECT_EQ(total.skipped.at(skip::kMissingImage), 1);
  EXPECT_EQ(total.skipped.at(skip::kCorruptImage), 2);  // truncated PNG, text file named .png
  EXPECT_EQ(total.skipped.at(skip::kShortReport), 2);   // report 5, both images
  EXPECT_EQ(total.skipped.at(skip::kEmptyReport), 2);   // report 16, both images
  EXPECT_EQ(total.skipped.at(skip::kNoImages), 1);      // report 566
  EXPECT_EQ(total.skipped.at(skip::kBadXml), 1);        // 9999.xml
  EXPECT_EQ(total.total_skipped(), 9);
  EXPECT_EQ(total.notes.at("16-bit image scaled to 8 bits"), 1);
  EXPECT_EQ(total.notes.at("colour image converted to gray"), 2);  // the RGB PNG and the JPEG
  // The reasons carry the item and the cause.
  const auto& corrupt = total.examples.at(skip::kCorruptImage);
  ASSERT_EQ(corrupt.size(), 2u);
  EXPECT_NE(corrupt[0].find("CXR3_IM-1384-1001: "), std::string::npos) << corrupt[0];
  EXPECT_NE(corrupt[0].find("truncated"), std::string::npos) << corrupt[0];
  EXPECT_NE(corrupt[1].find("not a PNG or JPEG"), std::string::npos) << corrupt[1];
  EXPECT_NE(total.examples.at(skip::kMissingImage)[0].find("CXR3_IM-1384-2001"), std::string::npos);
  EXPECT_NE(total.examples.at(skip::kShortReport)[0].find("0 token(s) left after cleaning"), std::string::npos);

  // R2Gen splits: study 1 train, 2 test, 4 val; 3, 5 and 16 are not in it.
  auto train = io::Dataset::open(options.out / "train", {.verify_checksums = true});
  auto test_split = io::Dataset::open(options.out / "test");
  auto val = io::Dataset::open(options.out / "val");
  ASSERT_EQ(train->size(), 2);
  ASSERT_EQ(test_split->size(), 2);
  ASSERT_EQ(val->size(), 1);
  EXPECT_FALSE(fs::exists(options.out / "unlisted"));  // every unlisted item was skipped
  EXPECT_EQ(train->image_size(), 128);
  EXPECT_EQ(train->manifest().source, "openi");
  EXPECT_EQ(train->manifest().split, "train");
  EXPECT_EQ(train->manifest().label_names.size(), 14u);
  EXPECT_EQ(train->manifest().label_names[8], "No Finding");

  // Reports cleaned as MGCA does: impression then findings, one sentence a
  // line, lower-case \w+ tokens; numbered lists split at "N.".
  EXPECT_EQ(train->id(0), "CXR1_1_IM-0001-3001");
  EXPECT_EQ(train->id(1), "CXR1_1_IM-0001-4001");
  const std::string report1 =
      "normal chest x xxxx\n"
      "the cardiac silhouette and mediastinum size are within normal limits\n"
      "there is no pulmonary edema\n"
      "there is no focal consolidation\n"
      "there are no xxxx of a pleural effusion\n"
      "there is no evidence of pneumothorax";
  EXPECT_EQ(train->report(0), report1);
  EXPECT_EQ(train->report(1), report1);
  EXPECT_EQ(test_split->report(0),
            "no acute pulmonary findings\n"
            "borderline cardiomegaly\n"
            "midline sternotomy xxxx\n"
            "enlarged pulmonary arteries\n"
            "clear lungs\n"
            "inferior xxxx xxxx xxxx");
  EXPECT_EQ(val->report(0),
            "bullous emphysema and interstitial fibrosis\n"
            "probably scarring in the left apex although difficult to exclude a cavitary lesion\n"
            "opacities in the bilateral upper lobes could represent scarring however the absence of "
            "comparison exam recommend short interval followup radiograph or ct thorax to document resolution\n"
            "there are diffuse bilateral interstitial and alveolar opacities consistent with chronic "
            "obstructive lung disease and bullous emphysema\n"
            "there are irregular opacities in the left lung apex that could represent a cavitary lesion in "
            "the left lung apex\n"
            "there are streaky opacities in the right upper lobe xxxx scarring\n"
            "the cardiomediastinal silhouette is normal in size and contour\n"
            "there is no pneumothorax or large pleural effusion");

  // Labels from file2label.json (alphabetical CheXpert order).
  const std::vector<float> no_finding = {0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0};
  const std::vector<float> report2 = {0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  const std::vector<float> report4 = {0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 0, 0, 0};
  EXPECT_EQ(std::vector<float>(train->labels(0), train->labels(0) + 14), no_finding);
  EXPECT_EQ(std::vector<float>(test_split->labels(1), test_split->labels(1) + 14), report2);
  EXPECT_EQ(std::vector<float>(val->labels(0), val->labels(0) + 14), report4);

  // Pixels: MGCA preprocessing of the decoded images; the 16-bit copy equals its 8-bit source.
  const fs::path images = in_ / "images";
  EXPECT_EQ(image_of(*train, 0), preprocessed(images / "CXR1_1_IM-0001-3001.png", 128));
  EXPECT_EQ(image_of(*train, 1), preprocessed(images / "CXR1_1_IM-0001-4001.png", 128));
  EXPECT_EQ(test_split->id(0), "CXR2_IM-0652-1001");
  EXPECT_EQ(image_of(*test_split, 0), preprocessed(images / "CXR2_IM-0652-1001.jpg", 128));
  EXPECT_EQ(image_of(*test_split, 1), preprocessed(samples() / "nih-00027426_000.png", 128));

  // The overall summary file.
  const auto summary = nlohmann::json::parse(test::read_text_file(options.out / "summary.json"));
  EXPECT_EQ(summary["total"]["imported"], 5);
  EXPECT_EQ(summary["total"]["skipped_total"], 9);
  EXPECT_EQ(summary["splits"]["unlisted"]["skipped_total"], 6);  // study 5 is in R2Gen's train
  EXPECT_EQ(summary["splits"]["train"]["skipped_total"], 2);
  const auto manifest_info = nlohmann::json::parse(train->manifest().info_json);
  EXPECT_EQ(manifest_info["summary"]["imported"], 2);
}

TEST_F(OpenITree, CommandPrintsTheSummaryAndRefusesToOverwrite) {
  const std::string command = fmt::format("{} prep --format openi --in {} --out {} --image-size 64",
                                          test::mgca_program().string(), in_.string(), (dir_ / "cli").string());
  const auto result = test::run_command(command);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  // Without label and split files in --in: one split "all", no labels.
  EXPECT_NE(result.output.find("imported 5, skipped 9"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("missing image"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("e.g. CXR3_IM-1384-2001"), std::string::npos) << result.output;
  auto all = io::Dataset::open(dir_ / "cli" / "all");
  EXPECT_EQ(all->size(), 5);
  EXPECT_FALSE(all->has_labels());
  const auto again = test::run_command(command);
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.output.find("--overwrite"), std::string::npos) << again.output;
  // --split and --limit.
  const auto limited = test::run_command(command + " --overwrite --limit 3");
  ASSERT_EQ(limited.exit_code, 0) << limited.output;
  EXPECT_EQ(io::Dataset::open(dir_ / "cli" / "all")->size(), 3);  // items 1-3: two images of report 1, the JPEG
  const auto missing = test::run_command(fmt::format("{} prep --format openi --in {} --out {}",
                                                     test::mgca_program().string(), (dir_ / "nope").string(),
                                                     (dir_ / "x").string()));
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.output.find("is not a folder"), std::string::npos) << missing.output;
}

// ---------------------------------------------------------------- csv

TEST(CsvImport, LabelsSplitsAndBadRows) {
  test::TempDir dir("mgca-csv");
  fs::create_directories(dir / "img");
  fs::copy_file(samples() / "nih-00000001_000.png", dir / "img/a.png");
  fs::copy_file(samples() / "16747_3_1.jpg", dir / "img/b.jpg");
  fs::copy_file(samples() / "nih-00027426_000.png", dir / "img/c.png");
  test::write_text_file(dir / "table.csv",
                        "image_path,report,split,Edema,Effusion\n"
                        "img/a.png,\"Heart is normal. Lungs are clear, no effusion.\",train,0,1\n"
                        "img/b.jpg,\"Multi-line\nreport: small left effusion. Stable.\",test,,-1\n"
                        "img/c.png,one sentence only here,train,1\n"               // a missing column (line 5)
                        "img/c.png,\"Mild edema, no effusion.\",train,1,maybe\n"  // a bad label
                        "img/missing.png,No acute disease today.,train,0,0\n"
                        "img/c.png,,train,0,0\n");                                 // empty report
  ImportOptions options;
  options.format = "csv";
  options.in = dir / "table.csv";
  options.out = dir / "out";
  options.image_size = 64;
  const ImportResult result = import(options);
  EXPECT_EQ(result.total.imported, 2);
  EXPECT_EQ(result.total.skipped.at(skip::kBadRow), 1);
  EXPECT_EQ(result.total.skipped.at(skip::kBadLabel), 1);
  EXPECT_EQ(result.total.skipped.at(skip::kMissingImage), 1);
  EXPECT_EQ(result.total.skipped.at(skip::kEmptyReport), 1);
  EXPECT_NE(result.total.examples.at(skip::kBadRow)[0].find("line 5: 4 fields, the header has 5"), std::string::npos)
      << result.total.examples.at(skip::kBadRow)[0];
  EXPECT_NE(result.total.examples.at(skip::kBadLabel)[0].find("'Effusion' = 'maybe'"), std::string::npos);
  auto train = io::Dataset::open(options.out / "train");
  auto test_split = io::Dataset::open(options.out / "test");
  EXPECT_EQ(train->manifest().label_names, (std::vector<std::string>{"Edema", "Effusion"}));
  ASSERT_EQ(train->size(), 1);
  EXPECT_EQ(train->id(0), "img/a.png");
  EXPECT_EQ(train->report(0), "heart is normal\nlungs are clear no effusion");
  EXPECT_EQ(train->labels(0)[0], 0.f);
  EXPECT_EQ(train->labels(0)[1], 1.f);
  EXPECT_EQ(test_split->report(0), "multi line report small left effusion");  // "Stable" is one token: dropped
  EXPECT_TRUE(std::isnan(test_split->labels(0)[0]));
  EXPECT_EQ(test_split->labels(0)[1], -1.f);
  EXPECT_EQ(image_of(*test_split, 0), preprocessed(samples() / "16747_3_1.jpg", 64));

  // A table without a required column is an error naming the file and column.
  test::write_text_file(dir / "bad.csv", "image_path,text\nimg/a.png,hello there friend\n");
  options.in = dir / "bad.csv";
  options.out = dir / "out2";
  try {
    import(options);
    FAIL() << "no error for a missing column";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("bad.csv': column 'report' is missing"), std::string::npos) << error.what();
  }
}

// A quote that never closes is one counted bad row: the rows after it are
// read again, not swallowed into its report (rows in = imported + skipped).
// A label outside {1, 0, -1, empty} is refused at import, not later by eval.
TEST(CsvImport, UnterminatedQuotesAndNonDatasetLabelsAreCountedRows) {
  test::TempDir dir("mgca-csv-quotes");
  fs::create_directories(dir / "img");
  fs::copy_file(samples() / "nih-00000001_000.png", dir / "img/a.png");
  fs::copy_file(samples() / "16747_3_1.jpg", dir / "img/b.jpg");
  test::write_text_file(dir / "table.csv",
                        "image_path,report,split,Edema,Effusion\n"
                        "img/a.png,\"Heart is normal. Lungs are clear.\",train,0,1\n"
                        "img/a.png,\"Unterminated report. Heart is normal.\n"                  // line 3
                        "img/b.jpg,\"Mild edema, stable effusion.\",train,1,0\n"
                        "img/b.jpg,\"Mild edema, no effusion.\",train,7.5,0\n"               // label 7.5
                        "img/b.jpg,\"Multi-line\nreport: small left effusion.\",test,,-1\n"  // lines 6-7
                        "img/a.png,\"never closes, the file ends inside it\n");              // line 8
  ImportOptions options;
  options.format = "csv";
  options.in = dir / "table.csv";
  options.out = dir / "out";
  options.image_size = 32;
  const ImportResult result = import(options);
  EXPECT_EQ(result.total.imported, 3);
  EXPECT_EQ(result.total.skipped.at(skip::kUnterminatedQuote), 2);
  EXPECT_EQ(result.total.skipped.at(skip::kBadLabel), 1);
  EXPECT_EQ(result.total.imported + result.total.total_skipped(), 6);
  const auto& examples = result.total.examples.at(skip::kUnterminatedQuote);
  ASSERT_EQ(examples.size(), 2u);
  EXPECT_NE(examples[0].find("table.csv:3: "), std::string::npos) << examples[0];
  EXPECT_NE(examples[0].find("followed by text"), std::string::npos) << examples[0];
  EXPECT_NE(examples[1].find("table.csv:8: "), std::string::npos) << examples[1];
  EXPECT_NE(examples[1].find("the file ends inside it"), std::string::npos) << examples[1];
  EXPECT_NE(result.total.examples.at(skip::kBadLabel)[0].find("'Edema' = '7.5'"), std::string::npos);
  auto train = io::Dataset::open(options.out / "train");
  ASSERT_EQ(train->size(), 2);
  EXPECT_EQ(train->report(1), "mild edema stable effusion");
}

TEST(CsvImport, RandomSplitIsByIdAndSeed) {
  test::TempDir dir("mgca-csv-split");
  std::string table = "image_path,report\n";
  for (int i = 0; i < 60; ++i) {
    fs::copy_file(samples() / "nih-00000001_000.png", dir / fmt::format("{}.png", i));
    table += fmt::format("{}.png,the lungs are clear number {}\n", i, i);
  }
  test::write_text_file(dir / "t.csv", table);
  ImportOptions options;
  options.format = "csv";
  options.in = dir / "t.csv";
  options.out = dir / "out";
  options.image_size = 16;
  options.random_split = "train=0.5,val=0.25,test=0.25";
  const ImportResult result = import(options);
  EXPECT_EQ(result.total.imported, 60);
  int64_t total = 0;
  for (const std::string split : {"train", "val", "test"}) {
    const auto dataset = io::Dataset::open(options.out / split);
    total += dataset->size();
    EXPECT_GT(dataset->size(), 5) << split;
  }
  EXPECT_EQ(total, 60);
  options.out = dir / "again";
  options.threads = 3;
  import(options);
  EXPECT_EQ(io::Dataset::open(options.out / "val")->size(), io::Dataset::open(dir / "out/val")->size());
}

// ---------------------------------------------------------------- CheXpert, RSNA, MIMIC, MedMNIST

TEST(ChexpertImport, FrontalViewsWithRawLabels) {
  test::TempDir dir("mgca-chexpert");
  const fs::path root = dir / "CheXpert-v1.0-small";
  fs::create_directories(root / "train/patient00001/study1");
  fs::copy_file(samples() / "16747_3_1.jpg", root / "train/patient00001/study1/view1_frontal.jpg");
  fs::copy_file(samples() / "16747_3_1.jpg", root / "train/patient00001/study1/view2_lateral.jpg");
  const std::string header =
      "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,Lung Opacity,"
      "Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,Pleural Other,"
      "Fracture,Support Devices\n";
  test::write_text_file(root / "train.csv",
                        header +
                            "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg,Female,68,Frontal,AP,"
                            "1.0,,,,,,,,,0.0,,,,1.0\n"
                            "CheXpert-v1.0-small/train/patient00001/study1/view2_lateral.jpg,Female,68,Lateral,,"
                            ",,,,,,-1.0,,,,,,,\n"
                            "CheXpert-v1.0-small/train/patient00002/study1/view1_frontal.jpg,Male,40,Frontal,PA,"
                            ",,1.0,,,,,,,,,,,\n");
  ImportOptions options;
  options.format = "chexpert";
  options.in = root;
  options.out = dir / "out";
  options.image_size = 32;
  const ImportResult result = import(options);
  EXPECT_EQ(result.total.imported, 1);
  EXPECT_EQ(result.total.skipped.at(skip::kNotFrontal), 1);
  EXPECT_EQ(result.total.skipped.at(skip::kMissingImage), 1);
  auto train = io::Dataset::open(options.out / "train");
  ASSERT_EQ(train->size(), 1);
  EXPECT_EQ(train->report(0), "");
  EXPECT_EQ(train->manifest().label_names[0], "No Finding");
  EXPECT_EQ(train->labels(0)[0], 1.f);
  EXPECT_TRUE(std::isnan(train->labels(0)[1]));
  EXPECT_EQ(train->labels(0)[9], 0.f);
  EXPECT_EQ(train->labels(0)[13], 1.f);
}

TEST(RsnaImport, OnePatientOneSampleWithItsBoxesBadInputsCounted) {
  test::TempDir dir("mgca-rsna");
  fs::create_directories(dir / "images");
  fs::copy_file(samples() / "nih-00000001_000.png", dir / "images/p1.png");
  fs::copy_file(samples() / "nih-00027426_000.png", dir / "images/p2.png");
  fs::copy_file(samples() / "nih-00027426_000.png", dir / "images/p5.png");
  fs::copy_file(samples() / "nih-00027426_000.png", dir / "images/p6.png");
  test::write_text_file(dir / "images/p3.dcm", "DICM");
  // The public stage_2_train_labels.csv layout: one row per box.
  test::write_text_file(dir / "stage_2_train_labels.csv",
                        "patientId,x,y,width,height,Target\n"
                        "p1,,,,,0\n"
                        "p2,64,52,113,179,1\n"
                        "p2,262,52,156,253,1\n"
                        "p3,,,,,0\n"
                        "p4,,,,,0\n"
                        "p5,264,abc,213,379,1\n"     // a box that is not numbers
                        "p6,400,152,300,179,1\n");   // a box past the image's right edge (512 px)
  ImportOptions options;
  options.format = "rsna";
  options.in = dir.path();
  options.out = dir / "out";
  options.image_size = 32;
  const ImportResult result = import(options);
  // 6 patients in = 2 imported + 4 skipped, each with its reason.
  EXPECT_EQ(result.total.imported, 2);
  EXPECT_EQ(result.total.skipped.at(skip::kDicom), 1);
  EXPECT_EQ(result.total.skipped.at(skip::kMissingImage), 1);
  EXPECT_EQ(result.total.skipped.at(skip::kBadBox), 2);
  auto all = io::Dataset::open(options.out / "all");
  ASSERT_EQ(all->size(), 2);
  EXPECT_TRUE(all->annotations().boxes);
  EXPECT_FALSE(all->annotations().masks);
  EXPECT_EQ(all->id(1), "p2");
  EXPECT_EQ(all->labels(0)[0], 0.f);
  EXPECT_EQ(all->labels(1)[0], 1.f);
  EXPECT_TRUE(all->boxes(0).empty());
  const auto source = read_image_file(dir / "images/p2.png");
  const auto boxes = all->boxes(1);
  ASSERT_EQ(boxes.size(), 2u);
  const std::vector<io::Box> expected = {
      box_in_stored_image({64, 52, 177, 231}, source.width, source.height, 32),
      box_in_stored_image({262, 52, 418, 305}, source.width, source.height, 32)};
  for (size_t k = 0; k < 2; ++k) {
    EXPECT_FLOAT_EQ(boxes[k].x0, expected[k].x0);
    EXPECT_FLOAT_EQ(boxes[k].y0, expected[k].y0);
    EXPECT_FLOAT_EQ(boxes[k].x1, expected[k].x1);
    EXPECT_FLOAT_EQ(boxes[k].y1, expected[k].y1);
  }
  // A 512 × 512 image: the box scales by 32/512 with no padding.
  ASSERT_EQ(source.width, 512);
  ASSERT_EQ(source.height, 512);
  EXPECT_FLOAT_EQ(boxes[0].x0, 64.f / 16);
  EXPECT_FLOAT_EQ(boxes[0].y1, 231.f / 16);
}

TEST(ImageGeometry, BoxFollowsResizeAndPad) {
  // 200 × 100 → 32: resized to 32 × 16, 8 rows of padding above.
  const auto g = resize_and_pad_geometry(200, 100, 32);
  EXPECT_EQ(g.new_w, 32);
  EXPECT_EQ(g.new_h, 16);
  EXPECT_EQ(g.left, 0);
  EXPECT_EQ(g.top, 8);
  const auto box = box_in_stored_image({50, 0, 100, 100}, 200, 100, 32);
  EXPECT_FLOAT_EQ(box.x0, 8.f);
  EXPECT_FLOAT_EQ(box.y0, 8.f);
  EXPECT_FLOAT_EQ(box.x1, 16.f);
  EXPECT_FLOAT_EQ(box.y1, 24.f);
}

TEST(ObjectCxrImport, RectanglesEllipsesPolygonsBecomeBoxesBadInputsCounted) {
  test::TempDir dir("mgca-object-cxr");
  fs::create_directories(dir / "train");
  fs::create_directories(dir / "dev");
  for (const std::string name : {"a", "b", "c", "d", "e", "f"}) {
    fs::copy_file(samples() / "16747_3_1.jpg", dir / "train" / (name + ".jpg"));
  }
  for (const std::string name : {"h", "i"}) fs::copy_file(samples() / "16747_3_1.jpg", dir / "dev" / (name + ".jpg"));
  // The public layout: image_name, annotation ("TYPE x1 y1 x2 y2 ..." objects joined by ';').
  test::write_text_file(dir / "train.csv",
                        "image_name,annotation\n"
                        "a.jpg,0 10 20 110 220;1 300 300 350 380\n"  // rectangle + ellipse
                        "b.jpg,\n"                                    // no foreign object
                        "c.jpg,2 100 100 200 120 150 220\n"           // polygon
                        "d.jpg,3 1 2 3 4\n"                           // unknown type
                        "e.jpg,0 10 20 abc 220\n"                     // not a number
                        "f.jpg,0 10 20 110\n"                         // too few coordinates
                        "g.jpg,0 10 20 110 220\n");                   // no image file
  test::write_text_file(dir / "dev.csv",
                        "image_name,annotation\n"
                        "h.jpg,0 10 20 9000 9000\n"                   // past the image
                        "i.jpg,1 30 40 60 90\n");
  ImportOptions options;
  options.format = "object-cxr";
  options.in = dir.path();
  options.out = dir / "out";
  options.image_size = 32;
  const ImportResult result = import(options);
  // 9 rows in = 4 imported + 5 skipped.
  EXPECT_EQ(result.total.imported, 4);
  EXPECT_EQ(result.total.skipped.at(skip::kBadBox), 4);
  EXPECT_EQ(result.total.skipped.at(skip::kMissingImage), 1);
  const auto source = read_image_file(samples() / "16747_3_1.jpg");
  const auto stored = [&](const io::Box& b) { return box_in_stored_image(b, source.width, source.height, 32); };
  const auto expect_box = [](const io::Box& got, const io::Box& want) {
    EXPECT_FLOAT_EQ(got.x0, want.x0);
    EXPECT_FLOAT_EQ(got.y0, want.y0);
    EXPECT_FLOAT_EQ(got.x1, want.x1);
    EXPECT_FLOAT_EQ(got.y1, want.y1);
  };
  auto train = io::Dataset::open(options.out / "train");
  ASSERT_EQ(train->size(), 3);
  EXPECT_TRUE(train->annotations().boxes);
  ASSERT_EQ(train->boxes(0).size(), 2u);
  expect_box(train->boxes(0)[0], stored({10, 20, 110, 220}));
  expect_box(train->boxes(0)[1], stored({300, 300, 350, 380}));
  EXPECT_EQ(train->labels(0)[0], 1.f);
  EXPECT_TRUE(train->boxes(1).empty());
  EXPECT_EQ(train->labels(1)[0], 0.f);
  ASSERT_EQ(train->boxes(2).size(), 1u);
  expect_box(train->boxes(2)[0], stored({100, 100, 200, 220}));
  auto test_split = io::Dataset::open(options.out / "test");
  ASSERT_EQ(test_split->size(), 1);
  EXPECT_EQ(test_split->id(0), "i.jpg");
  expect_box(test_split->boxes(0)[0], stored({30, 40, 60, 90}));
}

TEST(SiimImport, RunLengthMasksColumnMajorUnionBadInputsCounted) {
  test::TempDir dir("mgca-siim");
  fs::create_directories(dir / "png");
  // 8 wide × 4 tall gray images written by PIL; stored at 8 px: 2 rows of padding above.
  run_ok(mgca::test::python() + fmt::format(" -c \"import numpy as np; from PIL import Image; "
                                            "[Image.fromarray(np.full((4, 8), 100, np.uint8)).save('{}/' + n + '.png') "
                                            "for n in 'abcd']\"",
                                            (dir / "png").string()));
  test::write_text_file(dir / "png/f.dcm", "DICM");
  // The competition's train-rle.csv, header with its space.
  test::write_text_file(dir / "train-rle.csv",
                        "ImageId, EncodedPixels\n"
                        "a, 1 2\n"      // column 0, rows 1-2
                        "a, 5 1\n"      // a second row of the same image: column 1, row 1
                        "b, -1\n"       // no pneumothorax
                        "c, 1 x\n"      // not a number
                        "d, 30 10\n"    // runs past the 32 pixels
                        "e, -1\n"       // no image file
                        "f, -1\n");     // DICOM only
  ImportOptions options;
  options.format = "siim";
  options.in = dir.path();
  options.out = dir / "out";
  options.image_size = 8;
  const ImportResult result = import(options);
  // 6 images in = 2 imported + 4 skipped.
  EXPECT_EQ(result.total.imported, 2);
  EXPECT_EQ(result.total.skipped.at(skip::kBadMask), 2);
  EXPECT_EQ(result.total.skipped.at(skip::kMissingImage), 1);
  EXPECT_EQ(result.total.skipped.at(skip::kDicom), 1);
  auto all = io::Dataset::open(options.out / "all");
  ASSERT_EQ(all->size(), 2);
  EXPECT_TRUE(all->annotations().masks);
  std::vector<uint8_t> mask(64);
  all->read_mask(0, mask.data());
  std::vector<uint8_t> expected(64, 0);
  for (const auto& [x, y] : std::vector<std::pair<int, int>>{{0, 1}, {0, 2}, {1, 1}}) expected[static_cast<size_t>((y + 2) * 8 + x)] = 1;
  EXPECT_EQ(mask, expected);
  EXPECT_EQ(all->labels(0)[0], 1.f);
  all->read_mask(1, mask.data());
  EXPECT_EQ(mask, std::vector<uint8_t>(64, 0));
  EXPECT_EQ(all->labels(1)[0], 0.f);
}

TEST(MimicImport, FrontalJpegsWithSectionedReportsSplitsAndLabels) {
  test::TempDir dir("mgca-mimic");
  const fs::path root = dir / "mimic-cxr-jpg";
  const fs::path study = root / "files/p10/p10000032/s50414267";
  fs::create_directories(study);
  fs::copy_file(samples() / "16747_3_1.jpg", study / "d1.jpg");
  fs::copy_file(samples() / "16747_3_1.jpg", study / "d2.jpg");
  fs::create_directories(root / "files/p11/p11000011/s50000001");
  fs::copy_file(samples() / "16747_3_1.jpg", root / "files/p11/p11000011/s50000001/d4.jpg");
  test::write_text_file(root / "mimic-cxr-2.0.0-metadata.csv",
                        "dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,Rows,Columns\n"
                        "d1,10000032,50414267,CHEST (PA AND LAT),PA,3056,2544\n"
                        "d2,10000032,50414267,CHEST (PA AND LAT),LATERAL,3056,2544\n"
                        "d3,10000032,50414267,CHEST (PA AND LAT),AP,3056,2544\n"
                        "d4,11000011,50000001,CHEST (PORTABLE AP),AP,3056,2544\n");
  test::write_text_file(root / "mimic-cxr-2.0.0-split.csv",
                        "dicom_id,study_id,subject_id,split\nd1,50414267,10000032,train\n"
                        "d2,50414267,10000032,train\nd3,50414267,10000032,train\nd4,50000001,11000011,validate\n");
  std::string chexpert = "subject_id,study_id,Atelectasis,Cardiomegaly,Consolidation,Edema,Enlarged Cardiomediastinum,"
                         "Fracture,Lung Lesion,Lung Opacity,No Finding,Pleural Effusion,Pleural Other,Pneumonia,"
                         "Pneumothorax,Support Devices\n10000032,50414267,,,,,,,,,1.0,,,,,\n";
  test::write_text_file(root / "chexpert.csv", chexpert);
  run_ok(fmt::format("gzip -c {} > {}", (root / "chexpert.csv").string(),
                     (root / "mimic-cxr-2.0.0-chexpert.csv.gz").string()));
  fs::remove(root / "chexpert.csv");
  test::write_text_file(root / "mimic_cxr_sectioned.csv",
                        "study,impression,findings,last_paragraph,comparison\n"
                        "s50414267,No acute cardiopulmonary process.,\"PA and lateral views of the chest. "
                        "Lungs are clear.\",,\n");
  ImportOptions options;
  options.format = "mimic-cxr";
  options.in = root;
  options.out = dir / "out";
  options.image_size = 32;
  const ImportResult result = import(options);
  EXPECT_EQ(result.total.imported, 1);
  EXPECT_EQ(result.total.skipped.at(skip::kNotFrontal), 1);    // d2
  EXPECT_EQ(result.total.skipped.at(skip::kMissingImage), 1);  // d3
  EXPECT_EQ(result.total.skipped.at(skip::kNoReport), 1);      // d4: study not sectioned
  auto train = io::Dataset::open(options.out / "train");
  ASSERT_EQ(train->size(), 1);
  EXPECT_EQ(train->id(0), "d1");
  EXPECT_EQ(train->report(0), "no acute cardiopulmonary process\npa and lateral views of the chest\nlungs are clear");
  EXPECT_EQ(train->labels(0)[8], 1.f);  // No Finding
  EXPECT_TRUE(std::isnan(train->labels(0)[0]));
  EXPECT_EQ(image_of(*train, 0), preprocessed(samples() / "16747_3_1.jpg", 32));
}

// A malformed metadata row is a counted skip and must not shift the studies
// of the rows after it (found by fuzz/mimic_reports.cpp: they read other
// rows' reports, the last ones past the end of the study list).
TEST(MimicImport, BadMetadataRowLeavesLaterStudiesAligned) {
  test::TempDir dir("mgca-mimic-bad-row");
  test::write_text_file(dir / "mimic-cxr-2.0.0-metadata.csv",
                        "dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,Rows,Columns\n"
                        "d0,10000032,50414267,LATERAL,3056,2544\n"  // 6 fields: a bad row
                        "d1,10000032,50414267,CHEST (PA AND LAT),PA,3056,2544\n"
                        "d3,10000764,57375967,CHEST (PORTABLE AP),AP,3056,2544\n");
  test::write_text_file(dir / "mimic_cxr_sectioned.csv",
                        "study,impression,findings,last_paragraph,comparison\n"
                        "s50414267,First study.,Lungs are clear.,,\ns57375967,Second study.,No effusion.,,\n");
  ImportOptions options;
  options.format = "mimic-cxr";
  options.in = dir.path();
  auto source = make_import_source(options);
  auto& items = source->items();
  source->prepare(0, static_cast<int64_t>(items.size()));
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[0].skip_reason, skip::kBadRow);
  EXPECT_EQ(items[1].id, "d1");
  EXPECT_EQ(items[1].impression, "First study.");
  EXPECT_EQ(items[2].id, "d3");
  EXPECT_EQ(items[2].impression, "Second study.");
  EXPECT_EQ(items[2].findings, "No effusion.");
}

TEST(MedmnistImport, NpzSplitsAndLabels) {
  test::TempDir dir("mgca-medmnist");
  run_ok(mgca::test::python() + fmt::format(" -c \"import numpy as np; r = np.random.default_rng(1); "
                     "np.savez_compressed('{0}/chestmnist.npz', "
                     "train_images=r.integers(0, 256, (7, 28, 28), dtype=np.uint8), "
                     "train_labels=r.integers(0, 2, (7, 14), dtype=np.uint8), "
                     "val_images=r.integers(0, 256, (3, 28, 28), dtype=np.uint8), "
                     "val_labels=r.integers(0, 2, (3, 14), dtype=np.uint8)); "
                     "np.savez('{0}/bloodmnist.npz', train_images=r.integers(0, 256, (5, 28, 28, 3), dtype=np.uint8), "
                     "train_labels=np.array([[0], [7], [3], [1], [2]], dtype=np.int64)); "
                     "d = np.load('{0}/chestmnist.npz'); d['val_images'].tofile('{0}/val_images.raw'); "
                     "d['val_labels'].astype(np.float32).tofile('{0}/val_labels.raw')\"",
                     dir.path().string()));
  ImportOptions options;
  options.format = "medmnist";
  options.in = dir / "chestmnist.npz";
  options.out = dir / "chest";
  options.image_size = 28;
  EXPECT_EQ(import(options).total.imported, 10);
  auto val = io::Dataset::open(options.out / "val");
  ASSERT_EQ(val->size(), 3);
  EXPECT_EQ(val->manifest().label_names[2], "effusion");
  const std::string raw = test::read_text_file(dir / "val_images.raw");
  const std::string labels = test::read_text_file(dir / "val_labels.raw");
  for (int64_t i = 0; i < 3; ++i) {
    EXPECT_EQ(val->id(i), fmt::format("val-{:06d}", i));
    const auto image = image_of(*val, i);  // 28 px: stored as is
    EXPECT_EQ(std::string(image.begin(), image.end()), raw.substr(static_cast<size_t>(i * 784), 784));
    EXPECT_EQ(0, std::memcmp(val->labels(i), labels.data() + i * 14 * 4, 14 * 4));
  }
  // A class-index column becomes one-hot columns; RGB becomes gray.
  options.in = dir / "bloodmnist.npz";
  options.out = dir / "blood";
  options.threads = 2;
  EXPECT_EQ(import(options).total.imported, 5);
  auto blood = io::Dataset::open(options.out / "train");
  EXPECT_EQ(blood->manifest().label_names.size(), 8u);
  EXPECT_EQ(blood->labels(1)[7], 1.f);
  EXPECT_EQ(blood->labels(1)[0], 0.f);
}

// Archives whose .npy members lie (found by fuzz/npz.cpp, kept in
// fuzz/corpus/npz/regression-*): each is a clear error naming the file and
// the array, never an allocation of what the header claims, a read past a
// buffer or an out-of-range class index.
TEST(MedmnistImport, GarbledArraysAreClearErrors) {
  test::TempDir dir("mgca-medmnist-garbled");
  run_ok(fmt::format("{} {} {}", mgca::test::python(),
                     (test::source_dir() / "tests/unit/data/garbled_npz.py").string(), dir.path().string()));
  const auto error_for = [&](const std::string& file) {
    ImportOptions options;
    options.format = "medmnist";
    options.in = dir / file;
    return test::error_of([&] {
      auto source = make_import_source(options);
      source->prepare(0, static_cast<int64_t>(source->items().size()));
    });
  };
  const auto expect_error = [&](const std::string& file, const std::string& expected) {
    const std::string error = error_for(file);
    EXPECT_NE(error.find((dir / file).string()), std::string::npos) << error;
    EXPECT_NE(error.find(expected), std::string::npos) << "expected: " << expected << "\nfound: " << error;
  };
  expect_error("huge-shape.npz",
               "array 'train_labels': the .npy header's shape (200000000, 14) needs 2800000000 data bytes, the "
               "member holds 14");
  expect_error("zero-width.npz", "array 'train_images': the .npy header's shape (100000000000, 1, 1) needs");
  for (const auto& [file, value] : {std::pair{"negative-class.npz", "-3"}, {"nan-class.npz", "nan"},
                                    {"fraction-class.npz", "2.5"}}) {
    expect_error(file, fmt::format("train_labels row 1 holds {}: a class-index column holds whole numbers 0 to 999",
                                   value));
  }
  expect_error("long-header.npz", "array 'train_images': .npy header of 70000 bytes; at most 10000 are read");
}

}  // namespace
}  // namespace mgca::data
