// safetensors reader/writer: round trips, the golden files written by the
// reference library (read, and rewritten byte for byte), an independent
// Python reader/writer, the real `safetensors` package in both directions,
// and every malformed input the reader rejects.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <filesystem>
#include <fstream>

#include "mgca/io/safetensors.h"
#include "mgca/util/error.h"
#include "support/tensor_checks.h"
#include "support/test_support.h"

namespace mgca::io {
namespace {

using test::error_of;

namespace fs = std::filesystem;
using mgca::test::TempDir;

constexpr double kInf = std::numeric_limits<double>::infinity();
const char* const kDtypes[] = {"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL"};

// The same values as safetensors_reference.py's expected().
torch::Tensor expected(const std::string& dtype, const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  auto i = torch::arange(n, torch::kInt64);
  torch::Tensor t;
  if (dtype == "BOOL") {
    t = (i % 3).eq(0);
  } else if (dtype == "U8") {
    t = ((i * 37 + 200) % 256).to(torch::kUInt8);
  } else {
    auto v = (i * 5) % 11 - 5;
    const auto type = scalar_type_from_dtype(dtype);
    t = torch::isFloatingType(type) ? (v.to(torch::kFloat64) * 0.5).to(type) : v.to(type);
  }
  return t.reshape(shape);
}

std::vector<std::pair<std::string, std::vector<int64_t>>> shapes() {
  return {{"matrix", {2, 3}}, {"empty", {0, 4}}, {"scalar", {}}};
}

std::vector<uint8_t> read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A raw file: 8-byte header length (the real one unless overridden), header, data.
void write_raw(const fs::path& path, const std::string& header, const std::string& data,
               int64_t header_length = -1) {
  uint64_t n = header_length < 0 ? header.size() : static_cast<uint64_t>(header_length);
  std::string bytes(8, '\0');
  std::memcpy(bytes.data(), &n, 8);
  write_bytes(path, bytes + header + data);
}

#define EXPECT_CONTAINS(text, part) \
  EXPECT_NE(std::string(text).find(part), std::string::npos) << "'" << (text) << "' lacks '" << (part) << "'"

std::string python() { return mgca::test::python(); }
fs::path reference_script() { return test::source_dir() / "tests/unit/io/safetensors_reference.py"; }

TEST(Safetensors, RoundTripEveryDtypeEmptyAndScalar) {
  TempDir dir;
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const char* dtype : kDtypes) {
    for (const auto& [kind, shape] : shapes()) tensors.emplace_back(kind + "_" + dtype, expected(dtype, shape));
  }
  // Values that only survive an exact byte copy.
  tensors.emplace_back("random_f32", torch::randn({3, 5, 7}));
  tensors.emplace_back("random_bf16", torch::randn({9}).to(torch::kBFloat16));
  tensors.emplace_back("special_f64", torch::tensor({0.0, -0.0, kInf, -kInf, std::nan(""), 1e-310}));
  const std::map<std::string, std::string> metadata{{"format", "pt"}, {"unicode", "h\xc3\xa9llo \xe2\x9c\x93"}, {"empty", ""}};
  const auto path = dir / "all.safetensors";
  save_safetensors(path, tensors, metadata);
  EXPECT_FALSE(fs::exists(dir / "all.safetensors.tmp"));

