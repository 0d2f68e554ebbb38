// Charts of the run report (mgca report): inline SVG drawn by our own code,
// so the report is one self-contained HTML file that opens offline (no
// script, no external file). Local to the calling process; no torch.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace mgca::train::chart {

// `text` with & < > " ' replaced by entities: safe inside HTML text, SVG
// text and quoted attribute values.
std::string html_escape(std::string_view text);

enum class SeriesKind {
  Line,   // y against x; a non-finite y breaks the line, a lone point is a dot
  Band,   // the area between low and high (e.g. min..max over ranks), y unused
  Stack,  // stacked on the Stack series before it (non-finite counts as 0)
};

struct Series {
  std::string label;
  SeriesKind kind = SeriesKind::Line;
  std::vector<double> y;          // Line and Stack: one value per x
  std::vector<double> low, high;  // Band: one pair per x
  bool emphasis = false;          // a thicker line (the total loss)
  bool dashed = false;
  int color = -1;  // palette index; -1: the next one (a band and its median line share one)
};

struct Chart {
  std::string title;
  std::string x_label = "step";
  std::string y_label;
  std::vector<double> x;  // shared by every series, ascending
  std::vector<Series> series;
  bool y_from_zero = false;  // the y axis includes 0 (times, throughput, memory)
};

// Charts with more x values than this are drawn from buckets (lines keep
// each bucket's minimum and maximum, so spikes stay visible).
inline constexpr size_t kMaxChartPoints = 2000;

// A <figure> with the title, the SVG and an HTML legend; every text
// escaped. A chart without one finite value says so instead of drawing
// axes. Errors: a series whose length differs from x (mgca::Error).
std::string render_chart(const Chart& chart);

}  // namespace mgca::train::chart
