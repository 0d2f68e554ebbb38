// Inline SVG charts for the run report: axes with round ticks, lines broken
// at missing values, bands, stacked areas, bucketed when long.
#include "mgca/train/report_chart.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "mgca/util/error.h"

namespace mgca::train::chart {
namespace {

constexpr double kChartWidth = 720, kChartHeight = 280;
constexpr double kPlotLeft = 72, kPlotRight = 704, kPlotTop = 12, kPlotBottom = 236;
// Matplotlib's tab10: distinct on screen and in print.
constexpr const char* kPalette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct ChartPoint {
  double x, y;  // y NaN: the line breaks here
};

struct ChartAxis {
  double lo = 0, hi = 1, step = 1;
  std::vector<double> ticks;
};

// Round tick spacing (1, 2 or 5 × 10^k) giving about `target` intervals.
ChartAxis nice_axis(double lo, double hi, bool integer) {
  if (!(hi > lo)) {
    const double pad = lo == 0 ? 1 : std::abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  const double raw = (hi - lo) / 5;
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  const double norm = raw / magnitude;
  double step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * magnitude;
  if (integer) step = std::max(1.0, std::round(step));
  ChartAxis axis;
  axis.step = step;
  axis.lo = std::floor(lo / step + 1e-9) * step;
  axis.hi = std::ceil(hi / step - 1e-9) * step;
  // A range beyond double's reach (±1e308) or below its resolution at this
  // magnitude: the bare ends, no round ticks.
  if (!std::isfinite(axis.hi - axis.lo) || !(axis.hi - axis.lo > 0) || (axis.hi - axis.lo) / step > 12) {
    return ChartAxis{lo, hi, hi - lo, {lo, hi}};
  }
  for (int k = 0; axis.lo + k * step <= axis.hi + step * 1e-6; ++k) {
    const double t = axis.lo + k * step;
    axis.ticks.push_back(std::abs(t) < step * 1e-9 ? 0 : t);
  }
  return axis;
}

std::string tick_text(double value, double step) {
  if (value == 0) return "0";
  const double a = std::abs(value);
  if (a >= 1e6 || step < 1e-3) return fmt::format("{:.3g}", value);
  const int decimals = std::max(0, static_cast<int>(-std::floor(std::log10(step) + 1e-9)));
  return fmt::format("{:.{}f}", value, decimals);
}

// Index ranges [begin, end): one per x, or about kMaxChartPoints / 2 buckets.
std::vector<std::pair<size_t, size_t>> chart_buckets(size_t n) {
  std::vector<std::pair<size_t, size_t>> buckets;
  const size_t size = n <= kMaxChartPoints ? 1 : (n + kMaxChartPoints / 2 - 1) / (kMaxChartPoints / 2);
  for (size_t begin = 0; begin < n; begin += size) buckets.emplace_back(begin, std::min(n, begin + size));
  return buckets;
}

// A line's points: each bucket's minimum and maximum in x order, a break
// where a bucket has no finite value.
std::vector<ChartPoint> line_points(const std::vector<double>& x, const std::vector<double>& y) {
  std::vector<ChartPoint> points;
  for (const auto& [begin, end] : chart_buckets(x.size())) {
    size_t lo = end, hi = end;
    for (size_t i = begin; i < end; ++i) {
      if (!std::isfinite(y[i])) continue;
      if (lo == end || y[i] < y[lo]) lo = i;
      if (hi == end || y[i] > y[hi]) hi = i;
    }
    if (lo == end) {
      points.push_back({x[begin], kNaN});
      continue;
    }
    points.push_back({x[std::min(lo, hi)], y[std::min(lo, hi)]});
    if (lo != hi) points.push_back({x[std::max(lo, hi)], y[std::max(lo, hi)]});
  }
  return points;
}

// A band's (x, low, high) per bucket: the lowest low and the highest high.
struct BandPoint {
  double x, low, high;  // NaN low: a gap
};
std::vector<BandPoint> band_points(const std::vector<double>& x, const Series& s) {
  std::vector<BandPoint> points;
  for (const auto& [begin, end] : chart_buckets(x.size())) {
    BandPoint p{x[(begin + end - 1) / 2], kNaN, kNaN};
    for (size_t i = begin; i < end; ++i) {
      if (!std::isfinite(s.low[i]) || !std::isfinite(s.high[i])) continue;
      p.low = std::isnan(p.low) ? s.low[i] : std::min(p.low, s.low[i]);
      p.high = std::isnan(p.high) ? s.high[i] : std::max(p.high, s.high[i]);
    }
    points.push_back(p);
  }
  return points;
}

// Stacked series: each bucket's mean, a missing value counting as 0.
std::vector<BandPoint> stack_points(const std::vector<double>& x, const std::vector<double>& y,
                                    const std::vector<double>& below) {
  std::vector<BandPoint> points;
  size_t k = 0;
  for (const auto& [begin, end] : chart_buckets(x.size())) {
    double sum = 0;
    for (size_t i = begin; i < end; ++i) sum += std::isfinite(y[i]) ? y[i] : 0;
    const double base = below.empty() ? 0 : below[k];
    points.push_back({x[(begin + end - 1) / 2], base, base + sum / static_cast<double>(end - begin)});
    ++k;
  }
  return points;
}

struct ChartScale {
  ChartAxis xa, ya;
  double px(double x) const { return kPlotLeft + (x - xa.lo) / (xa.hi - xa.lo) * (kPlotRight - kPlotLeft); }
  double py(double y) const { return kPlotBottom - (y - ya.lo) / (ya.hi - ya.lo) * (kPlotBottom - kPlotTop); }
};

std::string polygon_path(const ChartScale& scale, const std::vector<BandPoint>& points) {
  // One closed polygon per run of finite points: high forward, low backward.
  std::string d;
  size_t i = 0;
  while (i < points.size()) {
    if (std::isnan(points[i].low)) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < points.size() && !std::isnan(points[j].low)) ++j;
    if (j - i == 1) {  // a lone point: a short vertical bar
      const double x = scale.px(points[i].x);
      d += fmt::format("M{:.1f} {:.1f}H{:.1f}V{:.1f}H{:.1f}Z", x - 1.5, scale.py(points[i].high), x + 1.5,
                       scale.py(points[i].low), x - 1.5);
    } else {
      for (size_t k = i; k < j; ++k)
        d += fmt::format("{}{:.1f} {:.1f}", k == i ? "M" : "L", scale.px(points[k].x), scale.py(points[k].high));
      for (size_t k = j; k-- > i;) d += fmt::format("L{:.1f} {:.1f}", scale.px(points[k].x), scale.py(points[k].low));
      d += "Z";
    }
    i = j;
  }
  return d;
}

}  // namespace

std::string html_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string render_chart(const Chart& chart) {
  const size_t n = chart.x.size();
  for (const auto& s : chart.series) {
    const bool band = s.kind == SeriesKind::Band;
    MGCA_CHECK(band ? (s.low.size() == n && s.high.size() == n) : s.y.size() == n,
               "chart '{}': series '{}' has {} values for {} x values", chart.title, s.label,
               band ? s.low.size() : s.y.size(), n);
  }
  // Everything drawn, in data units, before scaling.
  std::vector<std::vector<ChartPoint>> lines(chart.series.size());
  std::vector<std::vector<BandPoint>> areas(chart.series.size());
  std::vector<double> stack_top;
  double y_lo = std::numeric_limits<double>::infinity(), y_hi = -y_lo;
  auto include = [&](double v) {
    if (!std::isfinite(v)) return;
    y_lo = std::min(y_lo, v);
    y_hi = std::max(y_hi, v);
  };
  bool any_stack = false;
  for (size_t i = 0; i < chart.series.size(); ++i) {
    const Series& s = chart.series[i];
    if (s.kind == SeriesKind::Line) {
      lines[i] = line_points(chart.x, s.y);
      for (const auto& p : lines[i]) include(p.y);
    } else if (s.kind == SeriesKind::Band) {
      areas[i] = band_points(chart.x, s);
      for (const auto& p : areas[i]) include(p.low), include(p.high);
    } else {
      bool finite = false;
      for (const double v : s.y) finite |= std::isfinite(v);
      if (!finite) continue;  // a part this run never logged: not drawn, not in the legend
      areas[i] = stack_points(chart.x, s.y, stack_top);
      stack_top.clear();
      for (const auto& p : areas[i]) stack_top.push_back(p.high), include(p.high);
      any_stack = true;
    }
  }
  if (any_stack) include(0);
  std::string html = fmt::format("<figure class=\"chart\"><figcaption>{}</figcaption>", html_escape(chart.title));
  if (n == 0 || !(y_hi >= y_lo)) return html + "<p class=\"empty\">no values logged</p></figure>";
  if (chart.y_from_zero) y_lo = std::min(y_lo, 0.0), y_hi = std::max(y_hi, 0.0);

  ChartScale scale{nice_axis(chart.x.front(), chart.x.back(), true), nice_axis(y_lo, y_hi, false)};
  std::string svg = fmt::format(
      "<svg viewBox=\"0 0 {} {}\" width=\"{}\" height=\"{}\" role=\"img\" aria-label=\"{}\">"
      "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#fff\" stroke=\"#bbb\"/>",
      kChartWidth, kChartHeight, kChartWidth, kChartHeight, html_escape(chart.title), kPlotLeft, kPlotTop,
      kPlotRight - kPlotLeft, kPlotBottom - kPlotTop);
  for (const double t : scale.ya.ticks) {
    const double y = scale.py(t);
    svg += fmt::format(
        "<line x1=\"{}\" x2=\"{}\" y1=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#e4e4e4\"/>"
        "<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\" class=\"tick\">{}</text>",
        kPlotLeft, kPlotRight, y, y, kPlotLeft - 6, y + 4, tick_text(t, scale.ya.step));
  }
  for (const double t : scale.xa.ticks) {
    const double x = scale.px(t);
    svg += fmt::format(
        "<line x1=\"{:.1f}\" x2=\"{:.1f}\" y1=\"{}\" y2=\"{}\" stroke=\"#e4e4e4\"/>"
        "<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\" class=\"tick\">{}</text>",
        x, x, kPlotTop, kPlotBottom, x, kPlotBottom + 16, tick_text(t, scale.xa.step));
  }
  svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" class=\"axis\">{}</text>",
                     (kPlotLeft + kPlotRight) / 2, kChartHeight - 6, html_escape(chart.x_label));
  svg += fmt::format(
      "<text transform=\"translate(14 {}) rotate(-90)\" text-anchor=\"middle\" class=\"axis\">{}</text>",
      (kPlotTop + kPlotBottom) / 2, html_escape(chart.y_label));