  SafetensorsFile file(path);
  EXPECT_EQ(file.metadata(), metadata);
  std::vector<std::string> order;
  for (const auto& [name, unused] : tensors) order.push_back(name);
  EXPECT_EQ(file.names(), order);  // given order, empty tensors included
  EXPECT_EQ(file.header_size() % 8, 0);
  for (const auto& [name, original] : tensors) {
    SCOPED_TRACE(name);
    const auto loaded = file.tensor(name);
    EXPECT_EQ(loaded.scalar_type(), original.scalar_type());
    EXPECT_EQ(loaded.sizes(), original.sizes());
    EXPECT_TRUE(loaded.is_contiguous());
    EXPECT_EQ(file.info(name).numel(), original.numel());
    EXPECT_EQ(file.info(name).num_bytes(), original.numel() * static_cast<int64_t>(original.element_size()));
    if (original.numel() > 0) {
      EXPECT_EQ(std::memcmp(loaded.data_ptr(), original.contiguous().data_ptr(),
                            original.numel() * original.element_size()),
                0);
    }
  }
  EXPECT_EQ(file.tensor("scalar_F32").dim(), 0);
  EXPECT_EQ(file.tensor("scalar_F32").item<float>(), -2.5f);
  // load_safetensors gives the same.
  const auto all = load_safetensors(path);
  EXPECT_EQ(all.size(), tensors.size());
  EXPECT_TRUE(all.at("matrix_I16").equal(expected("I16", {2, 3})));
}

// The header parser (torch-free) and the torch mapping list the same dtypes
// with the same element sizes.
TEST(Safetensors, DtypeTablesAgree) {
  for (const char* dtype : kDtypes) {
    SCOPED_TRACE(dtype);
    EXPECT_EQ(dtype_size(dtype), static_cast<int64_t>(c10::elementSize(scalar_type_from_dtype(dtype))));
    EXPECT_EQ(dtype_from_scalar_type(scalar_type_from_dtype(dtype)), dtype);
  }
  EXPECT_EQ(supported_dtypes(), "F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL");
  EXPECT_EQ(dtype_size("U16"), 0);
  EXPECT_CONTAINS(error_of([] { scalar_type_from_dtype("U16"); }), "unsupported dtype 'U16'");
}

TEST(Safetensors, WritesNonContiguousInputAsItsValues) {
  TempDir dir;
  auto base = torch::arange(24, torch::kFloat32).reshape({4, 6});
  auto transposed = base.t();                              // strides (1, 6)
  auto sliced = base.index({torch::indexing::Slice(), torch::indexing::Slice(1, 5, 2)});  // step 2
  auto expanded = torch::tensor({1, 2, 3}, torch::kInt32).expand({2, 3});  // stride 0
  ASSERT_FALSE(transposed.is_contiguous());
  ASSERT_FALSE(sliced.is_contiguous());
  const auto path = dir / "views.safetensors";
  save_safetensors(path, {{"t", transposed}, {"s", sliced}, {"e", expanded}});
  SafetensorsFile file(path);
  EXPECT_TRUE(file.tensor("t").equal(transposed));
  EXPECT_TRUE(file.tensor("s").equal(sliced));
  EXPECT_TRUE(file.tensor("e").equal(expanded));
  EXPECT_EQ(file.info("t").shape, (std::vector<int64_t>{6, 4}));
  // A tensor that requires grad is written as its data.
  auto param = torch::ones({2}, torch::requires_grad());
  save_safetensors(path, {{"p", param * 3}});
  EXPECT_TRUE(SafetensorsFile(path).tensor("p").equal(torch::full({2}, 3.0f)));
}

TEST(Safetensors, OverwriteIsAtomicAndLeavesNoTemporary) {
  TempDir dir;
  const auto path = dir / "w.safetensors";
  save_safetensors(path, {{"a", torch::ones({2})}});
  save_safetensors(path, {{"b", torch::zeros({3})}});
  SafetensorsFile file(path);
  EXPECT_EQ(file.names(), std::vector<std::string>{"b"});
  EXPECT_FALSE(fs::exists(dir / "w.safetensors.tmp"));
  // A failed write (into a missing folder) leaves nothing behind and names the file.
  const auto bad = dir / "missing" / "x.safetensors";
  EXPECT_CONTAINS(error_of([&] { save_safetensors(bad, {{"a", torch::ones({1})}}); }), "missing/x.safetensors.tmp");
}

TEST(Safetensors, WriterRejectsBadNamesAndDtypes) {
  TempDir dir;
  const auto path = dir / "bad.safetensors";
  EXPECT_CONTAINS(error_of([&] { save_safetensors(path, {{"a", torch::ones({1})}, {"a", torch::ones({1})}}); }),
                  "tensor 'a' for");
  EXPECT_CONTAINS(error_of([&] { save_safetensors(path, {{"__metadata__", torch::ones({1})}}); }), "reserved");
  EXPECT_CONTAINS(error_of([&] { save_safetensors(path, {{"c", torch::ones({1}, torch::kComplexFloat)}}); }),
                  "tensor 'c'");
  EXPECT_CONTAINS(error_of([&] { save_safetensors(path, {{"u", torch::Tensor()}}); }), "undefined");
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(dir / "bad.safetensors.tmp"));
}

// --- the golden files, written by the real safetensors library ------------

fs::path golden(const std::string& name) { return test::shared_data_dir() / "golden" / name; }

