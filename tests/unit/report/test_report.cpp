// The run report (mgca report): reading metrics.jsonl robustly (a line cut
// short by a crash, missing keys, nulls, repeated steps, one step, an empty
// file), the checkpoint table, escaping of everything the run supplies, a
// page with no external reference, and the SVG charts (gaps, lone points,
// bucketing that keeps spikes). Rendering in a browser: tests/e2e/report.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>

#include "mgca/train/config.h"
#include "mgca/train/report_chart.h"
#include "mgca/train/run_report.h"
#include "support/test_support.h"

namespace fs = std::filesystem;

namespace mgca::test {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

size_t count_of(const std::string& text, const std::string& needle) {
  size_t count = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + needle.size())) ++count;
  return count;
}

// The d attribute of the first <path> (a line's drawing commands).
std::string path_data(const std::string& html) {
  const size_t begin = html.find("<path d=\"");
  if (begin == std::string::npos) return "";
  const size_t start = begin + std::strlen("<path d=\"");
  return html.substr(start, html.find('"', start) - start);
}

train::chart::Series series_of(train::chart::SeriesKind kind, const std::string& label, std::vector<double> y) {
  train::chart::Series s;
  s.kind = kind;
  s.label = label;
  s.y = std::move(y);
  return s;
}

// A config that parse_config accepts (it requires a dataset; no file is read).
train::Config run_config() {
  train::Config config;
  config.data.train = "data/train";
  return config;
}

// A run folder with metrics.jsonl and a config.toml written by to_toml.
void write_run(const fs::path& run, const std::string& metrics, const train::Config& config = run_config()) {
  fs::create_directories(run);
  write_text_file(run / "metrics.jsonl", metrics);
  write_text_file(run / "config.toml", train::to_toml(config));
}

std::string render(const fs::path& run) {
  return train::render_run_report(train::read_run_summary(run), "2026-12-06 08:00:00 UTC");
}

// A minimal safetensors file: one F32 tensor of shape [2, 3].
void write_tiny_safetensors(const fs::path& file) {
  std::string header = R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})";
  while (header.size() % 8) header += ' ';
  std::string bytes(8, '\0');
  const uint64_t length = header.size();
  std::memcpy(bytes.data(), &length, 8);
  write_text_file(file, bytes + header + std::string(24, '\0'));
}

TEST(RunMetrics, MissingKeysNullsAndNonNumbersReadAsNaN) {
  TempDir dir;
  write_text_file(dir / "m.jsonl",
                  "{\"step\":1,\"lr\":0.1,\"loss\":2.0,\"loss_zscore\":null}\n"
                  "{\"step\":2,\"lr\":0.2}\n"
                  "{\"step\":3,\"lr\":0.3,\"loss\":\"high\",\"note\":\"text\"}\n");
  const auto m = train::read_run_metrics(dir / "m.jsonl");
  EXPECT_EQ(m.steps, (std::vector<double>{1, 2, 3}));
  EXPECT_EQ(m.keys, (std::vector<std::string>{"lr", "loss", "loss_zscore"}));  // "note" never held a number
  const auto loss = m.column("loss");
  EXPECT_EQ(loss[0], 2.0);
  EXPECT_TRUE(std::isnan(loss[1]));
  EXPECT_TRUE(std::isnan(loss[2]));
  for (const double z : m.column("loss_zscore")) EXPECT_TRUE(std::isnan(z));
  for (const double v : m.column("absent")) EXPECT_TRUE(std::isnan(v));
  EXPECT_TRUE(m.notes.empty());
}

TEST(RunMetrics, LastLineCutShortByACrashIsSkippedWithANote) {
  TempDir dir;
  write_text_file(dir / "m.jsonl", "{\"step\":1,\"loss\":2}\n{\"step\":2,\"loss\":1.5}\n{\"step\":3,\"lo");
  const auto m = train::read_run_metrics(dir / "m.jsonl");
  EXPECT_EQ(m.steps, (std::vector<double>{1, 2}));
  ASSERT_EQ(m.notes.size(), 1u);
  EXPECT_NE(m.notes[0].find("m.jsonl:3: skipped: not JSON (the last line: cut short by a crash?)"), std::string::npos)
      << m.notes[0];
}

