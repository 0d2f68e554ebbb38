#include "mgca/eval/detect_protocol.h"

#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "mgca/eval/downstream.h"
#include "mgca/eval/localization_metrics.h"
#include "mgca/util/error.h"

namespace mgca::eval {
namespace {

torch::Device device_of(DetectionNet& net) { return net->parameters().front().device(); }

// Rows of a split as a normalised float batch on `device` and their boxes.
std::pair<torch::Tensor, std::vector<std::vector<io::Box>>> batch_of(const BoxedImages& split,
                                                                    const std::vector<int64_t>& rows,
                                                                    torch::Device device) {
  const int64_t s = split.size, n = static_cast<int64_t>(rows.size());
  auto images = torch::empty({n, 1, s, s}, torch::kUInt8);
  std::vector<std::vector<io::Box>> boxes;
  for (int64_t i = 0; i < n; ++i) {
    const auto row = rows[static_cast<size_t>(i)];
    std::memcpy(images.data_ptr<uint8_t>() + i * s * s, split.images.data() + row * s * s, static_cast<size_t>(s * s));
    boxes.push_back(split.boxes[static_cast<size_t>(row)]);
  }
  return {normalise_downstream_images(images.to(device)), std::move(boxes)};
}

MapReport split_map(comm::Communicator& comm, DetectionNet& net, const BoxedImages& split, const DetectOptions& o) {
  return mean_average_precision(detect_split(comm, net, split, o.batch_size, o.yolo), split.boxes);
}

}  // namespace

BoxedImages load_boxed_images(const io::Dataset& dataset, int64_t input_size) {
  MGCA_CHECK(dataset.annotations().boxes, "dataset '{}' has no boxes (detection needs a dataset written with "
             "boxes: mgca synth, mgca prep --format rsna|object-cxr)", dataset.dir().string());
  BoxedImages out;
  out.count = dataset.size();
  out.size = input_size;
  const int64_t S = dataset.image_size(), s = input_size;
  const float scale = static_cast<float>(s) / static_cast<float>(S);
  out.images.resize(static_cast<size_t>(out.count * s * s));
  auto image = torch::empty({1, 1, S, S}, torch::kUInt8);
  for (int64_t i = 0; i < out.count; ++i) {
    dataset.read_image(i, image.data_ptr<uint8_t>());
    torch::Tensor x = image;
    if (S != s) {
      x = at::upsample_bilinear2d(image.to(torch::kFloat32), {s, s}, false).round().clamp(0, 255).to(torch::kUInt8);
    }
    x = x.contiguous();
    std::memcpy(out.images.data() + i * s * s, x.data_ptr<uint8_t>(), static_cast<size_t>(s * s));
    auto boxes = dataset.boxes(i);
    for (auto& b : boxes) b = {b.x0 * scale, b.y0 * scale, b.x1 * scale, b.y1 * scale};
    out.boxes.push_back(std::move(boxes));
  }
  return out;
}

std::vector<std::vector<ScoredBox>> detect_split(comm::Communicator& comm, DetectionNet& net, const BoxedImages& split,
                                                 int64_t batch_size, const YoloConstants& constants,
                                                 int64_t max_detections) {
  torch::NoGradGuard no_grad;
  net->eval();
  const auto rows = all_rows(split.count);
  const auto mine = rank_share(rows, comm.rank(), comm.size());
  // Every rank's detections padded to the largest share: [share, max, 5], NaN score = none.
  const int64_t share = (split.count + comm.size() - 1) / comm.size();
  auto packed = torch::full({share, max_detections, 5}, std::numeric_limits<double>::quiet_NaN(), torch::kFloat64);
  auto p = packed.accessor<double, 3>();
  for (size_t first = 0; first < mine.size(); first += static_cast<size_t>(batch_size)) {
    const std::vector<int64_t> part(mine.begin() + static_cast<std::ptrdiff_t>(first),
                                    mine.begin() + static_cast<std::ptrdiff_t>(std::min(mine.size(), first + batch_size)));
    const auto [x, boxes] = batch_of(split, part, device_of(net));
    const auto detections = yolo_nms(yolo_decode(net->forward(x), split.size), constants);
    for (size_t i = 0; i < detections.size(); ++i) {
      const auto& d = detections[i];
      for (size_t k = 0; k < std::min<size_t>(d.size(), static_cast<size_t>(max_detections)); ++k) {
        const auto slot = static_cast<int64_t>(first + i);
        p[slot][static_cast<int64_t>(k)][0] = d[k].box.x0;
        p[slot][static_cast<int64_t>(k)][1] = d[k].box.y0;
        p[slot][static_cast<int64_t>(k)][2] = d[k].box.x1;
        p[slot][static_cast<int64_t>(k)][3] = d[k].box.y1;
        p[slot][static_cast<int64_t>(k)][4] = d[k].score;
      }
    }
  }
  net->train();
  const auto gathered = comm.all_gather(packed).contiguous();
  const auto g = gathered.accessor<double, 3>();
  std::vector<std::vector<ScoredBox>> out;
  for (int r = 0; r < comm.size(); ++r) {
    const auto theirs = rank_share(rows, r, comm.size());
    for (size_t i = 0; i < theirs.size(); ++i) {
      std::vector<ScoredBox> image;
      const int64_t slot = r * share + static_cast<int64_t>(i);
      for (int64_t k = 0; k < max_detections && !std::isnan(g[slot][k][4]); ++k) {
        image.push_back({{static_cast<float>(g[slot][k][0]), static_cast<float>(g[slot][k][1]),
                          static_cast<float>(g[slot][k][2]), static_cast<float>(g[slot][k][3])},
                         g[slot][k][4]});
      }
      out.push_back(std::move(image));
    }
  }
  return out;
}

HeadRun train_detector(comm::Communicator& comm, const std::shared_ptr<model::ImageEncoderImpl>& encoder,
                       const BoxedImages& train, const std::vector<int64_t>& train_rows, const BoxedImages& val,
                       const BoxedImages& test, const DetectOptions& options, uint64_t seed) {
  check_head_run("detection", train_rows.size(), val.count, test.count, options);
  auto net = new_head<DetectionNet>(encoder, seed);
  // Lightning's EarlyStopping on the validation mAP, mode "max".
  const auto trained = train_head(
      comm, *net, net->head_parameters(), train_rows, options, seed, 0xde7u,
      [&](const std::vector<int64_t>& rows) {
        const auto [x, boxes] = batch_of(train, rows, device_of(net));
        return yolo_loss(net->forward(x), boxes, train.size, options.yolo);
      },
      [&] { return split_map(comm, net, val, options).map; }, ValidationGoal::Maximise, "detection");
  const auto scored = split_map(comm, net, test, options);
  return {scored.map, static_cast<int64_t>(train_rows.size()), trained,
          {{"test_images_scored", static_cast<double>(scored.images)}}};
}

}  // namespace mgca::eval