double scalar(const SafetensorsFile& file, const std::string& name) {
  return file.tensor(name).to(torch::kFloat64).item<double>();
}

TEST(SafetensorsGolden, MgcaLossFiles) {
  for (const std::string variant : {"b_vit", "c_resnet"}) {
    for (const std::string precision : {"float32", "float64"}) {
      const auto path = golden("mgca_" + variant + "_" + precision + ".safetensors");
      SCOPED_TRACE(path.string());
      SafetensorsFile file(path);
      const bool vit = variant == "b_vit";
      const auto real = precision == "float32" ? torch::kFloat32 : torch::kFloat64;
      EXPECT_EQ(file.names().size(), vit ? 58u : 57u);
      EXPECT_EQ(file.contains("in_img_attn_map"), vit);
      ASSERT_EQ(file.metadata().size(), 2u);
      EXPECT_CONTAINS(file.metadata().at("hparams_json"), vit ? "\"vit_base\"" : "\"resnet_50\"");
      EXPECT_CONTAINS(file.metadata().at("in_sents"), "[\"[CLS]\", \"w0_0\"");
      // Shapes and dtypes from golden/README.md (B 4, D 32, W 12, P 16, K 10, H 4).
      file.tensor("in_img_feat", real, {4, 32});
      file.tensor("in_report_feat", real, {4, 32});
      file.tensor("in_patch_feat", real, {4, 16, 32});
      file.tensor("in_word_feat", real, {4, 12, 32});
      file.tensor("in_proto_weight_raw", real, {10, 32});
      file.tensor("word_sim", real, {4, 12, 12});
      file.tensor("patch_to_word_atten_scores", real, {4, 16, 12});
      if (vit) file.tensor("in_img_attn_map", real, {4, 4, 17, 17});
      const auto q_img = file.tensor("q_img", torch::kFloat32, {4, 10});  // float32 even in float64 files
      EXPECT_TRUE(test::AllClose(q_img.sum(1), torch::ones({4}), 1e-5));
      const auto pad = file.tensor("in_words_pad_mask", torch::kBool, {4, 12});
      EXPECT_TRUE(pad.logical_not().sum(1).equal(torch::tensor({12, 8, 5, 2})));
      const auto emb = file.tensor("img_emb");
      EXPECT_TRUE(test::AllClose(emb.norm(2, 1), torch::ones({4}, real), 1e-6));
      // Loss parts add up (fp32 rounding: a few ulps of ~7).
      const double tol = precision == "float32" ? 4e-6 : 1e-12;
      const double total = scalar(file, "loss_total");
      EXPECT_NEAR(total, scalar(file, "loss_ita") + scalar(file, "loss_local") + scalar(file, "loss_proto"),
                  tol * total);
      EXPECT_NEAR(scalar(file, "loss_ita"), scalar(file, "loss_ita_i2t") + scalar(file, "loss_ita_t2i"), tol * total);
      EXPECT_NEAR(scalar(file, "loss_local"), scalar(file, "loss_patch") + scalar(file, "loss_word"), tol * total);
      EXPECT_TRUE(std::isnan(scalar(file, "acc5")));  // B < 5
    }
    // The float64 file holds the float32 inputs upcast, exactly.
    SafetensorsFile f32(golden("mgca_" + variant + "_float32.safetensors"));
    SafetensorsFile f64(golden("mgca_" + variant + "_float64.safetensors"));
    for (const char* name : {"in_img_feat", "in_word_feat", "in_patch_feat", "in_proto_weight_raw"}) {
      EXPECT_TRUE(f32.tensor(name).to(torch::kFloat64).equal(f64.tensor(name))) << name;
    }
  }
}

