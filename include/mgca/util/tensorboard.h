// TensorBoard event files, written without TensorFlow or protobuf: the
// TFRecord framing (length, masked CRC32C of the length, data, masked CRC32C
// of the data) around hand-encoded `Event` messages (tensorflow/core/util/
// event.proto, tensorflow/core/framework/summary.proto). Local to the calling
// process (no collectives); the trainer uses it on rank 0 only.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mgca::util {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as TFRecord uses it.
uint32_t crc32c(std::string_view bytes);
// TFRecord's masked form: rotate right by 15, add 0xa282ead8.
uint32_t masked_crc32c(std::string_view bytes);
// One TFRecord: uint64 length (little endian), masked CRC of those 8 bytes,
// `data`, masked CRC of `data`.
std::string tfrecord(std::string_view data);

// Serialized `Event` messages (the wire format protobuf writes).
std::string event_file_version(double wall_time);  // file_version "brain.Event:2"
std::string event_scalars(double wall_time, int64_t step,
                          const std::vector<std::pair<std::string, double>>& scalars);  // simple_value (float32)
// SessionLog{status: START} at `step`: TensorBoard's loader drops every
// event it read before this one whose step is >= `step` (a restart).
std::string event_session_start(double wall_time, int64_t step);

// One events file "events.out.tfevents.<seconds>.<host>.<pid>" in `folder`
// (created if missing), the name TensorBoard globs for. The seconds are at
// least one more than those of any events file already there, so the files'
// name order is the order they were written in (TensorBoard reads a folder's
// files in name order). Every write is flushed: a crash loses nothing written.
class EventWriter {
 public:
  EventWriter(const std::filesystem::path& folder, const std::string& host);
  const std::filesystem::path& path() const { return path_; }
  void write_scalars(int64_t step, const std::vector<std::pair<std::string, double>>& scalars);
  void write_session_start(int64_t step);

 private:
  void write_record(const std::string& event);
  std::filesystem::path path_;
  std::ofstream out_;
};

// Removes the events files in `folder` (a fresh run starts a fresh history).
void remove_event_files(const std::filesystem::path& folder);

}  // namespace mgca::util
