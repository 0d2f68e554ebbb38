// Synthetic chest radiographs with reports and labels (docs/contract.md §5.3), for
// demos, tests and the learning test that pretraining beats random init.
//
// Each image has a body, two lung fields with vascular texture, ribs, spine,
// heart shadow and noise; findings are placed by the patient's side and a
// lung zone, and the report names them with that side and zone (and negates
// a random subset of the absent ones), so image regions and sentences carry
// matching signal. The patient's right is on the image's left, as on a PA film.
//
// Sample i depends only on (seed, split, i): any rank or thread generating it
// produces the same bytes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mgca/io/dataset_file.h"

namespace mgca::data {

enum class SynthFinding : int {
  Cardiomegaly = 0,
  Consolidation,
  LungNodule,
  PleuralEffusion,
  Pneumothorax,
  SupportDevices,
};
inline constexpr int kNumSynthFindings = 6;

enum class Side : int { Right = 0, Left = 1 };          // the patient's side
enum class Zone : int { Upper = 0, Middle = 1, Lower = 2 };

struct PlacedFinding {
  SynthFinding kind;
  Side side;       // ignored for cardiomegaly
  Zone zone;       // ignored for cardiomegaly
  float severity;  // 0..1: size / extent
};

struct SynthOptions {
  int64_t image_size = 256;  // 32..1024
  uint64_t seed = 0;
  std::string split = "train";  // part of the key: splits never share samples
  double prevalence = 0.25;     // chance of each finding per image
  // Multiplies the radius of the focal lesions (consolidation, nodule);
  // (0, 4]. 1 keeps every sample's bytes as before the option existed.
  double lesion_scale = 1.0;
};

struct SynthSample {
  std::string id;                      // "synth-<split>-<index>"
  std::vector<uint8_t> image;          // image_size² grayscale, row-major
  std::vector<std::string> sentences;  // in cleaned form (lower-case ASCII words)
  std::string report;                  // sentences joined by '\n' (as stored)
  std::vector<float> labels;           // synth_label_names() order: 1 or 0
  std::vector<PlacedFinding> findings;
  // Where the lung lesions (consolidation, nodule, effusion, pneumothorax)
  // changed the image by more than kSynthMaskThreshold before quantisation:
  // image_size² bytes of 0/1, and one box per lesion around its mask pixels
  // (none when a lesion changed no pixel that much). Cardiomegaly (a normal
  // structure enlarged) and support devices are not lesions, as in the
  // RSNA and SIIM annotations.
  std::vector<uint8_t> mask;
  std::vector<io::Box> boxes;
};

// Intensity change (in [0, 1] units, before contrast and noise) that puts a
// pixel into a lesion's mask.
inline constexpr float kSynthMaskThreshold = 0.04f;

// Whether a finding kind is a lesion that gets a mask and a box.
bool is_synth_lesion(SynthFinding kind);

// "Cardiomegaly", "Consolidation", "Lung Nodule", "Pleural Effusion",
// "Pneumothorax", "Support Devices", "No Finding" (none of the first five).
const std::vector<std::string>& synth_label_names();

// Fills `out` with sample `index`; reuses out's buffers. Thread-safe.
void generate_synth_sample(const SynthOptions& options, int64_t index, SynthSample& out);

// Findings only (cheap): what generate_synth_sample would place for `index`.
std::vector<PlacedFinding> synth_findings(const SynthOptions& options, int64_t index);

}  // namespace mgca::data