TEST(SafetensorsGolden, TextAggregationFiles) {
  for (const std::string precision : {"float32", "float64"}) {
    SafetensorsFile file(golden("text_agg_" + precision + ".safetensors"));
    const auto real = precision == "float32" ? torch::kFloat32 : torch::kFloat64;
    EXPECT_EQ(file.names().size(), 12u);
    EXPECT_EQ(file.metadata().size(), 3u);
    EXPECT_CONTAINS(file.metadata().at("in_token_strings"), "\"##s\"");
    EXPECT_CONTAINS(file.metadata().at("out_sents"), "\"pneumothorax\"");
    EXPECT_TRUE(file.contains("in_vocab") == false && file.metadata().count("in_vocab") == 1);
    const auto ids = file.tensor("in_caption_ids", torch::kInt64, {4, 16});
    const auto mask = file.tensor("in_attention_mask", torch::kInt64, {4, 16});
    file.tensor("in_last_hidden_state", real, {4, 16, 8});
    file.tensor("in_attentions_last", real, {4, 2, 16, 16});
    file.tensor("out_word_feat", real, {4, 15, 8});
    file.tensor("out_words_pad_mask", torch::kBool, {4, 15});
    EXPECT_EQ(ids.index({torch::indexing::Slice(), 0}).eq(2).sum().item<int64_t>(), 4);  // [CLS] = 2 in in_vocab
    EXPECT_TRUE(mask.eq(0).logical_or(mask.eq(1)).all().item<bool>());
  }
}

TEST(SafetensorsGolden, RewritingReproducesTheReferenceBytes) {
  // Header layout (compact JSON, field order, __metadata__ placement, space
  // padding) and data are byte-identical to what the reference wrote.
  TempDir dir;
  int compared = 0;
  for (const auto& entry : fs::directory_iterator(test::shared_data_dir() / "golden")) {
    if (entry.path().extension() != ".safetensors") continue;
    ++compared;
    SCOPED_TRACE(entry.path().string());
    SafetensorsFile file(entry.path());
    std::vector<std::pair<std::string, torch::Tensor>> tensors;
    for (const auto& name : file.names()) tensors.emplace_back(name, file.tensor(name));
    const auto copy = dir / entry.path().filename();
    save_safetensors(copy, tensors, file.metadata());
    EXPECT_TRUE(read_bytes(copy) == read_bytes(entry.path()));
  }
  EXPECT_EQ(compared, 6);
}

// --- an independent implementation in Python ------------------------------

TEST(SafetensorsPython, PythonReadsWhatWeWrite) {
  TempDir dir;
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const char* dtype : kDtypes) {
    for (const auto& [kind, shape] : shapes()) tensors.emplace_back(kind + "_" + dtype, expected(dtype, shape));
  }
  const auto path = dir / "cpp.safetensors";
  save_safetensors(path, tensors, {{"format", "pt"}, {"note", "h\xc3\xa9llo \xe2\x9c\x93 \"quoted\""}});
  const auto result = test::run_command(python() + " " + reference_script().string() + " check " + path.string());
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_CONTAINS(result.output, "ok: 30 tensors");
}

TEST(SafetensorsPython, WeReadWhatPythonWrites) {
  TempDir dir;
  const auto path = dir / "py.safetensors";
  const auto result = test::run_command(python() + " " + reference_script().string() + " write " + path.string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  SafetensorsFile file(path);
  EXPECT_EQ(file.metadata().at("note"), "h\xc3\xa9llo \xe2\x9c\x93 \"quoted\"");
  EXPECT_EQ(file.names().size(), 30u);
  for (const char* dtype : kDtypes) {
    for (const auto& [kind, shape] : shapes()) {
      const std::string name = kind + "_" + dtype;
      const auto want = expected(dtype, shape);
      const auto got = file.tensor(name, want.scalar_type(), shape);
      EXPECT_TRUE(got.equal(want)) << name << ": " << got;
    }
  }
}

// --- the real safetensors package (Hugging Face) ---------------------------

fs::path package_script() { return test::source_dir() / "tests/unit/io/safetensors_package.py"; }

TEST(SafetensorsPackage, ReadsWhatWeWrite) {
  TempDir dir;
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const char* dtype : kDtypes) {
    for (const auto& [kind, shape] : shapes()) tensors.emplace_back(kind + "_" + dtype, expected(dtype, shape));
  }
  const auto path = dir / "cpp.safetensors";
  save_safetensors(path, tensors, {{"format", "pt"}, {"note", "h\xc3\xa9llo \xe2\x9c\x93 \"quoted\""}});
  const auto result = test::run_command(python() + " " + package_script().string() + " check " + path.string());
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_CONTAINS(result.output, "ok: 30 tensors");
}

