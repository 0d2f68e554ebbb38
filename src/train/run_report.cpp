// The run report (mgca/train/run_report.h): read a run folder, render one
// HTML page with inline SVG charts (report_chart.h).
#include "mgca/train/run_report.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <limits>
#include <set>
#include <sstream>

#include "mgca/build_config.h"
#include "mgca/io/safetensors_header.h"
#include "mgca/train/checkpoint_files.h"
#include "mgca/train/config.h"
#include "mgca/train/report_chart.h"
#include "mgca/util/error.h"
#include "mgca/util/files.h"

namespace fs = std::filesystem;

namespace mgca::train {
namespace {

using chart::html_escape;
constexpr double kReportNaN = std::numeric_limits<double>::quiet_NaN();
// Skipped lines listed one by one before the rest are only counted.
constexpr size_t kListedBadLines = 10;

// The parts of a step as the trainer times them (rank 0), in stacking order.
struct TimePart {
  const char* key;
  const char* label;
};
constexpr TimePart kTimeParts[] = {{"time_data_s", "data"},
                                   {"time_forward_s", "forward"},
                                   {"time_backward_s", "backward"},
                                   {"time_comm_s", "exposed communication"},
                                   {"time_optimizer_s", "optimizer"}};
// Per-rank timings: ranks_<kind>_s_{min,median,max} and ranks_<kind>_slowest.
constexpr TimePart kRankKinds[] = {{"step", "step"}, {"data", "data loading"}, {"comm", "exposed communication"}};

std::string utc_text(std::time_t time) {
  std::tm tm{};
  gmtime_r(&time, &tm);
  char text[40];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return text;
}

std::string modified_utc(const fs::path& path) {
  struct stat status {};
  if (::stat(path.c_str(), &status) != 0) return "";
  return utc_text(status.st_mtime);
}

std::string bytes_text(uint64_t bytes) {
  if (bytes < 1024 * 1024) return fmt::format("{:.1f} KiB", static_cast<double>(bytes) / 1024);
  if (bytes < (uint64_t{1} << 30)) return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1 << 20));
  return fmt::format("{:.2f} GiB", static_cast<double>(bytes) / (1 << 30));
}

std::string seconds_text(double s) {
  if (!std::isfinite(s)) return "–";
  if (s < 120) return fmt::format("{:.1f} s", s);
  const auto total = static_cast<int64_t>(std::llround(s));
  if (total < 3600) return fmt::format("{} min {:02d} s", total / 60, total % 60);
  return fmt::format("{} h {:02d} min", total / 3600, (total % 3600) / 60);
}

std::string number_text(double v) { return std::isfinite(v) ? fmt::format("{:.4g}", v) : "–"; }

double last_finite(const std::vector<double>& values) {
  for (auto it = values.rbegin(); it != values.rend(); ++it)
    if (std::isfinite(*it)) return *it;
  return kReportNaN;
}

// Mean of the finite values from index `from` on (NaN when none).
double mean_from(const std::vector<double>& values, size_t from) {
  double sum = 0;
  size_t count = 0;
  for (size_t i = from; i < values.size(); ++i)
    if (std::isfinite(values[i])) sum += values[i], ++count;
  return count ? sum / static_cast<double>(count) : kReportNaN;
}

double median_of(std::vector<double> values) {
  values.erase(std::remove_if(values.begin(), values.end(), [](double v) { return !std::isfinite(v); }), values.end());
  if (values.empty()) return kReportNaN;
  std::nth_element(values.begin(), values.begin() + values.size() / 2, values.end());
  return values[values.size() / 2];
}

chart::Series line_series(const RunMetrics& m, const std::string& key, const std::string& label) {
  chart::Series s;
  s.label = label;
  s.y = m.column(key);
  return s;
}

std::string table_row(const std::string& name, const std::string& value_html) {
  return fmt::format("<tr><th>{}</th><td>{}</td></tr>", html_escape(name), value_html);
}

