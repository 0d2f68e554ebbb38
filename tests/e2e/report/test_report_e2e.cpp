// `mgca report` end to end: a real tiny MGCA run (2 ranks, 8 steps, two
// checkpoints), its report written by the program and loaded in headless
// Chromium: the screenshot shows the charts (coloured pixels), the browser
// logs no console message, the DOM holds the SVG charts. The checker itself
// is shown to fail on a page that throws and on a blank page. The program's
// errors (missing folder, empty metrics) name what is wrong.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "mgca/build_config.h"
#include "support/test_support.h"

namespace fs = std::filesystem;

namespace mgca::test {
namespace {

// Debian's headless browser (scripts/install-deps); "" when absent.
std::string chromium_program() {
  const auto r = run_command("command -v chromium");
  if (r.exit_code != 0) return "";
  return r.output.substr(0, r.output.find('\n'));
}

struct LoadedPage {
  int exit_code = -1;
  std::vector<std::string> console;  // console messages and uncaught errors the page produced
  int64_t pixels = 0, non_white = 0, coloured = 0;
  std::string dom;
  std::string log;  // the browser's output, for failure messages
};

// Loads `html` in headless Chromium: a 1400 × 3000 screenshot (its pixels
// counted by page_pixels.py) with the browser's log on stderr, where every
// console message and uncaught exception appears as a line with ":CONSOLE";
// then the DOM after loading.
LoadedPage load_page(const fs::path& html, const fs::path& work) {
  const std::string browser = chromium_program() +
                              " --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars"
                              " --no-first-run --user-data-dir=" +
                              quote(work / "chromium-profile");
  const std::string url = quote("file://" + fs::absolute(html).string());
  const fs::path png = work / (html.stem().string() + ".png");
  LoadedPage page;
  const auto shot = run_command("timeout 180 " + browser + " --enable-logging=stderr --v=0 --window-size=1400,3000 " +
                                "--screenshot=" + quote(png) + " " + url);
  page.exit_code = shot.exit_code;
  page.log = shot.output;
  std::istringstream lines(shot.output);
  for (std::string line; std::getline(lines, line);)
    if (line.find(":CONSOLE") != std::string::npos || line.find("Uncaught") != std::string::npos)
      page.console.push_back(line);
  const auto counted =
      run_command(python() + " " + quote(source_dir() / "tests" / "e2e" / "report" / "page_pixels.py") + " " + quote(png));
  EXPECT_EQ(counted.exit_code, 0) << counted.output;
  std::istringstream(counted.output) >> page.pixels >> page.non_white >> page.coloured;
  page.dom = run_command("timeout 180 " + browser + " --dump-dom " + url + " 2>/dev/null").output;
  return page;
}

size_t occurrences(const std::string& text, const std::string& needle) {
  size_t count = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++count;
  return count;
}

constexpr const char* kNoChromium =
    "chromium is not installed (Debian: apt-get install chromium; scripts/install-deps installs it)";

// A tiny MGCA run in `dir`/runs/tiny: 2 ranks, 8 steps, checkpoints at 4 and 8.
fs::path train_tiny_run(const fs::path& dir) {
  auto r = run_command(mgca_program().string() + " synth --out " + quote(dir / "synth") +
                       " --num 64 --image-size 72 --seed 3");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::string train = std::string(MGCA_MPIEXEC) + " --allow-run-as-root --oversubscribe --bind-to none -np 2 " +
                      mgca_program().string() + " train " + quote(source_dir() / "jobs" / "ci-tiny.toml");
  for (const std::string& set :
       {"data.train=" + (dir / "synth").string(),
        "text.vocab=" + (shared_data_dir() / "vocab" / "bert-base-cased-vocab.txt").string(),
        "output_dir=" + (dir / "runs").string(), std::string("name=tiny"), std::string("runtime.threads=1"),
        std::string("logging.progress_interval_s=1000")})
    train += " --set " + quote(set);
  r = run_command(train);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return dir / "runs" / "tiny";
}

TEST(ReportE2E, ReportOfARealRunRendersInHeadlessChromium) {
  if (chromium_program().empty()) GTEST_SKIP() << kNoChromium;
  TempDir dir("mgca-e2e-report");
  const fs::path run = train_tiny_run(dir.path());
  ASSERT_FALSE(::testing::Test::HasFailure());
  const auto r = run_command(mgca_program().string() + " report " + quote(run));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const fs::path html = run / "report.html";
  EXPECT_EQ(r.output, html.string() + "\n");
  const std::string text = read_text_file(html);
  EXPECT_NE(text.find("step-00000004"), std::string::npos);  // both checkpoints are listed
  EXPECT_NE(text.find("step-00000008"), std::string::npos);
  EXPECT_NE(text.find("loss_ita"), std::string::npos);

  const auto page = load_page(html, dir.path());
  EXPECT_EQ(page.exit_code, 0) << page.log;
  EXPECT_TRUE(page.console.empty()) << "console messages:\n" << fmt::format("{}", fmt::join(page.console, "\n"));
  // Charts drawn: the lines and areas are the only coloured pixels on the page.
  EXPECT_GT(page.coloured, 20000) << page.pixels << " pixels, " << page.non_white << " non-white";
  EXPECT_GT(page.non_white, page.pixels / 50);
  EXPECT_GE(occurrences(page.dom, "<svg"), 8u);
  EXPECT_GE(occurrences(page.dom, "<path"), 20u);
}

TEST(ReportE2E, TheCheckerSeesAScriptErrorAndABlankPage) {
  if (chromium_program().empty()) GTEST_SKIP() << kNoChromium;
  TempDir dir("mgca-e2e-report");
  const fs::path broken = dir / "broken.html";
  write_text_file(broken, "<!DOCTYPE html><html><body><p>broken</p>"
                          "<script>throw new Error('report-check-broken')</script></body></html>");
  const auto page = load_page(broken, dir.path());
  ASSERT_EQ(page.console.size(), 1u) << page.log;
  EXPECT_NE(page.console[0].find("Uncaught Error: report-check-broken"), std::string::npos) << page.console[0];
  EXPECT_EQ(page.coloured, 0);                    // nothing drawn
  EXPECT_LT(page.non_white, page.pixels / 1000);  // one word of text on a white page
}

TEST(ReportE2E, ProgramErrorsNameTheFolderOrTheFile) {
  TempDir dir("mgca-e2e-report");
  auto r = run_command(mgca_program().string() + " report " + quote(dir / "no-such-run"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("run folder " + (dir / "no-such-run").string() + " does not exist"), std::string::npos)
      << r.output;
  const fs::path empty = dir / "empty";
  fs::create_directories(empty);
  write_text_file(empty / "metrics.jsonl", "");
  r = run_command(mgca_program().string() + " report " + quote(empty) + " --out " + quote(dir / "x.html"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find((empty / "metrics.jsonl").string() + " holds no logged step"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "x.html"));
  r = run_command(mgca_program().string() + " report");
  EXPECT_EQ(r.exit_code, 2) << r.output;
}

}  // namespace
}  // namespace mgca::test