TEST(SafetensorsPackage, WeReadWhatItWrites) {
  TempDir dir;
  const auto path = dir / "package.safetensors";
  const auto result = test::run_command(python() + " " + package_script().string() + " write " + path.string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  SafetensorsFile file(path);
  EXPECT_EQ(file.metadata(), (std::map<std::string, std::string>{
                                 {"format", "pt"}, {"note", "h\xc3\xa9llo \xe2\x9c\x93 \"quoted\""}}));
  EXPECT_EQ(file.names().size(), 30u);
  for (const char* dtype : kDtypes) {
    for (const auto& [kind, shape] : shapes()) {
      const std::string name = kind + "_" + dtype;
      const auto want = expected(dtype, shape);
      const auto got = file.tensor(name, want.scalar_type(), shape);
      EXPECT_TRUE(got.equal(want)) << name << ": " << got;
    }
  }
}

// --- malformed files: each error names the file, the tensor and the problem

class SafetensorsMalformed : public ::testing::Test {
 protected:
  TempDir dir_;
  fs::path path_ = dir_ / "bad.safetensors";
  std::string open_error() {
    return error_of([&] { SafetensorsFile file(path_); });
  }
};

TEST_F(SafetensorsMalformed, MissingFile) {
  EXPECT_CONTAINS(open_error(), "cannot open safetensors file " + path_.string());
}

TEST_F(SafetensorsMalformed, TooShortForTheLength) {
  write_bytes(path_, "abc");
  const auto e = open_error();
  EXPECT_CONTAINS(e, path_.string());
  EXPECT_CONTAINS(e, "truncated: 3 bytes");
}

TEST_F(SafetensorsMalformed, HeaderLengthBeyondFile) {
  write_raw(path_, "{}", "", 1000);
  EXPECT_CONTAINS(open_error(), "header length 1000 bytes runs past the end of the file (10 bytes)");
}

TEST_F(SafetensorsMalformed, BadJson) {
  write_raw(path_, "{\"a\": {\"dtype\": \"F32\",", "");
  EXPECT_CONTAINS(open_error(), "is not valid JSON");
}

TEST_F(SafetensorsMalformed, HeaderNotAnObject) {
  write_raw(path_, "[1, 2]  ", "");
  EXPECT_CONTAINS(open_error(), "the header must be a JSON object, found array");
}

TEST_F(SafetensorsMalformed, EntryNotAnObject) {
  write_raw(path_, R"({"w": [1, 2]})", "");
  const auto e = open_error();
  EXPECT_CONTAINS(e, "tensor 'w' in " + path_.string());
  EXPECT_CONTAINS(e, "must be an object");
}

TEST_F(SafetensorsMalformed, MissingFields) {
  write_raw(path_, R"({"w": {"dtype": "F32", "data_offsets": [0, 4]}})", std::string(4, '\0'));
  EXPECT_CONTAINS(open_error(), "tensor 'w' in " + path_.string() + ": missing or non-array 'shape'");
  write_raw(path_, R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})", std::string(4, '\0'));
  EXPECT_CONTAINS(open_error(), "tensor 'w' in " + path_.string() + ": 'data_offsets' must be an array [begin, end]");
  write_raw(path_, R"({"w": {"shape": [1], "data_offsets": [0, 4]}})", std::string(4, '\0'));
  EXPECT_CONTAINS(open_error(), "missing or non-string 'dtype'");
}

TEST_F(SafetensorsMalformed, UnknownDtype) {
  write_raw(path_, R"({"w": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]}})", std::string(4, '\0'));
  const auto e = open_error();
  EXPECT_CONTAINS(e, "tensor 'w' in " + path_.string());
  EXPECT_CONTAINS(e, "unknown or unsupported dtype 'F8_E4M3'");
}

TEST_F(SafetensorsMalformed, NegativeOrFractionalShape) {
  write_raw(path_, R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}})", "");
  EXPECT_CONTAINS(open_error(), "tensor 'w' in " + path_.string() + ": shape entry must not be negative: -1");
  write_raw(path_, R"({"w": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 0]}})", "");
  EXPECT_CONTAINS(open_error(), "shape entry must be a non-negative integer, found 1.5");
}

