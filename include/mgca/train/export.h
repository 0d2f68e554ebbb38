// `mgca export`: the image encoder of a checkpoint as its own safetensors
// file, for the linear probe and for downstream use.
//
// The file holds the parameters and buffers of the model's `image.*`
// submodule without the prefix, and the metadata that mgca/eval/encoder.h
// reads (all strings): format = "mgca-image-encoder", image_encoder,
// image_size, resnet_input_size, config (the run's resolved TOML), and from
// `mgca export` also source_checkpoint, step.
#pragma once

#include <torch/types.h>

#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace mgca::train {

struct Config;

inline constexpr const char* kImageEncoderFormat = "mgca-image-encoder";

// The one writer of that file: `tensors` under our names (moved to the CPU),
// the metadata of `config` plus `extra` (e.g. source_checkpoint, step),
// written atomically; creates the folder of `out`.
void write_image_encoder(const std::filesystem::path& out,
                         const std::vector<std::pair<std::string, torch::Tensor>>& tensors, const Config& config,
                         const std::map<std::string, std::string>& extra = {});

// `path`: a checkpoint folder (step-N with DONE), a checkpoint directory
// holding step-N folders, or a run folder (runs/NAME, using its checkpoints/):
// the newest complete checkpoint is taken. Errors name what is missing.
std::filesystem::path resolve_checkpoint(const std::filesystem::path& path);

// Writes the image encoder of `checkpoint` (resolved as above) to `out`
// atomically. Returns the number of tensors written.
int64_t export_image_encoder(const std::filesystem::path& checkpoint, const std::filesystem::path& out);

}  // namespace mgca::train
