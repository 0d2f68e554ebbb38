#include "mgca/eval/localization_metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "mgca/util/error.h"

namespace mgca::eval {

double image_dice(const uint8_t* predicted, const uint8_t* truth, int64_t pixels) {
  int64_t p = 0, t = 0, both = 0;
  for (int64_t j = 0; j < pixels; ++j) {
    const bool pj = predicted[j] != 0, tj = truth[j] != 0;
    p += pj;
    t += tj;
    both += pj && tj;
  }
  if (t == 0) return p == 0 ? 1.0 : 0.0;
  return 2.0 * static_cast<double>(both) / static_cast<double>(p + t);
}

void DiceMean::add(const uint8_t* predicted, const uint8_t* truth, int64_t pixels) {
  sum_ += image_dice(predicted, truth, pixels);
  ++count_;
}

double DiceMean::mean() const {
  MGCA_CHECK(count_ > 0, "Dice: no image was scored");
  return sum_ / static_cast<double>(count_);
}

double box_iou(const io::Box& a, const io::Box& b) {
  const double w = std::max(0.0, static_cast<double>(std::min(a.x1, b.x1)) - std::max(a.x0, b.x0));
  const double h = std::max(0.0, static_cast<double>(std::min(a.y1, b.y1)) - std::max(a.y0, b.y0));
  const double inter = w * h;
  const double area_a = (static_cast<double>(a.x1) - a.x0) * (static_cast<double>(a.y1) - a.y0);
  const double area_b = (static_cast<double>(b.x1) - b.x0) * (static_cast<double>(b.y1) - b.y0);
  const double uni = area_a + area_b - inter;
  return uni > 0 ? inter / uni : 0.0;
}

double nms_iou(const io::Box& a, const io::Box& b) {
  const double w = std::max(0.0, static_cast<double>(std::min(a.x1, b.x1)) - std::max(a.x0, b.x0) + 1);
  const double h = std::max(0.0, static_cast<double>(std::min(a.y1, b.y1)) - std::max(a.y0, b.y0) + 1);
  const double inter = w * h;
  const double area_a = (static_cast<double>(a.x1) - a.x0 + 1) * (static_cast<double>(a.y1) - a.y0 + 1);
  const double area_b = (static_cast<double>(b.x1) - b.x0 + 1) * (static_cast<double>(b.y1) - b.y0 + 1);
  return inter / (area_a + area_b - inter + 1e-16);
}

std::vector<double> mgca_map_iou_thresholds() { return {0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75}; }

MapReport mean_average_precision(const std::vector<std::vector<ScoredBox>>& predictions,
                                 const std::vector<std::vector<io::Box>>& targets, const MapOptions& options) {
  MGCA_CHECK(predictions.size() == targets.size(), "mAP: {} images of predictions but {} of targets",
             predictions.size(), targets.size());
  MGCA_CHECK(!options.iou_thresholds.empty() && options.max_detections > 0,
             "mAP: needs IoU thresholds and a positive max_detections");
  MapReport report;
  // Per image: detections by descending score (stable), at most max_detections.
  struct Scored {
    double score;
    size_t image;
    size_t index;  // in the image's sorted detections
  };
  std::vector<std::vector<ScoredBox>> kept(predictions.size());
  std::vector<Scored> all;
  for (size_t i = 0; i < predictions.size(); ++i) {
    if (options.mgca_image_subset && (targets[i].empty() || predictions[i].empty())) continue;
    auto& dets = kept[i];
    dets = predictions[i];
    std::stable_sort(dets.begin(), dets.end(),
                     [](const ScoredBox& a, const ScoredBox& b) { return a.score > b.score; });
    if (static_cast<int64_t>(dets.size()) > options.max_detections) dets.resize(static_cast<size_t>(options.max_detections));
    for (size_t d = 0; d < dets.size(); ++d) all.push_back({dets[d].score, i, d});
    ++report.images;
    report.targets += static_cast<int64_t>(targets[i].size());
  }
  report.detections = static_cast<int64_t>(all.size());
  std::stable_sort(all.begin(), all.end(), [](const Scored& a, const Scored& b) { return a.score > b.score; });
  if (report.targets == 0) {
    report.map = -1.0;
    report.per_threshold.assign(options.iou_thresholds.size(), -1.0);
    return report;
  }
  constexpr int kRecallPoints = 101;
  for (const double threshold : options.iou_thresholds) {
    // Matching per image, detections in score order.
    std::vector<std::vector<uint8_t>> hit(kept.size());
    for (size_t i = 0; i < kept.size(); ++i) {
      const auto& dets = kept[i];
      hit[i].assign(dets.size(), 0);
      std::vector<uint8_t> matched(targets[i].size(), 0);
      for (size_t d = 0; d < dets.size(); ++d) {
        double best = std::min(threshold, 1 - 1e-10);
        int64_t match = -1;
        for (size_t g = 0; g < targets[i].size(); ++g) {
          if (matched[g]) continue;
          const double iou = box_iou(dets[d].box, targets[i][g]);
          if (iou < best) continue;
          best = iou;
          match = static_cast<int64_t>(g);
        }
        if (match >= 0) {
          matched[static_cast<size_t>(match)] = 1;
          hit[i][d] = 1;
        }
      }
    }
    std::vector<double> recall(all.size()), precision(all.size());
    double tp = 0, fp = 0;
    for (size_t k = 0; k < all.size(); ++k) {
      (hit[all[k].image][all[k].index] ? tp : fp) += 1;
      recall[k] = tp / static_cast<double>(report.targets);
      precision[k] = tp / (tp + fp + std::numeric_limits<double>::epsilon());
    }
    for (size_t k = all.size(); k-- > 1;) precision[k - 1] = std::max(precision[k - 1], precision[k]);
    double sum = 0;
    for (int r = 0; r < kRecallPoints; ++r) {
      // pycocotools' np.linspace(0, 1, 101) is r · 0.01 (last point 1 exactly);
      // searchsorted(side="left"): the first k with recall[k] >= point.
      const double point = r == kRecallPoints - 1 ? 1.0 : r * (1.0 / (kRecallPoints - 1));
      const auto it = std::lower_bound(recall.begin(), recall.end(), point);
      if (it != recall.end()) sum += precision[static_cast<size_t>(it - recall.begin())];
    }
    report.per_threshold.push_back(sum / kRecallPoints);
  }
  report.map = std::accumulate(report.per_threshold.begin(), report.per_threshold.end(), 0.0) /
               static_cast<double>(report.per_threshold.size());
  return report;
}

}  // namespace mgca::eval