// "loss" first, then the other loss keys; sub-parts (loss_ita_i2t: two
// underscores) in a chart of their own.
std::vector<std::string> loss_keys(const RunMetrics& m, bool sub_parts) {
  std::vector<std::string> keys;
  for (const auto& key : m.keys) {
    if (key.rfind("loss", 0) != 0 || key == "loss_zscore") continue;
    const bool sub = std::count(key.begin(), key.end(), '_') >= 2;
    if (sub == sub_parts) keys.push_back(key);
  }
  return keys;
}

std::string summary_section(const RunSummary& run, const std::string& generated) {
  const RunMetrics& m = run.metrics;
  std::string rows;
  rows += table_row("run folder", "<code>" + html_escape(run.run_dir.string()) + "</code>");
  if (!run.method.empty()) rows += table_row("method", html_escape(run.method));
  rows += table_row("logged steps", fmt::format("{} lines, steps {} to {}", m.steps.size(), m.steps.front(),
                                                m.steps.back()));
  if (m.has("epoch"))
    rows += table_row("epoch", number_text(last_finite(m.column("epoch"))) + " (from 0, at the last logged step)");
  if (m.has("loss")) rows += table_row("last loss", number_text(last_finite(m.column("loss"))));
  if (m.has("train_s")) rows += table_row("training time", seconds_text(last_finite(m.column("train_s"))));
  if (m.has("samples_per_s")) {
    auto throughput = m.column("samples_per_s");
    if (throughput.size() > 1) throughput.erase(throughput.begin());  // the first step warms up
    rows += table_row("throughput", number_text(median_of(throughput)) + " samples/s (median over the steps)");
  }
  if (m.has("mem_peak_rss_mb")) {
    const auto peak = m.column("mem_peak_rss_mb");
    double most = kReportNaN;
    for (const double v : peak)
      if (std::isfinite(v) && !(most >= v)) most = v;
    rows += table_row("peak memory", number_text(most) + " MB resident (rank 0)");
  }
  if (m.has("skipped_updates"))
    rows += table_row("skipped updates", number_text(last_finite(m.column("skipped_updates"))) +
                                             " (loss spikes the update was skipped for)");
  size_t complete = 0;
  for (const auto& c : run.checkpoints) complete += c.complete ? 1 : 0;
  rows += table_row("checkpoints", fmt::format("{} complete of {} in <code>{}</code>", complete, run.checkpoints.size(),
                                               html_escape(run.checkpoint_dir.string())));
  if (!run.started.empty()) rows += table_row("started", run.started + " (config.toml written)");
  if (!run.last_logged.empty()) rows += table_row("last logged", run.last_logged + " (metrics.jsonl written)");
  rows += table_row("report", html_escape(generated) + " by mgca " + html_escape(MGCA_VERSION));
  std::string html = "<section><h2>Summary</h2><table class=\"kv\">" + rows + "</table>";
  std::vector<std::string> notes = run.notes;
  notes.insert(notes.end(), m.notes.begin(), m.notes.end());
  if (!notes.empty()) {
    html += "<div class=\"notes\"><b>Notes</b><ul>";
    for (const auto& note : notes) html += "<li>" + html_escape(note) + "</li>";
    html += "</ul></div>";
  }
  return html + "</section>";
}

std::string training_section(const RunMetrics& m, std::set<std::string>& shown) {
  std::string charts;
  for (const bool sub : {false, true}) {
    const auto keys = loss_keys(m, sub);
    if (keys.empty()) continue;
    chart::Chart c;
    c.title = sub ? "loss sub-parts" : "loss and its parts";
    c.y_label = "loss (global batch)";
    c.x = m.steps;
    for (const auto& key : keys) {
      c.series.push_back(line_series(m, key, key));
      c.series.back().emphasis = key == "loss";
      shown.insert(key);
    }
    charts += chart::render_chart(c);
  }
  std::vector<std::string> accuracy;
  for (const auto& key : m.keys)
    if (key.rfind("acc", 0) == 0) accuracy.push_back(key);
  if (!accuracy.empty()) {
    chart::Chart c{"in-batch retrieval accuracy (image↔report, mean of both directions)", "step", "%", m.steps, {}};
    for (const auto& key : accuracy) c.series.push_back(line_series(m, key, key)), shown.insert(key);
    charts += chart::render_chart(c);
  }
  chart::Chart lr{"learning rate", "step", "lr", m.steps, {line_series(m, "lr", "lr")}};
  lr.y_from_zero = true;
  charts += chart::render_chart(lr);
  shown.insert("lr");
  if (m.has("grad_norm")) {
    charts += chart::render_chart({"gradient norm", "step", "L2 norm", m.steps, {line_series(m, "grad_norm", "grad_norm")}});
    shown.insert("grad_norm");
  }
  if (m.has("loss_zscore")) {
    charts += chart::render_chart(
        {"loss z-score (spike detector)", "step", "z", m.steps, {line_series(m, "loss_zscore", "loss_zscore")}});
    shown.insert("loss_zscore");
  }
  return "<section><h2>Training</h2><div class=\"grid\">" + charts + "</div></section>";
}

