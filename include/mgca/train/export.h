// `mgca export`: the image encoder of a checkpoint as its own safetensors
// file, for the linear probe and for downstream use (no torch in this header).
//
// The file holds the parameters and buffers of the model's `image.*`
// submodule without the prefix, and the metadata that mgca/eval/encoder.h
// reads (all strings): format = "mgca-image-encoder", image_encoder,
// image_size, resnet_input_size, config (the run's resolved TOML), and
// source_checkpoint, step.
#pragma once

#include <filesystem>

namespace mgca::train {

// `path`: a checkpoint folder (step-N with DONE), a checkpoint directory
// holding step-N folders, or a run folder (runs/NAME, using its checkpoints/):
// the newest complete checkpoint is taken. Errors name what is missing.
std::filesystem::path resolve_checkpoint(const std::filesystem::path& path);

// Writes the image encoder of `checkpoint` (resolved as above) to `out`
// atomically. Returns the number of tensors written.
int64_t export_image_encoder(const std::filesystem::path& checkpoint, const std::filesystem::path& out);

}  // namespace mgca::train
