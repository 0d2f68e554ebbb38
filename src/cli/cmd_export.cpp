// mgca export CKPT --out encoder.safetensors: the image encoder of a checkpoint.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "command.h"
#include "mgca/train/export.h"

namespace mgca::cli {
namespace {

int run_export(int argc, char** argv) {
  CLI::App app{"Write the image encoder of a checkpoint as a safetensors file (for the linear probe and "
               "downstream use)",
               "mgca export"};
  std::string checkpoint, out;
  app.add_option("CKPT", checkpoint,
                 "a checkpoint folder (runs/NAME/checkpoints/step-N), or a run or checkpoint directory "
                 "(its newest complete checkpoint)")
      ->required();
  app.add_option("--out", out, "the encoder file to write")->required();
  if (const int code = parse_arguments(app, argc, argv); code >= 0) return code;
  const auto resolved = train::resolve_checkpoint(checkpoint);
  const int64_t count = train::export_image_encoder(resolved, out);
  fmt::print("{}: {} tensors of the image encoder of {}\n", out, count, resolved.string());
  return kExitOk;
}

const Registration export_registration{"export", "write the image encoder of a checkpoint (safetensors)", run_export};

}  // namespace
}  // namespace mgca::cli
