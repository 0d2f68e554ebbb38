#include "mgca/data/dataset_output.h"

#include <nlohmann/json.hpp>

#include <fstream>

#include "mgca/comm/communicator.h"
#include "mgca/util/error.h"
#include "mgca/util/files.h"

namespace mgca::data {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {
constexpr size_t kExamplesPerReason = 5;

std::string sidecar_name(int rank) { return fmt::format(".part-r{:05d}.json", rank); }

bool is_our_file(const std::string& name) {
  return name == io::kManifestFileName || name.rfind("part-r", 0) == 0 || name.rfind(".part-r", 0) == 0 ||
         name == std::string(io::kManifestFileName) + ".tmp";
}
}  // namespace

// ---------------------------------------------------------------- summary

void ImportSummary::skip(const std::string& reason, const std::string& example) {
  ++skipped[reason];
  auto& list = examples[reason];
  if (list.size() < kExamplesPerReason) list.push_back(example);
}

int64_t ImportSummary::total_skipped() const {
  int64_t total = 0;
  for (const auto& [reason, count] : skipped) total += count;
  return total;
}

void ImportSummary::merge(const ImportSummary& other) {
  imported += other.imported;
  for (const auto& [reason, count] : other.skipped) skipped[reason] += count;
  for (const auto& [reason, list] : other.examples) {
    auto& mine = examples[reason];
    for (const auto& example : list) {
      if (mine.size() < kExamplesPerReason) mine.push_back(example);
    }
  }
  for (const auto& [what, count] : other.notes) notes[what] += count;
}

std::string ImportSummary::to_json() const {
  json doc = {{"imported", imported}, {"skipped", skipped}, {"examples", examples}, {"notes", notes}};
  doc["skipped_total"] = total_skipped();
  return doc.dump();
}

ImportSummary ImportSummary::from_json(const std::string& text) {
  ImportSummary summary;
  try {
    const json doc = json::parse(text);
    summary.imported = doc.at("imported").get<int64_t>();
    summary.skipped = doc.at("skipped").get<std::map<std::string, int64_t>>();
    summary.examples = doc.at("examples").get<std::map<std::string, std::vector<std::string>>>();
    summary.notes = doc.at("notes").get<std::map<std::string, int64_t>>();
  } catch (const json::exception& error) {
    MGCA_FAIL("import summary is not valid: {}", error.what());
  }
  return summary;
}

std::string ImportSummary::to_text() const {
  std::string text = fmt::format("imported {}, skipped {}\n", imported, total_skipped());
  for (const auto& [reason, count] : skipped) {
    text += fmt::format("  skipped {:>7}  {}\n", count, reason);
    const auto found = examples.find(reason);
    if (found == examples.end()) continue;
    for (const auto& example : found->second) text += fmt::format("           e.g. {}\n", example);
  }
  for (const auto& [what, count] : notes) text += fmt::format("  note    {:>7}  {}\n", count, what);
  return text;
}

// ---------------------------------------------------------------- writer

ParallelDatasetWriter::ParallelDatasetWriter(comm::Communicator& comm, OutputSpec spec)
    : comm_(comm), spec_(std::move(spec)) {
  std::string problem;
  if (comm_.rank() == 0) {
    try {
      if (fs::exists(spec_.dir)) {
        MGCA_CHECK(fs::is_directory(spec_.dir), "output '{}' exists and is not a folder", spec_.dir.string());
        std::vector<fs::path> ours;
        for (const auto& entry : fs::directory_iterator(spec_.dir)) {
          if (is_our_file(entry.path().filename().string())) ours.push_back(entry.path());
        }
        MGCA_CHECK(ours.empty() || spec_.overwrite,
                   "output folder '{}' already holds a dataset (pass --overwrite to replace it)",
                   spec_.dir.string());
        for (const auto& path : ours) fs::remove(path);
      }
      fs::create_directories(spec_.dir);
    } catch (const Error& error) {
      problem = error.message();
    } catch (const std::exception& error) {
      problem = fmt::format("cannot prepare the output folder '{}': {}", spec_.dir.string(), error.what());
    }
  }
  problem = comm_.broadcast_string(problem, 0);
  MGCA_CHECK(problem.empty(), "{}", problem);
  writer_ = std::make_unique<io::ShardedWriter>(spec_.dir, fmt::format("part-r{:05d}", comm_.rank()),
                                                spec_.image_size, spec_.label_names, spec_.shard_size,
                                                spec_.annotations);
}

ParallelDatasetWriter::~ParallelDatasetWriter() = default;

void ParallelDatasetWriter::append(std::string_view id, std::string_view report, const uint8_t* image,
                                   const float* labels, const io::SampleAnnotation* annotation) {
  writer_->append(id, report, image, labels, annotation);
}

int64_t ParallelDatasetWriter::count() const { return writer_ ? writer_->count() : 0; }

ImportSummary ParallelDatasetWriter::finish(const ImportSummary& rank_summary) {
  MGCA_CHECK(writer_ != nullptr, "dataset '{}': finish() called twice", spec_.dir.string());
  const auto shards = writer_->finish();
  writer_.reset();
  {
    json doc = {{"summary", json::parse(rank_summary.to_json())}, {"shards", json::array()}};
    for (const auto& shard : shards) {
      doc["shards"].push_back(
          {{"file", shard.file}, {"count", shard.count}, {"bytes", shard.bytes}, {"sha256", shard.sha256}});
    }
    util::write_file_atomic(spec_.dir / sidecar_name(comm_.rank()), doc.dump());
  }
  comm_.barrier();
  std::string merged_text;
  if (comm_.rank() == 0) {
    ImportSummary merged;
    io::DatasetManifest manifest;
    manifest.source = spec_.source;
    manifest.split = spec_.split;
    manifest.image_size = spec_.image_size;
    manifest.label_names = spec_.label_names;
    manifest.annotations = spec_.annotations;
    for (int r = 0; r < comm_.size(); ++r) {
      const fs::path path = spec_.dir / sidecar_name(r);
      std::ifstream in(path);
      MGCA_CHECK(in.good(), "rank {}'s shard list '{}' is missing (is '{}' on a shared file system?)", r,
                 path.string(), spec_.dir.string());
      const json doc = json::parse(in);
      merged.merge(ImportSummary::from_json(doc.at("summary").dump()));
      for (const auto& entry : doc.at("shards")) {
        manifest.shards.push_back({entry.at("file").get<std::string>(), entry.at("count").get<int64_t>(),
                                   entry.at("bytes").get<int64_t>(), entry.at("sha256").get<std::string>()});
      }
      in.close();
      fs::remove(path);
    }
    json info = json::parse(spec_.info_json.empty() ? "{}" : spec_.info_json);
    info["summary"] = json::parse(merged.to_json());
    manifest.info_json = info.dump();
    if (manifest.num_samples() == 0) {
      for (const auto& shard : manifest.shards) fs::remove(spec_.dir / shard.file);
      std::error_code ignored;
      fs::remove(spec_.dir, ignored);  // only when empty
    } else {
      io::write_manifest(spec_.dir, manifest);
    }
    merged_text = merged.to_json();
  }
  merged_text = comm_.broadcast_string(merged_text, 0);
  return ImportSummary::from_json(merged_text);
}

}  // namespace mgca::data