TEST(RunMetrics, StepLoggedTwiceAfterAResumeKeepsTheLaterLine) {
  TempDir dir;
  write_text_file(dir / "m.jsonl",
                  "{\"step\":1,\"loss\":4}\n{\"step\":2,\"loss\":3}\n{\"step\":3,\"loss\":2}\n"
                  "{\"step\":2,\"loss\":30}\n{\"step\":3,\"loss\":20}\n{\"step\":4,\"loss\":10}\n");
  const auto m = train::read_run_metrics(dir / "m.jsonl");
  EXPECT_EQ(m.steps, (std::vector<double>{1, 2, 3, 4}));
  EXPECT_EQ(m.column("loss"), (std::vector<double>{4, 30, 20, 10}));
  ASSERT_EQ(m.notes.size(), 1u);
  EXPECT_NE(m.notes[0].find("2 steps logged more than once"), std::string::npos) << m.notes[0];
}

TEST(RunMetrics, EmptyOrUnreadableFileIsAnErrorNamingIt) {
  TempDir dir;
  write_text_file(dir / "empty.jsonl", "");
  EXPECT_NE(error_of([&] { train::read_run_metrics(dir / "empty.jsonl"); })
                .find((dir / "empty.jsonl").string() + " holds no logged step (the run has not logged its first step)"),
            std::string::npos);
  write_text_file(dir / "junk.jsonl", "\n{\"loss\": 1}\nnot json\n");
  EXPECT_NE(error_of([&] { train::read_run_metrics(dir / "junk.jsonl"); })
                .find("junk.jsonl holds no logged step (2 lines, none readable)"),
            std::string::npos);
  EXPECT_NE(error_of([&] { train::read_run_metrics(dir / "absent.jsonl"); })
                .find((dir / "absent.jsonl").string() + " does not exist"),
            std::string::npos);
}

TEST(RunReport, MissingRunFolderOrMetricsIsAClearError) {
  TempDir dir;
  EXPECT_NE(error_of([&] { train::read_run_summary(dir / "nope"); })
                .find("run folder " + (dir / "nope").string() + " does not exist"),
            std::string::npos);
  fs::create_directories(dir / "bare");
  EXPECT_NE(error_of([&] { train::read_run_summary(dir / "bare"); })
                .find((dir / "bare" / "metrics.jsonl").string() + " does not exist (is " + (dir / "bare").string() +
                      " the run folder of an mgca train job?)"),
            std::string::npos);
  write_text_file(dir / "file", "x");
  EXPECT_NE(error_of([&] { train::read_run_summary(dir / "file"); }).find("is a file, not a folder"),
            std::string::npos);
}

TEST(RunReport, EverythingFromTheRunIsEscapedAndThePageIsSelfContained) {
  TempDir dir;
  const fs::path run = dir / "run-<i>folder";
  train::Config config = run_config();
  config.name = "<script>alert('name')</script>&co";
  config.data.train = "data/\"><img src=x onerror=alert(1)>";
  write_run(run,
            "{\"step\":1,\"loss\":1,\"loss_<b>x</b>\":2,\"lr\":0.001,\"<odd>\":5}\n"
            "{\"step\":2,\"loss\":0.5,\"loss_<b>x</b>\":1,\"lr\":0.002,\"<odd>\":6}\n"
            "{broken <script>\n{\"step\":3,\"loss\":0.4}\n",
            config);
  const std::string page = render(run);
  EXPECT_EQ(page.find("<script"), std::string::npos);
  EXPECT_EQ(page.find("<img"), std::string::npos);
  EXPECT_EQ(page.find("<b>x"), std::string::npos);
  EXPECT_EQ(page.find("<i>folder"), std::string::npos);
  EXPECT_EQ(page.find("<odd>"), std::string::npos);
  EXPECT_NE(page.find("&lt;script&gt;alert(&#39;name&#39;)&lt;/script&gt;&amp;co"), std::string::npos);  // title, h1
  EXPECT_NE(page.find("run-&lt;i&gt;folder"), std::string::npos);
  EXPECT_NE(page.find("loss_&lt;b&gt;x&lt;/b&gt;"), std::string::npos);  // legend
  EXPECT_NE(page.find("data/&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"), std::string::npos);  // config <pre>
  EXPECT_NE(page.find("Also logged, not drawn: &lt;odd&gt;"), std::string::npos);
  EXPECT_NE(page.find("skipped: not JSON"), std::string::npos);  // the note about the bad line
}