  std::string legend = "<div class=\"legend\">";
  int next_color = 0;
  std::vector<std::string> line_svg;  // lines go over the areas
  for (size_t i = 0; i < chart.series.size(); ++i) {
    const Series& s = chart.series[i];
    if (s.kind == SeriesKind::Stack && areas[i].empty()) continue;
    const char* color = kPalette[(s.color >= 0 ? s.color : next_color++) % std::size(kPalette)];
    const std::string title = "<title>" + html_escape(s.label) + "</title>";
    if (s.kind == SeriesKind::Line) {
      std::string d, dots;
      const auto& points = lines[i];
      for (size_t k = 0; k < points.size(); ++k) {
        if (std::isnan(points[k].y)) continue;
        const bool joined = k > 0 && !std::isnan(points[k - 1].y);
        const bool lone = !joined && (k + 1 == points.size() || std::isnan(points[k + 1].y));
        const double px = scale.px(points[k].x), py = scale.py(points[k].y);
        if (lone) {
          dots += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\">{}</circle>", px, py, color,
                              title);
        } else {
          d += fmt::format("{}{:.1f} {:.1f}", joined ? "L" : "M", px, py);
        }
      }
      std::string path;
      if (!d.empty()) {
        path = fmt::format("<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"{}\"{} "
                           "stroke-linejoin=\"round\">{}</path>",
                           d, color, s.emphasis ? 2.5 : 1.4, s.dashed ? " stroke-dasharray=\"5 3\"" : "", title);
      }
      line_svg.push_back(path + dots);
      legend += fmt::format("<span><i style=\"border-top:{}px {} {}\"></i>{}</span>", s.emphasis ? 3 : 2,
                            s.dashed ? "dashed" : "solid", color, html_escape(s.label));
    } else {
      const bool band = s.kind == SeriesKind::Band;
      svg += fmt::format("<path d=\"{}\" fill=\"{}\" fill-opacity=\"{}\" stroke=\"none\">{}</path>",
                         polygon_path(scale, areas[i]), color, band ? 0.25 : 0.75, title);
      legend += fmt::format("<span><i class=\"area\" style=\"background:{};opacity:{}\"></i>{}</span>", color,
                            band ? 0.35 : 0.75, html_escape(s.label));
    }
  }
  for (const auto& line : line_svg) svg += line;
  svg += "</svg>";
  return html + svg + legend + "</div></figure>";
}

}  // namespace mgca::train::chart
