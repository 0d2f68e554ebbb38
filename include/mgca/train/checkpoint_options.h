// The [checkpoint] table of a job: how often, how many, where, and what to
// resume from (no torch). visit_checkpoint_options() binds each job-file key
// to its field with its meaning and allowed range.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "mgca/util/option_types.h"

namespace mgca::train {

// checkpoint.resume: "auto" (the newest complete checkpoint, if any),
// "none" (start fresh) or a checkpoint folder.
enum class ResumeMode { Auto, None, Folder };
struct ResumeSetting {
  ResumeMode mode = ResumeMode::Auto;
  std::string folder;  // mode == Folder

  static ResumeSetting from_folder(std::string folder) { return {ResumeMode::Folder, std::move(folder)}; }
  // "auto", "none" or the folder; from_text is an error for "".
  std::string text() const;
  static ResumeSetting from_text(const std::string& text);
  bool operator==(const ResumeSetting& other) const { return mode == other.mode && folder == other.folder; }
};

struct CheckpointOptions {
  int64_t every_steps = 1000;  // 0 = only at the end and on preemption
  int64_t keep = 3;            // newest complete checkpoints kept
  ResumeSetting resume;        // auto (newest complete one, if any) | none | a checkpoint folder
  std::string dir;             // "" = <output_dir>/<name>/checkpoints
  bool async = true;           // write in a background thread (the step loop stalls for a host copy only)
};

// f(key, field&, meaning, util::Range) for every key of [checkpoint], in the resolved TOML's order.
template <typename Options, typename F>
void visit_checkpoint_options(Options& h, F&& f) {
  using util::Range;
  f("checkpoint.every_steps", h.every_steps, "checkpoint every n optimizer steps; 0 = only at the end",
    Range::at_least(0));
  f("checkpoint.keep", h.keep, "newest complete checkpoints kept", Range::at_least(1));
  f("checkpoint.resume", h.resume,
    "auto: newest complete checkpoint if any; none: start fresh; or a checkpoint folder", Range{});
  f("checkpoint.dir", h.dir, "\"\" = `<output_dir>/<name>/checkpoints`", Range{});
  f("checkpoint.async", h.async,
    "write checkpoints in a background thread: the step loop stalls only for a copy to host memory", Range{});
}

}  // namespace mgca::train