TEST(RunReport, ThePageFetchesNothingAndRunsNoScript) {
  TempDir dir;
  std::string lines;
  for (int step = 1; step <= 5; ++step)
    lines += fmt::format(
        "{{\"step\":{},\"lr\":0.001,\"loss\":1,\"acc1\":5,\"grad_norm\":1,\"samples_per_s\":10,"
        "\"time_step_s\":1,\"time_data_s\":0.2,\"mem_rss_mb\":100,\"ranks_step_s_min\":1,\"ranks_step_s_max\":2}}\n",
        step);
  write_run(dir / "r", lines);
  const std::string page = render(dir / "r");
  for (const char* reference : {"<script", "src=", "href=", "url(", "@import", "<link", "<iframe", "<object", "://"})
    EXPECT_EQ(page.find(reference), std::string::npos) << reference;
  EXPECT_EQ(count_of(page, "<svg"), 8u);  // loss, accuracy, lr, grad norm, throughput, split, per-rank, memory
}

TEST(RunReport, SingleStepGivesDotsNotLines) {
  TempDir dir;
  write_run(dir / "one", "{\"step\":1,\"loss\":2.5,\"lr\":0.0001,\"samples_per_s\":12,\"time_step_s\":1.5,"
                         "\"time_data_s\":0.5,\"time_forward_s\":0.6,\"time_backward_s\":0.4}\n");
  const std::string page = render(dir / "one");
  EXPECT_GE(count_of(page, "<circle"), 3u);  // loss, lr, throughput: a lone point each
  EXPECT_NE(page.find("1 lines, steps 1 to 1"), std::string::npos);
  EXPECT_NE(page.find("no values logged"), std::string::npos);  // memory: not in this line
}

TEST(RunReport, PerRankTimingWhenLoggedAndASentenceWhenNot) {
  TempDir dir;
  std::string lines;
  for (int step = 1; step <= 3; ++step) {
    lines += fmt::format(
        "{{\"step\":{},\"loss\":1,\"ranks_step_s_min\":0.9,\"ranks_step_s_median\":1.0,\"ranks_step_s_max\":1.4,"
        "\"ranks_step_slowest\":{},\"ranks_comm_s_min\":0.1,\"ranks_comm_s_median\":0.2,\"ranks_comm_s_max\":0.3,"
        "\"ranks_comm_slowest\":0}}\n",
        step, step == 1 ? 3 : 1);
  }
  write_run(dir / "ranks", lines);
  const std::string page = render(dir / "ranks");
  EXPECT_NE(page.find("per-rank step time"), std::string::npos);
  EXPECT_NE(page.find("per-rank exposed communication time"), std::string::npos);
  EXPECT_EQ(page.find("per-rank data loading time"), std::string::npos);  // not logged
  EXPECT_NE(page.find("<td>step</td><td>rank 1: 67 %, rank 3: 33 %</td>"), std::string::npos);
  EXPECT_NE(page.find("min … max over ranks"), std::string::npos);
  EXPECT_EQ(page.find("Also logged, not drawn"), std::string::npos);

  write_run(dir / "old", "{\"step\":1,\"loss\":1}\n");
  EXPECT_NE(render(dir / "old").find("This run logged no per-rank timing"), std::string::npos);
}

