// mgca report RUN [--out FILE]: one self-contained HTML page about a training
// run (charts, checkpoints, resolved config), train::write_run_report.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "command.h"
#include "mgca/train/run_report.h"

namespace mgca::cli {
namespace {

int run_report(int argc, char** argv) {
  CLI::App app{"Write one self-contained HTML report of a training run: loss parts, learning rate, throughput, "
               "time split, per-rank timing, memory, checkpoints and the resolved config (inline SVG, opens "
               "offline)",
               "mgca report"};
  std::string run, out;
  app.add_option("RUN", run, "the run folder of mgca train (output_dir/name, holding metrics.jsonl)")->required();
  app.add_option("--out", out, "the HTML file to write (default RUN/report.html)");
  if (const int code = parse_arguments(app, argc, argv); code >= 0) return code;
  const auto written = train::write_run_report(run, out);
  fmt::print("{}\n", written.string());
  return kExitOk;
}

const Registration report_registration{"report", "write an HTML report of a training run (charts, checkpoints, config)",
                                       run_report};

}  // namespace
}  // namespace mgca::cli