std::string speed_section(const RunMetrics& m, std::set<std::string>& shown) {
  std::string charts;
  chart::Chart throughput{"throughput", "step", "samples/s (all ranks)", m.steps,
                          {line_series(m, "samples_per_s", "samples/s")}};
  throughput.y_from_zero = true;
  charts += chart::render_chart(throughput);
  shown.insert("samples_per_s");

  chart::Chart split{"time split of a step (rank 0)", "step", "seconds", m.steps, {}};
  split.y_from_zero = true;
  for (const auto& part : kTimeParts) {
    auto s = line_series(m, part.key, part.label);
    s.kind = chart::SeriesKind::Stack;
    split.series.push_back(std::move(s));
    shown.insert(part.key);
  }
  auto whole = line_series(m, "time_step_s", "whole step");
  whole.dashed = true;
  whole.color = 7;  // gray: the outline over the coloured parts
  split.series.push_back(std::move(whole));
  shown.insert("time_step_s");
  charts += chart::render_chart(split);

  // Means after the first logged step (it includes warm-up).
  const size_t from = m.steps.size() > 1 ? 1 : 0;
  const double step_mean = mean_from(m.column("time_step_s"), from);
  std::string rows = "<tr><th>part</th><th>mean s/step</th><th>share of the step</th></tr>";
  for (const auto& part : kTimeParts) {
    if (!m.has(part.key)) continue;
    const double mean = mean_from(m.column(part.key), from);
    rows += fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td></tr>", part.label, number_text(mean),
                        std::isfinite(mean / step_mean) ? fmt::format("{:.1f} %", 100 * mean / step_mean) : "–");
  }
  rows += fmt::format("<tr><td>whole step</td><td>{}</td><td></td></tr>", number_text(step_mean));
  const std::string table = fmt::format(
      "<div class=\"tablebox\"><h3>time split, mean over logged steps{}</h3><table class=\"grid-table\">{}</table>"
      "<p class=\"small\">The parts need not add up to the step: what is not timed (logging, checkpoint "
      "stalls) is the rest. Communication counts only what backward did not overlap.</p></div>",
      from ? " after the first" : "", rows);
  return "<section><h2>Speed</h2><div class=\"grid\">" + charts + table + "</div></section>";
}