TEST(RunReport, CheckpointsCompleteOrNotWithSizeParametersAndRanks) {
  TempDir dir;
  const fs::path checkpoints = dir / "ckpts";
  const fs::path done = checkpoints / "step-00000004";
  fs::create_directories(done);
  write_tiny_safetensors(done / "model.safetensors");
  write_text_file(done / "rank-00000.state", "x");
  write_text_file(done / "rank-00001.state", "x");
  write_text_file(done / "DONE", "");
  fs::create_directories(checkpoints / "step-00000008.tmp");
  fs::create_directories(checkpoints / "step-00000006");
  write_text_file(checkpoints / "step-00000006" / "model.safetensors", "truncated");
  fs::create_directories(checkpoints / "other");
  const auto list = train::summarize_checkpoints(checkpoints);
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0].step, 4);
  EXPECT_TRUE(list[0].complete);
  EXPECT_EQ(list[0].parameters, 6);
  EXPECT_EQ(list[0].ranks, 2);
  EXPECT_EQ(list[0].bytes, fs::file_size(done / "model.safetensors") + 2);
  EXPECT_NE(list[0].time.find("UTC"), std::string::npos);
  EXPECT_EQ(list[1].name, "step-00000006");
  EXPECT_FALSE(list[1].complete);
  EXPECT_EQ(list[1].parameters, -1);
  EXPECT_EQ(list[2].name, "step-00000008.tmp");
  EXPECT_FALSE(list[2].complete);
  EXPECT_TRUE(train::summarize_checkpoints(dir / "absent").empty());

  // The run's config says where its checkpoints are (checkpoint.dir).
  train::Config config = run_config();
  config.checkpoint.dir = checkpoints.string();
  write_run(dir / "run", "{\"step\":4,\"loss\":1}\n", config);
  const auto run = train::read_run_summary(dir / "run");
  EXPECT_EQ(run.checkpoint_dir, checkpoints);
  EXPECT_EQ(run.checkpoints.size(), 3u);
  const std::string page = train::render_run_report(run, "now");
  EXPECT_NE(page.find("cut short (being written or interrupted)"), std::string::npos);
  EXPECT_NE(page.find("incomplete (no DONE)"), std::string::npos);
  EXPECT_NE(page.find("<td>complete</td>"), std::string::npos);

  // Without checkpoint.dir: RUN/checkpoints; a missing folder is a note, not an error.
  write_run(dir / "plain", "{\"step\":1,\"loss\":1}\n");
  const auto plain = train::read_run_summary(dir / "plain");
  EXPECT_EQ(plain.checkpoint_dir, dir / "plain" / "checkpoints");
  ASSERT_EQ(plain.notes.size(), 1u);
  EXPECT_NE(plain.notes[0].find("no checkpoint folder"), std::string::npos);
}

TEST(RunReport, UnreadableConfigIsANoteAndTheFolderNamesTheRun) {
  TempDir dir;
  fs::create_directories(dir / "legacy");
  write_text_file(dir / "legacy" / "metrics.jsonl", "{\"step\":1,\"loss\":1}\n");
  write_text_file(dir / "legacy" / "config.toml", "retired_key = 1\n");
  const auto run = train::read_run_summary(dir / "legacy");
  EXPECT_EQ(run.name, "legacy");
  EXPECT_EQ(run.config_toml, "retired_key = 1\n");
  ASSERT_FALSE(run.notes.empty());
  EXPECT_NE(run.notes[0].find("config.toml is not a config this mgca reads"), std::string::npos) << run.notes[0];
  EXPECT_NE(train::render_run_report(run, "now").find("retired_key = 1"), std::string::npos);
}