TEST_F(SafetensorsMalformed, OffsetsBeyondData) {
  // A file cut short inside its data.
  write_raw(path_, R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", std::string(10, '\0'));
  const auto e = open_error();
  EXPECT_CONTAINS(e, "tensor 'w' in " + path_.string());
  EXPECT_CONTAINS(e, "data_offsets [0, 16] run past the data section (10 bytes)");
}

TEST_F(SafetensorsMalformed, OffsetsReversed) {
  write_raw(path_, R"({"w": {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}})", std::string(8, '\0'));
  EXPECT_CONTAINS(open_error(), "tensor 'w' in " + path_.string() + ": data_offsets [8, 4] end before they begin");
}

TEST_F(SafetensorsMalformed, SizeNotMatchingShape) {
  write_raw(path_, R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", std::string(8, '\0'));
  const auto e = open_error();
  EXPECT_CONTAINS(e, "tensor 'w' in " + path_.string());
  EXPECT_CONTAINS(e, "hold 8 bytes, but F32 [3] needs 12 bytes");
}

TEST_F(SafetensorsMalformed, Overlap) {
  write_raw(path_,
            R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
            R"( "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
            std::string(12, '\0'));
  const auto e = open_error();
  EXPECT_CONTAINS(e, path_.string());
  EXPECT_CONTAINS(e, "tensors 'a' [0, 8] and 'b' [4, 12] overlap");
}

TEST_F(SafetensorsMalformed, GapAndTrailingBytes) {
  write_raw(path_, R"({"a": {"dtype": "U8", "shape": [2], "data_offsets": [2, 4]}})", std::string(4, '\0'));
  EXPECT_CONTAINS(open_error(), "bytes [0, 2) of the data section belong to no tensor (gap before 'a')");
  write_raw(path_, R"({"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}})", std::string(5, '\0'));
  EXPECT_CONTAINS(open_error(), "the data section has 5 bytes but the tensors cover only 2");
}

TEST_F(SafetensorsMalformed, DuplicateName) {
  write_raw(path_,
            R"({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},)"
            R"( "a": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}})",
            std::string(2, '\0'));
  EXPECT_CONTAINS(open_error(), "the header names 'a' twice");
}

TEST_F(SafetensorsMalformed, MetadataNotStrings) {
  write_raw(path_, R"({"__metadata__": {"epoch": 3}})", "");
  EXPECT_CONTAINS(open_error(), "__metadata__ entry 'epoch' must be a string, found number");
  write_raw(path_, R"({"__metadata__": "x"})", "");
  EXPECT_CONTAINS(open_error(), "__metadata__ must be an object of strings");
}

TEST_F(SafetensorsMalformed, InvalidBoolByte) {
  write_raw(path_, R"({"m": {"dtype": "BOOL", "shape": [2], "data_offsets": [0, 2]}})", std::string("\x01\x07", 2));
  SafetensorsFile file(path_);
  EXPECT_CONTAINS(error_of([&] { file.tensor("m"); }), "tensor 'm' in " + path_.string() + ": BOOL element 1 has byte value 7");
}

TEST_F(SafetensorsMalformed, MissingTensorListsClosestNames) {
  save_safetensors(path_, {{"encoder.layer.0.weight", torch::ones({1})},
                           {"encoder.layer.1.weight", torch::ones({1})},
                           {"decoder.bias", torch::ones({1})}});
  SafetensorsFile file(path_);
  const auto e = error_of([&] { file.tensor("encoder.layer.2.weight"); });
  EXPECT_CONTAINS(e, "tensor 'encoder.layer.2.weight' not found in " + path_.string());
  EXPECT_CONTAINS(e, "3 tensors; closest names: 'encoder.layer.0.weight', 'encoder.layer.1.weight', 'decoder.bias'");
  EXPECT_CONTAINS(error_of([&] { file.info("nope"); }), "tensor 'nope' not found");
  EXPECT_FALSE(file.contains("nope"));
  save_safetensors(path_, {});
  EXPECT_CONTAINS(error_of([&] { SafetensorsFile(path_).tensor("x"); }), "the file holds no tensors");
}

TEST_F(SafetensorsMalformed, WrongDtypeOrShapeInCheckedRead) {
  save_safetensors(path_, {{"w", torch::zeros({2, 3}, torch::kFloat16)}});
  SafetensorsFile file(path_);
  EXPECT_CONTAINS(error_of([&] { file.tensor("w", torch::kFloat32, {2, 3}); }),
                  "tensor 'w' in " + path_.string() + ": expected F32 [2, 3], found F16 [2, 3]");
  EXPECT_CONTAINS(error_of([&] { file.tensor("w", torch::kFloat16, {3, 2}); }),
                  "expected F16 [3, 2], found F16 [2, 3]");
  EXPECT_NO_THROW(file.tensor("w", torch::kFloat16, {2, 3}));
}

}  // namespace
}  // namespace mgca::io