std::string ranks_section(const RunMetrics& m, std::set<std::string>& shown) {
  std::string charts, slowest_rows;
  int color = 0;
  for (const auto& kind : kRankKinds) {
    const std::string base = std::string("ranks_") + kind.key;
    const std::string min = base + "_s_min", median = base + "_s_median", max = base + "_s_max";
    const std::string slowest = base + "_slowest";
    if (m.has(min) || m.has(max) || m.has(median)) {
      chart::Series band;
      band.label = "min … max over ranks";
      band.kind = chart::SeriesKind::Band;
      band.low = m.column(min);
      band.high = m.column(max);
      band.color = color;
      auto mid = line_series(m, median, "median over ranks");
      mid.color = color;
      chart::Chart c{"per-rank " + std::string(kind.label) + " time", "step", "seconds", m.steps, {band, mid}};
      c.y_from_zero = true;
      charts += chart::render_chart(c);
      shown.insert(min), shown.insert(median), shown.insert(max);
    }
    if (m.has(slowest)) {
      std::map<int64_t, int64_t> counts;
      int64_t total = 0;
      for (const double v : m.column(slowest))
        if (std::isfinite(v)) ++counts[std::llround(v)], ++total;
      std::vector<std::pair<int64_t, int64_t>> ranked(counts.begin(), counts.end());
      std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
      std::string cells;
      for (size_t i = 0; i < ranked.size() && i < 5; ++i)
        cells += fmt::format("{}rank {}: {:.0f} %", i ? ", " : "", ranked[i].first,
                             100.0 * static_cast<double>(ranked[i].second) / static_cast<double>(total));
      slowest_rows += fmt::format("<tr><td>{}</td><td>{}</td></tr>", kind.label, total ? cells : "–");
      shown.insert(slowest);
    }
    ++color;
  }
  std::string html = "<section><h2>Per-rank timing</h2>";
  if (charts.empty() && slowest_rows.empty())
    return html + "<p>This run logged no per-rank timing (the <code>ranks_*</code> keys of metrics.jsonl).</p></section>";
  html += "<div class=\"grid\">" + charts;
  if (!slowest_rows.empty())
    html += "<div class=\"tablebox\"><h3>slowest rank, share of logged steps</h3><table class=\"grid-table\">"
            "<tr><th>time</th><th>slowest ranks</th></tr>" +
            slowest_rows + "</table></div>";
  return html + "</div></section>";
}

std::string memory_section(const RunMetrics& m, std::set<std::string>& shown) {
  chart::Chart c{"memory of rank 0", "step", "MB resident", m.steps,
                 {line_series(m, "mem_rss_mb", "resident"), line_series(m, "mem_peak_rss_mb", "peak resident")}};
  c.y_from_zero = true;
  shown.insert("mem_rss_mb"), shown.insert("mem_peak_rss_mb");
  return "<section><h2>Memory</h2><div class=\"grid\">" + chart::render_chart(c) + "</div></section>";
}

std::string checkpoints_section(const RunSummary& run) {
  std::string html = fmt::format("<section><h2>Checkpoints</h2><p>in <code>{}</code></p>",
                                 html_escape(run.checkpoint_dir.string()));
  if (run.checkpoints.empty()) return html + "<p>none</p></section>";
  html += "<table class=\"grid-table\"><tr><th>step</th><th>folder</th><th>state</th><th>size</th>"
          "<th>parameters</th><th>ranks</th><th>written</th></tr>";
  for (const auto& c : run.checkpoints) {
    const char* state = c.complete ? "complete" : c.cut_short ? "cut short (being written or interrupted)" : "incomplete (no DONE)";
    html += fmt::format("<tr class=\"{}\"><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td>"
                        "<td>{}</td><td>{}</td></tr>",
                        c.complete ? "ok" : "bad", c.step, html_escape(c.name), state, bytes_text(c.bytes),
                        c.parameters >= 0 ? fmt::format("{}", c.parameters) : "–",
                        c.ranks > 0 ? fmt::format("{}", c.ranks) : "–", html_escape(c.time));
  }
  return html + "</table></section>";
}