TEST(RunReport, WritesRunReportHtmlByDefaultOrTheGivenFile) {
  TempDir dir;
  write_run(dir / "r", "{\"step\":1,\"loss\":1}\n{\"step\":2,\"loss\":0.5}\n");
  EXPECT_EQ(train::write_run_report(dir / "r"), dir / "r" / "report.html");
  EXPECT_EQ(read_text_file(dir / "r" / "report.html").rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_EQ(train::write_run_report(dir / "r", dir / "out" / "x.html"), dir / "out" / "x.html");
  EXPECT_TRUE(fs::is_regular_file(dir / "out" / "x.html"));
}

TEST(ReportChart, MissingValuesBreakTheLineAndLonePointsAreDots) {
  train::chart::Chart c;
  c.title = "t";
  c.x = {1, 2, 3, 4, 5};
  c.series.push_back(
      series_of(train::chart::SeriesKind::Line, "a", {1, kNaN, 3, 4, std::numeric_limits<double>::infinity()}));
  const std::string html = train::chart::render_chart(c);
  EXPECT_EQ(count_of(html, "<circle"), 1u);  // step 1 stands alone
  const std::string d = path_data(html);
  EXPECT_EQ(count_of(d, "M"), 1u) << d;  // one segment: 3 → 4; the infinity ends it
  EXPECT_EQ(count_of(d, "L"), 1u) << d;
}

TEST(ReportChart, NoFiniteValueSaysSoAndALengthMismatchIsAnError) {
  train::chart::Chart c;
  c.title = "empty";
  c.x = {1, 2};
  c.series.push_back(series_of(train::chart::SeriesKind::Line, "a", {kNaN, kNaN}));
  const std::string html = train::chart::render_chart(c);
  EXPECT_NE(html.find("no values logged"), std::string::npos);
  EXPECT_EQ(html.find("<svg"), std::string::npos);
  c.series[0].y = {1};
  EXPECT_NE(error_of([&] { train::chart::render_chart(c); }).find("chart 'empty': series 'a' has 1 values for 2 x values"),
            std::string::npos);
}

TEST(ReportChart, LongRunsAreBucketedButKeepTheirSpikes) {
  train::chart::Chart c;
  c.title = "long";
  const size_t n = 100000;
  c.series.push_back(series_of(train::chart::SeriesKind::Line, "a", {}));
  for (size_t i = 0; i < n; ++i) {
    c.x.push_back(static_cast<double>(i + 1));
    c.series[0].y.push_back(i == 54321 ? 70.0 : 1.0);
  }
  const std::string html = train::chart::render_chart(c);
  EXPECT_LE(count_of(path_data(html), "L"), train::chart::kMaxChartPoints);
  EXPECT_NE(html.find(">70<"), std::string::npos);  // the spike sets the top tick
}

TEST(ReportChart, ExtremeRangesStillGiveAFewTicks) {
  for (const auto& y : {std::vector<double>{1e15, 1e15 + 1}, std::vector<double>{-1e308, 1e308},
                        std::vector<double>{5e-324, 1e-323}, std::vector<double>{0, 0}}) {
    train::chart::Chart c;
    c.title = "extreme";
    c.x = {1, 2};
    c.series.push_back(series_of(train::chart::SeriesKind::Line, "a", y));
    const std::string html = train::chart::render_chart(c);
    EXPECT_NE(html.find("<svg"), std::string::npos);
    EXPECT_LE(count_of(html, "class=\"tick\""), 13u + 3u);  // y ticks + the x ticks 1, 2 (and 0)
  }
}

TEST(ReportChart, StackedPartsAndBands) {
  train::chart::Chart c;
  c.title = "split";
  c.x = {1, 2, 3};
  c.series.push_back(series_of(train::chart::SeriesKind::Stack, "data", {1, 1, kNaN}));
  c.series.push_back(series_of(train::chart::SeriesKind::Stack, "forward", {2, 2, 2}));
  c.series.push_back(series_of(train::chart::SeriesKind::Stack, "never", {kNaN, kNaN, kNaN}));
  auto band = series_of(train::chart::SeriesKind::Band, "band", {});
  band.low = {1, kNaN, 1};
  band.high = {2, kNaN, 3};
  c.series.push_back(band);
  const std::string html = train::chart::render_chart(c);
  EXPECT_NE(html.find(">forward</span>"), std::string::npos);
  EXPECT_EQ(html.find(">never</span>"), std::string::npos);  // a part never logged is left out
  EXPECT_NE(html.find(">3<"), std::string::npos);            // stacked top: 1 + 2
  EXPECT_EQ(count_of(html, "fill-opacity=\"0.25\""), 1u);   // the band, with a gap at step 2
}

TEST(ReportChart, EscapeCoversHtmlAndAttributes) {
  EXPECT_EQ(train::chart::html_escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
}

}  // namespace
}  // namespace mgca::test
