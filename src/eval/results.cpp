#include "mgca/eval/results.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <map>
#include <utility>

#include "mgca/build_config.h"
#include "mgca/eval/metrics.h"
#include "mgca/util/error.h"
#include "mgca/util/files.h"

namespace mgca::eval {

Results::Results(std::string kind) : kind_(std::move(kind)) {}

void Results::add(ResultEntry entry) {
  MGCA_CHECK(!entry.values.empty(), "result '{}' / '{}' / '{}' has no values", entry.method,
             entry.dataset, entry.setting);
  MGCA_CHECK(entry.seeds.empty() || entry.seeds.size() == entry.values.size(),
             "result '{}' / '{}' / '{}': {} values but {} seeds", entry.method, entry.dataset,
             entry.setting, entry.values.size(), entry.seeds.size());
  entries_.push_back(std::move(entry));
}

namespace {

// Display width in code points (the table holds "±" and "—").
size_t display_width(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

std::string pad(const std::string& s, size_t width, bool right) {
  const size_t w = display_width(s);
  if (w >= width) return s;
  return right ? std::string(width - w, ' ') + s : s + std::string(width - w, ' ');
}

// The one rule for summarising a cell's seeds (results.h, ResultEntry::values): a seed with nothing to
// score counts as 0.
struct CellSummary {
  MeanStd scores;
  size_t unscored = 0;
};

CellSummary summarize(const std::vector<double>& values) {
  CellSummary out;
  std::vector<double> scores;
  scores.reserve(values.size());
  for (const double v : values) {
    out.unscored += v < 0.0;
    scores.push_back(std::max(v, 0.0));
  }
  out.scores = mean_std(scores);
  return out;
}

constexpr const char* kUnscoredMark = " †";

std::string format_cell(const std::vector<double>& values) {
  const CellSummary s = summarize(values);
  const char* mark = s.unscored ? kUnscoredMark : "";
  if (values.size() < 2) return fmt::format("{:.2f}{}", 100.0 * s.scores.mean, mark);
  return fmt::format("{:.2f} ± {:.2f}{}", 100.0 * s.scores.mean, 100.0 * s.scores.std, mark);
}

std::string shell_quote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                        "0123456789_-+=/.,:@%") == std::string::npos) {
    return s;
  }
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

}  // namespace

std::string join_command_line(const std::vector<std::string>& argv) {
  std::string out;
  for (size_t i = 0; i < argv.size(); ++i) {
    if (i) out += ' ';
    out += shell_quote(argv[i]);
  }
  return out;
}

std::string Results::table(const std::string& title) const {
  std::vector<std::string> methods;
  std::vector<std::pair<std::string, std::string>> columns;
  std::map<std::pair<std::string, std::string>, std::string> metric_of;
  std::map<std::tuple<std::string, std::string, std::string>, const ResultEntry*> cell;
  size_t max_seeds = 0;
  bool any_unscored = false;
  for (const auto& e : entries_) {
    any_unscored = any_unscored || summarize(e.values).unscored > 0;
    if (std::find(methods.begin(), methods.end(), e.method) == methods.end()) methods.push_back(e.method);
    const auto column = std::make_pair(e.dataset, e.setting);
    if (std::find(columns.begin(), columns.end(), column) == columns.end()) columns.push_back(column);
    metric_of[column] = e.metric;
    cell[{e.method, e.dataset, e.setting}] = &e;
    max_seeds = std::max(max_seeds, e.values.size());
  }
  // The chance row goes last, under the methods it qualifies.
  std::stable_partition(methods.begin(), methods.end(),
                        [](const std::string& m) { return m != "chance"; });
  // Rows of strings: header, then one per method.
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> header = {"Method"};
  for (const auto& [dataset, setting] : columns) header.push_back(dataset + " " + setting);
  rows.push_back(header);
  for (const auto& method : methods) {
    std::vector<std::string> row = {method};
    for (const auto& [dataset, setting] : columns) {
      const auto found = cell.find({method, dataset, setting});
      row.push_back(found == cell.end() ? "—" : format_cell(found->second->values));
    }
    rows.push_back(row);
  }
  std::vector<size_t> widths(header.size(), 0);
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], display_width(row[c]));
  }
  std::string out = title + "\n";
  for (size_t r = 0; r < rows.size(); ++r) {
    out += "|";
    for (size_t c = 0; c < rows[r].size(); ++c) {
      out += " " + pad(rows[r][c], widths[c], c > 0) + " |";
    }
    out += "\n";
    if (r == 0) {
      out += "|";
      for (size_t c = 0; c < widths.size(); ++c) {
        out += std::string(widths[c] + 1, '-') + (c > 0 ? ":|" : "-|");
      }
      out += "\n";
    }
  }
  // Footnote: the metric of each dataset (in percent) and the seeds.
  std::vector<std::string> notes;
  std::vector<std::string> seen;
  for (const auto& [dataset, setting] : columns) {
    const std::string note = dataset + ": " + metric_of[{dataset, setting}];
    if (std::find(seen.begin(), seen.end(), dataset) != seen.end()) continue;
    seen.push_back(dataset);
    notes.push_back(note);
  }
  out += fmt::format("Values in %; {}", fmt::join(notes, "; "));
  if (max_seeds > 1) out += fmt::format("; mean ± sample std over {} seeds", max_seeds);
  if (any_unscored) out += fmt::format(";{} a seed had nothing to score (-1 in the JSON), counted as 0", kUnscoredMark);
  out += ".\n";
  return out;
}

nlohmann::json Results::to_json(const std::vector<std::string>& argv) const {
  nlohmann::json j;
  j["kind"] = kind_;
  j["command"] = join_command_line(argv);
  j["argv"] = argv;
  j["version"] = MGCA_VERSION;
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm utc{};
  gmtime_r(&now, &utc);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &utc);
  j["created_utc"] = stamp;
  j["info"] = info_;
  nlohmann::json list = nlohmann::json::array();
  for (const auto& e : entries_) {
    const CellSummary s = summarize(e.values);
    list.push_back({{"method", e.method},
                    {"dataset", e.dataset},
                    {"setting", e.setting},
                    {"metric", e.metric},
                    {"values", e.values},
                    {"seeds", e.seeds},
                    {"mean", s.scores.mean},
                    {"std", s.scores.std},
                    {"unscored", s.unscored},
                    {"details", e.details}});
  }
  j["results"] = list;
  return j;
}

void Results::write_json(const std::filesystem::path& path, const std::vector<std::string>& argv) const {
  if (path.has_parent_path()) {
    std::error_code ec;
    std::filesystem::create_directories(path.parent_path(), ec);
    MGCA_CHECK(!ec, "cannot create the folder of results file {}: {}", path.string(), ec.message());
  }
  util::write_file_atomic(path, to_json(argv).dump(2) + "\n");
}

}  // namespace mgca::eval
