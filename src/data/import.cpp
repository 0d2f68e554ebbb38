// The import driver: lists a source's items, splits them into rank blocks,
// cleans reports, decodes and preprocesses images on worker threads, and
// writes one dataset per split through ParallelDatasetWriter.
#include "mgca/data/import.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "mgca/comm/communicator.h"
#include "mgca/text/report.h"
#include "mgca/util/error.h"
#include "mgca/util/files.h"
#include "mgca/util/log.h"
#include "mgca/util/progress.h"
#include "mgca/util/rng.h"
#include "mgca/util/threads.h"

namespace mgca::data {
namespace fs = std::filesystem;

namespace {

// "train=0.8,val=0.1,test=0.1" → cumulative thresholds.
std::vector<std::pair<std::string, double>> parse_random_split(const std::string& spec) {
  std::vector<std::pair<std::string, double>> parts;
  double total = 0;
  size_t begin = 0;
  while (begin <= spec.size()) {
    const size_t comma = std::min(spec.find(',', begin), spec.size());
    const std::string part = spec.substr(begin, comma - begin);
    const size_t eq = part.find('=');
    MGCA_CHECK(eq != std::string::npos && eq > 0, "--random-split: '{}' is not name=fraction", part);
    char* end = nullptr;
    const std::string number = part.substr(eq + 1);
    const double fraction = std::strtod(number.c_str(), &end);
    MGCA_CHECK(end != number.c_str() && *end == '\0' && fraction > 0, "--random-split: bad fraction in '{}'", part);
    total += fraction;
    parts.emplace_back(part.substr(0, eq), total);
    begin = comma + 1;
  }
  MGCA_CHECK(std::fabs(total - 1.0) < 1e-6, "--random-split: fractions sum to {}, not 1", total);
  parts.back().second = 1.0;
  return parts;
}

bool blank(const std::string& text) {
  return std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isspace(c); });
}

// What a worker made of one item.
struct Processed {
  std::string skip_reason, skip_detail;
  std::string report;
  std::vector<uint8_t> image;
  std::vector<io::Box> boxes;   // in the stored image
  std::vector<uint8_t> mask;    // S*S when the source has masks
  DecodeNotes notes;
};

const char* skip_reason_of(ImageFileProblem problem) {
  switch (problem) {
    case ImageFileProblem::Missing: return skip::kMissingImage;
    case ImageFileProblem::NotRegularFile: return skip::kNotRegularFile;
    case ImageFileProblem::TooLarge: return skip::kImageTooLarge;
    case ImageFileProblem::Unreadable:
    case ImageFileProblem::None: break;
  }
  return skip::kCorruptImage;
}

// Never throws for a bad item: every failure is the item's skip reason, so
// one bad file cannot end the import (or leave the other ranks waiting).
void process(const ImportSource& source, const ImportItem& item, const ImportOptions& options, Processed& out) {
  out.skip_reason.clear();
  out.skip_detail.clear();
  out.report.clear();
  out.boxes.clear();
  out.notes = DecodeNotes{};
  if (!item.skip_reason.empty()) {
    out.skip_reason = item.skip_reason;
    out.skip_detail = item.skip_detail;
    return;
  }
  if (item.has_report) {
    if (blank(item.impression) && blank(item.findings)) {
      out.skip_reason = skip::kEmptyReport;
      out.skip_detail = "no impression and no findings";
      return;
    }
    const text::CleanedReport cleaned = text::clean_report(item.impression, item.findings);
    if (!cleaned.kept) {
      out.skip_reason = skip::kShortReport;
      out.skip_detail = fmt::format("{} token(s) left after cleaning", cleaned.num_tokens);
      return;
    }
    out.report = text::join_sentences(cleaned.sentences);
  }
  try {
    GrayImage image;
    if (item.image.empty()) {
      image = source.load_image(item, &out.notes);
    } else {
      std::vector<uint8_t> bytes;
      const ImageFileProblem problem = read_image_bytes(item.image, options.max_image_bytes, bytes, out.skip_detail);
      if (problem != ImageFileProblem::None) {
        out.skip_reason = skip_reason_of(problem);
        return;
      }
      image = decode_image(bytes.data(), bytes.size(), item.image.string(), &out.notes);
    }
    const int64_t S = options.image_size;
    out.image.resize(static_cast<size_t>(S * S));
    resize_and_pad(image, S, out.image.data());
    for (const auto& box : item.boxes) {
      const io::Box stored = box_in_stored_image(box, image.width, image.height, S);
      if (const std::string problem = io::box_problem(stored, S); !problem.empty()) {
        out.skip_reason = skip::kBadBox;
        out.skip_detail = fmt::format("{} (source pixels {} {} {} {} in a {}x{} image)", problem, box.x0, box.y0,
                                      box.x1, box.y1, image.width, image.height);
        return;
      }
      out.boxes.push_back(stored);
    }
    if (source.annotations().masks) {
      std::vector<uint8_t> mask;
      if (std::string problem = source.source_mask(item, image.width, image.height, mask); !problem.empty()) {
        out.skip_reason = skip::kBadMask;
        out.skip_detail = std::move(problem);
        return;
      }
      out.mask.resize(static_cast<size_t>(S * S));
      mask_in_stored_image(mask.data(), image.width, image.height, S, out.mask.data());
    }
  } catch (const Error& error) {
    out.skip_reason = skip::kCorruptImage;
    out.skip_detail = error.message();
  } catch (const std::exception& error) {  // e.g. bad_alloc for an absurd image size
    out.skip_reason = skip::kCorruptImage;
    out.skip_detail = fmt::format("'{}': {}", item.image.string(), error.what());
  }
}

}  // namespace