constexpr const char* kReportStyle = R"(
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;margin:0 auto;padding:16px 24px;max-width:1560px;background:#fafafa}
h1{font-size:24px;margin:4px 0}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:14px;margin:4px 0 8px}.sub{color:#666;margin:0 0 8px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(600px,1fr));gap:14px}
figure.chart,.tablebox{margin:0;background:#fff;border:1px solid #e2e2e2;border-radius:6px;padding:8px 10px}
figcaption{font-weight:600;margin-bottom:4px}figure.chart svg{width:100%;height:auto;display:block}
.tick{font-size:11px;fill:#555}.axis{font-size:12px;fill:#333}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;font-size:12px;margin-top:4px}
.legend i{display:inline-block;width:18px;height:0;margin-right:5px;vertical-align:middle}
.legend i.area{height:10px}
.empty{color:#888;font-style:italic}
table.kv th{text-align:left;padding:2px 16px 2px 0;color:#555;font-weight:500}
table.grid-table{border-collapse:collapse;background:#fff}
table.grid-table td,table.grid-table th{border:1px solid #ddd;padding:3px 8px;text-align:left}
tr.bad td{color:#a33}.notes{background:#fff6e0;border:1px solid #f0d48a;padding:6px 12px;margin-top:10px}
.small{font-size:12px;color:#666}pre{background:#fff;border:1px solid #ddd;padding:10px;overflow:auto;font-size:12px}
code{font-size:12px}
)";

}  // namespace

std::vector<double> RunMetrics::column(const std::string& key) const {
  const auto found = values.find(key);
  return found != values.end() ? found->second : std::vector<double>(steps.size(), kReportNaN);
}

RunMetrics read_run_metrics(const fs::path& file) {
  const std::string problem = util::file_problem(file);
  MGCA_CHECK(problem.empty(), "{} {}", file.string(), problem);
  const std::string text = util::read_file(file, "the metrics file");
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  size_t last = lines.size();
  while (last > 0 && lines[last - 1].find_first_not_of(" \t\r") == std::string::npos) --last;

  RunMetrics m;
  std::map<int64_t, nlohmann::ordered_json> rows;
  size_t bad = 0, repeated = 0;
  auto skip = [&](size_t index, const std::string& why) {
    if (++bad <= kListedBadLines) m.notes.push_back(fmt::format("{}:{}: skipped: {}", file.string(), index + 1, why));
  };
  for (size_t i = 0; i < last; ++i) {
    if (lines[i].find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::ordered_json row = nlohmann::ordered_json::parse(lines[i], nullptr, /*allow_exceptions=*/false);
    if (row.is_discarded()) {
      skip(i, i + 1 == last ? "not JSON (the last line: cut short by a crash?)" : "not JSON");
      continue;
    }
    if (!row.is_object() || !row.contains("step") || !row["step"].is_number_integer()) {
      skip(i, "no integer \"step\"");
      continue;
    }
    for (const auto& [key, value] : row.items()) {
      if (key == "step" || !(value.is_number() || value.is_null()) || m.values.count(key)) continue;
      m.keys.push_back(key);
      m.values[key];
    }
    const auto step = row["step"].get<int64_t>();
    repeated += rows.count(step);
    rows[step] = std::move(row);
  }
  if (bad > kListedBadLines) m.notes.push_back(fmt::format("{} more lines skipped", bad - kListedBadLines));
  if (repeated > 0)
    m.notes.push_back(fmt::format("{} steps logged more than once (a resume from an earlier checkpoint): the "
                                  "later line of each is shown",
                                  repeated));
  MGCA_CHECK(!rows.empty(), "{} holds no logged step{}", file.string(),
             bad ? fmt::format(" ({} lines, none readable)", bad) : " (the run has not logged its first step)");
  for (const auto& [step, row] : rows) {
    m.steps.push_back(static_cast<double>(step));
    for (auto& [key, column] : m.values) {
      const auto found = row.find(key);
      column.push_back(found != row.end() && found->is_number() ? found->get<double>() : kReportNaN);
    }
  }
  return m;
}

std::vector<CheckpointSummary> summarize_checkpoints(const fs::path& dir) {
  std::vector<CheckpointSummary> found;
  std::error_code error;
  if (!fs::is_directory(dir, error)) return found;
  for (const auto& entry : fs::directory_iterator(dir, error)) {
    CheckpointSummary c;
    c.name = entry.path().filename().string();
    const int64_t tmp_step = tmp_checkpoint_step(c.name);
    c.cut_short = tmp_step >= 0;
    c.step = c.cut_short ? tmp_step : checkpoint_step(c.name);
    if (c.step < 0 || !entry.is_directory(error)) continue;
    c.complete = !c.cut_short && is_complete_checkpoint(entry.path());
    for (const auto& file : fs::recursive_directory_iterator(entry.path(), error)) {
      if (file.is_regular_file(error)) c.bytes += file.file_size(error);
      if (file.path().parent_path() == entry.path() && checkpoint_rank_of(file.path().filename().string()) >= 0)
        ++c.ranks;
    }
    c.time = modified_utc(c.complete ? checkpoint_done_file(entry.path()) : entry.path());
    try {
      const auto header = io::read_safetensors_header(checkpoint_model_file(entry.path()));
      c.parameters = 0;
      for (const auto& [name, info] : header.infos) c.parameters += info.numel();
    } catch (const Error&) {
      c.parameters = -1;  // being written, or damaged: the table shows "–"
    }
    found.push_back(std::move(c));
  }
  std::sort(found.begin(), found.end(),
            [](const auto& a, const auto& b) { return a.step != b.step ? a.step < b.step : a.name < b.name; });
  return found;
}

RunSummary read_run_summary(const fs::path& run_dir) {
  const std::string problem = util::folder_problem(run_dir);
  MGCA_CHECK(problem.empty(), "run folder {} {}", run_dir.string(), problem);
  const fs::path metrics = run_dir / "metrics.jsonl";
  MGCA_CHECK(util::file_problem(metrics).empty(), "{} {} (is {} the run folder of an mgca train job?)",
             metrics.string(), util::file_problem(metrics), run_dir.string());
  RunSummary run;
  run.run_dir = run_dir;
  run.name = fs::absolute(run_dir).lexically_normal().filename().string();
  if (run.name.empty()) run.name = fs::absolute(run_dir).lexically_normal().parent_path().filename().string();
  run.checkpoint_dir = run_dir / "checkpoints";
  const fs::path config_file = run_dir / "config.toml";
  if (util::file_problem(config_file).empty()) {
    run.config_toml = util::read_file(config_file, "the run's config");
    run.started = modified_utc(config_file);
    try {
      const Config config = parse_config(run.config_toml, config_file.string());
      run.name = config.name;
      run.method = util::enum_name(config.method);
      // The default folder is <output_dir>/<name>/checkpoints: this folder's,
      // wherever the run was launched from.
      if (!config.checkpoint.dir.empty()) run.checkpoint_dir = config.checkpoint.dir;
    } catch (const Error& e) {
      run.notes.push_back("config.toml is not a config this mgca reads (" + e.message() +
                          "); checkpoints are looked for in " + run.checkpoint_dir.string());
    }
  } else {
    run.notes.push_back(config_file.string() + " " + util::file_problem(config_file));
  }
  std::error_code error;
  if (!fs::is_directory(run.checkpoint_dir, error))
    run.notes.push_back("no checkpoint folder " + run.checkpoint_dir.string());
  run.metrics = read_run_metrics(metrics);
  run.last_logged = modified_utc(metrics);
  run.checkpoints = summarize_checkpoints(run.checkpoint_dir);
  return run;
}

std::string render_run_report(const RunSummary& run, const std::string& generated) {
  std::set<std::string> shown = {"epoch", "train_s", "skipped_updates"};  // in the summary
  std::string body = summary_section(run, generated);
  body += training_section(run.metrics, shown);
  body += speed_section(run.metrics, shown);
  body += ranks_section(run.metrics, shown);
  body += memory_section(run.metrics, shown);
  std::string others;
  for (const auto& key : run.metrics.keys)
    if (!shown.count(key)) others += (others.empty() ? "" : ", ") + html_escape(key);
  if (!others.empty()) body += "<p class=\"small\">Also logged, not drawn: " + others + ".</p>";
  body += checkpoints_section(run);
  body += "<section><h2>Resolved config</h2>";
  body += run.config_toml.empty() ? "<p>no config.toml in the run folder</p>"
                                  : "<pre>" + html_escape(run.config_toml) + "</pre>";
  body += "</section>";
  return fmt::format(
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
      "<title>{} – mgca run report</title><style>{}</style></head><body>"
      "<h1>{}</h1><p class=\"sub\">mgca training run report</p>{}</body></html>\n",
      html_escape(run.name), kReportStyle, html_escape(run.name), body);
}

fs::path write_run_report(const fs::path& run_dir, const fs::path& out) {
  const RunSummary run = read_run_summary(run_dir);
  const fs::path target = out.empty() ? run_dir / "report.html" : out;
  if (target.has_parent_path()) fs::create_directories(target.parent_path());
  util::write_file_atomic(target, render_run_report(run, utc_text(std::time(nullptr))));
  return target;
}

}  // namespace mgca::train
