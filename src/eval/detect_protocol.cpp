#include "mgca/eval/detect_protocol.h"

#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "mgca/eval/downstream.h"
#include "mgca/eval/localization_metrics.h"
#include "mgca/util/error.h"
#include "mgca/util/log.h"
#include "mgca/util/rng.h"

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

double split_map(comm::Communicator& comm, DetectionNet& net, const BoxedImages& split, const DetectOptions& o) {
  return mean_average_precision(detect_split(comm, net, split, o.batch_size, o.yolo), split.boxes).map;
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

DetectRun train_detector(comm::Communicator& comm, const std::shared_ptr<model::ImageEncoderImpl>& encoder,
                         const BoxedImages& train, const std::vector<int64_t>& train_rows, const BoxedImages& val,
                         const BoxedImages& test, const DetectOptions& options, uint64_t seed) {
  MGCA_CHECK(!train_rows.empty() && val.count > 0 && test.count > 0,
             "detection: empty split (train rows {}, val {}, test {})", train_rows.size(), val.count, test.count);
  MGCA_CHECK(options.batch_size > 0 && options.max_epochs > 0, "detection: batch size and epochs must be positive");
  torch::manual_seed(seed);  // the head's initialisation: the same on every rank
  DetectionNet net(encoder);
  net->to(encoder->parameters().front().device());
  net->train();
  auto parameters = net->head_parameters();
  torch::optim::AdamW optimizer(
      parameters, torch::optim::AdamWOptions(options.learning_rate).weight_decay(options.weight_decay).betas({0.9, 0.999}));
  DetectRun run;
  run.train_images = static_cast<int64_t>(train_rows.size());
  run.best_val_map = -std::numeric_limits<double>::infinity();
  std::vector<torch::Tensor> best;
  int64_t since_best = 0;
  for (int64_t epoch = 0; epoch < options.max_epochs; ++epoch) {
    const auto order = util::permutation(static_cast<int64_t>(train_rows.size()),
                                         util::make_key({seed, static_cast<uint64_t>(epoch), 0xde7u}));
    for (size_t first = 0; first < order.size(); first += static_cast<size_t>(options.batch_size)) {
      std::vector<int64_t> global;
      for (size_t k = first; k < std::min(order.size(), first + static_cast<size_t>(options.batch_size)); ++k) {
        global.push_back(train_rows[static_cast<size_t>(order[k])]);
      }
      const auto mine = rank_share(global, comm.rank(), comm.size());
      optimizer.zero_grad();
      double contributing = 0;
      if (!mine.empty()) {
        const auto [x, boxes] = batch_of(train, mine, device_of(net));
        yolo_loss(net->forward(x), boxes, train.size, options.yolo).backward();
        contributing = 1;
      }
      const double ranks = comm.all_reduce_scalar(contributing, comm::ReduceOp::Sum);
      for (auto& p : parameters) {
        if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
        comm.all_reduce(p.mutable_grad(), comm::ReduceOp::Sum);
        p.mutable_grad().div_(ranks);
      }
      optimizer.step();
    }
    ++run.epochs;
    // Lightning's EarlyStopping(mode "max", min_delta 0): only a strictly higher mAP counts.
    const double map = split_map(comm, net, val, options);
    if (map > run.best_val_map) {
      run.best_val_map = map;
      run.best_epoch = epoch + 1;
      since_best = 0;
      best.clear();
      for (const auto& t : net->parameters()) best.push_back(t.detach().clone());
      for (const auto& t : net->buffers()) best.push_back(t.detach().clone());
    } else if (++since_best >= options.patience) {
      break;
    }
  }
  {
    torch::NoGradGuard no_grad;
    size_t k = 0;
    for (auto& t : net->parameters()) t.copy_(best[k++]);
    for (auto& t : net->buffers()) t.copy_(best[k++]);
  }
  run.test_map = split_map(comm, net, test, options);
  return run;
}

void run_detect_grid(comm::Communicator& comm, const std::string& model_name,
                     const std::shared_ptr<model::ImageEncoderImpl>& encoder, const std::string& dataset_name,
                     const BoxedImages& train, const BoxedImages& val, const BoxedImages& test,
                     const DetectGridOptions& options, Results& results) {
  for (const double fraction : options.fractions) {
    ResultEntry entry;
    entry.method = model_name;
    entry.dataset = dataset_name;
    entry.setting = fmt::format("{:g}%", fraction * 100);
    entry.metric = "mAP";
    entry.details["runs"] = nlohmann::json::array();
    for (int64_t k = 0; k < options.seeds; ++k) {
      const uint64_t seed = options.base_seed + static_cast<uint64_t>(k);
      const auto rows = fraction_rows(train.count, fraction, seed);
      const auto run = train_detector(comm, encoder, train, rows, val, test, options.train, seed);
      log::info("detect {} | {} | {} train images, seed {}: mAP {:.4f} (best epoch {} of {})", model_name,
                entry.setting, run.train_images, seed, run.test_map, run.best_epoch, run.epochs);
      entry.values.push_back(run.test_map);
      entry.seeds.push_back(seed);
      entry.details["runs"].push_back({{"seed", seed}, {"train_images", run.train_images}, {"epochs", run.epochs},
                                       {"best_epoch", run.best_epoch}, {"best_val_map", run.best_val_map}});
    }
    results.add(std::move(entry));
  }
}

}  // namespace mgca::eval