ImportResult run_import(comm::Communicator& comm, const ImportOptions& options) {
  MGCA_CHECK(options.image_size >= 8 && options.image_size <= 4096, "image size {} out of range [8, 4096]",
             options.image_size);
  MGCA_CHECK(options.threads >= 1, "threads must be at least 1");
  auto source = make_import_source(options);
  std::vector<ImportItem>& items = source->items();
  const std::vector<std::string> label_names = source->label_names();

  if (!options.random_split.empty()) {
    const auto parts = parse_random_split(options.random_split);
    for (auto& item : items) {
      if (item.split != "all") continue;  // the source's own split wins
      const double u = static_cast<double>(util::mix64(util::fnv1a(item.id) ^ util::mix64(options.seed)) >> 11) * 0x1.0p-53;
      item.split = std::find_if(parts.begin(), parts.end(), [u](const auto& p) { return u < p.second; })->first;
    }
  }
  ImportSummary listing;  // notes about the listing (not per item)
  if (!options.only_split.empty()) {
    const auto kept = std::stable_partition(items.begin(), items.end(),
                                            [&](const ImportItem& item) { return item.split == options.only_split; });
    const int64_t others = items.end() - kept;
    items.erase(kept, items.end());
    if (others > 0) listing.notes[fmt::format("items of other splits not requested (--split {})", options.only_split)] = others;
  }
  if (options.limit >= 0 && static_cast<int64_t>(items.size()) > options.limit) {
    listing.notes[fmt::format("items beyond --limit {}", options.limit)] =
        static_cast<int64_t>(items.size()) - options.limit;
    items.resize(static_cast<size_t>(options.limit));
  }
  {
    std::set<std::pair<std::string, std::string>> seen;
    for (auto& item : items) {
      if (item.skip_reason.empty() && !seen.insert({item.split, item.id}).second) {
        item.skip_reason = skip::kDuplicateId;
        item.skip_detail = fmt::format("id '{}' appears twice in split '{}'", item.id, item.split);
      }
    }
  }
  std::set<std::string> split_set;
  for (const auto& item : items) split_set.insert(item.split);
  MGCA_CHECK(!items.empty(), "{} import of '{}': the source lists no items", options.format, options.in.string());

  const int64_t n = static_cast<int64_t>(items.size());
  const auto [begin, end] = comm::block_of(n, comm.rank(), comm.size());
  source->prepare(begin, end);

  nlohmann::json info = {{"command", "mgca prep"},
                         {"format", options.format},
                         {"in", fs::absolute(options.in).lexically_normal().string()}};
  std::map<std::string, std::unique_ptr<ParallelDatasetWriter>> writers;
  std::map<std::string, ImportSummary> summaries;
  for (const auto& split : split_set) {  // the same order on every rank: collective
    OutputSpec spec;
    spec.dir = options.out / split;
    spec.source = options.format;
    spec.split = split;
    spec.image_size = options.image_size;
    spec.label_names = label_names;
    spec.shard_size = options.shard_size;
    spec.overwrite = options.overwrite;
    spec.info_json = info.dump();
    spec.annotations = source->annotations();
    writers[split] = std::make_unique<ParallelDatasetWriter>(comm, spec);
    summaries[split];
  }

  const bool with_annotations = source->annotations() != io::AnnotationKinds{};
  util::Progress progress(fmt::format("prep {}", options.format), end - begin);
  const int threads = options.threads;
  const int64_t block = 16 * threads;
  std::vector<Processed> results(static_cast<size_t>(block));
  for (int64_t first = begin; first < end; first += block) {
    const int64_t count = std::min(block, end - first);
    util::parallel_for(threads, count, [&](int64_t k) {
      process(*source, items[static_cast<size_t>(first + k)], options, results[static_cast<size_t>(k)]);
    });
    for (int64_t k = 0; k < count; ++k) {
      const ImportItem& item = items[static_cast<size_t>(first + k)];
      const Processed& result = results[static_cast<size_t>(k)];
      ImportSummary& summary = summaries[item.split];
      if (!result.skip_reason.empty()) {
        summary.skip(result.skip_reason, fmt::format("{}: {}", item.id, result.skip_detail));
        continue;
      }
      if (result.notes.sixteen_bit) summary.note("16-bit image scaled to 8 bits");
      if (result.notes.color) summary.note("colour image converted to gray");
      if (!result.notes.warning.empty()) summary.note("decoder warning: " + result.notes.warning);
      io::SampleAnnotation annotation;
      annotation.boxes = result.boxes;
      annotation.mask = result.mask.empty() ? nullptr : result.mask.data();
      writers[item.split]->append(item.id, result.report, result.image.data(),
                                  label_names.empty() ? nullptr : item.labels.data(),
                                  with_annotations ? &annotation : nullptr);
      ++summary.imported;
    }
    progress.update(first + count - begin);
  }
  progress.finish();

  ImportResult result;
  result.total.merge(listing);  // identical on every rank
  for (const auto& split : split_set) {
    ImportSummary merged = writers[split]->finish(summaries[split]);
    result.total.merge(merged);
    result.splits.emplace_back(split, std::move(merged));
  }
  if (comm.rank() == 0) {
    nlohmann::json doc = info;
    doc["image_size"] = options.image_size;
    doc["label_names"] = label_names;
    doc["ranks"] = comm.size();
    doc["total"] = nlohmann::json::parse(result.total.to_json());
    for (const auto& [split, summary] : result.splits) doc["splits"][split] = nlohmann::json::parse(summary.to_json());
    util::write_file_atomic(options.out / "summary.json", doc.dump(2) + "\n");
  }
  comm.barrier();
  return result;
}

}  // namespace mgca::data
